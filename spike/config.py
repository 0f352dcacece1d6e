"""Spike's settings from the environment: every ``SPIKE_*`` variable, read here only.

Each variable is declared once in `VARIABLES`, with its default and what it does;
the documentation's table of settings is made from that list
(``docs/user-guide/configuration``), and `describe` prints it. Modules ask for a
setting by name (``config.get("SPIKE_COMPILE")``) or through the helpers below, at
the moment they need it, so a variable set by a test or a script before a Simulator
is made takes effect.
"""

import copy
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from spike.exceptions import ConfigError


def _flag(text):
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 0/1, yes/no, on/off or true/false, not {text!r}")


def _compile_mode(text):
    if text.strip().lower() == "auto":
        return "auto"
    return _flag(text)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _choice(*allowed):
    def parse(text):
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, not {text!r}")
        return text

    return parse


def _text(text):
    return text


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default (the parsed value used when it
    is unset; None: no value), parser and meaning."""

    name: str
    default: object
    parse: object
    doc: str
    used_by: str


VARIABLES = {
    v.name: v
    for v in [
        Variable(
            "SPIKE_WORKERS", None, _positive_int,
            "Number of local workers of a Simulator given no ``workers``; unset, "
            "Spike chooses per model (one to one per core).",
            "spike.Simulator",
        ),
        Variable(
            "SPIKE_COMPILE", "auto", _compile_mode,
            "Default ``compile`` of a Simulator and of ``spike run``: ``1`` compiles "
            "every worker's step, ``0`` none, ``auto`` where it pays.",
            "spike.Simulator, spike run",
        ),
        Variable(
            "SPIKE_EXCHANGE", "shm", _choice("shm", "zmq"),
            "``zmq`` sends every per-step value over ZeroMQ, even between peers on "
            "one host (``shm``: shared-memory rings there).",
            "spike.client.session",
        ),
        Variable(
            "SPIKE_CACHE_DIR", None, _text,
            "Where Spike keeps compiled code, prepared shares and this machine's "
            "calibration (default ``$XDG_CACHE_HOME/spike``, ``~/.cache/spike``).",
            "spike.runtime.compiler, spike.runtime.shares, spike.plan.calibration",
        ),
        Variable(
            "SPIKE_SHARE_CACHE", True, _flag,
            "``0`` turns off the cache of workers' prepared shares.",
            "spike.runtime.shares",
        ),
        Variable(
            "SPIKE_LOG_LEVEL", "WARNING", _text,
            "Log level of workers and daemons (``DEBUG``, ``INFO``, ...); a client "
            "passes its own to the workers it starts on other hosts.",
            "spike.runtime.worker, spike.cluster",
        ),
        Variable(
            "SPIKE_KEYS_DIR", None, _text,
            "Key directory of clients and daemons (default "
            "``$XDG_CONFIG_HOME/spike/keys``, ``~/.config/spike/keys``).",
            "spike.cluster.keys",
        ),
        Variable(
            "SPIKE_CONNECT_TIMEOUT", 5.0, float,
            "Seconds a client waits for a host's daemon to answer before naming it "
            "unreachable.",
            "spike.cluster.hostpool",
        ),
        Variable(
            "SPIKE_HEARTBEAT_TIMEOUT", 3.0, float,
            "Seconds without a daemon's heartbeat before its host is named lost.",
            "spike.cluster.hostpool",
        ),
        Variable(
            "SPIKE_CLIENT_ADDRESS", None, _text,
            "The address workers on other hosts reach this client at (default: the "
            "address of the interface towards the first host).",
            "spike.cluster.hostpool",
        ),
        Variable(
            "SPIKE_SSH_CONFIG", None, _text,
            "The SSH client configuration file read for ``ssh=True`` (default "
            "``~/.ssh/config``).",
            "spike.cluster.ssh",
        ),
        Variable(
            "SPIKE_REMOTE_PYTHON", "python3", _text,
            "The Python that runs ``spike.cluster.daemon`` on hosts reached over SSH.",
            "spike.cluster.ssh",
        ),
        Variable(
            "SPIKE_REMOTE_KEYS", ".config/spike/keys", _text,
            "Where the daemon's keys are uploaded on hosts reached over SSH "
            "(relative to the login's home).",
            "spike.cluster.ssh",
        ),
        Variable(
            "SPIKE_REMOTE_STATE", ".local/state/spike", _text,
            "Where daemons started over SSH keep their logs (relative to the home).",
            "spike.cluster.ssh",
        ),
        Variable(
            "SPIKE_SSH_DAEMON_ARGS", [], shlex.split,
            "Extra arguments for daemons started over SSH (a shell-quoted string).",
            "spike.cluster.ssh",
        ),
        Variable(
            "SPIKE_TEST_WORKERS", 2, _positive_int,
            "Workers of every Simulator in nengo's own test suite run against Spike.",
            "spike.testing",
        ),
    ]
}


def get(name):
    """The value of setting ``name`` now: parsed from the environment, else its default.

    Raises
    ------
    spike.exceptions.ConfigError
        If the variable is set to something its parser refuses; the message names
        the variable.
    """
    variable = VARIABLES[name]
    text = os.environ.get(name)
    if text is None or text == "":
        return copy.copy(variable.default)  # a list default is not shared
    try:
        return variable.parse(text)
    except ValueError as e:
        raise ConfigError(f"{name}={text!r}: {e}") from None


def cache_dir():
    """The directory Spike owns for compiled code, shares and calibration (not created)."""
    explicit = get("SPIKE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "spike"


def keys_dir():
    """The key directory of this client or daemon (not created)."""
    explicit = get("SPIKE_KEYS_DIR")
    if explicit:
        return explicit
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "spike", "keys")


PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
"""The directory this Spike is imported from (the folder holding ``spike/``)."""


def child_environment(extra=None):
    """The environment for a Spike process started from this one (a worker, a
    daemon): this one's, with ``extra`` on top and `PACKAGE_PARENT` first on
    ``PYTHONPATH``, so that the child imports this same Spike (a checkout, a
    worktree), not another one that happens to be installed."""
    env = dict(os.environ)
    env.update(extra or {})
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != PACKAGE_PARENT]
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + kept)
    return env


def describe():
    """A table of every setting: name, current value, default and meaning."""
    lines = []
    for variable in VARIABLES.values():
        current = os.environ.get(variable.name)
        shown = "(unset)" if current is None else repr(current)
        lines.append(f"{variable.name} = {shown}  (default {variable.default!r})")
        lines.append(f"    {variable.doc}")
    return "\n".join(lines)
