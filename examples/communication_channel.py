"""A communication channel: a value passes through two ensembles unchanged.

The input is a sine wave from a Node (a Python function, so it runs in the client);
A represents it and B receives A's decoded value over a synapse, which is where Spike
may cut the model between workers.

    spike run examples/communication_channel.py --workers 2 --time 1.0
"""

import nengo
import numpy as np

with nengo.Network(label="communication channel", seed=1) as model:
    stimulus = nengo.Node(lambda t: np.sin(2 * np.pi * t), label="sine")
    a = nengo.Ensemble(100, dimensions=1, label="A")
    b = nengo.Ensemble(100, dimensions=1, label="B")
    nengo.Connection(stimulus, a)
    nengo.Connection(a, b)
    stimulus_probe = nengo.Probe(stimulus, label="stimulus")
    a_probe = nengo.Probe(a, synapse=0.01, label="A")
    b_probe = nengo.Probe(b, synapse=0.01, label="B")
    b_spikes = nengo.Probe(b.neurons, label="B spikes")
