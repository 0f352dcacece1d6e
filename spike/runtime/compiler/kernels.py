"""Hand-written PyTensor operators, with Numba implementations, for the hot loops.

PyTensor's elementwise graphs compute every branch for every element; nengo's numpy
code computes some things only where needed (``log1p`` only for neurons that
spiked; ``expm1`` of a constant for neurons out of their refractory period). These
operators do the same per element, with the same floating-point operations in the
same order as nengo and scipy, and ``expm1``/``log1p`` from numpy's own loops
(`spike.runtime.compiler.ufuncs`), so results are bit-for-bit those of the reference
(with ``dtype="float32"``, that of the reference's arithmetic on the float32 matrix
values, each widened to float64 in its product):

* `LIFStep`: nengo's ``LIF.step``, on vectors (the adaptive types' currents);
* `BsrMatVec`: scipy's ``bsr_matvec`` (each row summed in stored order), used for
  nengo's merged ``BsrDotInc``; blocks of many rows are stored transposed so the
  rows are summed side by side in vector registers.

`_lif_update` steps LIF neurons in several passes, so that most neurons take no
branch and ``expm1``/``log1p`` are computed only where nengo computes them.

The `InArena` operators read and write the worker's arena (see
`spike.runtime.compiler.symbolic.Arena`) themselves, in place, instead of returning new
vectors that PyTensor then copies into it:

* `LIFInArena`: LIF neurons whose signals are ranges of the arena;
* `BsrMatVecIncArena`: ``Y += A X`` with `BsrMatVec`'s product, X and Y in the arena;
* `CopyToArena`: a whole-signal ``Copy`` (the neurons' bias into their input);
* `TableRowToArena`: a run-ahead process's output for the step, from its table.
"""

import hashlib

import numpy as np

from spike.runtime.compiler import ufuncs
from spike.runtime.compiler.cache import load_pytensor

load_pytensor()  # before anything else imports PyTensor unconfigured

from numba.cpython.unsafe.numbers import trailing_zeros  # noqa: E402
from pytensor.compile import optdb  # noqa: E402
from pytensor.graph.basic import Apply  # noqa: E402
from pytensor.graph.op import Op  # noqa: E402
from pytensor.graph.rewriting.basic import (  # noqa: E402
    WalkingGraphRewriter,
    node_rewriter,
)
from pytensor.link.numba.dispatch.basic import (  # noqa: E402
    numba_njit,
    register_funcify_default_op_cache_key,
)
from pytensor.tensor import as_tensor_variable  # noqa: E402
from pytensor.tensor.type import TensorType  # noqa: E402


def _source_digest():
    try:
        with open(__file__, "rb") as source:
            text = source.read()
    except OSError:  # no source file (a frozen install): key on the release instead
        from spike.version import __version__

        text = __version__.encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:6], "big")


KERNEL_VERSION = _source_digest()
"""Part of the cache key of the compiled kernels: a digest of this module's source,
so that a changed kernel is never loaded from Numba's cache of an earlier one."""


class LIFStep(Op):
    """``(J, voltage, refractory_time, loops) -> (output, voltage, refractory_time)``;
    ``loops`` is `spike.runtime.compiler.ufuncs.loop_table`."""

    __props__ = ("dt", "tau_rc", "tau_ref", "min_voltage", "amplitude")

    def __init__(self, dt, tau_rc, tau_ref, min_voltage, amplitude):
        self.dt = float(dt)
        self.tau_rc = float(tau_rc)
        self.tau_ref = float(tau_ref)
        self.min_voltage = float(min_voltage)
        self.amplitude = float(amplitude)

    def make_node(self, J, voltage, refractory_time, loops):
        inputs = [as_tensor_variable(v) for v in (J, voltage, refractory_time, loops)]
        vector = TensorType("float64", shape=inputs[0].type.shape)
        return Apply(self, inputs, [vector() for _ in range(3)])

    def perform(self, node, inputs, outputs):  # the reference, for PyTensor's other linkers
        J, voltage, refractory_time = (np.array(x) for x in inputs[:3])
        from nengo.neurons import LIF

        lif = LIF(self.tau_rc, self.tau_ref, self.min_voltage, self.amplitude)
        output = np.zeros_like(J)
        lif.step(self.dt, J, output, voltage, refractory_time)
        outputs[0][0], outputs[1][0], outputs[2][0] = output, voltage, refractory_time


