"""Signals as symbolic values while a run of operators is lowered to one graph.

A compiled segment is one PyTensor function. Its state lives in numpy arrays the
rest of Spike shares (routes pack from them, probes copy them, Python operators
write them):

* the **arena**: one float64 vector holding every mutable float64 base signal of
  the peer (see `Arena`); it is the function's first input and first output, marked
  mutable so PyTensor can update it in place;
* **constants**: read-only bases (encoders, decoders, biases), passed as inputs
  each call (never copied, never baked into the graph, so the compiled code does
  not depend on their values and is reused across seeds and models of one shape);
* **loose** bases: mutable ones that are not float64 (the step counter), passed in
  and returned one by one.

`SymbolicSignals` gives operators ``read(signal)`` and ``write(signal, value)``
with nengo's view semantics (a view reads and writes its base's elements), applied
in operator order, so the graph computes exactly what the sequence of numpy steps
computes.
"""

import numpy as np
from nengo.builder.signal import Signal

from spike.builder.signals import memory_positions
from spike.runtime.compiler.cache import load_pytensor


class NotLowerable(Exception):
    """This operator (or this use of it) has no compiled form; run it in Python."""


class Arena:
    """One float64 vector backing the peer's mutable float64 base signals.

    Parameters
    ----------
    bases : iterable of Signal
        Candidate base signals; the mutable, dense float64 ones are placed.
    """

    dtype = np.dtype(np.float64)

    def __init__(self, bases):
        self.offsets = {}
        size = 0
        for base in bases:
            if base in self.offsets or not self.holds(base):
                continue
            self.offsets[base] = size
            size += base.size
        self.data = np.zeros(size, dtype=self.dtype)

    @classmethod
    def holds(cls, base):
        return (
            not base.readonly
            and not base.sparse
            and base.dtype == cls.dtype
            and base.initial_value.flags.c_contiguous
        )

    def bind(self, signals):
        """Make ``signals`` (a SignalDict) use arena memory for the placed bases."""
        for base, offset in self.offsets.items():
            if dict.__contains__(signals, base):
                raise ValueError(f"{base} was initialised before the arena")
            view = self.data[offset : offset + base.size].reshape(base.shape)
            view[...] = base.initial_value
            dict.__setitem__(signals, base, view)


def contiguous_range(positions):
    """``(start, stop, transposed)`` if positions are one contiguous run, else None.

    ``transposed`` is True for a 2-D block stored column-major (a transposed view).
    """
    if positions.size == 0:
        return None
    flat = positions.reshape(-1)
    start = int(flat[0])
    stop = start + flat.size
    if np.array_equal(flat, np.arange(start, stop)):
        return start, stop, False
    if positions.ndim == 2:
        flat_t = positions.T.reshape(-1)
        start = int(flat_t[0])
        if np.array_equal(flat_t, np.arange(start, start + flat_t.size)):
            return start, start + flat_t.size, True
    return None


