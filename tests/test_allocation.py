"""Cost model, dry run, allocation files, rebalance and stats (issue: scheduler)."""

import json
import os
import subprocess
import sys

import nengo
import pytest
from conftest import assert_same_probes, run_reference

import spike
from spike.builder.pipeline import prepare
from spike.exceptions import AllocationError
from spike.plan import allocation
from spike.plan.calibration import BUSY_LIMIT, DEFAULT_CALIBRATION
from spike.plan.cost import actor_costs, op_work
from spike.tools.calibrate import calibrate
from spike.tools.dryrun import dry_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def varied_net(seed=0, bump=0):
    """16 ensembles of different sizes in 4 chains, one large enough to split."""
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=2)
        for chain in range(4):
            previous = stim
            for link in range(4):
                extra = bump if (chain, link) == (1, 2) else 0
                ens = nengo.Ensemble(40 + 15 * link + 5 * chain + extra, 2)
                nengo.Connection(previous, ens)
                previous = ens
            nengo.Probe(previous, synapse=0.01)
        big = nengo.Ensemble(400, 2)
        nengo.Connection(stim, big)
        nengo.Probe(big, synapse=0.01)
    return net


def test_calibration_measures_every_kind_of_work():
    cal = calibrate(repeats=3)
    assert set(cal.seconds_per_unit) == {"neurons", "macs", "elements", "operators"}
    assert all(0 < v < 1e-3 for v in cal.seconds_per_unit.values())
    again = type(cal).from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again.seconds_per_unit == cal.seconds_per_unit


def test_costs_count_neurons_and_multiply_adds():
    with nengo.Network(seed=0) as net:
        a = nengo.Ensemble(100, 3)
        b = nengo.Ensemble(50, 2)
        nengo.Connection(a, b, function=lambda x: x[:2])
    prepared = prepare(net)
    model, partition = prepared.model, prepared.partition
    costs = actor_costs(model, partition, DEFAULT_CALIBRATION)
    by_neurons = {actor.n_neurons: cost for actor, cost in zip(partition.actors, costs)}
    a_cost = by_neurons[100]
    assert a_cost.work["neurons"] == 100
    # encoders 100x3 + decoders 2x100
    assert a_cost.work["macs"] == 100 * 3 + 2 * 100
    assert a_cost.memory_bytes >= (100 * 3 + 2 * 100) * 8
    assert sum(op_work(op)["operators"] for op in model.operators) == len(model.operators)


@pytest.mark.slow
def test_dry_run_allocation_is_followed_and_gives_reference_results(tmp_path):
    net = varied_net()
    result = dry_run(net, max_neurons=100, n_workers=2, measure_baseline=False)
    path = tmp_path / "allocation.json"
    allocation.save(result.allocation, path)
    ref = run_reference(net, 200)
    with spike.Simulator(net, allocation=str(path), progress_bar=False) as sim:
        assert sim.n_workers == 2 and sim.max_neurons == 100
        assert [a for a in sim.split.splits] and len(sim.partition.actors) == len(
            result.allocation["actors"]
        )
        for entry in result.allocation["actors"]:
            expected = 0 if entry["worker"] is None else entry["worker"] + 1
            assert sim.placement[entry["index"]] == expected
        sim.run_steps(200)
    assert_same_probes(net, ref, sim)


def test_balance_targets_on_many_actors():
    """>= 4x more actors than workers: compute within 5% and memory within 10%."""
    result = dry_run(varied_net(), max_neurons=100, n_workers=2, measure_baseline=False)
    data = result.allocation
    figures = allocation.stats(data)
    with_neurons = [a for a in data["actors"] if a["neurons"]]
    assert len(with_neurons) >= 4 * figures["n_workers"]
    assert figures["compute_imbalance"] <= 1.05, figures
    assert figures["memory_imbalance"] <= 1.10, figures
    rebalanced = allocation.rebalance(data, 2, 2)
    assert allocation.stats(rebalanced)["n_workers"] == 4
    assert rebalanced["model"] == data["model"]


def test_allocation_for_another_model_is_refused(tmp_path):
    result = dry_run(varied_net(), max_neurons=100, n_workers=2, measure_baseline=False)
    path = tmp_path / "allocation.json"
    allocation.save(result.allocation, path)
    changed = varied_net(bump=7)  # an ensemble with 7 more neurons
    with pytest.raises(AllocationError, match="does not match this model"):
        spike.Simulator(changed, allocation=str(path), progress_bar=False)
    with nengo.Network(seed=0) as other:
        nengo.Ensemble(10, 1)
    with pytest.raises(AllocationError, match="actors"):
        spike.Simulator(other, allocation=str(path), progress_bar=False)
    with pytest.raises(nengo.exceptions.ValidationError, match="max_neurons"):
        spike.Simulator(varied_net(), allocation=str(path), max_neurons=50)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\xffnot json", "not a JSON"),
        (b'{"format": "something else"}', "not a Spike allocation"),
        (b'{"format": "spike-allocation", "version": 99}', "version 99"),
        (b'{"format": "spike-allocation", "version": 1, "machines": 1, '
         b'"workers_per_machine": 2, "links": [], "actors": [{"index": 0, '
         b'"worker": 5, "seconds_per_step": 0, "memory_bytes": 0}]}', "worker 5"),
        (b'{"format": "spike-allocation", "version": 1, "machines": 1}', "malformed"),
    ],
)
def test_malformed_allocation_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(AllocationError, match=message):
        allocation.load(str(path))


