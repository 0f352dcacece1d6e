"""Operators as symbolic updates: one lowering function per operator type.

Like nengo's ``Builder``, lowerings are registered per exact operator type
(``@Lowering.register(DotInc)``). Each takes ``(op, signals, dt)`` — ``signals`` a
`SymbolicSignals` — and mirrors the operator's ``make_step`` arithmetic, operation
for operation, so compiled and numpy steps agree to rounding (bit for bit where the
same summation order is used: ``exp``, ``log1p`` and the like are numpy's own loops,
`spike.runtime.compiler.ufuncs`). A lowering that cannot
handle a particular use raises `NotLowerable`, and the operator runs in Python.
"""

import numpy as np
from nengo.builder.learning_rules import SimBCM, SimOja, SimPES, SimVoja
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import (
    BsrDotInc,
    Copy,
    DotInc,
    ElementwiseInc,
    Reset,
    SparseDotInc,
    TimeUpdate,
)
from nengo.builder.probe import SimProbe
from nengo.builder.processes import SimProcess
from nengo.processes import WhiteNoise
from nengo.synapses import Alpha, LinearFilter, Lowpass

from spike.builder.operators import SplitSimPES
from spike.runtime.compiler.kernels import (
    SMALL_COLS,
    BsrMatVec,
    BsrMatVecIncArena,
    CopyToArena,
    skipping_zeros_is_exact,
)
from spike.runtime.compiler.neurons import lower_neurons
from spike.runtime.compiler.processes import (
    AHEAD_PROCESSES,
    TABLE_PROCESSES,
    ahead_row,
    draws_in_batches,
    lower_table_process,
)
from spike.runtime.compiler.symbolic import NotLowerable


class Lowering:
    """Registry of lowering functions, by exact operator type."""

    functions = {}

    @classmethod
    def register(cls, op_type):
        def register(function):
            cls.functions[op_type] = function
            return function

        return register

    @classmethod
    def supports(cls, op):
        return type(op) in cls.functions

    @classmethod
    def lower(cls, op, signals, dt):
        function = cls.functions.get(type(op))
        if function is None:
            raise NotLowerable(f"no compiled form of {type(op).__name__}")
        function(op, signals, dt)


def _index(index):
    return Ellipsis if index is None else index


@Lowering.register(SimProbe)
def lower_sim_probe(op, signals, dt):
    """Nothing to do: probes are read after the step."""


@Lowering.register(TimeUpdate)
def lower_time_update(op, signals, dt):
    step = signals.read(op.step) + 1
    signals.write(op.step, step)
    signals.write(op.time, step * dt)


@Lowering.register(Reset)
def lower_reset(op, signals, dt):
    value = np.asarray(op.value, dtype=op.dst.dtype)
    if value.size > 1 and np.any(value != value.reshape(-1)[0]):
        signals.write(op.dst, signals.constant(value))
    else:
        fill = value.reshape(-1)[0] if value.size else 0
        signals.write(op.dst, signals.pt.full(op.dst.shape, fill, dtype=op.dst.dtype))


def _copy_in_arena(op, signals):
    """Lower a whole-signal ``Copy`` into an arena range as `CopyToArena`; False
    if it is not one (slices, a source that overlaps, not in the arena)."""
    if op.src_slice is not None or op.dst_slice is not None or op.src.shape != op.dst.shape:
        return False
    dst_start = signals.arena_range(op.dst)
    if dst_start is None or op.src.dtype != np.float64 or op.src.size < 2:
        return False
    n = op.dst.size
    others = ()
    if signals.arena_range(op.src) is None:  # a constant (the neurons' bias)
        if not op.src.readonly or op.src.sparse:
            return False
        src_start = None
        others = (signals.read(op.src).reshape((n,)),)
    else:
        ranges = signals.disjoint_arena_ranges((op.src, op.dst))
        if ranges is None:
            return False
        src_start = ranges[0]
    kernel = CopyToArena(
        src_start=src_start, dst_start=dst_start, n=n, inc=bool(op.inc), inplace=False
    )
    signals.apply_to_arena(kernel, *others)
    return True


