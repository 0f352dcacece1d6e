"""Dividing actors that passthrough Nodes hold together (`spike.builder.passthrough`).

A network of ensembles between passthrough Nodes (an EnsembleArray, a
CircularConvolution) is one actor until it is divided into groups, one per worker.
The groups must give nengo.Simulator's results: spikes exactly (each group computes
the same inputs in the same order), values to 1e-10 (sums of the groups' outputs are
the same numbers added in another order).
"""

import json

import nengo
import numpy as np
import pytest
from conftest import assert_equivalent, assert_pickled_continues, run_reference

import spike
from spike.builder.pipeline import prepare
from spike.runtime import compiler
from spike.tools.dryrun import dry_run


def conv_net(n_neurons=20, dimensions=4, seed=0):
    rng = np.random.RandomState(seed)
    with nengo.Network(seed=seed) as net:
        a = nengo.Node(rng.randn(dimensions) / np.sqrt(dimensions))
        b = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=seed + 1),
                       size_out=dimensions)
        conv = nengo.networks.CircularConvolution(n_neurons, dimensions)
        nengo.Connection(a, conv.input_a)
        nengo.Connection(b, conv.input_b)
        nengo.Probe(conv.output, synapse=0.01)
        nengo.Probe(conv.output)  # the sum itself, within the step
        nengo.Probe(conv.input_a)  # an input every group computes
        nengo.Probe(conv.product.sq1.ea_ensembles[0].neurons)
        nengo.Probe(conv.product.sq2.ea_ensembles[-1].neurons)
    return net, conv


def neuron_count_per_worker(sim):
    counts = {}
    for index, actor in enumerate(sim.partition.actors):
        counts[sim.placement[index]] = counts.get(sim.placement[index], 0) + actor.n_neurons
    return counts


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_circular_convolution_is_spread_over_workers_and_matches_reference(compile):
    if compile and not compiler.available():
        pytest.skip("PyTensor/Numba not installed")
    net, conv = conv_net()
    sim = assert_equivalent(net, steps=200, workers=2, compile=compile)
    (division,) = sim.split.divisions
    assert division.n_groups == 2
    assert not sim.split.undivided
    counts = neuron_count_per_worker(sim)
    total = sum(e.n_neurons for e in net.all_ensembles)
    assert sorted(c for c in counts.values() if c) == [total // 2, total // 2]
    groups = [a for a in sim.partition.actors if "group" in a.part]
    assert len(groups) == 2 and all(a.n_neurons for a in groups)


def test_constant_inputs_are_filtered_in_every_group_and_nothing_crosses():
    rng = np.random.RandomState(1)
    with nengo.Network(seed=1) as net:
        a = nengo.Node(rng.randn(4) / 2)
        b = nengo.Node(rng.randn(4) / 2)
        conv = nengo.networks.CircularConvolution(20, 4)
        nengo.Connection(a, conv.input_a)
        nengo.Connection(b, conv.input_b)
        nengo.Probe(conv.output, synapse=0.01)
    sim = assert_equivalent(net, steps=100, workers=2, compile=False)
    assert len(sim.split.divisions) == 1
    crossing = sum(
        nbytes for (x, y), nbytes in sim.partition.links.items()
        if sim.placement[x] != sim.placement[y]
    )
    assert crossing == 0
    assert len({sim.placement[a.index] for a in sim.partition.actors}) == 2


def test_a_constant_nodes_synapse_goes_with_its_only_reader():
    with nengo.Network(seed=1) as net:
        stim = nengo.Node([0.5])
        ens = nengo.Ensemble(20, 1)
        nengo.Connection(stim, ens)
        other = nengo.Ensemble(20, 1)
        nengo.Connection(stim, other)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        assert len(sim.partition.actors) == 2  # each ensemble with its own synapse
        assert not sim.partition.crossing


def test_three_groups_and_uneven_ensembles():
    with nengo.Network(seed=2) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=3), size_out=3)
        inp = nengo.Node(size_in=3)
        out = nengo.Node(size_in=3)
        nengo.Connection(stim, inp)
        for i, n in enumerate([30, 70, 20, 50, 40]):
            ens = nengo.Ensemble(n, 1)
            nengo.Connection(inp[i % 3], ens, synapse=None, transform=0.5 + i)
            nengo.Connection(ens, out[(i + 1) % 3], synapse=None, function=np.square)
        nengo.Probe(out, synapse=0.02)
        nengo.Probe(out)
    sim = assert_equivalent(net, steps=150, workers=3)
    (division,) = sim.split.divisions
    assert division.n_groups == 3
    assert len({sim.placement[a.index] for a in sim.partition.actors if a.n_neurons}) == 3


