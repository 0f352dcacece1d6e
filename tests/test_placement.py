"""Placement: largest-first and METIS graph partitions, and the worker count."""

import nengo
import pytest
from conftest import assert_same_probes, run_reference

import spike
from spike.builder.pipeline import prepare
from spike.plan.allocation import imbalance
from spike.plan.calibration import DEFAULT_CALIBRATION, Calibration
from spike.plan.pipeline import choose_workers
from spike.plan.placement import balance, placement_inputs, step_estimate


def streams(n_chains=6, length=6, n_neurons=60, dimensions=2, seed=0):
    """Parallel chains of equal ensembles, each chain ending in a probe."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=dimensions)
        for _ in range(n_chains):
            previous = stim
            for _ in range(length):
                ens = nengo.Ensemble(n_neurons, dimensions)
                nengo.Connection(previous, ens)
                previous = ens
            nengo.Probe(previous, synapse=0.01)
    return net


def inputs(net):
    partition = prepare(net).partition
    return placement_inputs(partition, calibration=DEFAULT_CALIBRATION)


def loads(entries, worker_of, n):
    compute, memory = [0.0] * n, [0] * n
    for a in entries:
        w = worker_of[a["index"]]
        if w is not None:
            compute[w] += a["seconds_per_step"]
            memory[w] += a["memory_bytes"]
    return compute, memory


def cut_bytes(links, worker_of, group=lambda w: w):
    return sum(
        nbytes for a, b, nbytes in links
        if worker_of[a] is not None and worker_of[b] is not None
        and group(worker_of[a]) != group(worker_of[b])
    )


@pytest.mark.parametrize("n_workers", [2, 4])
def test_graph_partition_cuts_less_traffic_and_stays_balanced(n_workers):
    entries, links, costs = inputs(streams())
    greedy = balance(entries, links, n_workers, method="greedy")
    graph = balance(entries, links, n_workers, method="graph")
    assert set(graph) == set(greedy) == {a["index"] for a in entries}
    for worker_of in (greedy, graph):
        compute, memory = loads(entries, worker_of, n_workers)
        assert imbalance(compute) <= 1.05
        assert imbalance(memory) <= 1.10
    # largest first deals a chain's ensembles out to every worker; the graph
    # partition keeps chains together, so only the shared input crosses
    assert cut_bytes(links, graph) < cut_bytes(links, greedy) / 4
    # auto keeps the one with the shorter estimated step
    auto = balance(entries, links, n_workers, costs=costs)
    best = min((greedy, graph), key=lambda w: step_estimate(entries, links, w, n_workers))
    assert auto == best


def test_graph_partition_over_machines_keeps_traffic_on_each_machine():
    entries, links, _ = inputs(streams(n_chains=8, length=5))
    greedy = balance(entries, links, 4, workers_per_machine=2, method="greedy")
    graph = balance(entries, links, 4, workers_per_machine=2, method="graph")
    machine = lambda w: w // 2  # noqa: E731
    assert cut_bytes(links, graph, machine) < cut_bytes(links, greedy, machine) / 2
    compute, _ = loads(entries, graph, 4)
    assert imbalance(compute) <= 1.05


def test_fixed_workers_are_respected():
    entries, links, _ = inputs(streams())
    entries[0] = dict(entries[0], worker=1, client=False)
    worker_of = balance(entries, links, 2, method="auto")
    assert worker_of[entries[0]["index"]] == 1


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        balance([], [], 2, method="metis-please")


def test_simulator_placement_follows_the_graph_and_matches_nengo():
    net = streams(n_chains=4, length=4, n_neurons=40)
    ref = run_reference(net, 200)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        sim.run_steps(200)
        worker_of = {i: (None if p == 0 else p - 1) for i, p in sim.placement.items()}
        entries, links, _ = placement_inputs(sim.partition)
    assert_same_probes(net, ref, sim)
    # each chain stays on one worker: only the shared input's links cross
    greedy = balance(entries, links, 2, method="greedy")
    assert cut_bytes(links, worker_of) < cut_bytes(links, greedy)


def test_worker_count_is_chosen_per_model(monkeypatch):
    monkeypatch.delenv("SPIKE_WORKERS", raising=False)
    with nengo.Network(seed=0) as tiny:
        ens = nengo.Ensemble(20, 1)
        nengo.Probe(ens, synapse=0.01)
    with spike.Simulator(tiny, progress_bar=False) as sim:
        # one actor: a second worker would have nothing to do
        assert sim.n_workers == 1
        sim.run_steps(10)

    partition = prepare(streams()).partition
    cores = __import__("os").cpu_count() or 1
    n, _ = choose_workers(partition, cores, calibration=DEFAULT_CALIBRATION)
    assert n == cores  # 36 ensembles of equal work: every core pays
    # if exchanging with another worker cost a whole second per step, one worker wins
    slow = Calibration(
        DEFAULT_CALIBRATION.seconds_per_unit, exchange={"partner_seconds": 1.0}
    )
    assert choose_workers(partition, cores, calibration=slow)[0] == 1
    # assignments naming worker 1 need at least two workers
    assert choose_workers(partition, cores, {ens: 1}, calibration=slow)[0] == 2

    monkeypatch.setenv("SPIKE_WORKERS", "3")
    with spike.Simulator(tiny, progress_bar=False) as sim:
        assert sim.n_workers == 3


def test_a_busy_machine_is_noticed():
    import os
    import subprocess
    import sys

    from spike.plan.calibration import BUSY_LIMIT
    from spike.tools.calibrate import cpu_busy_elsewhere

    if cpu_busy_elsewhere(0.05) is None:
        pytest.skip("no /proc/stat here")
    cores = os.cpu_count() or 1
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)
    ]
    try:
        busy = cpu_busy_elsewhere(0.5)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert busy > 0.6  # the hogs held every core
    loaded = Calibration(DEFAULT_CALIBRATION.seconds_per_unit, {"busy_elsewhere": busy})
    assert not loaded.quiet
    assert Calibration(DEFAULT_CALIBRATION.seconds_per_unit, {"busy_elsewhere": BUSY_LIMIT}).quiet
    assert DEFAULT_CALIBRATION.quiet  # unknown counts as quiet
    assert Calibration.from_dict(loaded.to_dict()).machine["busy_elsewhere"] == busy