_LOW_BITS = np.uint64(0x0101010101010101)
_PACK_BYTES = np.uint64(0x0102040810204080)
"""Times a word of eight bytes that are each 0 or 1, its top byte holds them as
eight bits (byte j as bit j): no two partial products overlap, so nothing carries."""


@numba_njit(inline="always")
def _flag_mask(words, w, bit):
    """Bit ``bit`` of each of the 64 flag bytes ``words[8 w : 8 w + 8]`` (uint64
    views of bytes), as one 64-bit mask: flag ``j`` is mask bit ``j``. Eight bytes at
    a time, without branches (`_PACK_BYTES`)."""
    mask = np.uint64(0)
    for j in range(8):
        flags = (words[w * 8 + j] >> np.uint64(bit)) & _LOW_BITS
        mask |= ((flags * _PACK_BYTES) >> np.uint64(56)) << np.uint64(8 * j)
    return mask


@numba_njit(inline="always")
def _list_flagged(mask, first, out, m):
    """Append ``first + j`` to ``out[m:]`` for each set bit ``j`` of ``mask``, in
    order (a loop turn per set bit, none per clear one); return the new length."""
    one = np.uint64(1)
    while mask:
        out[m] = first + np.intp(trailing_zeros(mask))
        m += 1
        mask &= mask - one
    return m


LIF_CHUNK = 1024
"""Neurons per chunk of `_lif_update`: a chunk's flags, indices and the arguments
of its ``expm1`` and ``log1p`` calls stay in the L1 cache between its passes. A
multiple of 64: the flags of each 64 neurons become one bit mask."""
assert LIF_CHUNK % 64 == 0


