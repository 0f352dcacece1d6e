"""Two large ensembles, split into sub-ensembles that any worker can run.

One 8000-neuron ensemble is more than one core can update quickly; Spike divides
it exactly (decoders solved once, on all neurons) when given ``--max-neurons``:

    spike dry-run examples/large_ensembles.py --max-neurons 2000 -n 2 -d out/
    spike stats out/allocation.json --plot out/allocation.png
    spike rebalance out/allocation.json 2 -k 2 -o out/rebalanced.json
    spike run examples/large_ensembles.py --allocation out/allocation.json --time 0.5

or directly: ``spike run examples/large_ensembles.py --max-neurons 2000``.
"""

import nengo
import numpy as np

N_NEURONS = 8000
DIMENSIONS = 16

with nengo.Network(label="large ensembles", seed=7) as model:
    stimulus = nengo.Node(
        nengo.processes.WhiteSignal(period=10.0, high=2.0, rms=0.2, seed=8),
        size_out=DIMENSIONS,
        label="white signal",
    )
    a = nengo.Ensemble(N_NEURONS, DIMENSIONS, label="a")
    b = nengo.Ensemble(N_NEURONS, DIMENSIONS, label="b")
    nengo.Connection(stimulus, a)
    nengo.Connection(a, b, function=np.square, label="a^2")
    nengo.Probe(a, synapse=0.01, label="a")
    nengo.Probe(b, synapse=0.01, label="b")
