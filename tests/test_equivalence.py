"""Spike gives the probe data nengo.Simulator gives, whatever the workers or placement.

Spikes must be identical and every value within 1e-10 (see conftest.TOLERANCE).
"""

import os

import nengo
import numpy as np
import pytest
from conftest import assert_equivalent, assert_same_probes, run_reference, run_spike
from models import MODELS, NEURON_TYPES, neuron_type_chain, recurrent_loop

import spike

SLOW_MODELS = {"networks", "integrator_and_oscillator", "neuron_to_neuron"}
"""The models that take seconds to build twice and run: in the slow tier only."""


def model_names(names):
    """``names`` as parameters, those in `SLOW_MODELS` marked slow."""
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_MODELS else name
        for name in names
    ]


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("name", model_names(sorted(MODELS)))
def test_models_match_reference(name, workers):
    net = MODELS[name](seed=11)
    sim = assert_equivalent(net, steps=250, workers=workers)
    if workers > 1 and name in ("recurrent_loop", "networks", "processes"):
        # these models really are spread over several processes
        assert len(set(sim.placement.values()) - {0}) > 1


@pytest.mark.parametrize("neuron_type", [
    pytest.param(n, marks=pytest.mark.slow) if isinstance(n, nengo.Izhikevich) else n
    for n in NEURON_TYPES
], ids=lambda n: type(n).__name__)
def test_neuron_types_match_reference(neuron_type):
    net = neuron_type_chain(neuron_type, seed=5)
    # a, b and the function Node on different peers
    sim = assert_equivalent(net, steps=200, workers=2)
    if not isinstance(neuron_type, nengo.Direct):  # Direct mode runs Python functions
        assert len(set(sim.placement.values())) == 3


@pytest.mark.parametrize(
    "neuron_type",
    [nengo.StochasticSpiking(nengo.RectifiedLinear()), nengo.PoissonSpiking(nengo.LIFRate())],
    ids=lambda n: type(n).__name__,
)
def test_stochastic_neurons_match_unmerged_reference(neuron_type):
    """Stochastic neurons draw from a RandomState per ensemble. nengo's op-merging
    optimizer merges two such ensembles into one op that draws from the first one's
    RandomState (and warns: "Extra state has been modified ... turn off the
    optimizer"), which changes the spikes. Spike keeps each ensemble's own draws, as
    nengo.Simulator does with ``optimize=False``: that is the reference here."""
    net = neuron_type_chain(neuron_type, seed=5)
    with nengo.Simulator(net, optimize=False, progress_bar=False) as ref:
        ref.run_steps(200)
    for workers in (1, 2):  # together on one worker, or apart: the same spikes
        sim = run_spike(net, 200, workers=workers)
        assert_same_probes(net, ref, sim)


def random_assignments(net, n_workers, rng):
    """A random valid placement: one random worker per actor, named by an object."""
    with spike.Simulator(net, workers=n_workers, progress_bar=False) as probe_sim:
        partition = probe_sim.partition
    assignments = {}
    homes = {}
    for obj, index in partition.object_home.items():
        homes.setdefault(index, obj)
    for index, obj in sorted(homes.items()):
        if not partition.actors[index].has_callables:
            assignments[obj] = int(rng.randint(n_workers))
    return assignments


@pytest.mark.parametrize("trial", [pytest.param(0, marks=pytest.mark.slow), 1, 2, 3])
def test_random_assignments_match_reference(trial):
    rng = np.random.RandomState(trial)
    name = sorted(MODELS)[trial * 2 % len(MODELS)]
    net = MODELS[name](seed=trial)
    n_workers = 2 + trial % 3
    assignments = random_assignments(net, n_workers, rng)
    assert_equivalent(net, steps=200, workers=n_workers, assignments=assignments)


def test_explicit_assignments_are_followed():
    net = recurrent_loop()
    a, b = [e for e in net.all_ensembles]
    with spike.Simulator(
        net, workers=2, assignments={a: 1, b: 0}, progress_bar=False
    ) as sim:
        peer_of = {
            obj: sim.placement[actor.index]
            for actor in sim.partition.actors
            for obj in actor.objects
        }
        assert peer_of[a] == 2 and peer_of[b] == 1
        sim.run_steps(100)
    ref = run_reference(net, 100)
    assert_same_probes(net, ref, sim)


def test_callable_node_may_move_to_a_worker():
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(lambda t: np.sin(4 * t), label="stim")
        a = nengo.Ensemble(50, 1)
        nengo.Connection(stim, a)
        nengo.Probe(a, synapse=0.01)
        nengo.Probe(stim)
    sim = assert_equivalent(net, steps=150, workers=2, assignments={stim: 1})
    stim_actor = next(a for a in sim.partition.actors if stim in a.objects)
    assert sim.placement[stim_actor.index] == 2


def test_runs_in_pieces_and_single_steps_match_one_run():
    net = MODELS["processes"](seed=4)
    ref = run_reference(net, 120)
    with spike.Simulator(net, workers=3, progress_bar=False) as sim:
        sim.run_steps(50)
        for _ in range(10):
            sim.step()
        sim.run(0.06)
    assert_same_probes(net, ref, sim)


def test_reset_and_reseed_match_reference():
    net = MODELS["processes"](seed=4)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(80)
        ref.reset(seed=99)
        ref.run_steps(60)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        sim.run_steps(80)
        sim.reset(seed=99)
        sim.run_steps(60)
    assert_same_probes(net, ref, sim)


def test_seed_argument_matches_reference():
    net = MODELS["processes"](seed=3)
    sim = assert_equivalent(net, steps=100, seed=1234, workers=2)
    assert sim.seed == 1234


def test_dt_matches_reference():
    net = MODELS["recurrent_loop"](seed=2)
    ref = run_reference(net, 100, dt=0.0005)
    sim = run_spike(net, 100, dt=0.0005, workers=2)
    assert_same_probes(net, ref, sim)


@pytest.mark.parametrize("exchange", ["zmq", "shm"])
@pytest.mark.parametrize(
    "name", model_names(["recurrent_loop", "networks", "nodes_with_callables"])
)
def test_both_exchange_paths_match_reference(name, exchange, monkeypatch):
    """Same-host peers use shared-memory rings by default; SPIKE_EXCHANGE=zmq forces
    ZeroMQ (the path peers on other hosts take)."""
    monkeypatch.setenv("SPIKE_EXCHANGE", exchange)
    net = MODELS[name](seed=8)
    ref = run_reference(net, 200)
    with spike.Simulator(net, workers=3, progress_bar=False) as sim:
        shm_paths = list(sim._session.shm_paths)
        if exchange == "shm":
            assert shm_paths and all(os.path.exists(p) for p in shm_paths)
        else:
            assert not shm_paths
        sim.run_steps(200)
    assert_same_probes(net, ref, sim)
    assert not any(os.path.exists(p) for p in shm_paths)


@pytest.mark.parametrize(
    "name", model_names(["networks", "unsupervised_learning", "processes"])
)
def test_unmerged_workers_match_reference(name):
    """optimize=False: workers run nengo's operators one by one (no op merging)."""
    net = MODELS[name](seed=9)
    assert_equivalent(net, steps=150, workers=2, optimize=False)


@pytest.mark.slow
def test_workers_merge_their_operators():
    from spike.runtime.executor import Executor
    from spike.runtime.merge import merge_plan

    net = MODELS["networks"](seed=9)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        plans = sim._session.plans
    import copy

    plan = copy.deepcopy(plans[1])
    assert merge_plan(plan) > len(plan.ops) // 2  # most operators merged away
    Executor(copy.deepcopy(plans[1]))  # and the merged share initialises
