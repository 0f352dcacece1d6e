"""Hand-written PyTensor operators, with Numba implementations, for the two hot loops.

PyTensor's elementwise graphs compute every branch for every element; nengo's numpy
code computes some things only where needed (``log1p`` only for neurons that
spiked; ``expm1`` of a constant for neurons out of their refractory period). These
operators do the same per element, with the same floating-point operations in the
same order as nengo and scipy, so results are bit-for-bit those of the reference:

* `LIFStep`: nengo's ``LIF.step``;
* `BsrMatVec`: scipy's ``bsr_matvec`` (each row summed in stored order), used for
  nengo's merged ``BsrDotInc``; blocks of many rows are stored transposed so the
  rows are summed side by side in vector registers.
"""

import math

import numpy as np

from .cache import load_pytensor

load_pytensor()  # before anything else imports PyTensor unconfigured

from pytensor.graph.basic import Apply  # noqa: E402
from pytensor.graph.op import Op  # noqa: E402
from pytensor.link.numba.dispatch.basic import (  # noqa: E402
    numba_njit,
    register_funcify_default_op_cache_key,
)
from pytensor.tensor import as_tensor_variable  # noqa: E402
from pytensor.tensor.type import TensorType  # noqa: E402


KERNEL_VERSION = 6
"""Part of the cache key of the compiled kernels: bump it when one changes."""


class LIFStep(Op):
    """``(J, voltage, refractory_time) -> (output, voltage, refractory_time)``."""

    __props__ = ("dt", "tau_rc", "tau_ref", "min_voltage", "amplitude")

    def __init__(self, dt, tau_rc, tau_ref, min_voltage, amplitude):
        self.dt = float(dt)
        self.tau_rc = float(tau_rc)
        self.tau_ref = float(tau_ref)
        self.min_voltage = float(min_voltage)
        self.amplitude = float(amplitude)

    def make_node(self, J, voltage, refractory_time):
        inputs = [as_tensor_variable(v) for v in (J, voltage, refractory_time)]
        vector = TensorType("float64", shape=inputs[0].type.shape)
        return Apply(self, inputs, [vector() for _ in range(3)])

    def perform(self, node, inputs, outputs):  # the reference, for PyTensor's other linkers
        J, voltage, refractory_time = (np.array(x) for x in inputs)
        from nengo.neurons import LIF

        lif = LIF(self.tau_rc, self.tau_ref, self.min_voltage, self.amplitude)
        output = np.zeros_like(J)
        lif.step(self.dt, J, output, voltage, refractory_time)
        outputs[0][0], outputs[1][0], outputs[2][0] = output, voltage, refractory_time


@register_funcify_default_op_cache_key(LIFStep)
def numba_lif_step(op, node=None, **kwargs):
    dt, tau_rc, tau_ref = op.dt, op.tau_rc, op.tau_ref
    min_voltage, spike_height = op.min_voltage, op.amplitude / op.dt
    full_step = math.expm1(-dt / tau_rc)  # what nengo computes when delta_t == dt
    no_step = math.expm1(-0.0 / tau_rc)  # ... and when delta_t == 0 (refractory): -0.0

    @numba_njit
    def lif_step(J, voltage, refractory_time):
        n = J.shape[0]
        output = np.empty(n)
        v_out = np.empty(n)
        r_out = np.empty(n)
        for i in range(n):
            r = refractory_time[i] - dt
            delta_t = dt - r
            if delta_t < 0.0:
                delta_t = 0.0
            if delta_t > dt:
                delta_t = dt
            if delta_t == dt:
                factor = full_step
            elif delta_t == 0.0:
                factor = no_step
            else:
                factor = math.expm1(-delta_t / tau_rc)
            j = J[i]
            v = voltage[i] - (j - voltage[i]) * factor
            if v > 1:
                output[i] = spike_height
                t_spike = dt + tau_rc * math.log1p(-(v - 1) / (j - 1))
                v_out[i] = 0.0
                r_out[i] = tau_ref + t_spike
            else:
                output[i] = 0.0
                v_out[i] = min_voltage if v < min_voltage else v
                r_out[i] = r
        return output, v_out, r_out

    return lif_step, KERNEL_VERSION


class BsrMatVec(Op):
    """``(blocks, x, indptr, indices) -> y``: block-sparse-row matrix times vector.

    ``blocks`` is ``(n_blocks, R, C)``; the result has ``(len(indptr) - 1) * R``
    elements. Each output element is summed in scipy's order.

    Parameters
    ----------
    cols : int
        ``C`` when it is small (nengo's merged encoders: one column per dimension),
        so the kernel is compiled for it: the column loop unrolls and rows are
        processed one after another (a third faster than four rows at a time with
        a loop over few columns). 0 for any ``C``.
    transposed : bool
        ``blocks`` are given as ``(n_blocks, C, R)`` (each block transposed): the
        kernel then adds one column of a block at a time to all its rows, which the
        compiler turns into vector instructions (each row is still summed in
        column order). 2-3 times faster for blocks of many rows and more than
        `SMALL_COLS` columns (nengo's merged encoders of ensembles of 16 dimensions
        and more); slower for blocks of few rows.
    """

    __props__ = ("cols", "transposed")

    def __init__(self, cols=0, transposed=False):
        self.cols = int(cols)
        self.transposed = bool(transposed)

    def make_node(self, blocks, x, indptr, indices):
        inputs = [as_tensor_variable(v) for v in (blocks, x, indptr, indices)]
        return Apply(self, inputs, [TensorType("float64", shape=(None,))()])

    def perform(self, node, inputs, outputs):
        import scipy.sparse

        blocks, x, indptr, indices = inputs
        if self.transposed:
            blocks = blocks.transpose(0, 2, 1)
        n_rows = (len(indptr) - 1) * blocks.shape[1]
        matrix = scipy.sparse.bsr_matrix(
            (blocks, indices, indptr), shape=(n_rows, x.shape[0])
        )
        outputs[0][0] = np.asarray(matrix.dot(x), dtype=np.float64)


