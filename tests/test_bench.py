"""The benchmark code runs on tiny models, so it cannot rot (`make bench` runs it full size)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_runs_tiny_and_writes_json_and_markdown(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--time", "0.02",
         "--models", "stream,two_big", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert {r["model"] for r in data["results"]} == {"stream", "two_big"}
    assert {(r["backend"], r["workers"]) for r in data["results"]} == {
        ("nengo", None), ("spike", 1), ("spike", 2)
    }
    for row in data["summary"]:
        assert row["spike"]["2"]["run_speedup"] > 0
        assert row["roofline_s_per_step"] > 0
    for r in data["results"]:
        assert r["run_s"] > 0 and r["rss_client_mb"] > 0
        if r["backend"] == "spike":
            assert len(r["rss_workers_mb"]) >= 1
    assert data["exchange"]["two_workers_us_per_step"] > 0
    text = (tmp_path / "results.md").read_text()
    assert text.index("## Ratios") < text.index("## Absolute figures")
    assert "cores" in text and "GB/s" in text
