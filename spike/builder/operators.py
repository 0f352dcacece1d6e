"""Spike's own operators (nengo operators rewritten for parts of an ensemble), and
what splitting and division ask of nengo's."""

import numpy as np
from nengo.builder.learning_rules import SimPES
from nengo.builder.processes import SimProcess
from nengo.synapses import LinearFilter


class SplitSimPES(SimPES):
    """``SimPES`` on a part of an ensemble's neurons.

    nengo scales the PES update by the number of presynaptic neurons, which it reads
    off the filtered activities; a part holds fewer, so the whole ensemble's count is
    kept here.
    """

    n_neurons_total = None

    def make_step(self, signals, dt, rng):
        pre_filtered = signals[self.pre_filtered]
        error = signals[self.error]
        delta = signals[self.delta]
        alpha = -self.learning_rate * dt / self.n_neurons_total

        def step_simpes():
            np.outer(alpha * error, pre_filtered, out=delta)

        return step_simpes


def is_linear_filter(op):
    """True for a synapse (or other process) that is a linear filter: its output for a
    sum of inputs is the sum of its outputs for each, so it may run once per part or
    group, each on its share."""
    return isinstance(op, SimProcess) and isinstance(op.process, LinearFilter)
