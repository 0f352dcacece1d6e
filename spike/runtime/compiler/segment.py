"""A compiled segment: the step function that calls it and writes its results back."""


class Segment:
    """Consecutive operators compiled into one function.

    Parameters
    ----------
    indices : list of int
        Positions of the segment's operators in the peer's operator list.
    function : pytensor Function
        Called with ``arrays``; returns the new values of ``state``.
    arrays : list of ndarray
        The live arrays the function reads (the arena, constants, loose bases).
    recipes : list of tuple
        How each of ``arrays`` is made (see `SymbolicSignals.make_arrays`): what a
        reused function needs to be called with another run's signals.

    Attributes
    ----------
    state : list of ndarray
        The arrays the function updates, in the order of its outputs (the arena,
        then the loose bases). PyTensor updates them in place (the outputs *are*
        these arrays); any output it had to allocate instead is copied back.
    """

    def __init__(self, indices, function, arrays, recipes):
        self.indices = list(indices)
        self.function = function
        self.arrays = arrays
        self.recipes = recipes
        self.state = [
            array for array, recipe in zip(arrays, recipes) if recipe[0] in ("arena", "loose")
        ]

    def warm_up(self):
        """Call the function once, on copies of the arrays it updates (`state`):
        the first call compiles (or loads the compiled code), so a run then starts
        at full speed. The arrays it only reads (constants, tables) are passed as
        they are.

        The copies keep each array's read-only flag: Numba compiles one version of
        the code per set of argument types, and read-only is part of an array's type
        (copies that were all writable had the first step of a run compile again).
        """
        import warnings

        import numpy as np

        updated = {id(array) for array in self.state}
        copies = []
        for array in self.arrays:
            if id(array) not in updated:
                copies.append(array)
                continue
            copy = np.array(array, copy=True)
            copy.flags.writeable = array.flags.writeable
            copies.append(copy)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.function(*copies)
        return [warning.message for warning in caught]

    def reset_tables(self):
        """``(op, array)`` for each input that ``op`` fills at every reset (see
        `spike.runtime.compiler.processes.fill_table`)."""
        return [
            (recipe[1], array)
            for array, recipe in zip(self.arrays, self.recipes)
            if recipe[0] == "table"
        ]

    def ahead_tables(self):
        """``(op, array, batched)`` for each input that the steps fill ahead with
        what ``op`` outputs, or with ``batched``, its white noise's draws (see
        `spike.runtime.compiler.processes.RunAhead`)."""
        return [
            (recipe[1], array, recipe[3])
            for array, recipe in zip(self.arrays, self.recipes)
            if recipe[0] == "ahead"
        ]

    def callable(self):
        """What a step calls with ``arrays``: the Numba function PyTensor compiled,
        called directly where it can be, not through ``Function.__call__``, whose
        Python overhead on every call (storing each input in its container, reading
        each output back) is large next to a short step.

        Direct calls need the function's inputs to be exactly ``arrays`` (no shared
        variables) and its outputs exactly ``state``; otherwise, and for functions
        of other linkers, the `Function` itself. ``arrays`` are checked here against
        the input types, once, as `Function` would check them at every call (the
        Numba code does not check bounds).
        """
        function = self.function
        jit_fn = getattr(getattr(function, "vm", None), "jit_fn", None)
        fgraph = getattr(getattr(function, "maker", None), "fgraph", None)
        if (
            jit_fn is None
            or fgraph is None
            or len(fgraph.inputs) != len(self.arrays)
            or len(function.input_storage) != len(self.arrays)
            or len(fgraph.outputs) != len(self.state)
        ):
            return function
        for variable, array in zip(fgraph.inputs, self.arrays):
            variable.type.filter(array, strict=True)  # TypeError if it does not fit
        return jit_fn

    def make_step(self):
        function = self.callable()
        arrays = self.arrays
        state = self.state

        def step_segment():
            for target, value in zip(state, function(*arrays)):
                if value is not target:
                    target[...] = value

        return step_segment