def test_a_sum_of_groups_feeds_another_ensemble_through_a_synapse():
    with nengo.Network(seed=4) as net:
        stim = nengo.Node([0.3, -0.6])
        array = nengo.networks.EnsembleArray(40, n_ensembles=2)
        nengo.Connection(stim, array.input)
        after = nengo.Ensemble(60, 2)
        nengo.Connection(array.output, after, synapse=0.005, transform=[[0.5, 1], [1, -0.5]])
        nengo.Connection(stim, after)  # another input to the same ensemble
        nengo.Probe(after, synapse=0.01)
        nengo.Probe(after.neurons)
    sim = assert_equivalent(net, steps=200, workers=2)
    assert len(sim.split.divisions) == 1


def test_a_memory_fed_back_through_a_synapse_is_divided():
    """The output sum's synapse feeds the actor's own input: every group's input adds
    every group's filtered output."""
    with nengo.Network(seed=7) as net:
        stim = nengo.Node(nengo.processes.Piecewise({0: [0.4, -0.3, 0.2], 0.1: [0, 0, 0]}))
        array = nengo.networks.EnsembleArray(40, n_ensembles=3)
        nengo.Connection(stim, array.input, transform=0.1)
        nengo.Connection(array.output, array.input, synapse=0.05)
        nengo.Probe(array.output, synapse=0.01)
        nengo.Probe(array.ea_ensembles[2].neurons)
    sim = assert_equivalent(net, steps=200, workers=2)
    assert len(sim.split.divisions) == 1 and not sim.split.undivided


def test_signals_of_a_divided_actor_are_whole_again():
    net, conv = conv_net()
    with nengo.Simulator(net, progress_bar=False) as ref, spike.Simulator(
        net, workers=2, progress_bar=False
    ) as sim:
        ref.run_steps(60)
        sim.run_steps(60)
        assert sim.split.divisions
        for node in (conv.output, conv.input_a, conv.product.output):
            mine = sim.signals[sim.model.sig[node]["in"]]
            theirs = ref.signals[ref.model.sig[node]["in"]]
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)


def test_a_nonlinear_use_of_the_sum_keeps_the_actor_whole_and_says_why():
    with nengo.Network(seed=5) as net:
        stim = nengo.Node([0.5, -0.5])
        array = nengo.networks.EnsembleArray(30, n_ensembles=2)
        nengo.Connection(stim, array.input)
        reader = nengo.Ensemble(30, 2)  # reads the sum within the step
        nengo.Connection(array.output, reader, synapse=None)
        nengo.Probe(reader, synapse=0.01)
    sim = assert_equivalent(net, steps=100, workers=2)
    assert not sim.split.divisions
    (reason,) = sim.split.undivided.values()
    assert "within the step" in reason and "Ensemble" in reason


def test_a_product_of_two_sums_keeps_the_actor_whole():
    with nengo.Network(seed=6) as net:
        stim = nengo.Node([0.5, -0.5])
        array = nengo.networks.EnsembleArray(30, n_ensembles=2)
        nengo.Connection(stim, array.input)
        square = nengo.Node(lambda t, x: x * x, size_in=2)  # a function of the sum
        nengo.Connection(array.output, square, synapse=None)
        nengo.Probe(square, synapse=0.01)
    sim = assert_equivalent(net, steps=100, workers=2)
    assert not sim.split.divisions
    assert any("not linear" in r for r in sim.split.undivided.values())


