"""A varied set of small Nengo models for equivalence tests.

Each builder returns a fresh ``nengo.Network`` with probes. Together they cover
recurrent loops across workers, every built-in neuron type, the learning rules,
neuron-to-neuron connections, Nodes with callables and with ``size_in``, processes,
networks from ``nengo.networks`` and probes with ``sample_every``.
"""

import nengo
import numpy as np


def recurrent_loop(seed=0):
    """Two ensembles feeding each other (an oscillator split over two actors)."""
    with nengo.Network(seed=seed) as net:
        kick = nengo.Node(nengo.processes.Piecewise({0: [1, 0], 0.1: [0, 0]}))
        a = nengo.Ensemble(120, 2, label="a")
        b = nengo.Ensemble(120, 2, label="b")
        nengo.Connection(kick, a)
        nengo.Connection(a, b, synapse=0.05)
        nengo.Connection(b, a, transform=[[1.0, 0.6], [-0.6, 1.0]], synapse=0.05)
        nengo.Probe(a, synapse=0.01)
        nengo.Probe(b.neurons)
        nengo.Probe(a.neurons, "voltage")
    return net


def integrator_and_oscillator(seed=0):
    """A neural integrator and a neural oscillator (recurrent through synapses)."""
    tau = 0.1
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(nengo.processes.Piecewise({0: 0, 0.05: 1, 0.15: 0}))
        integ = nengo.Ensemble(100, 1, label="integrator")
        nengo.Connection(stim, integ, transform=tau, synapse=tau)
        nengo.Connection(integ, integ, synapse=tau)
        osc = nengo.Ensemble(150, 2, label="oscillator")
        nengo.Connection(stim, osc[0])
        omega = 2 * np.pi * 2.0
        nengo.Connection(osc, osc, transform=[[1, -omega * tau], [omega * tau, 1]], synapse=tau)
        memory = nengo.networks.AssociativeMemory(np.eye(2), n_neurons=20)
        nengo.Connection(osc, memory.input)
        nengo.Probe(integ, synapse=0.01)
        nengo.Probe(osc, synapse=0.01)
        nengo.Probe(memory.output, synapse=0.01)
    return net


NEURON_TYPES = [
    nengo.LIF(),
    nengo.LIFRate(),
    nengo.AdaptiveLIF(),
    nengo.AdaptiveLIFRate(),
    nengo.Izhikevich(),
    nengo.RectifiedLinear(),
    nengo.SpikingRectifiedLinear(),
    nengo.Sigmoid(),
    nengo.Tanh(),
    nengo.RegularSpiking(nengo.LIFRate()),
    nengo.Direct(),
]
"""Neuron types whose results do not depend on nengo's optimizer (the stochastic
ones are tested separately: see test_stochastic_neurons_match_unmerged_reference)."""


def neuron_type_chain(neuron_type, seed=0):
    """Input -> A -> B with the given neuron type, probing spikes and values."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(lambda t: np.sin(8 * t), label="stim")
        a = nengo.Ensemble(60, 1, neuron_type=neuron_type, label="a")
        b = nengo.Ensemble(60, 1, neuron_type=neuron_type, label="b")
        nengo.Connection(stim, a)
        nengo.Connection(a, b, function=lambda x: x**2)
        nengo.Probe(b, synapse=0.01)
        if not isinstance(neuron_type, nengo.Direct):
            nengo.Probe(a.neurons)
            nengo.Probe(b.neurons, synapse=0.005)
    return net


def pes_learning(seed=0):
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(lambda t: np.sin(10 * t))
        pre = nengo.Ensemble(80, 1, label="pre")
        post = nengo.Ensemble(80, 1, label="post")
        error = nengo.Ensemble(80, 1, label="error")
        nengo.Connection(stim, pre)
        conn = nengo.Connection(
            pre, post, function=lambda x: 0, learning_rule_type=nengo.PES(1e-3)
        )
        nengo.Connection(post, error)
        nengo.Connection(stim, error, transform=-1)
        nengo.Connection(error, conn.learning_rule)
        nengo.Probe(post, synapse=0.01)
        nengo.Probe(conn, "weights", sample_every=0.01)
    return net


def unsupervised_learning(seed=0):
    """BCM and Oja on neuron-to-neuron weights, Voja on encoders."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=3))
        pre = nengo.Ensemble(50, 1, label="pre")
        post = nengo.Ensemble(50, 1, label="post")
        voja_post = nengo.Ensemble(50, 1, label="voja post")
        nengo.Connection(stim, pre)
        weights = np.random.RandomState(7).uniform(-1e-3, 1e-3, (50, 50))
        bcm = nengo.Connection(
            pre.neurons, post.neurons, transform=weights, learning_rule_type=nengo.BCM()
        )
        oja = nengo.Connection(
            pre.neurons, post.neurons, transform=weights, learning_rule_type=nengo.Oja()
        )
        voja = nengo.Connection(pre, voja_post, learning_rule_type=nengo.Voja())
        nengo.Probe(post.neurons)
        nengo.Probe(bcm, "weights", sample_every=0.02)
        nengo.Probe(oja, "weights", sample_every=0.02)
        nengo.Probe(voja.learning_rule, "scaled_encoders", sample_every=0.02)
        nengo.Probe(voja_post, synapse=0.01)
    return net