def _lif_update(op, j0=0, v0=0, r0=0, o0=0):
    """Numba function ``(J, V, R, O, n, loops)`` for a `LIFStep` or `LIFInArena` ``op``:
    nengo's ``LIF.step`` on ``n`` neurons whose current, voltage, refractory time
    and output start at ``J[j0]``, ``V[v0]``, ``R[r0]`` and ``O[o0]`` (the four
    ranges disjoint), updating V, R and O in place.

    Each neuron gets nengo's operations in nengo's order, but not in one loop with
    branches: which neurons spike is close to random, and mispredicted branches
    cost more than the arithmetic (two thirds of the time in a one-loop kernel).
    Instead, per chunk of `LIF_CHUNK` neurons:

    1. every neuron is stepped without branches (vector instructions), as if it
       were out of its refractory period or wholly in it, where nengo's ``expm1``
       is of a constant. A neuron that spiked keeps its voltage in its output;
       one part-way out of its refractory period keeps its voltage. Both get a
       flag;
    2. the flags of each 64 neurons become two bit masks (`_flag_mask`), and the
       indices of the set bits are listed (`_list_flagged`: one loop turn per
       flagged neuron, not per neuron);
    3. the neurons that spiked get their refractory time from ``log1p``;
    4. the neurons part-way out get their own ``expm1`` and the rest of the step
       (``log1p`` again for those of them that spike).

    ``expm1`` and ``log1p`` are numpy's own loops (``loops``, see
    `spike.runtime.compiler.ufuncs`), each called once per pass on the arguments of
    all the listed neurons, gathered first: the bits are those of nengo's numpy
    calls on any CPU, the SIMD loops of AVX-512 machines included. The two
    constants of pass 1 (``expm1`` of ``-dt / tau_rc`` and of ``-0.0``) come from
    the same loop at each call, not from the machine that compiled the kernel.
    """
    dt, tau_rc, tau_ref = op.dt, op.tau_rc, op.tau_ref
    min_voltage, spike_height = op.min_voltage, op.amplitude / op.dt
    chunk = LIF_CHUNK
    EXPM1, LOG1P = ufuncs.EXPM1, ufuncs.LOG1P
    call = ufuncs.call

    @numba_njit
    def lif_update(J, V, R, O, n, loops):
        flags = np.empty(chunk, np.uint8)  # bit 0: part-way out of refractory; 1: spiked
        words = flags.view(np.uint64)
        partial = np.empty(chunk, np.intp)  # indices in the chunk
        spiked = np.empty(chunk, np.intp)
        arg = np.empty(chunk)
        result = np.empty(chunk)
        # what nengo's expm1(-delta_t / tau_rc) gives for delta_t == dt and == 0
        arg[0] = -dt / tau_rc
        arg[1] = -0.0 / tau_rc
        call(loops, EXPM1, arg, result, 2)
        full_step = result[0]
        no_step = result[1]
        for c0 in range(0, n, chunk):
            m = min(chunk, n - c0)
            for k in range(m):  # 1: no branches
                i = c0 + k
                j = J[j0 + i]
                voltage = V[v0 + i]
                r = R[r0 + i] - dt
                delta_t = dt - r
                delta_t = 0.0 if delta_t < 0.0 else delta_t
                delta_t = dt if delta_t > dt else delta_t
                whole = delta_t == dt
                is_partial = not (whole or delta_t == 0.0)
                v = voltage - (j - voltage) * (full_step if whole else no_step)
                is_spiked = v > 1 and not is_partial
                O[o0 + i] = v if is_spiked else 0.0
                # (one expression: written as if/elif, it is not vectorised)
                V[v0 + i] = voltage if is_partial else (
                    0.0 if is_spiked else (min_voltage if v < min_voltage else v)
                )
                R[r0 + i] = r
                flags[k] = (1 if is_partial else 0) + (2 if is_spiked else 0)
            n_words = (m + 63) // 64
            for k in range(m, n_words * 64):  # a last, short chunk: no flags past its end
                flags[k] = 0
            n_partial = 0  # 2: the flagged neurons listed
            n_spiked = 0
            for w in range(n_words):
                n_partial = _list_flagged(_flag_mask(words, w, 0), w * 64, partial, n_partial)
                n_spiked = _list_flagged(_flag_mask(words, w, 1), w * 64, spiked, n_spiked)
            for q in range(n_spiked):  # 3
                i = c0 + spiked[q]
                arg[q] = -(O[o0 + i] - 1) / (J[j0 + i] - 1)
            call(loops, LOG1P, arg, result, n_spiked)
            for q in range(n_spiked):
                i = c0 + spiked[q]
                R[r0 + i] = tau_ref + (dt + tau_rc * result[q])
                O[o0 + i] = spike_height
            for q in range(n_partial):  # 4
                # within (0, dt): nengo's clip of delta_t changes nothing
                arg[q] = -(dt - R[r0 + c0 + partial[q]]) / tau_rc
            call(loops, EXPM1, arg, result, n_partial)
            n_late = 0  # part-way out, and spiking: listed in `spiked` again
            for q in range(n_partial):
                i = c0 + partial[q]
                j = J[j0 + i]
                voltage = V[v0 + i]
                v = voltage - (j - voltage) * result[q]
                if v > 1:
                    O[o0 + i] = spike_height
                    V[v0 + i] = 0.0
                    spiked[n_late] = partial[q]
                    arg[n_late] = -(v - 1) / (j - 1)
                    n_late += 1
                else:
                    V[v0 + i] = min_voltage if v < min_voltage else v
            call(loops, LOG1P, arg, result, n_late)
            for q in range(n_late):
                R[r0 + c0 + spiked[q]] = tau_ref + (dt + tau_rc * result[q])

    return lif_update


@register_funcify_default_op_cache_key(LIFStep)
def numba_lif_step(op, node=None, **kwargs):
    lif_update = _lif_update(op)

    @numba_njit
    def lif_step(J, voltage, refractory_time, loops):
        n = J.shape[0]
        output = np.empty(n)
        v_out = voltage.copy()
        r_out = refractory_time.copy()
        lif_update(J, v_out, r_out, output, n, loops)
        return output, v_out, r_out

    return lif_step, KERNEL_VERSION


class NumpyUfunc(Op):
    """``(x, loops) -> f(x)`` elementwise, ``f`` one of `spike.runtime.compiler.ufuncs.UFUNCS`
    computed by numpy's own loop (so with numpy's bits, SIMD or not), for the rate
    neurons' ``exp``, ``log1p`` and ``tanh``."""

    __props__ = ("name",)

    def __init__(self, name):
        if name not in ufuncs.UFUNCS:
            raise ValueError(f"no numpy loop for {name!r}")
        self.name = name

    def make_node(self, x, loops):
        inputs = [as_tensor_variable(x).astype("float64"), as_tensor_variable(loops)]
        return Apply(self, inputs, [TensorType("float64", shape=inputs[0].type.shape)()])

    def perform(self, node, inputs, outputs):  # the reference, for PyTensor's other linkers
        outputs[0][0] = getattr(np, self.name)(np.asarray(inputs[0], dtype=np.float64))