@Lowering.register(Copy)
def lower_copy(op, signals, dt):
    if _copy_in_arena(op, signals):
        return
    src = signals.read(op.src, index=op.src_slice, copy=True)
    dst_index = op.dst_slice
    if dst_index is not None and not isinstance(dst_index, slice):
        dst_index = np.asarray(dst_index)
        if dst_index.dtype.kind == "b":
            raise NotLowerable("boolean dst_slice")
        dst_index = np.where(dst_index < 0, dst_index + op.dst.shape[0], dst_index)
        if not op.inc and len(np.unique(dst_index)) < len(dst_index):
            raise NotLowerable("repeated indices in a set")
    signals.write(op.dst, src, index=dst_index, inc=op.inc)


@Lowering.register(ElementwiseInc)
def lower_elementwise_inc(op, signals, dt):
    product = signals.read(op.A) * signals.read(op.X)
    signals.write(op.Y, product, inc=True)


def _product_operands(op, signals):
    """``(A, X)`` in the dtype products are computed in."""
    A = signals.read(op.A, dtype=signals.matrix_dtype if op.A.size > 1 else None)
    X = signals.read(op.X)
    if A.dtype != X.dtype:
        X = signals.pt.cast(X, A.dtype)
    return A, X


def _accumulate(op, signals, product):
    if product.dtype != op.Y.dtype:
        product = signals.pt.cast(product, str(op.Y.dtype))
    if getattr(op, "reshape", False):
        product = product.reshape(op.Y.shape)
    signals.write(op.Y, product, inc=True)


@Lowering.register(DotInc)
def lower_dot_inc(op, signals, dt):
    if op.A.ndim == 0 or op.X.ndim == 0:
        product = signals.read(op.A) * signals.read(op.X)
    else:
        A, X = _product_operands(op, signals)
        product = signals.pt.dot(A, X)
    _accumulate(op, signals, product)


@Lowering.register(SparseDotInc)
def lower_sparse_dot_inc(op, signals, dt):
    """CSR product, summed row by row in stored order as scipy does."""
    if op.X.ndim != 1:
        raise NotLowerable("sparse product with a matrix")
    pt = signals.pt
    data, indices, indptr, shape = signals.sparse_matrix(op.A)
    X = signals.read(op.X)
    if data.dtype != X.dtype:
        X = pt.cast(X, data.dtype)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    terms = data * X[signals.index_input(indices)]
    product = pt.inc_subtensor(
        pt.zeros(shape[0], dtype=data.dtype)[signals.index_input(rows)], terms
    )
    _accumulate(op, signals, product)


TRANSPOSE_MIN_ROWS = 32
"""Blocks of at least this many rows are passed to their product transposed
(`BsrMatVec`'s ``transposed``): a copy of the matrix made once per worker, which
makes every step's product faster (see the documentation's benchmarks page)."""

SKIPPING_TRANSPOSE_MIN_ROWS = 16
"""The same for products that skip zero inputs: a skipped column of a transposed
block is memory not read at all, where in rows it shares cache lines with others.
For blocks of few rows, rows are as fast."""


@Lowering.register(BsrDotInc)
def lower_bsr_dot_inc(op, signals, dt):
    """Block-sparse product: each stored block times its slice of X, summed per block row."""
    if op.X.ndim != 1 or op.A.ndim != 3:
        raise NotLowerable("block-sparse product of this shape")
    rows, cols = op.A.shape[1:]
    # products of spikes (mostly zeros) skip the zero inputs where that gives
    # scipy's bits: the blocks constant (read-only, so known now) and finite in the
    # matrices' dtype
    skip_zeros = (
        cols > SMALL_COLS
        and op.X.base in signals.spike_trains
        and op.A.readonly
        and skipping_zeros_is_exact(op.A.initial_value, signals.matrix_dtype)
    )
    A = None  # transposed: a copy made once (None if op.A is not a read-only base)
    if rows >= (SKIPPING_TRANSPOSE_MIN_ROWS if skip_zeros else TRANSPOSE_MIN_ROWS):
        A = signals.read_blocks_transposed(op.A, dtype=signals.matrix_dtype)
    transposed = A is not None
    if not transposed:
        A = signals.read(op.A, dtype=signals.matrix_dtype)
    kernel = BsrMatVec(
        cols if cols <= SMALL_COLS else 0, transposed=transposed, skip_zeros=skip_zeros
    )
    indptr, indices = signals.index_input(op.indptr), signals.index_input(op.indices)
    ranges = signals.disjoint_arena_ranges((op.X, op.Y)) if op.Y.ndim == 1 else None
    if ranges is not None:
        # X and Y in the arena, apart: add the product into Y there (no view of X,
        # no new arena)
        x_start, y_start = ranges
        in_arena = BsrMatVecIncArena(
            cols=kernel.cols,
            transposed=kernel.transposed,
            skip_zeros=kernel.skip_zeros,
            x_start=x_start,
            x_size=op.X.size,
            y_start=y_start,
            y_size=op.Y.size,
            inplace=False,
        )
        signals.apply_to_arena(in_arena, A, indptr, indices)
        return
    product = kernel(A, signals.read(op.X), indptr, indices)
    _accumulate(op, signals, product)


