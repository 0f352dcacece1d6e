"""A worker's prepared share (merged and compiled) is kept and reused: `spike.runtime.shares`.

Executors are built in this process from the plans a client would send, with the
share cache in a temporary directory: the second Executor given the same share loads
it, and steps exactly as the first.
"""

import pickle

import nengo
import numpy as np
import pytest

from spike.builder.pipeline import prepare
from spike.client.session import _pickle_plan
from spike.plan.pipeline import plan_model
from spike.runtime import compiler, shares
from spike.runtime.executor import Executor
from spike.runtime.rng import rng_states


@pytest.fixture(autouse=True)
def cache_in(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SPIKE_SHARE_CACHE", raising=False)
    return tmp_path


def network(seed=3):
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=2)
        a = nengo.Ensemble(60, 2)
        b = nengo.Ensemble(50, 2, neuron_type=nengo.AdaptiveLIF())
        nengo.Connection(stim, a)
        nengo.Connection(a, b, function=lambda x: x**2)
        nengo.Connection(b, a, synapse=nengo.Alpha(0.01), transform=0.5)
        nengo.Probe(b, synapse=0.01)
        nengo.Probe(a.neurons)
    return net


def chains(seed=3, n=3, length=4):
    """Unlabeled ensembles (their names hold memory addresses) in chains: placed on
    two workers, each route carries several signals."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=1)
        for _ in range(n):
            previous = stim
            for _ in range(length):
                ens = nengo.Ensemble(20, 1)
                nengo.Connection(previous, ens)
                previous = ens
            nengo.Probe(previous, synapse=0.01)
    return net


def divided_and_split(seed=3):
    """An ensemble array (divided into groups, `spike.builder.passthrough`) feeding a large
    ensemble (split, `spike.builder.split`); unlabeled, so names hold memory addresses."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=3)
        array = nengo.networks.EnsembleArray(30, 3)
        nengo.Connection(stim, array.input)
        big = nengo.Ensemble(80, 1)
        nengo.Connection(array.output[0], big)
        nengo.Probe(array.output, synapse=0.01)
        nengo.Probe(big, synapse=0.01)
    return net


def worker_share(net, compile, workers=1, max_neurons=None):
    """``(plan, blob, states)``: the first worker's plan, pickled as sent, and the
    random states of a reset."""
    prepared = prepare(net, max_neurons=max_neurons, n_groups=workers)
    plans = plan_model(prepared, workers, compile=compile).plans
    blob = _pickle_plan(plans[1], {})
    return pickle.loads(blob), blob, rng_states(prepared.model.spike_rng_order, 4, 0.001)


def run(executor, states, steps=100):
    """Every base signal after ``steps`` steps (no exchange: one worker)."""
    executor.reset(states)
    for _ in range(steps):
        for step in executor.steps:
            step()
    return [executor.signals[base].copy() for base in executor.plan.bases]


@pytest.mark.parametrize(
    "compile",
    [
        False,
        pytest.param(
            True,
            marks=[
                pytest.mark.skipif(not compiler.available(), reason="no PyTensor"),
                pytest.mark.slow,  # compiles
            ],
        ),
    ],
)
def test_reused_share_steps_like_a_prepared_one(compile):
    plan, blob, states = worker_share(network(), compile)
    key = shares.share_key(blob)
    first = Executor(plan, share_key=key)
    assert shares.load(key) is not None
    second = Executor(pickle.loads(blob), share_key=key)
    if compile:
        assert not first.program.reused and second.program.reused
        assert [isinstance(i, int) for i in first.program.items] == [
            isinstance(i, int) for i in second.program.items
        ]
    assert len(second.plan.ops) == len(first.plan.ops) < len(plan.ops)
    for a, b in zip(run(first, states), run(second, states)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("workers", [1, 2])
def test_key_ignores_addresses_but_not_values(workers):
    _, blob, _ = worker_share(chains(), False, workers)
    _, again, _ = worker_share(chains(), False, workers)  # other objects and addresses
    assert shares.share_key(blob) == shares.share_key(again)
    _, other, _ = worker_share(chains(seed=4), False, workers)
    assert shares.share_key(other) != shares.share_key(blob)


def test_key_of_a_split_and_divided_model_ignores_addresses():
    _, blob, _ = worker_share(divided_and_split(), False, 2, max_neurons=30)
    _, again, _ = worker_share(divided_and_split(), False, 2, max_neurons=30)
    assert shares.share_key(blob) == shares.share_key(again)


def test_damaged_entry_is_ignored(cache_in):
    plan, blob, states = worker_share(network(), False)
    key = shares.share_key(blob)
    shares.shares_dir().mkdir(parents=True)
    (shares.shares_dir() / f"{key}.pkl").write_bytes(b"not a pickle")
    assert shares.load(key) is None
    executor = Executor(plan, share_key=key)  # prepares it, and replaces the entry
    assert shares.load(key) is not None
    run(executor, states, steps=5)


def test_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SPIKE_SHARE_CACHE", "0")
    plan, blob, _ = worker_share(network(), False)
    key = shares.share_key(blob)
    Executor(plan, share_key=key)
    assert not shares.shares_dir().exists()
