"""Random-number states: giving each operator the state the reference gives it.

`nengo.Simulator.reset` makes every step function in order with one shared
``RandomState(seed)``. An operator that draws from it at ``make_step`` (a
``SimProcess``, to seed its process) sees the state left by those before it. Spike
replays those draws once in the client and hands each peer the states of its own
operators, so a process gets the same noise whichever worker runs it.
"""

import numpy as np
from nengo.builder.processes import SimProcess
from nengo.builder.signal import SignalDict


def rng_states(order, seed, dt):
    """Random-number states for each operator, as the reference simulator has them.

    `nengo.Simulator.reset` makes the step functions in order with one shared
    ``RandomState(seed)``; an operator that draws from it at ``make_step`` (a
    ``SimProcess``, for its process's own seed) sees the state left by those before
    it. This replays those draws and returns ``{position in order: state}`` for every
    operator that draws, so each peer can give its operators the same states.
    """
    rng = np.random.RandomState(seed)
    states = {}
    for position, op in enumerate(order):
        if isinstance(op, SimProcess):
            states[position] = rng.get_state()
            op.process.get_rng(rng)
        elif not type(op).__module__.startswith("nengo."):
            # an operator type nengo does not ship: replay its make_step to see
            # whether it draws (rare; costs one make_step on scratch signals)
            before = rng.get_state()
            scratch = SignalDict()
            op.init_signals(scratch)
            op.make_step(scratch, dt, rng)
            if rng.get_state()[2] != before[2] or not np.array_equal(
                rng.get_state()[1], before[1]
            ):
                states[position] = before
    return states


def decode_states(message):
    """``{position: RandomState state}`` from a ``reset`` message."""
    keys = message.arrays
    states = {}
    for (position, pos, has_gauss, gauss), key in zip(message.fields["states"], keys):
        states[position] = ("MT19937", np.array(key, dtype=np.uint32), pos, has_gauss, gauss)
    return states


def encode_states(states):
    """The fields and arrays of a ``reset`` message for ``states``."""
    rows, keys = [], []
    for position, (_, key, pos, has_gauss, gauss) in sorted(states.items()):
        rows.append([int(position), int(pos), int(has_gauss), float(gauss)])
        keys.append(np.asarray(key, dtype=np.uint32))
    return {"states": rows}, keys
