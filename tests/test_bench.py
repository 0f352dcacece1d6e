"""The benchmark code runs on tiny models, so it cannot rot (`make bench` runs it full size)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the whole bench, tiny, in child processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_runs_tiny_and_writes_json_and_markdown(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--time", "0.02",
         "--models", "two_big", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert {r["model"] for r in data["results"]} == {"two_big"}
    spike_configs = {
        "spike 1w", "spike 2w", "spike 1w compiled", "spike 2w compiled",
        "spike 2w compiled float32", "spike 2w compiled cold cache",
        "spike 2w split 5000", "spike 2w compiled split 5000",
    }
    # nengo-ocl beside nengo where it can run; otherwise the summary says why not
    peer = data["summary"][0].get("peer", {}).get("nengo-ocl")
    if peer is not None and "unavailable" in peer:
        assert data["peers_unavailable"] == {"two_big": peer["unavailable"]}
        assert "did not run: " in (tmp_path / "results.md").read_text()
        peers = set()
    else:
        assert peer["spike_best_vs_peer"] > 0 and peer["speedup_vs_nengo"] > 0
        peers = {"nengo-ocl"}
    assert {r["config"] for r in data["results"]} == {"nengo"} | peers | spike_configs
    for row in data["summary"]:
        assert row["spike"]["spike 2w compiled"]["run_speedup"] > 0
        assert row["best"]["config"] in row["spike"] and "cold" not in row["best"]["config"]
        assert row["cold_build_ratio"] > 0
        assert row["roofline_s_per_step"] > 0
    for r in data["results"]:
        assert r["run_s"] > 0 and r["rss_client_mb"] > 0
        if r["backend"] == "spike":
            assert len(r["rss_workers_mb"]) >= 1
            timings = r["worker_us_per_step"]
            assert len(timings) == r["workers"]
            assert all(t["compute"] > 0 for t in timings.values())
    split = [r for r in data["results"] if "split" in r["config"]]
    assert split and all(r["split_ensembles"] == 2 for r in split)
    assert all(r["compute_imbalance"] >= 1 for r in split)
    assert data["exchange"]["two_workers_us_per_step"] > 0
    # every warm Spike configuration's workers: estimated against measured peak memory
    memory = data["memory_check"]
    assert {m["config"] for m in memory} == {
        r["config"] for r in data["results"] if r["backend"] == "spike" and not r["cold_cache"]
    }
    for m in memory:
        assert m["estimated_mb"] > 0 and m["measured_mb"] > 0
        assert m["within_tolerance"] == (abs(m["measured_mb"] / m["estimated_mb"] - 1) <= 0.15)
    # and one model's workers when they prepare their share, then load it prepared
    share = data["share_memory_check"]
    assert [(r["share"], r["worker"]) for r in share] == [
        (run, w) for run in ("prepared in the worker", "loaded prepared") for w in (0, 1)
    ]
    for r in share:
        assert r["estimated_mb"] > r["data_mb"] > 0 and r["measured_mb"] > 0
        assert r["ratio"] == r["measured_mb"] / r["estimated_mb"]
        assert r["within_tolerance"] == (abs(r["ratio"] - 1) <= 0.15)
    text = (tmp_path / "results.md").read_text()
    assert text.index("## Best configuration") < text.index("## Absolute figures")
    assert "## Memory: estimated and measured peak per worker" in text
    assert "## Memory: a share prepared in the worker, and loaded prepared" in text
    assert text.count("measured / estimated") >= 1 + len(share)  # the table, a line each
    assert "## Where a step's time goes, per worker" in text
    assert "cores" in text and "GB/s" in text