def neuron_to_neuron(seed=0):
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node([0.5, -0.3])
        a = nengo.Ensemble(40, 2, label="a")
        b = nengo.Ensemble(30, 1, label="b")
        c = nengo.Ensemble(30, 1, label="c")
        nengo.Connection(stim, a)
        rs = np.random.RandomState(1)
        nengo.Connection(a.neurons, b.neurons, transform=rs.randn(30, 40) * 0.01)
        nengo.Connection(a.neurons[:10], c.neurons[5:15], transform=0.02)
        nengo.Connection(a, c.neurons, transform=rs.randn(30, 2) * 0.1)
        nengo.Probe(b.neurons)
        nengo.Probe(c.neurons)
        nengo.Probe(c, synapse=0.01)
    return net


def nodes_with_callables(seed=0):
    """Nodes with functions of time, of input (``size_in``), and passthrough Nodes."""
    with nengo.Network(seed=seed) as net:
        t_node = nengo.Node(lambda t: [np.sin(5 * t), np.cos(5 * t)], label="t node")
        a = nengo.Ensemble(80, 2, label="a")
        nengo.Connection(t_node, a)
        square = nengo.Node(lambda t, x: x**2, size_in=2, label="square")
        nengo.Connection(a, square)
        passthrough = nengo.Node(size_in=2, label="passthrough")
        nengo.Connection(square, passthrough, synapse=None)
        b = nengo.Ensemble(80, 2, label="b")
        nengo.Connection(passthrough, b)
        sink = nengo.Node(lambda t, x: None, size_in=2, label="sink")
        nengo.Connection(b, sink)
        nengo.Probe(square)
        nengo.Probe(passthrough, synapse=0.01)
        nengo.Probe(b, synapse=0.01)
    return net


def processes(seed=0):
    with nengo.Network(seed=seed) as net:
        white = nengo.Node(nengo.processes.WhiteSignal(0.5, high=10), size_out=2)
        noise = nengo.Node(nengo.processes.WhiteNoise(), size_out=1)
        piece = nengo.Node(nengo.processes.Piecewise({0: 0.2, 0.1: -0.4, 0.2: 0.6}))
        a = nengo.Ensemble(60, 2, label="a")
        b = nengo.Ensemble(
            60, 1, noise=nengo.processes.WhiteNoise(nengo.dists.Gaussian(0, 0.05)),
            label="b",
        )
        nengo.Connection(white, a)
        nengo.Connection(noise, b, synapse=nengo.Alpha(0.005))
        nengo.Connection(piece, b, synapse=nengo.LinearFilter([1], [0.001, 0.03, 1]))
        nengo.Probe(white)
        nengo.Probe(noise)
        nengo.Probe(a, synapse=0.01)
        nengo.Probe(b.neurons)
    return net


def networks(seed=0):
    """Networks from nengo.networks: EnsembleArray, Product, CircularConvolution,
    basal ganglia and thalamus, a gated memory."""
    with nengo.Network(seed=seed) as net:
        vec = nengo.Node([0.4, -0.2, 0.3, 0.1])
        array = nengo.networks.EnsembleArray(30, 4)
        nengo.Connection(vec, array.input)
        product = nengo.networks.Product(40, 2)
        nengo.Connection(array.output[:2], product.input_a)
        nengo.Connection(array.output[2:], product.input_b)
        conv = nengo.networks.CircularConvolution(30, 4)
        nengo.Connection(vec, conv.input_a)
        nengo.Connection(array.output, conv.input_b)
        bg = nengo.networks.BasalGanglia(3, n_neurons_per_ensemble=20)
        thal = nengo.networks.Thalamus(3, n_neurons_per_ensemble=20)
        nengo.Connection(vec[:3], bg.input)
        nengo.Connection(bg.output, thal.input)
        memory = nengo.networks.InputGatedMemory(40, 1)
        nengo.Connection(vec[0], memory.input)
        nengo.Probe(product.output, synapse=0.01)
        nengo.Probe(conv.output, synapse=0.01)
        nengo.Probe(thal.output, synapse=0.01)
        nengo.Probe(memory.output, synapse=0.01, sample_every=0.005)
    return net


def sampled_probes(seed=0):
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(lambda t: np.sin(3 * t))
        a = nengo.Ensemble(50, 1, label="a")
        nengo.Connection(stim, a)
        nengo.Probe(a, synapse=0.01, sample_every=0.003)
        nengo.Probe(a.neurons, sample_every=0.0025)
        nengo.Probe(stim, sample_every=0.01)
    return net


MODELS = {
    "recurrent_loop": recurrent_loop,
    "integrator_and_oscillator": integrator_and_oscillator,
    "pes_learning": pes_learning,
    "unsupervised_learning": unsupervised_learning,
    "neuron_to_neuron": neuron_to_neuron,
    "nodes_with_callables": nodes_with_callables,
    "processes": processes,
    "networks": networks,
    "sampled_probes": sampled_probes,
}
