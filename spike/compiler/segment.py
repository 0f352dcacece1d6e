"""A compiled segment: the step function that calls it and writes its results back."""


class Segment:
    """Consecutive operators compiled into one function.

    Parameters
    ----------
    ops : list of Operator
    function : pytensor Function
        Called with ``arrays``; returns the new values of ``state``.
    arrays : list of ndarray
        The live arrays the function reads (the arena, constants, loose bases).
    state : list of ndarray
        The arrays the function updates, in the order of its outputs. PyTensor
        updates them in place (the outputs *are* these arrays); any output it had to
        allocate instead is copied back.
    """

    def __init__(self, ops, function, arrays, state):
        self.ops = ops
        self.function = function
        self.arrays = arrays
        self.state = state

    def make_step(self):
        function = self.function
        arrays = self.arrays
        state = self.state

        def step_segment():
            for target, value in zip(state, function(*arrays)):
                if value is not target:
                    target[...] = value

        return step_segment