@pytest.mark.slow
def test_cli_dry_run_rebalance_stats(tmp_path):
    script = tmp_path / "model.py"
    script.write_text(
        "import nengo\n"
        "with nengo.Network(seed=1) as model:\n"
        "    s = nengo.Node([0.3])\n"
        "    a = nengo.Ensemble(300, 1)\n"
        "    nengo.Connection(s, a)\n"
        "    nengo.Probe(a, synapse=0.01)\n"
    )

    # the dry run keeps this machine's calibration in Spike's cache: a test's own
    env = dict(os.environ, SPIKE_CACHE_DIR=str(tmp_path / "cache"))

    def spike_cli(*args):
        out = subprocess.run(
            [sys.executable, "-m", "spike.tools.cli", *args], cwd=tmp_path,
            capture_output=True, text=True, timeout=300, env=env,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    out = subprocess.run(
        [sys.executable, "-m", "spike.tools.cli", "dry-run", str(script), "--max-neurons", "100",
         "-n", "2", "-d", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "suggested workers" in text and "3 parts" not in text
    usage = json.loads((tmp_path / "out" / "memory_usage.json").read_text())
    assert usage["format"] == "spike-memory-usage" and usage["objects"]
    baselines = usage["worker_baseline_bytes"]
    assert baselines["compiled"] > baselines["interpreted"] > 10e6
    assert "per exchange partner" in text
    measured = json.loads((tmp_path / "out" / "allocation.json").read_text())["calibration"]
    assert measured["exchange"]["partner_seconds"] > 0
    if measured["machine"]["busy_elsewhere"] <= BUSY_LIMIT:
        kept = json.loads((tmp_path / "cache" / "calibration.json").read_text())
        assert kept == measured and "calibration.json" in text
    else:  # other work on this machine meanwhile: measured, said, not kept
        assert not (tmp_path / "cache" / "calibration.json").exists()
        assert "of the CPUs while this was measured" in out.stderr
    spike_cli("rebalance", "out/allocation.json", "2", "-k", "2", "-o", "out/re.json",
              "--method", "graph")
    figures = json.loads(spike_cli("stats", "out/re.json", "--json", "--plot", "out/re.png"))
    assert json.loads((tmp_path / "out" / "re.json").read_text())["placement_method"] == "graph"
    assert figures["n_workers"] == 4 and len(figures["machines"]) == 2
    assert {"compute_imbalance", "memory_imbalance"} <= set(figures)
    for w in figures["workers"]:  # the peak estimate: a fresh worker's, and more
        for mode, baseline in baselines.items():
            assert w["estimated_peak_rss_bytes"][mode] > baseline
    assert (tmp_path / "out" / "re.png").stat().st_size > 1000
    assert "imbalance" in spike_cli("stats", "out/allocation.json")
    result = spike_cli("run", str(script), "--allocation", "out/allocation.json",
                       "--time", "0.05", "--no-progress", "-o", "out/run.npz")
    assert "workers: 2" in result
    for command in ("dry-run", "rebalance", "stats"):
        assert "usage" in spike_cli(command, "--help")


PEAK_MODEL = """
import nengo, numpy as np
with nengo.Network(seed=0) as net:
    stim = nengo.Node(np.linspace(-0.5, 0.5, 8))
    a = nengo.Ensemble(2000, 8, n_eval_points=200)
    b = nengo.Ensemble(2000, 8, n_eval_points=200)
    nengo.Connection(stim, a)
    nengo.Connection(a, b)
    nengo.Probe(b, synapse=0.01)
"""

PEAK_CHILD = PEAK_MODEL + """
import sys, spike
from spike.client.pool import peak_rss_bytes
with spike.Simulator(net, allocation=sys.argv[1], compile=False, progress_bar=False) as sim:
    sim.run_steps(20)
    print([peak_rss_bytes(h.pid) for peer, h in sorted(sim._session.handles.items()) if peer])
"""


@pytest.mark.slow
def test_worker_peak_memory_is_estimated_and_measured(tmp_path):
    """Each worker's peak memory is estimated (`estimated_peak_rss`: a fresh worker's
    peak and more) and read from its process, both when it prepares its share (first
    run here) and when it loads it prepared (second run). How close the two come
    depends on the machine: the bench reports it (`bench.run.share_memory_check`,
    target ±15%)."""
    from spike.plan.cost import estimated_peak_rss
    from spike.tools.dryrun import worker_baselines

    namespace = {}
    exec(PEAK_MODEL, namespace)
    result = dry_run(namespace["net"], n_workers=2, measure_baseline=False)
    path = tmp_path / "allocation.json"
    allocation.save(result.allocation, path)
    workers = allocation.stats(result.allocation)["workers"]
    env = dict(os.environ, SPIKE_CACHE_DIR=str(tmp_path / "cache"))  # an empty share cache
    baseline = worker_baselines(compiled=False)["interpreted"]
    assert baseline > 10e6  # Python, numpy and nengo at least
    estimates = [
        estimated_peak_rss(w["memory_bytes"], w["operators"], baseline) for w in workers
    ]
    assert len(estimates) == 2
    for w, estimate in zip(workers, estimates):
        assert w["memory_bytes"] > 2000 * 8 * 8  # at least an ensemble's encoders
        assert estimate > baseline + w["memory_bytes"]
    shares = tmp_path / "cache" / "shares"
    for run in ("prepared here", "loaded prepared"):
        out = subprocess.run(
            [sys.executable, "-c", PEAK_CHILD, str(path)], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        assert len(measured) == 2 and all(isinstance(m, int) and m > 0 for m in measured), run
        kept = sorted(shares.glob("*.pkl"))
        assert len(kept) == 2, run  # the first run kept both shares, the second loaded them
        if run == "prepared here":
            first_kept = [(p.name, p.stat().st_ino) for p in kept]
    # loaded, not prepared and written again (a share is written to a new file)
    assert [(p.name, p.stat().st_ino) for p in kept] == first_kept
