"""Compiling each peer's step with PyTensor (Numba backend).

`Program` turns a peer's operators into compiled segments and Python operators;
`Arena` holds the mutable signals the compiled code updates in place;
`decide` chooses whether compiling pays for a peer. The documentation's user guide
("Compiled workers") describes the cache and the ``compile=`` / ``dtype=`` options,
and its design notes ("The compiler") how a step is compiled.
"""

from spike.runtime.compiler.cache import available, cache_dir, clear_cache, load_pytensor
from spike.runtime.compiler.processes import RunAhead, fill_table
from spike.runtime.compiler.segment import Segment
from spike.runtime.compiler.symbolic import Arena, NotLowerable

COMPILE_MIN_NEURONS = 2000
"""With ``compile="auto"``, a peer compiles if it simulates at least this many
neurons: below that a step is short in numpy already and the compiler's fixed cost
(even with a warm cache) is not won back in a short run."""


COMPILE_MAX_OPERATORS = 1000
"""With ``compile="auto"``, a peer with more operators than this is not compiled: the
graph's compile time grows faster than linearly with its size (an unmerged share
of many ensembles takes far too long). Merged shares (``optimize=True``) stay far
below it."""


def Program(*args, **kwargs):
    """Make a `spike.runtime.compiler.program.Program` (imports PyTensor, configured)."""
    load_pytensor()
    from spike.runtime.compiler.program import Program

    return Program(*args, **kwargs)


def preload():
    """Import PyTensor, Spike's lowerings and PyTensor's Numba backend, and set up
    Numba's typing and target contexts: what the first compiled (or reused) step
    would otherwise do (a worker does it while the client builds the model)."""
    load_pytensor()
    import pytensor.link.numba.dispatch  # noqa: F401

    from spike.runtime.compiler import program  # noqa: F401  (imports the lowerings)

    try:
        from numba.core.registry import cpu_target

        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()
    except (ImportError, AttributeError):  # Numba's internals moved: done lazily
        pass


def reuse_program(*args, **kwargs):
    """`spike.runtime.compiler.program.Program.reuse` (imports PyTensor, configured)."""
    load_pytensor()
    from spike.runtime.compiler.program import Program

    return Program.reuse(*args, **kwargs)


def count_neurons(ops):
    from nengo.builder.neurons import SimNeurons

    return sum(op.J.size for op in ops if isinstance(op, SimNeurons))


def decide(mode, ops):
    """Whether a peer with operators ``ops`` compiles, for ``compile=mode``."""
    if mode is False or mode is None:
        return False
    if mode == "auto":
        return (
            count_neurons(ops) >= COMPILE_MIN_NEURONS
            and len(ops) <= COMPILE_MAX_OPERATORS
            and available()
        )
    if mode is True:
        if not available():
            from spike.exceptions import UnsupportedError

            raise UnsupportedError(
                "compile=True needs PyTensor and Numba (pip install pytensor)"
            )
        return True
    raise ValueError(f"compile must be True, False or 'auto', not {mode!r}")


__all__ = [
    "Arena",
    "COMPILE_MAX_OPERATORS",
    "COMPILE_MIN_NEURONS",
    "NotLowerable",
    "Program",
    "RunAhead",
    "Segment",
    "available",
    "cache_dir",
    "clear_cache",
    "count_neurons",
    "decide",
    "fill_table",
    "load_pytensor",
    "preload",
    "reuse_program",
]
