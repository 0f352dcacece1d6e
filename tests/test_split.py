"""Splitting large ensembles (`max_neurons`): the parts give the unsplit results.

Every equivalence model runs with its ensembles cut into small parts on 2 workers
(interpreted and compiled), and must match nengo.Simulator on the whole ensembles:
spikes exactly, values to 1e-10 (sums over parts are the same numbers added in
another order). Other tests check that the split really happened, that nothing was
built twice, and what happens to ensembles that cannot be divided.
"""


import nengo
import numpy as np
import pytest
from conftest import assert_equivalent, assert_pickled_continues
from models import MODELS
from nengo.builder.learning_rules import SimBCM, SimPES
from nengo.builder.operator import Copy, DotInc, SimPyFunc, SparseDotInc

import spike
from spike.builder.operators import SplitSimPES
from spike.builder.pipeline import prepare
from spike.builder.signals import part_bounds
from spike.builder.split import NEURON_RULES, SUM_RULES, CannotSplit
from spike.runtime import compiler

SLOW_MODELS = {"networks", "integrator_and_oscillator", "neuron_to_neuron"}
"""Seconds to build twice, split and run: in the slow tier only."""


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_MODELS else name
    for name in sorted(MODELS)
])
def test_models_match_reference_split(name):
    net = MODELS[name]()
    sim = assert_equivalent(net, steps=200, workers=2, max_neurons=35, compile=False)
    big = [e for e in net.all_ensembles if e.n_neurons > 35]
    # every large ensemble is split, or stays whole with a reason
    assert set(big) == set(sim.split.splits) | set(sim.split.skipped)
    assert all(sim.split.skipped.values())
    for ens, split in sim.split.splits.items():
        assert split.n_parts == -(-ens.n_neurons // 35)


@pytest.mark.slow
@pytest.mark.skipif(not compiler.available(), reason="PyTensor/Numba not installed")
@pytest.mark.parametrize("name", ["pes_learning", "integrator_and_oscillator", "networks"])
def test_models_match_reference_split_compiled(name):
    assert_equivalent(MODELS[name](), steps=200, workers=2, max_neurons=35, compile=True)


def square(x):
    return x**2


def learning_net(n=301):
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=2)
        a = nengo.Ensemble(n, 2)
        b = nengo.Ensemble(60, 2)
        nengo.Connection(stim, a)
        conn = nengo.Connection(a, b, learning_rule_type=nengo.PES())
        nengo.Connection(b, conn.learning_rule)
        nengo.Connection(a, b, function=square)
        nengo.Probe(a, synapse=0.01)
        nengo.Probe(a)
        nengo.Probe(a.neurons)
        nengo.Probe(a.neurons, "voltage", synapse=0.01)
        nengo.Probe(b, synapse=0.01)
        nengo.Probe(conn, "weights")
    return net, a


def test_uneven_parts_with_learning_on_two_workers():
    net, a = learning_net(301)
    sim = assert_equivalent(net, steps=300, workers=2, max_neurons=100)
    split = sim.split.splits[a]
    assert split.bounds == [(0, 75), (75, 150), (150, 225), (225, 301)]
    # the parts are actors of their own, spread over both workers
    peers = {sim.placement[i] for i, actor in enumerate(sim.partition.actors)
             if a in actor.objects and actor.n_neurons}
    assert peers == {1, 2}
    assert sum(actor.n_neurons for actor in sim.partition.actors if a in actor.objects) == 301


def test_part_bounds_cover_every_neuron():
    for n in (1, 7, 100, 301):
        for k in range(1, min(n, 9) + 1):
            bounds = part_bounds(n, k)
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_decoders_are_solved_once_and_divided():
    calls = []

    class CountingSolver(nengo.solvers.LstsqL2):
        def __call__(self, *args, **kwargs):
            calls.append(1)
            return super().__call__(*args, **kwargs)

    with nengo.Network(seed=5) as net:
        a = nengo.Ensemble(200, 1)
        b = nengo.Ensemble(50, 1)
        conn = nengo.Connection(a, b, solver=CountingSolver())
        nengo.Probe(b, synapse=0.01)
    with spike.Simulator(net, workers=2, max_neurons=50, progress_bar=False) as sim:
        assert len(calls) == 1
        decoders = sim.data[conn].weights
        weights = sim.model.sig[conn]["weights"]
        axis, parts = sim.split.splits[a].bases[weights]
        assert axis == 1 and len(parts) == 4
        np.testing.assert_array_equal(
            np.concatenate([p.initial_value for p in parts], axis=1), decoders
        )


