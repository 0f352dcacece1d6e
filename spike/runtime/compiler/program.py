"""A peer's step as compiled segments and Python operators, in the reference order.

`Program` walks the peer's operators in step order. Runs of operators that have a
lowering (`spike.runtime.compiler.lowering`) become one `Segment`: one PyTensor function
compiled with Numba. Operators without one (Python callables, processes that draw
random numbers, user subclasses) run as nengo's own step functions between
segments, reading and writing the same arrays.
"""

import logging
import time

from nengo.builder.neurons import SimNeurons

from spike.runtime.compiler.cache import load_pytensor
from spike.runtime.compiler.lowering import Lowering, batchable_filter, lower_one_x_filters
from spike.runtime.compiler.segment import Segment
from spike.runtime.compiler.symbolic import NotLowerable, SymbolicSignals

logger = logging.getLogger("spike.runtime.compiler")


EXCLUDED_REWRITES = ("local_write_of_write_same_indices",)
"""PyTensor rewrites Spike turns off. ``x[i].set(0)[i].inc(v) -> x[i].set(v)``
forks the arena's chain of in-place updates wherever something reads the arena
between the two writes (a Reset, then a product that reads its input): the first
write then can no longer be in place and copies the whole arena every step."""


def compile_mode():
    """PyTensor's default mode (the Numba linker) without `EXCLUDED_REWRITES`."""
    pytensor = load_pytensor()
    return pytensor.compile.mode.get_default_mode().excluding(*EXCLUDED_REWRITES)


def _check_in_place(function, ops):
    """Warn if an `InArena` kernel was left copying the arena (PyTensor's destroy
    handler refused to let it work in place): correct, but the whole arena is then
    copied every step."""
    from spike.runtime.compiler.kernels import InArena

    copying = [
        type(node.op).__name__
        for node in function.maker.fgraph.apply_nodes
        if isinstance(node.op, InArena) and not node.op.inplace
    ]
    if copying:
        logger.warning(
            "%s copy the arena every step (not in place) in a segment of %d operators "
            "(from %s): slower, same results; please report it",
            ", ".join(sorted(set(copying))), len(ops), ops[0],
        )


def spike_trains(ops):
    """The base signals that spiking neurons among ``ops`` write their output into."""
    return {
        op.output.base
        for op in ops
        if isinstance(op, SimNeurons) and getattr(op.neurons, "spiking", False)
    }