@register_funcify_default_op_cache_key(NumpyUfunc)
def numba_numpy_ufunc(op, node=None, **kwargs):
    k = ufuncs.UFUNCS.index(op.name)
    call = ufuncs.call

    @numba_njit
    def numpy_ufunc(x, loops):
        source = np.ascontiguousarray(x)  # a copy only where x is not contiguous
        out = np.empty(source.shape)
        call(loops, k, source.reshape(-1), out.reshape(-1), source.size)
        return out

    return numpy_ufunc, KERNEL_VERSION


class InArena(Op):
    """Base of the kernels that read and write the arena itself: ``arena, ... ->
    arena``, the arena's ranges they use given by their props.

    Built with ``inplace=False`` (the kernel then updates a copy); the rewrite
    `inplace_in_arena` makes them update the arena itself wherever PyTensor's
    destroy handler allows, as it does for ``IncSubtensor``. Subclasses list their
    props in ``__props__``, ending with ``"inplace"``.
    """

    def __init__(self, **props):
        for name in self.__props__:
            setattr(self, name, props[name])
        if self.inplace:
            self.destroy_map = {0: [0]}

    def make_node(self, arena, *others):
        inputs = [as_tensor_variable(v) for v in (arena, *others)]
        return Apply(self, inputs, [inputs[0].type()])

    def perform(self, node, inputs, outputs):  # the reference, for PyTensor's other linkers
        arena = inputs[0] if self.inplace else inputs[0].copy()
        self.update(arena, *inputs[1:])
        outputs[0][0] = arena

    def update(self, arena, *others):
        """Update ``arena`` in place with nengo's (or scipy's) own code."""
        raise NotImplementedError


class LIFInArena(InArena):
    """nengo's ``LIF.step`` on signals held in the arena.

    ``arena, loops -> arena``: the current, voltage, refractory time and output are
    the ranges of ``n`` elements from ``starts`` (in that order, disjoint); ``loops``
    is `spike.runtime.compiler.ufuncs.loop_table`. Reading and writing them in place
    saves what `LIFStep` costs around the arithmetic: three new vectors per step and
    three copies into the arena.
    """

    __props__ = ("dt", "tau_rc", "tau_ref", "min_voltage", "amplitude", "starts", "n", "inplace")

    def update(self, arena, loops):
        from nengo.neurons import LIF

        J, voltage, refractory_time, output = (arena[s : s + self.n] for s in self.starts)
        lif = LIF(self.tau_rc, self.tau_ref, self.min_voltage, self.amplitude)
        lif.step(self.dt, J, output, voltage, refractory_time)


class BsrMatVecIncArena(InArena):
    """``Y += A X`` for a block-sparse ``A`` (`BsrMatVec`'s), X and Y in the arena.

    ``X`` is the ``x_size`` elements from ``x_start``, ``Y`` the ``y_size`` from
    ``y_start``; they are disjoint. The product is summed as scipy sums it (in
    float64, float32 blocks widened), then added to Y, as nengo does.
    """

    __props__ = (
        "cols", "transposed", "skip_zeros", "x_start", "x_size", "y_start", "y_size",
        "inplace",
    )

    def update(self, arena, blocks, indptr, indices):
        x = arena[self.x_start : self.x_start + self.x_size]
        y = BsrMatVec(self.cols, self.transposed).product(blocks, x, indptr, indices)
        arena[self.y_start : self.y_start + self.y_size] += y


class CopyToArena(InArena):
    """nengo's ``Copy`` into the ``n`` elements of the arena from ``dst_start``.

    The source is the ``n`` elements from ``src_start`` in the arena (apart from
    the destination), or, if ``src_start`` is None, the op's second input (a
    constant, such as the neurons' bias). ``inc`` adds instead of setting.
    """

    __props__ = ("src_start", "dst_start", "n", "inc", "inplace")

    def update(self, arena, *source):
        src = source[0] if source else arena[self.src_start : self.src_start + self.n]
        dst = arena[self.dst_start : self.dst_start + self.n]
        if self.inc:
            dst += src
        else:
            dst[...] = src