def test_signals_of_a_split_ensemble_are_whole_again():
    net, a = learning_net(120)
    with spike.Simulator(net, workers=2, max_neurons=40, progress_bar=False) as sim:
        sim.run_steps(50)
        voltage = sim.signals[sim.model.sig[a.neurons]["voltage"]]
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(50)
        expected = ref.signals[ref.model.sig[a.neurons]["voltage"]]
    np.testing.assert_allclose(voltage, expected, atol=1e-10, rtol=0)


def test_ensemble_that_cannot_be_divided_stays_whole_and_says_why():
    with nengo.Network(seed=1) as net:
        stim = nengo.Node([0.5])
        noisy = nengo.Ensemble(100, 1, neuron_type=nengo.PoissonSpiking(nengo.LIFRate()))
        read = nengo.Ensemble(100, 1)
        sink = nengo.Node(lambda t, x: None, size_in=100)
        nengo.Connection(stim, noisy)
        nengo.Connection(stim, read)
        nengo.Connection(read.neurons, sink, synapse=None)
        joined = nengo.Ensemble(100, 1)  # divided, but its parts stay together:
        nengo.Connection(stim, joined)  # they feed b within the step
        nengo.Connection(joined, read, synapse=None)
        nengo.Probe(noisy, synapse=0.01)
        nengo.Probe(read, synapse=0.01)
    sim = assert_equivalent(net, steps=100, workers=2, max_neurons=30)
    assert set(sim.split.skipped) == {noisy, read}
    assert set(sim.split.splits) == {joined}
    assert "random numbers" in sim.split.skipped[noisy]
    assert sim.split.skipped[read] == (
        f"SimPyFunc of {sink} uses its neurons in a way Spike cannot divide"
    )  # names the Node whose function reads them


@pytest.mark.slow
def test_pickled_split_simulator_continues():
    net, _ = learning_net(120)
    assert_pickled_continues(
        net, 60, 40, lambda clone: clone.split.splits, workers=2, max_neurons=40
    )


def test_max_neurons_is_validated():
    with nengo.Network() as net:
        nengo.Ensemble(10, 1)
    with pytest.raises(nengo.exceptions.ValidationError, match="positive integer"):
        spike.Simulator(net, workers=1, max_neurons=0, progress_bar=False)


def bcm_net():
    with nengo.Network(seed=2) as net:
        stim = nengo.Node([0.5])
        a = nengo.Ensemble(60, 1)
        b = nengo.Ensemble(60, 1)
        nengo.Connection(stim, a)
        nengo.Connection(a.neurons, b.neurons, transform=np.zeros((60, 60)),
                         learning_rule_type=nengo.BCM())
    return net, a, b


def test_an_operator_without_a_split_rule_keeps_the_ensemble_whole_and_is_named():
    net, a, b = bcm_net()
    report = prepare(net, max_neurons=20).split
    assert not report.splits
    for ens in (a, b):
        assert report.skipped[ens].startswith("SimBCM of <Connection")
        assert report.skipped[ens].endswith("uses its neurons in a way Spike cannot divide")


def test_split_rules_are_found_along_the_operator_types_mro():
    class CopyOfMine(Copy):
        pass

    assert NEURON_RULES.rule_for(CopyOfMine) is NEURON_RULES.rule_for(Copy) is not None
    assert NEURON_RULES.rule_for(SparseDotInc) is NEURON_RULES.rule_for(DotInc)
    assert NEURON_RULES.rule_for(SimPyFunc) is None
    assert SUM_RULES.rule_for(SimPES) is None
    # a part of a learning rule is not divided again, though SimPES has a rule
    assert NEURON_RULES.rule_for(SplitSimPES) is not NEURON_RULES.rule_for(SimPES)


def test_a_registered_split_rule_is_used(monkeypatch):
    net, a, b = bcm_net()

    def refuse_learning(splitter, op):
        raise CannotSplit("a rule of the test's own")

    monkeypatch.setitem(NEURON_RULES.rules, SimBCM, refuse_learning)
    report = prepare(net, max_neurons=20).split
    assert report.skipped == {a: "a rule of the test's own", b: "a rule of the test's own"}