class Program:
    """The peer's operators grouped into compiled segments and Python operators.

    Parameters
    ----------
    ops : list of Operator
        The peer's operators, in step order.
    arena : Arena
        Bound to ``signals`` already.
    signals : SignalDict
        Initialised for every operator.
    dt : float
    matrix_dtype : str
        ``"float64"`` or ``"float32"`` for the matrices of products.

    Attributes
    ----------
    items : list
        `Segment` objects and operator indices (ints, run in Python), in order.
    n_compiled : int
        Operators inside segments.
    compile_time : float
        Seconds spent building and compiling (or loading, if reused).
    reused : bool
        Made by `reuse` from another program's `layout`.
    """

    def __init__(self, ops, arena, signals, dt, matrix_dtype="float64"):
        start = time.perf_counter()
        self.items = []
        self.n_compiled = 0
        self.reused = False
        self.spike_trains = spike_trains(ops)
        run = []
        for i, op in enumerate(ops):
            if Lowering.supports(op):  # the lowering itself has the last word
                run.append(i)
                continue
            self._close_run(run, ops, arena, signals, dt, matrix_dtype)
            run = []
            self.items.append(i)
        self._close_run(run, ops, arena, signals, dt, matrix_dtype)
        self.compile_time = time.perf_counter() - start
        self._log(ops, "compiled")

    @classmethod
    def reuse(cls, layout, ops, arena, signals, matrix_dtype="float64"):
        """The program whose `layout` is ``layout``, for the same operators.

        Nothing is lowered or compiled: each segment's function is called with the
        arrays its recipes make from ``signals`` (bound to ``arena``).
        """
        self = cls.__new__(cls)
        start = time.perf_counter()
        symbolic = SymbolicSignals(arena, signals, matrix_dtype)
        self.items = []
        self.n_compiled = 0
        self.reused = True
        for item in layout:
            if isinstance(item, int):
                self.items.append(item)
                continue
            indices, function, recipes = item
            segment = Segment(indices, function, symbolic.make_arrays(recipes), recipes)
            for message in segment.warm_up():
                logger.debug("while loading: %s", message)
            self.items.append(segment)
            self.n_compiled += len(indices)
        self.compile_time = time.perf_counter() - start
        self._log(ops, "reused")
        return self

    def layout(self):
        """What `reuse` needs to rebuild this program: per item, an operator index
        (run in Python) or a segment's ``(indices, function, recipes)``."""
        return [
            item if isinstance(item, int) else (item.indices, item.function, item.recipes)
            for item in self.items
        ]

    def _log(self, ops, verb):
        python = sorted({type(ops[i]).__name__ for i in self.items if isinstance(i, int)})
        logger.info(
            "%s %d of %d operators into %d segment(s) in %.2f s%s",
            verb,
            self.n_compiled,
            len(ops),
            sum(isinstance(item, Segment) for item in self.items),
            self.compile_time,
            f"; in Python: {', '.join(python)}" if python else "",
        )

    def _close_run(self, run, ops, arena, signals, dt, matrix_dtype):
        while run:
            segment, rest = self._compile(run, ops, arena, signals, dt, matrix_dtype)
            if segment is not None:
                self.items.append(segment)
                self.n_compiled += len(segment.indices)
            if rest:  # the operator that failed to lower runs in Python
                self.items.append(rest[0])
                rest = rest[1:]
            run = rest

    @staticmethod
    def _batch(run, k, ops, symbolic, dt):
        """The longest stretch of ``run`` from ``k`` that lowers as one batch.

        Consecutive one-state filters (the synapses) batch when none reads an arena
        position an earlier one in the batch writes.
        """
        key = batchable_filter(ops[run[k]], symbolic, dt)
        if key is None:
            return [run[k]]
        batch = []
        written = set()
        for i in run[k:]:
            op = ops[i]
            if batchable_filter(op, symbolic, dt) != key:
                break
            reads = symbolic.arena_positions(op.input)
            if written.intersection(reads.tolist()):
                break
            batch.append(i)
            for sig in (op.state["X"], op.output):
                written.update(symbolic.arena_positions(sig).tolist())
        return batch

    def _compile(self, run, ops, arena, signals, dt, matrix_dtype):
        """Lower as much of ``run`` as possible; return (segment, unlowered rest)."""
        pytensor = load_pytensor()
        symbolic = SymbolicSignals(arena, signals, matrix_dtype, self.spike_trains)
        lowered = []
        rest = []
        k = 0
        while k < len(run):
            batch = self._batch(run, k, ops, symbolic, dt)
            if len(batch) > 1:
                lower_one_x_filters([ops[i] for i in batch], symbolic, dt)
                lowered.extend(batch)
                k += len(batch)
                continue
            i = run[k]
            snapshot = symbolic.snapshot()
            try:
                Lowering.lower(ops[i], symbolic, dt)
            except (NotLowerable, TypeError, ValueError) as exc:
                logger.debug("%s runs in Python: %s", ops[i], exc)
                symbolic.restore(snapshot)
                rest = run[k:]
                break
            lowered.append(i)
            k += 1
        if not lowered:
            return None, rest
        inputs, outputs, arrays, recipes = symbolic.function_io()
        function = pytensor.function(
            inputs,
            [pytensor.Out(v, borrow=True) for v in outputs],
            mode=compile_mode(),
            on_unused_input="ignore",
            accept_inplace=True,
        )
        function.trust_input = True
        _check_in_place(function, [ops[i] for i in lowered])
        segment = Segment(lowered, function, arrays, recipes)
        # the first call compiles (Numba is lazy): do it now, so a run starts at full
        # speed; Numba's performance hints are for us, not the user
        for message in segment.warm_up():
            logger.debug("while compiling: %s", message)
        return segment, rest
