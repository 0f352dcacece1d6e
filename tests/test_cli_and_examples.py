"""`spike run` on every example, and each example's results against nengo.Simulator."""

import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_equivalent

import spike

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(
    f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py")
)


def spike_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "spike.tools.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_there_are_the_promised_examples():
    for name in ("matrix_multiplication.py", "communication_channel.py", "integrator.py"):
        assert name in EXAMPLES
    assert "stream.py" in EXAMPLES  # the larger model


QUICK_EXAMPLES = {"matrix_multiplication.py", "integrator.py"}
"""Examples small enough for the fast tier (``-m "not slow"``); the others are slow."""


@pytest.mark.parametrize("example", [
    example if example in QUICK_EXAMPLES else pytest.param(example, marks=pytest.mark.slow)
    for example in EXAMPLES
])
def test_example_matches_reference(example):
    namespace = runpy.run_path(os.path.join(ROOT, "examples", example), run_name="__spike__")
    assert_equivalent(namespace["model"], steps=100, workers=2)


@pytest.mark.slow
def test_circular_convolution_example_binds_on_both_workers():
    namespace = runpy.run_path(
        os.path.join(ROOT, "examples", "circular_convolution.py"), run_name="__spike__"
    )
    with spike.Simulator(namespace["model"], workers=2, progress_bar=False) as sim:
        sim.run(0.3)
        assert len(sim.split.divisions) == 1
        workers = {sim.placement[a.index] for a in sim.partition.actors if a.n_neurons}
        assert len(workers) == 2
    decoded = sim.data[namespace["result"]][-100:].mean(axis=0)
    expected = namespace["EXPECTED"]
    similarity = decoded @ expected / (np.linalg.norm(decoded) * np.linalg.norm(expected))
    assert similarity > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("example", ["matrix_multiplication.py", "integrator.py"])
def test_spike_run_writes_probes_summary_and_plot(example, tmp_path):
    out = tmp_path / "probes.npz"
    png = tmp_path / "probes.png"
    result = spike_cli(
        "run", os.path.join(ROOT, "examples", example), "--workers", "2",
        "--time", "0.2", "-o", str(out), "--plot", str(png), "--no-progress",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "workers: 2" in result.stdout and "200 steps" in result.stdout
    assert "time per step (µs): compute" in result.stdout
    if example == "matrix_multiplication.py":  # its Product network is divided
        assert "actors held together by passthrough Nodes divided" in result.stdout
    data = np.load(out)
    assert data["t"].shape == (200,)
    probe_keys = [k for k in data.files if k.startswith("p")]
    assert probe_keys and all(data[k].shape[0] == 200 for k in probe_keys)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_spike_run_reports_a_script_without_model(tmp_path):
    script = tmp_path / "nomodel.py"
    script.write_text("x = 1\n")
    result = spike_cli("run", str(script), cwd=tmp_path)
    assert result.returncode != 0
    assert "must define `model`, a nengo.Network" in result.stderr


def test_help_explains_commands(tmp_path):
    result = spike_cli("run", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--workers", "--time", "--plot", "--out", "--placement"):
        assert option in result.stdout