SMALL_COLS = 8
"""Blocks with at most this many columns get a kernel compiled for their width."""


@register_funcify_default_op_cache_key(BsrMatVec)
def numba_bsr_matvec(op, node=None, **kwargs):
    if op.transposed:
        return _bsr_matvec_transposed(), KERNEL_VERSION
    if op.cols:
        return _bsr_matvec_small_cols(op.cols), KERNEL_VERSION

    @numba_njit
    def bsr_matvec(blocks, x, indptr, indices):
        n_brow = indptr.shape[0] - 1
        R = blocks.shape[1]
        C = blocks.shape[2]
        y = np.zeros(n_brow * R)
        for bi in range(n_brow):
            for k in range(indptr[bi], indptr[bi + 1]):
                x0 = indices[k] * C
                y0 = bi * R
                # eight (then four) rows at a time, each summed in column order
                # (scipy's) in a register of its own, so the addition chains overlap
                r = 0
                while r + 8 <= R:
                    s0 = y[y0 + r]
                    s1 = y[y0 + r + 1]
                    s2 = y[y0 + r + 2]
                    s3 = y[y0 + r + 3]
                    s4 = y[y0 + r + 4]
                    s5 = y[y0 + r + 5]
                    s6 = y[y0 + r + 6]
                    s7 = y[y0 + r + 7]
                    for c in range(C):
                        xc = x[x0 + c]
                        s0 += blocks[k, r, c] * xc
                        s1 += blocks[k, r + 1, c] * xc
                        s2 += blocks[k, r + 2, c] * xc
                        s3 += blocks[k, r + 3, c] * xc
                        s4 += blocks[k, r + 4, c] * xc
                        s5 += blocks[k, r + 5, c] * xc
                        s6 += blocks[k, r + 6, c] * xc
                        s7 += blocks[k, r + 7, c] * xc
                    y[y0 + r] = s0
                    y[y0 + r + 1] = s1
                    y[y0 + r + 2] = s2
                    y[y0 + r + 3] = s3
                    y[y0 + r + 4] = s4
                    y[y0 + r + 5] = s5
                    y[y0 + r + 6] = s6
                    y[y0 + r + 7] = s7
                    r += 8
                while r + 4 <= R:
                    s0 = y[y0 + r]
                    s1 = y[y0 + r + 1]
                    s2 = y[y0 + r + 2]
                    s3 = y[y0 + r + 3]
                    for c in range(C):
                        xc = x[x0 + c]
                        s0 += blocks[k, r, c] * xc
                        s1 += blocks[k, r + 1, c] * xc
                        s2 += blocks[k, r + 2, c] * xc
                        s3 += blocks[k, r + 3, c] * xc
                    y[y0 + r] = s0
                    y[y0 + r + 1] = s1
                    y[y0 + r + 2] = s2
                    y[y0 + r + 3] = s3
                    r += 4
                while r < R:
                    s0 = y[y0 + r]
                    for c in range(C):
                        s0 += blocks[k, r, c] * x[x0 + c]
                    y[y0 + r] = s0
                    r += 1
        return y

    return bsr_matvec, KERNEL_VERSION


def _bsr_matvec_small_cols(C):
    """`BsrMatVec`'s kernel for blocks of exactly ``C`` columns (a constant here)."""

    @numba_njit
    def bsr_matvec(blocks, x, indptr, indices):
        n_brow = indptr.shape[0] - 1
        R = blocks.shape[1]
        y = np.zeros(n_brow * R)
        for bi in range(n_brow):
            y0 = bi * R
            for k in range(indptr[bi], indptr[bi + 1]):
                x0 = indices[k] * C
                block = blocks[k]
                for r in range(R):
                    s = y[y0 + r]
                    for c in range(C):  # scipy's order: column by column
                        s += block[r, c] * x[x0 + c]
                    y[y0 + r] = s
        return y

    return bsr_matvec


def _bsr_matvec_transposed():
    """`BsrMatVec`'s kernel for blocks stored transposed, ``(n_blocks, C, R)``."""

    @numba_njit
    def bsr_matvec(blocks_t, x, indptr, indices):
        n_brow = indptr.shape[0] - 1
        C = blocks_t.shape[1]
        R = blocks_t.shape[2]
        y = np.zeros(n_brow * R)
        for bi in range(n_brow):
            y0 = bi * R
            for k in range(indptr[bi], indptr[bi + 1]):
                x0 = indices[k] * C
                for c in range(C):  # column by column: each row sums in scipy's order
                    xc = x[x0 + c]
                    for r in range(R):  # contiguous: vectorised across rows
                        y[y0 + r] += blocks_t[k, c, r] * xc
        return y

    return bsr_matvec
