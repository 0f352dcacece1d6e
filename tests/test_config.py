"""`spike.config`: every SPIKE_* variable read in one place, and the CLI honouring it."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from spike import config
from spike.exceptions import ConfigError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_no_module_reads_a_spike_variable_itself():
    """Only spike/config.py reads SPIKE_* variables (a worker's or daemon's environment
    may be *set* elsewhere)."""
    reading = re.compile(
        r"""(environ\.get|getenv)\(\s*["']SPIKE_|environ\[\s*["']SPIKE_\w+["']\s*\](?!\s*=)"""
    )
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "spike").rglob("*.py")
        if path.name != "config.py" and reading.search(path.read_text())
    ]
    assert offenders == []


def test_every_variable_the_package_names_is_declared():
    named = set()
    for path in (ROOT / "spike").rglob("*.py"):
        named.update(re.findall(r"\bSPIKE_[A-Z_]+\b", path.read_text()))
    named -= {"SPIKE_TIMES_FROM_LIBM"}  # a constant of the compiler, not a variable
    assert named <= set(config.VARIABLES), named - set(config.VARIABLES)


@pytest.mark.parametrize(
    "text, value", [("1", True), ("yes", True), ("0", False), ("off", False), ("auto", "auto")]
)
def test_compile_mode_is_parsed(monkeypatch, text, value):
    monkeypatch.setenv("SPIKE_COMPILE", text)
    assert config.get("SPIKE_COMPILE") == value


def test_defaults_apply_when_unset(monkeypatch):
    for name in config.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert config.get("SPIKE_COMPILE") == "auto"
    assert config.get("SPIKE_WORKERS") is None
    assert config.get("SPIKE_SHARE_CACHE") is True
    assert config.get("SPIKE_SSH_DAEMON_ARGS") == []
    assert config.get("SPIKE_CONNECT_TIMEOUT") == 5.0


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("SPIKE_WORKERS", "many")
    with pytest.raises(ConfigError, match="SPIKE_WORKERS='many'"):
        config.get("SPIKE_WORKERS")
    monkeypatch.setenv("SPIKE_EXCHANGE", "carrier-pigeon")
    with pytest.raises(ConfigError, match="SPIKE_EXCHANGE"):
        config.get("SPIKE_EXCHANGE")


def test_cache_dir_follows_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKE_CACHE_DIR", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPIKE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "spike"


def spike_cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "spike.tools.cli", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )


def test_spike_config_lists_every_variable():
    result = spike_cli("config")
    assert result.returncode == 0, result.stderr
    for name in config.VARIABLES:
        assert name in result.stdout


@pytest.mark.parametrize("setting, shown", [("0", "compile: no"), ("1", "compile: yes")])
def test_spike_run_honours_spike_compile(tmp_path, setting, shown):
    """`spike run` without --compile takes SPIKE_COMPILE (the README says it sets the
    default); --compile still wins."""
    model = tmp_path / "model.py"
    model.write_text(
        "import nengo\n"
        "with nengo.Network(seed=1) as model:\n"
        "    a = nengo.Ensemble(20, 1)\n"
        "    nengo.Probe(a)\n"
    )
    env = dict(os.environ, SPIKE_COMPILE=setting)
    result = spike_cli("run", str(model), "--workers", "1", "--time", "0.01",
                       "--no-progress", "-o", str(tmp_path / "o.npz"), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout
    result = spike_cli("run", str(model), "--workers", "1", "--time", "0.01", "--compile",
                       "auto", "--no-progress", "-o", str(tmp_path / "o.npz"), env=env,
                       cwd=tmp_path)
    assert "compile: auto" in result.stdout


def test_spike_run_names_a_bad_setting(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import nengo\nmodel = nengo.Network()\n")
    env = dict(os.environ, SPIKE_COMPILE="sometimes")
    result = spike_cli("run", str(model), "--no-progress", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "SPIKE_COMPILE='sometimes'" in result.stderr


def test_children_import_this_spike(tmp_path):
    """A worker or daemon started with `config.child_environment` imports the Spike
    the client runs (a checkout or worktree), whatever else is installed."""
    result = subprocess.run(
        [sys.executable, "-P", "-c", "import spike; print(spike.__file__)"],
        env=config.child_environment(), cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert pathlib.Path(result.stdout.strip()) == ROOT / "spike" / "__init__.py"