def test_one_worker_divides_nothing():
    net, _ = conv_net()
    with spike.Simulator(net, workers=1, progress_bar=False) as sim:
        assert not sim.split.divisions


def test_pickled_divided_simulator_continues():
    net, _ = conv_net()
    assert_pickled_continues(net, 50, 30, lambda clone: clone.split.divisions, workers=2)


def test_allocation_file_keeps_the_groups(tmp_path):
    net, _ = conv_net()
    result = dry_run(net, n_workers=2, measure_baseline=False)
    assert result.allocation["model"]["groups"] == 2
    assert len(result.split.divisions) == 1
    path = tmp_path / "allocation.json"
    path.write_text(json.dumps(result.allocation))
    ref = run_reference(net, 50)
    with spike.Simulator(net, allocation=str(path), progress_bar=False) as sim:
        sim.run_steps(50)
        assert len(sim.split.divisions) == 1
        for probe in net.all_probes:
            np.testing.assert_allclose(sim.data[probe], ref.data[probe], rtol=0, atol=1e-10)


def test_fewer_groups_when_spike_chooses_fewer_workers(monkeypatch):
    """Without ``workers=``, actors are divided into one group per core; if Spike
    then chooses fewer workers, they are divided again into one group per worker
    (groups sharing a worker would each compute the same inputs). Here the machine
    is made to have 3 cores and the choice (`choose_workers`, which depends on this
    machine's calibration) to be 2 workers."""
    import spike.plan.pipeline
    import spike.simulator

    monkeypatch.delenv("SPIKE_WORKERS", raising=False)
    monkeypatch.setattr(spike.simulator, "max_local_workers", lambda: 3)
    monkeypatch.setattr(spike.plan.pipeline, "max_local_workers", lambda: 3)
    chosen = []

    def choose_two(partition, max_workers, assignments=None, calibration=None):
        chosen.append(sum("group" in actor.part for actor in partition.actors))
        return 2, 1e-4

    monkeypatch.setattr(spike.plan.pipeline, "choose_workers", choose_two)
    net, _ = conv_net()
    sim = assert_equivalent(net, steps=100)
    assert chosen == [3]  # divided for 3 cores first
    assert sim.n_workers == 2
    assert [d.n_groups for d in sim.split.divisions] == [2]
    assert sim.split.before_division is None  # not kept (nor pickled) once chosen
    assert len([c for c in neuron_count_per_worker(sim).values() if c]) == 2


def test_redivide_undoes_the_division():
    """`spike.builder.pipeline.redivide` into fewer groups leaves the model as if divided into
    those in the first place; into one group, as it was built."""
    from spike.builder.pipeline import prepare, redivide

    def built(n_groups):
        net, _ = conv_net()
        return prepare(net, n_groups=n_groups).model.operators

    whole, in_two = built(1), built(2)
    net, _ = conv_net()
    prepared = prepare(net, n_groups=3, undoable=True)
    model, report = prepared.model, prepared.split
    assert report.most_groups() == 3
    redivide(model, 2)
    assert [d.n_groups for d in report.divisions] == [2]
    assert [type(op) for op in model.operators] == [type(op) for op in in_two]
    assert set(report.group_of_op.values()) == {(0, 2), (1, 2)}
    redivide(model, 1)
    assert not report.divisions and not report.group_of_op and not report.probes
    assert [type(op) for op in model.operators] == [type(op) for op in whole]


def test_probe_of_a_constant_synapse_into_a_divided_actor():
    """A probe of a connection from a constant Node into an actor divided into
    groups (its synapse is copied for each group that reads it) records nengo's
    values, instead of failing in the division."""
    with nengo.Network(seed=1) as net:
        stim = nengo.Node([0.3, -0.2, 0.1])
        array = nengo.networks.EnsembleArray(30, 3)
        into = nengo.Connection(stim, array.input, synapse=0.01)
        nengo.Probe(into, "output")
        nengo.Probe(array.output, synapse=0.01)
    prepared = prepare(net, n_groups=2)
    assert len(prepared.split.divisions) == 1
    assert_equivalent(net, steps=50, workers=2)
