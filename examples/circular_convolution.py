"""Binding two vectors by circular convolution, spread over workers.

``nengo.networks.CircularConvolution`` holds its ensembles between passthrough Nodes
(connections without synapse), which would keep them all in one process; Spike divides
them into one group per worker, each group computing the inputs itself and adding its
share of the output (docs/user-guide/large-models.md: "Networks held together by
passthrough Nodes").

    spike run examples/circular_convolution.py --workers 2 --time 0.5 --placement
"""

import nengo
import numpy as np

DIMENSIONS = 16

rng = np.random.RandomState(1)
A_VALUE = rng.randn(DIMENSIONS) / np.sqrt(DIMENSIONS)
B_VALUE = rng.randn(DIMENSIONS) / np.sqrt(DIMENSIONS)
EXPECTED = np.fft.irfft(np.fft.rfft(A_VALUE) * np.fft.rfft(B_VALUE), n=DIMENSIONS)

with nengo.Network(label="circular convolution", seed=2) as model:
    a = nengo.Node(A_VALUE, label="a")
    b = nengo.Node(B_VALUE, label="b")
    bind = nengo.networks.CircularConvolution(100, DIMENSIONS, label="a (*) b")
    nengo.Connection(a, bind.input_a)
    nengo.Connection(b, bind.input_b)
    result = nengo.Probe(bind.output, synapse=0.02, label="a (*) b")

if __name__ == "__main__":
    import spike

    with spike.Simulator(model, workers=2) as sim:
        sim.run(0.5)
        print(sim.describe_placement())
    decoded = sim.data[result][-100:].mean(axis=0)
    similarity = decoded @ EXPECTED / (np.linalg.norm(decoded) * np.linalg.norm(EXPECTED))
    print(f"cosine similarity of the decoded binding to the exact one: {similarity:.3f}")
