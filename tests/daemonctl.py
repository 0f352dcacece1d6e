"""Starting and stopping real `spike-daemon` processes for tests (loopback only).

Every daemon a test starts listens on 127.0.0.1 (or an address of a network namespace
the test made), is a real process, and is stopped by its pid when the test ends.
"""

import ctypes
import os
import signal
import subprocess
import sys

from conftest import wait_gone as wait_gone_within

from spike.cluster.daemon import remove_stale_directories

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env():
    """The environment of a daemon: this checkout's spike first on PYTHONPATH."""
    result = dict(os.environ)
    result["PYTHONPATH"] = os.pathsep.join(
        [REPO] + [p for p in result.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return result


def die_with_test():
    """In the child: SIGTERM when the test process dies (no daemon outlives a test run)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class DaemonProcess:
    """A running ``python -m spike.cluster.daemon``.

    Attributes
    ----------
    proc : subprocess.Popen
    address : str
        ``tcp://host:port`` it listens on.
    host : str
        ``host:port``, as a hostfile names it.
    log : str
        Path of its log file.
    """

    def __init__(self, keys_dir, log, listen="127.0.0.1", slots=2, job_timeout=10.0,
                 extra=(), prefix=()):
        cmd = list(prefix) + [
            sys.executable, "-m", "spike.cluster.daemon", "--keys", str(keys_dir),
            "--listen", listen, "--port", "0", "--slots", str(slots),
            "--job-timeout", str(job_timeout), "--log-file", str(log),
            "--log-level", "INFO", *extra,
        ]
        self.log = str(log)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env(),
            preexec_fn=die_with_test,
        )
        line = self.proc.stdout.readline().split()
        if len(line) < 4 or line[:3] != ["spike-daemon", "listening", "on"]:
            self.stop()
            raise RuntimeError(f"daemon did not start: {line!r}; log: {self.read_log()}")
        self.address = line[3]
        self.pid = int(line[5]) if len(line) > 5 else self.proc.pid
        self.host = self.address[len("tcp://"):]

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        remove_stale_directories()

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        remove_stale_directories()  # those of daemons killed with SIGKILL


def wait_gone(pids, timeout=10.0):
    """`conftest.wait_gone`, with time for daemons to reap their workers."""
    return wait_gone_within(pids, timeout)


def children(pid):
    """PIDs of the live child processes of ``pid``."""
    result = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            result.append(int(entry))
    return result