class SymbolicSignals:
    """Current symbolic value of every signal a segment touches.

    Parameters
    ----------
    arena : Arena
    signals : SignalDict
        The live arrays (read-only bases are passed to the function from here).
    matrix_dtype : numpy dtype
        dtype matrices of products are held in (float32 halves their traffic).
    spike_trains : set of Signal
        Base signals that spiking neurons write their output into (mostly zeros:
        their products skip the zeros, see `spike.runtime.compiler.kernels.BsrMatVec`).
    """

    def __init__(self, arena, signals, matrix_dtype=np.float64, spike_trains=()):
        pytensor = load_pytensor()
        self.pt = pytensor.tensor
        self.arena = arena
        self.signals = signals
        self.matrix_dtype = np.dtype(matrix_dtype)
        self.spike_trains = set(spike_trains)
        self.arena_in = self.pt.vector("arena", dtype="float64", shape=(arena.data.size,))
        self.arena_now = self.arena_in
        self.constant_inputs = {}  # key -> (variable, array, recipe)
        self.loose_inputs = {}  # base -> variable
        self.loose_now = {}  # base -> current symbolic flat value

    # -- where a signal lives ------------------------------------------------

    def _constant_input(self, key, recipe):
        """The input variable for ``key``, its array made from ``recipe`` the first time.

        Arrays are inputs rather than graph constants: the compiled code then does not
        depend on their values, and Numba can cache it (it cannot cache a function
        holding arrays as globals). ``recipe`` (see `make_array`) says how to make the
        array again from another run's signals, when the compiled function is reused.
        """
        if key not in self.constant_inputs:
            array = self.make_array(recipe)
            var = self.pt.tensor(
                f"const{len(self.constant_inputs)}",
                dtype=str(array.dtype),
                shape=array.shape,
            )
            self.constant_inputs[key] = (var, array, recipe)
        return self.constant_inputs[key][0]

    def make_array(self, recipe):
        """The array a constant input is called with, from its ``recipe``.

        ``("readonly", base, dtype)``: a read-only base signal, flat, in ``dtype``;
        ``("sparse", signal, dtype)``: the data of a read-only CSR signal;
        ``("blocks_t", base, dtype)``: a read-only base of blocks ``(n, R, C)``,
        each transposed, ``(n, C, R)`` (see `read_blocks_transposed`);
        ``("literal", array)``: the array itself (indices, filter coefficients);
        ``("table", op, shape)``: zeros, which each reset fills (see `reset_table`);
        ``("ahead", op, shape, batched)``: zeros, which the steps fill ahead (see
        `ahead_table`);
        ``("ufunc_loops",)``: this process's `spike.runtime.compiler.ufuncs.loop_table`.
        """
        kind = recipe[0]
        if kind == "ufunc_loops":
            from spike.runtime.compiler import ufuncs  # imports Numba: only when used

            return ufuncs.loop_table()
        if kind in ("table", "ahead"):
            return np.zeros(recipe[2])
        if kind == "readonly":
            return self._readonly_flat(recipe[1], recipe[2])
        if kind == "blocks_t":
            blocks = self.signals[recipe[1]]
            return np.ascontiguousarray(blocks.transpose(0, 2, 1), dtype=recipe[2])
        if kind == "sparse":
            return np.ascontiguousarray(self.signals[recipe[1]].tocsr().data, dtype=recipe[2])
        return recipe[1]

    def _readonly_flat(self, base, dtype):
        value = self.signals[base]
        flat = np.ravel(value, order="K")
        if not np.shares_memory(flat, value) and flat.size > 1:
            raise NotLowerable(f"{base} is not contiguous in memory")
        return flat.astype(dtype, copy=False)

    def _container(self, base, dtype=None):
        """The symbolic flat vector holding ``base`` (memory order) and its offset."""
        if base in self.arena.offsets:
            return self.arena_now, self.arena.offsets[base]
        if base.sparse:
            raise NotLowerable(f"sparse signal {base} read as dense")
        if base.readonly:
            dtype = np.dtype(base.dtype if dtype is None else dtype)
            var = self._constant_input((base, dtype), ("readonly", base, dtype))
            return var, 0
        if base.dtype.kind not in "fiu":
            raise NotLowerable(f"signal {base} of dtype {base.dtype}")
        if base not in self.loose_inputs:
            value = self.signals[base]
            if not value.flags.c_contiguous:
                raise NotLowerable(f"{base} is not contiguous in memory")
            var = self.pt.vector(f"loose{len(self.loose_inputs)}", dtype=str(base.dtype), shape=(base.size,))
            self.loose_inputs[base] = var
            self.loose_now[base] = var
        return self.loose_now[base], 0

    def _store(self, base, flat):
        if base in self.arena.offsets:
            self.arena_now = flat
        else:
            self.loose_now[base] = flat

    # -- reading and writing -------------------------------------------------

    def read(self, sig, index=None, dtype=None, copy=False):
        """Symbolic current value of ``sig`` (optionally ``sig[index]``).

        With ``copy=True`` the value is gathered into new memory rather than
        viewed: needed when it is written back into the same state (an in-place
        write cannot read what it overwrites, and PyTensor would otherwise copy
        the whole arena to keep it safe).
        """
        if not isinstance(sig, Signal):
            raise NotLowerable(f"not a signal: {sig!r}")
        container, offset = self._container(sig.base, dtype)
        positions = memory_positions(sig)
        if index is not None:
            positions = positions[index]
        if positions.ndim == 0:
            return container[offset + int(positions)]
        run = contiguous_range(positions)
        if run is None:
            return container[self.index_input(offset + positions)]  # already a copy
        start, stop, transposed = run
        block = container[offset + start : offset + stop]
        if transposed:
            value = block.reshape(positions.shape[::-1]).T
        else:
            value = block.reshape(positions.shape)
        if copy:
            from pytensor.compile.ops import deep_copy_op

            value = deep_copy_op(value)
        return value

    def read_blocks_transposed(self, sig, dtype=None):
        """A read-only base of blocks ``(n, R, C)`` as ``(n, C, R)``: a copy made
        when the function's arrays are made, not per step. None if ``sig`` is not
        such a base (then read it with `read`)."""
        if not (sig.readonly and sig.base is sig and sig.ndim == 3 and not sig.sparse):
            return None
        if sig.dtype.kind != "f":
            return None
        dtype = np.dtype(sig.dtype if dtype is None else dtype)
        return self._constant_input(("blocks_t", sig, dtype), ("blocks_t", sig, dtype))

    def write(self, sig, value, index=None, inc=False):
        """Set (or increment) ``sig`` (or ``sig[index]``) to ``value``."""
        if sig.readonly:
            raise NotLowerable(f"write to read-only {sig}")
        pt = self.pt
        base = sig.base
        container, offset = self._container(base)
        positions = memory_positions(sig)
        if index is not None:
            positions = positions[index]
        value = pt.as_tensor_variable(value)
        if value.dtype != base.dtype:
            value = pt.cast(value, str(base.dtype))
        if positions.ndim == 0:
            target = container[offset + int(positions)]
            value = value.reshape(())
        else:
            if value.ndim != positions.ndim or value.type.shape != positions.shape:
                value = pt.broadcast_to(value, positions.shape) if value.ndim <= positions.ndim else value.reshape(positions.shape)
            run = contiguous_range(positions)
            if run is not None and not run[2]:
                target = container[offset + run[0] : offset + run[1]]
                value = value.reshape((positions.size,))
            else:
                target = container[self.index_input(offset + positions)]
        if inc:
            flat = pt.inc_subtensor(target, value)
        else:
            flat = pt.set_subtensor(target, value)
        self._store(base, flat)

    def arena_positions(self, sig):
        """Arena positions of ``sig``'s elements (flat), or None if not in the arena."""
        if sig.base not in self.arena.offsets:
            return None
        return memory_positions(sig).reshape(-1) + self.arena.offsets[sig.base]

    def arena_range(self, sig):
        """Arena position of ``sig``'s first element if its elements are one
        contiguous run of the arena in order, else None."""
        positions = self.arena_positions(sig)
        if positions is None or positions.size != sig.size:
            return None
        run = contiguous_range(positions)
        return None if run is None or run[2] else run[0]

    def disjoint_arena_ranges(self, sigs):
        """`arena_range` of each of ``sigs``, or None unless every one is such a
        run and no two overlap (what a kernel updating the arena in place needs)."""
        starts = [self.arena_range(sig) for sig in sigs]
        if any(start is None for start in starts):
            return None
        spans = sorted((start, start + sig.size) for start, sig in zip(starts, sigs))
        if any(end > next_start for (_, end), (next_start, _) in zip(spans, spans[1:])):
            return None
        return starts

    def apply_to_arena(self, op, *others):
        """Apply a PyTensor ``op`` mapping the arena (and ``others``) to the arena's
        new value: a kernel that reads and writes arena ranges itself (see
        `spike.runtime.compiler.kernels.InArena`)."""
        self.arena_now = op(self.arena_now, *others)

    def gather(self, positions):
        """Symbolic values at arena ``positions`` (one indexed read)."""
        return self.arena_now[self.index_input(positions)]

    def scatter(self, positions, value, inc=False):
        """Set (or increment) arena ``positions`` to ``value`` (one indexed write)."""
        target = self.arena_now[self.index_input(positions)]
        pt = self.pt
        self.arena_now = pt.inc_subtensor(target, value) if inc else pt.set_subtensor(target, value)

    def constant(self, array):
        """A numpy array as a function input (see `_constant_input`)."""
        array = np.ascontiguousarray(array)
        if array.size <= 1:
            return self.pt.constant(array)
        return self._constant_input(("array", len(self.constant_inputs)), ("literal", array))

    def scalar_input(self, value):
        """A float64 scalar as a function input rather than a graph constant, for
        divisors: PyTensor rewrites a division by a constant into a multiplication
        by its inverse, which can differ from the division in the last bit."""
        key = ("scalar", float(value))
        vector = self._constant_input(key, ("literal", np.array([float(value)])))
        return vector[0]

    def reset_table(self, op, shape):
        """A float64 input of ``shape`` that holds what ``op`` computes at each
        reset, before a run (see `spike.runtime.compiler.processes.fill_table`); zeros until
        then."""
        return self._constant_input(("table", op), ("table", op, tuple(shape)))

    def ahead_table(self, op, shape, batched=False):
        """A float64 input of ``shape``: row ``s % rows`` holds what ``op`` outputs
        at step ``s`` (with ``batched``, its white noise's draws), filled a window
        of ``rows`` steps ahead, before the step that needs them (see
        `spike.runtime.compiler.processes.RunAhead`); zeros until then."""
        recipe = ("ahead", op, tuple(shape), bool(batched))
        return self._constant_input(("ahead", op), recipe)

    def ufunc_loops(self):
        """The addresses of numpy's own loops of ``expm1``, ``log1p``, ... as a
        function input (see `spike.runtime.compiler.ufuncs`): made again in every
        process that calls the function, never compiled in."""
        from spike.runtime.compiler import ufuncs  # imports Numba: only when used

        try:
            ufuncs.loop_table()
        except ufuncs.LoopsUnavailable as e:
            raise NotLowerable(str(e)) from None
        return self._constant_input(("ufunc_loops",), ("ufunc_loops",))

    def index_input(self, indices):
        """Integer indices as a function input (see `constant`)."""
        return self.constant(np.asarray(indices, dtype=np.int64))

    def sparse_matrix(self, sig):
        """``(data variable, indices, indptr, shape)`` of a read-only CSR signal."""
        if not (sig.sparse and sig.readonly and sig.base is sig):
            raise NotLowerable(f"{sig} is not a read-only sparse matrix")
        matrix = self.signals[sig]
        if not hasattr(matrix, "tocsr"):
            raise NotLowerable(f"{sig} is not a scipy sparse matrix")
        csr = matrix.tocsr()
        dtype = np.dtype(self.matrix_dtype if csr.data.dtype == np.float64 else csr.data.dtype)
        data = self._constant_input((sig, dtype), ("sparse", sig, dtype))
        return data, csr.indices, csr.indptr, csr.shape

    def snapshot(self):
        return (
            self.arena_now,
            dict(self.constant_inputs),
            dict(self.loose_inputs),
            dict(self.loose_now),
        )

    def restore(self, snapshot):
        self.arena_now = snapshot[0]
        self.constant_inputs, self.loose_inputs, self.loose_now = (
            dict(part) for part in snapshot[1:]
        )

    # -- the function's interface ------------------------------------------

    def function_io(self):
        """``(inputs, outputs, arrays, recipes)`` for the compiled function.

        ``inputs`` are ``pytensor.In`` (the arena and loose bases mutable, so they are
        updated in place), ``arrays`` the live arrays to call it with, and
        ``recipes`` how to make them again for another run's signals (see
        `make_arrays`). Outputs are the new arena and loose bases, in the order of
        their arrays: ``arrays[0]`` and ``arrays[-len(outputs) + 1:]``.
        """
        In = load_pytensor().In
        inputs = [In(self.arena_in, mutable=True, borrow=True)]
        arrays = [self.arena.data]
        recipes = [("arena",)]
        for var, array, recipe in self.constant_inputs.values():
            inputs.append(In(var, borrow=True))
            arrays.append(array)
            recipes.append(recipe)
        outputs = [self.arena_now]
        for base, var in self.loose_inputs.items():
            inputs.append(In(var, mutable=True, borrow=True))
            arrays.append(self.signals[base].reshape(-1))
            recipes.append(("loose", base))
            outputs.append(self.loose_now[base])
        return inputs, outputs, arrays, recipes

    def make_arrays(self, recipes):
        """The live arrays a compiled function is called with, from its ``recipes``:
        the arena, constant inputs (see `make_array`) and loose bases (flat views of
        their signals, which the function updates)."""
        arrays = []
        for recipe in recipes:
            if recipe[0] == "arena":
                arrays.append(self.arena.data)
            elif recipe[0] == "loose":
                arrays.append(self.signals[recipe[1]].reshape(-1))
            else:
                arrays.append(self.make_array(recipe))
        return arrays