@Lowering.register(SimNeurons)
def lower_sim_neurons(op, signals, dt):
    if op.state_extra:
        raise NotLowerable("neurons with their own random state")
    lower_neurons(op, signals, dt)


LINEAR_FILTERS = (LinearFilter, Lowpass, Alpha)


def linear_filter(op, dt):
    """``(step, A, B, C, D)`` of a linear-filter ``SimProcess`` on a vector.

    ``step`` names the step nengo's ``LinearFilter.make_step`` picks for these
    matrices ("NoX", "OneX", "NoD" or "General"). Raises `NotLowerable` for other
    processes (exact types only: a subclass may override ``make_step``).
    """
    process = op.process
    if type(process) not in LINEAR_FILTERS or op.input is None:
        raise NotLowerable(f"{type(process).__name__} runs in Python")
    if op.output.ndim != 1:
        raise NotLowerable("linear filter on a matrix signal")
    return filter_step(process, op.state["X"].initial_value, dt)


def filter_step(synapse, X, dt):
    """``(step, A, B, C, D)`` for a linear-filter ``synapse`` whose state starts
    at ``X`` (see `linear_filter`)."""
    A, B, C, D = synapse._get_ss(dt)
    for step in ("NoX", "OneX", "NoD", "General"):
        if getattr(LinearFilter, step).check(A, B, C, D, X):
            return step, A, B, C, D
    raise NotLowerable("no nengo step for these filter matrices")


@Lowering.register(SimProcess)
def lower_sim_process(op, signals, dt):
    """A ``SimProcess`` by the lowering registered for its process's exact type
    (`PROCESS_LOWERINGS`; a subclass may override ``make_step``, so it runs in
    Python)."""
    lowering = PROCESS_LOWERINGS.get(type(op.process))
    if lowering is None:
        raise NotLowerable(f"{type(op.process).__name__} runs in Python")
    lowering(op, signals, dt)


def lower_linear_filter(op, signals, dt):
    """A linear-filter synapse, with the step nengo picks for its matrices."""
    u = signals.read(op.input)
    y = filtered(signals, linear_filter(op, dt), op.state["X"], u)
    signals.write(op.output, y, inc=op.mode == "inc")


def filtered(signals, filter_matrices, X_sig, u):
    """The output of nengo's linear-filter step (``filter_matrices`` as
    `filter_step` gives them) on input ``u``, updating its state ``X_sig``."""
    pt = signals.pt
    step, A, B, C, D = filter_matrices
    if step == "NoX":
        return D.item() * u
    if step == "OneX":
        a, b = A.item(), C.item() * B.item()
        X = signals.read(X_sig) * a + b * u
        signals.write(X_sig, X)
        return X[0]
    A, B, C = (signals.constant(M) for M in (A, B.reshape((-1, 1)), C))
    X = signals.read(X_sig)
    if step == "NoD":
        X = pt.dot(A, X) + B * u
        signals.write(X_sig, X)
        return pt.dot(C, X)[0]
    y = pt.dot(C, X)[0] + D.item() * u
    signals.write(X_sig, pt.dot(A, X) + B * u)
    return y


def lower_noise(op, signals, dt):
    """A white, filtered or Brownian noise (see `spike.runtime.compiler.processes`). A
    filtered one whose white noise is drawn in batches and whose synapse is a
    linear filter nengo steps as it steps synapses: its draws run ahead, its
    filter is compiled (its state then stays in the model's signals). Otherwise the
    whole process runs ahead."""
    process = op.process
    matrices = None
    if (
        type(process) is not WhiteNoise
        and draws_in_batches(process)
        and type(process.synapse) in LINEAR_FILTERS
        and op.input is None
        and op.output.ndim == 1
    ):
        try:
            matrices = filter_step(process.synapse, op.state["X"].initial_value, dt)
        except NotLowerable:
            pass
    if matrices is None:
        return lower_table_process(op, signals, dt)
    y = filtered(signals, matrices, op.state["X"], ahead_row(op, signals, dt, batched=True))
    signals.write(op.output, y, inc=op.mode == "inc")