class TableRowToArena(InArena):
    """A run-ahead table's row for the step, set or added into the ``n`` elements
    of the arena from ``dst_start`` (see `spike.runtime.compiler.processes.RunAhead`).

    The row is ``round(t / dt) % rows``, ``t`` the arena's element ``time_at``;
    the table, ``(rows, n)``, is the op's second input. One node where PyTensor's
    own ops took five per process (an index, a slice, an update of the arena...): a
    worker's segment of `bench`'s noisy stream, 64 ensembles with noise, has 103
    nodes instead of 360.
    """

    __props__ = ("time_at", "dt", "rows", "dst_start", "n", "inc", "inplace")

    def update(self, arena, table):
        row = int(np.round(arena[self.time_at] / self.dt)) % self.rows
        dst = arena[self.dst_start : self.dst_start + self.n]
        if self.inc:
            dst += table[row]
        else:
            dst[...] = table[row]


@node_rewriter([LIFInArena, BsrMatVecIncArena, CopyToArena, TableRowToArena], inplace=True)
def inplace_in_arena(fgraph, node):
    if node.op.inplace:
        return False
    props = node.op._props_dict()
    props["inplace"] = True
    return type(node.op)(**props).make_node(*node.inputs).outputs


optdb.register(
    "spike_inplace_in_arena",
    WalkingGraphRewriter(inplace_in_arena, failure_callback=WalkingGraphRewriter.warn_inplace),
    "fast_run",
    "inplace",
    position=50.2,
)


def _in_arena(op, update):
    """The numba function of an `InArena` op whose kernel is ``update(arena, ...)``."""
    if op.inplace:

        @numba_njit
        def in_arena(arena, *others):
            update(arena, *others)
            return arena

    else:

        @numba_njit
        def in_arena(arena, *others):
            arena = arena.copy()
            update(arena, *others)
            return arena

    return in_arena


@register_funcify_default_op_cache_key(LIFInArena)
def numba_lif_in_arena(op, node=None, **kwargs):
    lif_update = _lif_update(op, *op.starts)
    n = op.n

    @numba_njit
    def lif_in_arena(arena, loops):
        lif_update(arena, arena, arena, arena, n, loops)

    return _in_arena(op, lif_in_arena), KERNEL_VERSION


