"""Long-lived daemons: ``spike cluster start|stop|status`` and ``spike monitor``.

``start`` starts a daemon for each hostfile line: over SSH with ``--ssh`` (see
`spike.cluster.ssh`), or, for hosts that are addresses of this machine, as a detached local
process (its log and pid file in ``--state-dir``, default ``~/.local/state/spike``).
``stop`` asks each daemon to stop (an authorised ``shutdown`` request), which stops
its workers too. ``status`` and ``monitor`` ask each daemon for its status: CPU,
memory, load, and every worker's steps per second and waiting time.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import time

from spike import config
from spike.cluster.hostfile import as_hosts
from spike.cluster.links import Query
from spike.cluster.ssh import start_daemons
from spike.comm import protocol
from spike.exceptions import HostError

logger = logging.getLogger(__name__)


def default_state_dir():
    """``$XDG_STATE_HOME/spike`` (``~/.local/state/spike``): logs of local daemons."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "spike")


def local_addresses():
    """Addresses of this machine (loopback and those of its interfaces)."""
    found = {"127.0.0.1", "::1", "localhost", socket.gethostname()}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(info[4][0])
    except OSError:
        pass
    return found


def is_local(host):
    return host.name in local_addresses() or host.name.startswith("127.")


def start_local(host, keys_dir=None, state_dir=None, slots=None, python=None):
    """Start a detached daemon on this machine for ``host``; return its pid.

    It listens on ``host.name``, port ``host.port``; its log is
    ``state_dir/daemon-PORT.log``.
    """
    state_dir = state_dir or default_state_dir()
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    log = os.path.join(state_dir, f"daemon-{host.port}.log")
    cmd = [
        python or sys.executable, "-m", "spike.cluster.daemon", "--listen", host.name,
        "--port", str(host.port), "--log-file", log,
        "--pid-file", os.path.join(state_dir, f"daemon-{host.port}.pid"),
    ]
    if keys_dir:
        cmd += ["--keys", keys_dir]
    if slots or host.slots:
        cmd += ["--slots", str(slots or host.slots)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=config.child_environment(), start_new_session=True, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("spike-daemon listening"):
        proc.wait(timeout=10)
        raise HostError(
            f"host {host}: the daemon did not start: {proc.stderr.read().strip()}", str(host)
        )
    proc.stdout.close()
    proc.stderr.close()
    return proc.pid


def start(hosts, keys_dir=None, ssh=False, state_dir=None, out=sys.stdout):
    """Start a daemon for every host not already answering. Returns the failures."""
    hosts = as_hosts(hosts)
    failures = {}
    if not ssh:  # refuse remote hosts before sending them anything
        for host in hosts:
            if not is_local(host):
                failures[str(host)] = (
                    f"host {host} is not this machine: start its daemon there, or use --ssh"
                )
        hosts = [h for h in hosts if is_local(h)]
        if not hosts:
            return failures
    with Query(hosts, keys_dir) as query:
        running = query.ask(timeout=1.0)
    to_start = [h for h in hosts if "error" in running[str(h)]]
    for host in hosts:
        if host not in to_start:
            out.write(f"{host}: already running (pid {running[str(host)].get('pid')})\n")
    if ssh and to_start:
        for host, result in start_daemons(to_start, keys_dir=keys_dir).items():
            if isinstance(result, Exception):
                failures[str(host)] = str(result)
            else:
                out.write(f"{host}: started over SSH (pid {result})\n")
        return failures
    for host in to_start:
        try:
            pid = start_local(host, keys_dir, state_dir)
            out.write(f"{host}: started (pid {pid})\n")
        except HostError as e:
            failures[str(host)] = str(e)
    return failures


def stop(hosts, keys_dir=None, out=sys.stdout):
    """Ask every daemon to stop (with its workers). Returns the hosts that did not answer."""
    with Query(hosts, keys_dir) as query:
        replies = query.ask(protocol.SHUTDOWN)
    failures = {}
    for host, reply in replies.items():
        if "error" in reply:
            failures[host] = reply["error"]
        else:
            out.write(f"{host}: stopped\n")
    return failures


def _mib(n):
    return f"{n / 2**20:,.0f}"


def render(statuses):
    """A text table of ``{host: status}`` (what `spike monitor` draws)."""
    lines = [
        f"{'host':<24} {'CPU %':>6} {'load':>6} {'memory used/total MiB':>22} "
        f"{'workers':>8} {'steps/s':>9} {'wait %':>7}"
    ]
    for host, status in statuses.items():
        if "error" in status:
            lines.append(f"{host:<24} DOWN: {status['error']}")
            continue
        workers = [w for job in status.get("jobs", []) for w in job["workers"]]
        rates = [w["rate"] for w in workers]
        waits = [w["wait"] for w in workers if w.get("wait") is not None]
        used = status["mem_total"] - status["mem_available"]
        load = status["load"][0] if status.get("load") else float("nan")
        lines.append(
            f"{host:<24} {status['cpu']:>6.1f} {load:>6.2f} "
            f"{_mib(used):>10}/{_mib(status['mem_total']):<11} "
            f"{len(workers):>4}/{status['slots']:<3} {sum(rates):>9.0f} "
            f"{(sum(waits) / len(waits)) if waits else 0:>7.1f}"
        )
        for job in status.get("jobs", []):
            for w in job["workers"]:
                wait = "-" if w.get("wait") is None else f"{w['wait']:.1f}"
                lines.append(
                    f"  job {job['job']} worker {w['id']:<18} pid {w['pid']:<8} "
                    f"CPU {w['cpu']:>5.1f}%  RSS {_mib(w['rss']):>6} MiB  "
                    f"{w['rate']:>8.0f} steps/s  step {w['steps']:<9} wait {wait}%"
                )
    return "\n".join(lines)


def monitor(hosts, keys_dir=None, interval=1.0, once=False, as_json=False, out=sys.stdout,
            count=None):
    """Show every host's status; refresh every ``interval`` s until Ctrl-C (or ``count``)."""
    with Query(hosts, keys_dir) as query:
        shown = 0
        while True:
            statuses = query.ask()
            if as_json:
                out.write(json.dumps({"time": time.time(), "hosts": statuses}) + "\n")
            else:
                if not once:
                    out.write("\x1b[H\x1b[2J")  # home, clear screen
                stamp = time.strftime("%H:%M:%S")
                out.write(f"spike monitor  {stamp}  ({len(statuses)} hosts)\n")
                out.write(render(statuses) + "\n")
            out.flush()
            shown += 1
            if once or (count is not None and shown >= count):
                return statuses
            time.sleep(interval)