PROCESS_LOWERINGS = {
    **{process: lower_linear_filter for process in LINEAR_FILTERS},
    **{process: lower_table_process for process in TABLE_PROCESSES},
    **{process: lower_noise for process in AHEAD_PROCESSES},
}
"""The process types a ``SimProcess`` is compiled for, with their lowerings."""


def one_x_filter(op, dt):
    """``(a, b)`` if ``op`` is a one-state linear filter (nengo's ``OneX`` step) on
    a vector, else None: ``X = X * a + b * u; y = X[0]``."""
    try:
        step, A, B, C, D = linear_filter(op, dt)
    except NotLowerable:
        return None
    return (A.item(), C.item() * B.item()) if step == "OneX" else None


def lower_one_x_filters(ops, signals, dt):
    """Many one-state filters as one gather, one multiply-add and two scatters.

    Same arithmetic per element as nengo's ``OneX`` step (``X * a + b * u``). The
    caller guarantees no operator reads what an earlier one in ``ops`` writes.
    """
    parts = {"u": [], "X": [], "y": [], "a": [], "b": []}
    for op in ops:
        a, b = one_x_filter(op, dt)
        n = op.output.size
        parts["u"].append(signals.arena_positions(op.input))
        parts["X"].append(signals.arena_positions(op.state["X"]))
        parts["y"].append(signals.arena_positions(op.output))
        parts["a"].append(np.full(n, a))
        parts["b"].append(np.full(n, b))
    u = signals.gather(np.concatenate(parts["u"]))
    X_pos = np.concatenate(parts["X"])
    X = signals.gather(X_pos) * signals.constant(np.concatenate(parts["a"])) + (
        signals.constant(np.concatenate(parts["b"])) * u
    )
    signals.scatter(X_pos, X)
    signals.scatter(np.concatenate(parts["y"]), X, inc=ops[0].mode == "inc")


def batchable_filter(op, signals, dt):
    """Key under which ``op`` batches with like operators, or None."""
    if not isinstance(op, SimProcess) or one_x_filter(op, dt) is None:
        return None
    sigs = (op.input, op.state["X"], op.output)
    if any(signals.arena_positions(sig) is None for sig in sigs):
        return None
    return ("one_x", op.mode == "inc")


@Lowering.register(SimPES)
@Lowering.register(SplitSimPES)
def lower_sim_pes(op, signals, dt):
    pre = signals.read(op.pre_filtered)
    error = signals.read(op.error)
    # a part of a split ensemble scales by the whole ensemble's neuron count
    n_neurons = getattr(op, "n_neurons_total", None) or op.pre_filtered.shape[0]
    alpha = -op.learning_rate * dt / n_neurons
    signals.write(op.delta, pt_outer(signals, alpha * error, pre))


@Lowering.register(SimBCM)
def lower_sim_bcm(op, signals, dt):
    pre = signals.read(op.pre_filtered)
    post = signals.read(op.post_filtered)
    theta = signals.read(op.theta)
    alpha = op.learning_rate * dt
    signals.write(op.delta, pt_outer(signals, alpha * post * (post - theta), pre))


@Lowering.register(SimOja)
def lower_sim_oja(op, signals, dt):
    weights = signals.read(op.weights)
    pre = signals.read(op.pre_filtered)
    post = signals.read(op.post_filtered)
    alpha = op.learning_rate * dt
    post_squared = alpha * post * post
    delta = -op.beta * weights * post_squared[:, None]
    signals.write(op.delta, delta + pt_outer(signals, alpha * post, pre))


@Lowering.register(SimVoja)
def lower_sim_voja(op, signals, dt):
    pre = signals.read(op.pre_decoded)
    post = signals.read(op.post_filtered)
    encoders = signals.read(op.scaled_encoders)
    learning = signals.read(op.learning_signal)
    alpha = op.learning_rate * dt
    scale = op.scale[:, np.newaxis]
    delta = (alpha * learning) * (
        scale * pt_outer(signals, post, pre) - post[:, None] * encoders
    )
    signals.write(op.delta, delta)


def pt_outer(signals, a, b):
    """``np.outer(a, b)``: every product computed once, as numpy does."""
    return a[:, None] * b[None, :]