class BsrMatVec(Op):
    """``(blocks, x, indptr, indices) -> y``: block-sparse-row matrix times vector.

    ``blocks`` is ``(n_blocks, R, C)``; the result has ``(len(indptr) - 1) * R``
    elements. Each output element is summed in scipy's order.

    Parameters
    ----------
    cols : int
        ``C`` when it is small (nengo's merged encoders: one column per dimension),
        so the kernel is compiled for it: the column loop unrolls. 0 for any ``C``.
    transposed : bool
        ``blocks`` are given as ``(n_blocks, C, R)`` (each block transposed): the
        kernel then works on all the rows of a block side by side, which the
        compiler turns into vector instructions (each row is still summed in
        column order). It pays for blocks of many rows (nengo's merged encoders:
        one pass over the rows when ``cols`` is given, a pass per column
        otherwise), not for blocks of few rows.
    skip_zeros : bool
        Skip the columns whose ``x`` is zero (both signs): per block, the nonzero
        inputs are listed first, then only their columns are read. The inputs of
        decoders and of neuron-to-neuron weights are spikes, mostly zero, so most
        of such a matrix is never read. Exact where every block entry is finite
        (see `skipping_zeros_is_exact`). Not with ``cols``.
    """

    __props__ = ("cols", "transposed", "skip_zeros")

    def __init__(self, cols=0, transposed=False, skip_zeros=False):
        self.cols = int(cols)
        self.transposed = bool(transposed)
        self.skip_zeros = bool(skip_zeros) and not self.cols

    def make_node(self, blocks, x, indptr, indices):
        inputs = [as_tensor_variable(v) for v in (blocks, x, indptr, indices)]
        return Apply(self, inputs, [TensorType("float64", shape=(None,))()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = self.product(*inputs)

    def product(self, blocks, x, indptr, indices):
        """scipy's product (the reference)."""
        import scipy.sparse

        if self.transposed:
            blocks = blocks.transpose(0, 2, 1)
        n_rows = (len(indptr) - 1) * blocks.shape[1]
        matrix = scipy.sparse.bsr_matrix(
            (blocks, indices, indptr), shape=(n_rows, x.shape[0])
        )
        return np.asarray(matrix.dot(x), dtype=np.float64)


SMALL_COLS = 8
"""Blocks with at most this many columns get a kernel compiled for their width."""


def skipping_zeros_is_exact(blocks, dtype=np.float64, chunk=2**20):
    """True if `BsrMatVec` may skip the zero inputs of these (constant) blocks,
    taken in ``dtype``, and still give scipy's bits.

    scipy sums each row from +0.0, in column order. A skipped term is ``a * 0``,
    a zero of either sign, and adding a zero to a sum changes nothing: not a
    nonzero sum, and not a sum of +0.0 (``+0.0 + -0.0`` is +0.0 when rounding to
    nearest). Nor can a sum become -0.0 on its way: an exact zero from two
    nonzero terms is +0.0, and a sum of floats never underflows to zero (with
    subnormals kept, as numpy and Numba keep them: no flush-to-zero). So the sums
    are the same bits, as long as no ``a`` is infinite or NaN: then ``a * 0`` is
    NaN, which scipy's sum keeps and a skipped term would not.

    Checked ``chunk`` values at a time, so that a big matrix is not copied whole.
    """
    flat = np.asarray(blocks).reshape(-1)
    with np.errstate(over="ignore"):  # a value too big for float32 becomes inf: found
        for start in range(0, flat.size, chunk):
            values = flat[start : start + chunk].astype(dtype, copy=False)
            if not np.isfinite(values).all():
                return False
    return True


@numba_njit(inline="always")
def _nonzero_columns(x, x0, C, columns, flags, words):
    """List in ``columns`` the ``c < C`` where ``x[x0 + c]`` is not zero (NaN
    included), in order; return how many. ``flags`` is a scratch of bytes, ``C``
    rounded up to a multiple of 64, zero past ``C``; ``words`` the same memory as
    uint64 (see `_list_flagged`)."""
    for c in range(C):  # one vector pass
        flags[c] = x[x0 + c] != 0.0
    m = 0
    for w in range(words.shape[0] // 8):
        m = _list_flagged(_flag_mask(words, w, 0), w * 64, columns, m)
    return m


@register_funcify_default_op_cache_key(BsrMatVecIncArena)
def numba_bsr_matvec_inc_arena(op, node=None, **kwargs):
    product, _ = numba_bsr_matvec(BsrMatVec(op.cols, op.transposed, op.skip_zeros))
    x0, x1 = op.x_start, op.x_start + op.x_size
    y0, n = op.y_start, op.y_size

    @numba_njit
    def bsr_matvec_inc(arena, blocks, indptr, indices):
        y = product(blocks, arena[x0:x1], indptr, indices)
        for i in range(n):
            arena[y0 + i] += y[i]

    return _in_arena(op, bsr_matvec_inc), KERNEL_VERSION


@register_funcify_default_op_cache_key(CopyToArena)
def numba_copy_to_arena(op, node=None, **kwargs):
    d0, n, inc = op.dst_start, op.n, op.inc
    if op.src_start is None:

        @numba_njit
        def copy(arena, src):
            for i in range(n):
                arena[d0 + i] = arena[d0 + i] + src[i] if inc else src[i]

    else:
        s0 = op.src_start

        @numba_njit
        def copy(arena):
            for i in range(n):
                arena[d0 + i] = arena[d0 + i] + arena[s0 + i] if inc else arena[s0 + i]

    return _in_arena(op, copy), KERNEL_VERSION


@register_funcify_default_op_cache_key(TableRowToArena)
def numba_table_row_to_arena(op, node=None, **kwargs):
    t0, dt, rows, d0, n, inc = op.time_at, op.dt, op.rows, op.dst_start, op.n, op.inc

    @numba_njit
    def row_to_arena(arena, table):
        row = round(arena[t0] / dt) % rows  # Python's round: half to even, as numpy's
        for i in range(n):
            arena[d0 + i] = arena[d0 + i] + table[row, i] if inc else table[row, i]

    return _in_arena(op, row_to_arena), KERNEL_VERSION


@register_funcify_default_op_cache_key(BsrMatVec)
def numba_bsr_matvec(op, node=None, **kwargs):
    if op.cols:
        return _bsr_matvec_small_cols(op.cols, op.transposed), KERNEL_VERSION
    if op.transposed:
        return _bsr_matvec_transposed(op.skip_zeros), KERNEL_VERSION
    skip_zeros = op.skip_zeros

    @numba_njit
    def bsr_matvec(blocks, x, indptr, indices):
        n_brow = indptr.shape[0] - 1
        R = blocks.shape[1]
        C = blocks.shape[2]
        y = np.zeros(n_brow * R)
        columns = np.empty(C if skip_zeros else 0, np.intp)
        flags = np.zeros((C + 63) // 64 * 64 if skip_zeros else 0, np.uint8)
        words = flags.view(np.uint64)
        for bi in range(n_brow):
            for k in range(indptr[bi], indptr[bi + 1]):
                x0 = indices[k] * C
                y0 = bi * R
                m = _nonzero_columns(x, x0, C, columns, flags, words) if skip_zeros else C
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
                    for q in range(m):
                        c = columns[q] if skip_zeros else q
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
                    for q in range(m):
                        c = columns[q] if skip_zeros else q
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
                    for q in range(m):
                        c = columns[q] if skip_zeros else q
                        s0 += blocks[k, r, c] * x[x0 + c]
                    y[y0 + r] = s0
                    r += 1
        return y

    return bsr_matvec, KERNEL_VERSION


def _bsr_matvec_small_cols(C, transposed=False):
    """`BsrMatVec`'s kernel for blocks of exactly ``C`` columns (a constant here),
    stored ``(n_blocks, R, C)`` or, ``transposed``, ``(n_blocks, C, R)``: each row's
    sum is formed whole, in scipy's order, column loop unrolled (and, transposed,
    rows side by side in vector registers)."""
    if transposed:
        rows_axis = 2

        @numba_njit(inline="always")
        def entry(blocks, k, r, c):
            return blocks[k, c, r]

    else:
        rows_axis = 1

        @numba_njit(inline="always")
        def entry(blocks, k, r, c):
            return blocks[k, r, c]

    @numba_njit
    def bsr_matvec(blocks, x, indptr, indices):
        n_brow = indptr.shape[0] - 1
        R = blocks.shape[rows_axis]
        y = np.zeros(n_brow * R)
        for bi in range(n_brow):
            y0 = bi * R
            for k in range(indptr[bi], indptr[bi + 1]):
                x0 = indices[k] * C
                for r in range(R):
                    s = y[y0 + r]
                    for c in range(C):  # scipy's order: column by column
                        s += entry(blocks, k, r, c) * x[x0 + c]
                    y[y0 + r] = s
        return y

    return bsr_matvec


def _bsr_matvec_transposed(skip_zeros=False):
    """`BsrMatVec`'s kernel for blocks of any width stored transposed, ``(n_blocks,
    C, R)``: a pass over a block's rows per column (per nonzero input's column,
    ``skip_zeros``)."""

    @numba_njit
    def bsr_matvec(blocks_t, x, indptr, indices):
        n_brow = indptr.shape[0] - 1
        C = blocks_t.shape[1]
        R = blocks_t.shape[2]
        y = np.zeros(n_brow * R)
        columns = np.empty(C if skip_zeros else 0, np.intp)
        flags = np.zeros((C + 63) // 64 * 64 if skip_zeros else 0, np.uint8)
        words = flags.view(np.uint64)
        for bi in range(n_brow):
            y0 = bi * R
            for k in range(indptr[bi], indptr[bi + 1]):
                x0 = indices[k] * C
                m = _nonzero_columns(x, x0, C, columns, flags, words) if skip_zeros else C
                for q in range(m):  # column by column: each row sums in scipy's order
                    c = columns[q] if skip_zeros else q
                    xc = x[x0 + c]
                    for r in range(R):  # contiguous: vectorised across rows
                        y[y0 + r] += blocks_t[k, c, r] * xc
        return y

    return bsr_matvec
