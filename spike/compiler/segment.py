"""A compiled segment: the step function that calls it and writes its results back."""


class Segment:
    """Consecutive operators compiled into one function.

    Attributes
    ----------
    ops : list of Operator
    positions : list of int
        Indices of ``ops`` in the peer's operator list.
    """

    def __init__(self, ops, positions, function, arrays, loose_arrays, arena):
        self.ops = ops
        self.positions = positions
        self.function = function
        self.arrays = arrays
        self.loose_arrays = loose_arrays
        self.arena = arena

    def make_step(self):
        function = self.function
        arrays = self.arrays
        arena = self.arena
        loose = self.loose_arrays
        address = arena.ctypes.data

        def step_segment():
            results = function(*arrays)
            new_arena = results[0]
            if new_arena.ctypes.data != address:
                arena[...] = new_arena
            for target, value in zip(loose, results[1:]):
                if value.ctypes.data != target.ctypes.data:
                    target[...] = value

        return step_segment
