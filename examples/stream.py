"""A larger model that benefits from several workers: parallel chains of ensembles.

N_CHAINS chains of CHAIN_LENGTH ensembles each pass a 4-D signal along; every
connection has a synapse, so Spike may place each ensemble on any worker. With
128 ensembles of 200 neurons (25,600 neurons) this is the "stream" network that
nengo_mpi used for its scaling figures.

    spike run examples/stream.py --workers 2 --time 0.5
"""

import nengo

N_CHAINS = 8
CHAIN_LENGTH = 16
N_NEURONS = 200
DIMENSIONS = 4

with nengo.Network(label="stream", seed=4) as model:
    stimulus = nengo.Node(
        nengo.processes.WhiteSignal(period=10.0, high=2.0, rms=0.3, seed=5),
        size_out=DIMENSIONS,
        label="white signal",
    )
    ends = []
    for chain in range(N_CHAINS):
        previous = stimulus
        for link in range(CHAIN_LENGTH):
            ens = nengo.Ensemble(N_NEURONS, DIMENSIONS, label=f"chain {chain}.{link}")
            nengo.Connection(previous, ens)
            previous = ens
        ends.append(previous)
    stimulus_probe = nengo.Probe(stimulus, label="stimulus")
    end_probes = [
        nengo.Probe(end, synapse=0.01, label=f"end of chain {i}")
        for i, end in enumerate(ends[:2])
    ]
