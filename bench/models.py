"""The benchmark models, at full size and at a tiny size for `make test`.

Each builder returns ``(network, probes)``. Sizes follow ../shared/ANCHORS.md so the
figures compare with the anchors: a "stream" of many small ensembles, a chain of big
ones, circular convolution, and two very large ensembles.
"""

import nengo
import numpy as np


def white_input(dimensions, seed, rms=0.3):
    """A band-limited white noise input of ``dimensions`` (a process, not a callable)."""
    return nengo.Node(
        nengo.processes.WhiteSignal(10.0, high=2.0, rms=rms, seed=seed + 1),
        size_out=dimensions,
    )


def stream(n_chains=8, length=16, n_neurons=200, dimensions=4, seed=0):
    """``n_chains`` parallel chains of ``length`` ensembles (128 x 200 LIF, 4-D)."""
    with nengo.Network(label="stream", seed=seed) as net:
        stim = white_input(dimensions, seed)
        probes = []
        for _ in range(n_chains):
            previous = stim
            for _ in range(length):
                ens = nengo.Ensemble(n_neurons, dimensions)
                nengo.Connection(previous, ens)
                previous = ens
            probes.append(nengo.Probe(previous, synapse=0.01))
    return net, probes


def noisy_stream(noise_std=0.01, **kwargs):
    """`stream` with white noise (Gaussian, a draw per neuron per step) added to the
    input current of every ensemble's neurons (``Ensemble.noise``)."""
    net, probes = stream(**kwargs)
    with net:
        for ens in net.all_ensembles:
            ens.noise = nengo.processes.WhiteNoise(nengo.dists.Gaussian(0, noise_std))
    return net, probes


def chain(length=20, n_neurons=1000, dimensions=16, seed=0):
    """A chain of ``length`` ensembles (20 x 1000 LIF, 16-D)."""
    with nengo.Network(label="chain", seed=seed) as net:
        stim = white_input(dimensions, seed)
        previous = stim
        for _ in range(length):
            ens = nengo.Ensemble(n_neurons, dimensions)
            nengo.Connection(previous, ens)
            previous = ens
        probes = [nengo.Probe(previous, synapse=0.01)]
    return net, probes


def circular_convolution(n_neurons=100, dimensions=32, seed=0):
    """``nengo.networks.CircularConvolution(100, 32)`` fed by two fixed vectors."""
    rng = np.random.RandomState(seed)
    with nengo.Network(label="circular convolution", seed=seed) as net:
        a = nengo.Node(rng.randn(dimensions) / np.sqrt(dimensions))
        b = nengo.Node(rng.randn(dimensions) / np.sqrt(dimensions))
        conv = nengo.networks.CircularConvolution(n_neurons, dimensions)
        nengo.Connection(a, conv.input_a)
        nengo.Connection(b, conv.input_b)
        probes = [nengo.Probe(conv.output, synapse=0.01)]
    return net, probes


def two_big_ensembles(n_neurons=20000, dimensions=32, n_eval_points=4000, seed=0):
    """Two 20k-neuron 32-D ensembles, one feeding the other."""
    with nengo.Network(label="two big ensembles", seed=seed) as net:
        stim = white_input(dimensions, seed, rms=0.2)
        a = nengo.Ensemble(n_neurons, dimensions, n_eval_points=n_eval_points)
        b = nengo.Ensemble(n_neurons, dimensions, n_eval_points=n_eval_points)
        nengo.Connection(stim, a)
        nengo.Connection(a, b)
        probes = [nengo.Probe(b, synapse=0.01)]
    return net, probes


def memory_pair(n_neurons=16000, dimensions=32, n_eval_points=500, seed=0):
    """Two large ensembles fed by a fixed vector: the model of the share memory
    check (`bench.run.share_memory_check`), whose workers' data are tens of MiB."""
    with nengo.Network(label="memory pair", seed=seed) as net:
        stim = nengo.Node(np.linspace(-0.5, 0.5, dimensions))
        a = nengo.Ensemble(n_neurons, dimensions, n_eval_points=n_eval_points)
        b = nengo.Ensemble(n_neurons, dimensions, n_eval_points=n_eval_points)
        nengo.Connection(stim, a)
        nengo.Connection(a, b)
        probes = [nengo.Probe(b, synapse=0.01)]
    return net, probes


MEMORY_PAIR = {False: {}, True: {"n_neurons": 400, "dimensions": 4, "n_eval_points": 100}}
"""`memory_pair`'s sizes: full, and tiny (``--tiny``)."""

FULL = {
    "stream": lambda: stream(),
    "noisy_stream": lambda: noisy_stream(),
    "chain": lambda: chain(),
    "circconv": lambda: circular_convolution(),
    "two_big": lambda: two_big_ensembles(),
}

TINY = {
    "stream": lambda: stream(n_chains=2, length=3, n_neurons=20),
    "noisy_stream": lambda: noisy_stream(n_chains=2, length=3, n_neurons=20),
    "chain": lambda: chain(length=3, n_neurons=30, dimensions=2),
    "circconv": lambda: circular_convolution(n_neurons=20, dimensions=4),
    "two_big": lambda: two_big_ensembles(n_neurons=60, dimensions=2, n_eval_points=100),
}

DESCRIPTIONS = {
    "stream": "stream: 128 ensembles x 200 LIF, 4-D, 8 chains",
    "noisy_stream": "noisy stream: the stream, white noise on every neuron",
    "chain": "chain: 20 x 1000 LIF, 16-D",
    "circconv": "CircularConvolution(100, 32)",
    "two_big": "two 20k-neuron 32-D ensembles",
}
