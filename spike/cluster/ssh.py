"""Starting and stopping host daemons over SSH (paramiko).

``spike.Simulator(net, hosts=..., ssh=True)``, ``spike run --ssh`` and
``spike cluster start --ssh`` log in to each host that has no daemon answering, with
keys only (your agent, ``~/.ssh/id_*``, or the ``IdentityFile`` of ``~/.ssh/config``),
and:

1. copy the daemon's part of the key directory there with SFTP (``daemon.key``,
   ``daemon.key_secret`` with mode 0600, ``authorized/*.key``; never the client's
   secret) into ``~/.config/spike/keys`` (``SPIKE_REMOTE_KEYS`` names another directory);
2. start ``python3 -m spike.cluster.daemon --listen ADDRESS --port PORT`` detached
   (``setsid nohup``), where ADDRESS is the host's address as this client resolves it:
   the daemon listens there only;
3. wait until it answers a status request over CURVE.

``~/.ssh/config`` is honoured (``HostName``, ``User``, ``Port``, ``IdentityFile``,
``UserKnownHostsFile``, ``StrictHostKeyChecking``); ``SPIKE_SSH_CONFIG`` names another
file. Host keys are checked against ``known_hosts`` by default: an unknown host is
refused unless its ``StrictHostKeyChecking`` is ``no`` or ``accept-new``.

Spike must be installed on the hosts: ``SPIKE_REMOTE_PYTHON`` (default ``python3``) is
the command that runs it there (it may start with ``env VAR=value``).
``SPIKE_SSH_DAEMON_ARGS`` adds options to the daemon's command line (for example
``--slots 4 --job-timeout 5``).
"""

import concurrent.futures
import logging
import os
import posixpath
import secrets
import shlex
import socket
import time

from spike import config
from spike.cluster import keys as keyfiles
from spike.cluster.hostfile import as_hosts
from spike.cluster.hostpool import HostPool, check_on_unreachable
from spike.cluster.links import Query
from spike.comm import protocol
from spike.exceptions import HostError

logger = logging.getLogger(__name__)

REMOTE_KEYS = ".config/spike/keys"
"""Key directory on the hosts, relative to the login's home."""
REMOTE_STATE = ".local/state/spike"
"""Logs and pid files of daemons started over SSH, relative to the login's home."""
CONNECT_TIMEOUT = 10.0
START_TIMEOUT = 30.0


def _paramiko():
    try:
        import paramiko
    except ImportError:  # pragma: no cover - a dependency of spike
        raise HostError("ssh=True needs paramiko (pip install paramiko)") from None
    return paramiko


def ssh_config_path():
    return config.get("SPIKE_SSH_CONFIG") or os.path.expanduser("~/.ssh/config")


def lookup(name):
    """The ``~/.ssh/config`` entry for host ``name`` (a dict, lower-case keys)."""
    paramiko = _paramiko()
    path = ssh_config_path()
    if not os.path.exists(path):
        return {"hostname": name}
    return paramiko.SSHConfig.from_path(path).lookup(name)


def connect(name, timeout=CONNECT_TIMEOUT):
    """An authenticated `paramiko.SSHClient` to host ``name`` (keys only).

    Raises
    ------
    HostError
        If the host is unreachable, unknown (host key not in known_hosts), has a
        different host key, or refuses our keys.
    """
    paramiko = _paramiko()
    config = lookup(name)
    client = paramiko.SSHClient()
    known = config.get("userknownhostsfile")
    files = known.split() if known else [os.path.expanduser("~/.ssh/known_hosts")]
    for path in files:
        path = os.path.expanduser(path)
        if os.path.exists(path):
            client.load_host_keys(path)
    checking = config.get("stricthostkeychecking", "yes").lower()
    if checking in ("no", "off", "accept-new"):
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    identity = [os.path.expanduser(p) for p in config.get("identityfile", [])]
    try:
        client.connect(
            config.get("hostname", name),
            port=int(config.get("port", 22)),
            username=config.get("user"),
            key_filename=identity or None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=True,
            look_for_keys=not identity,
        )
    except paramiko.BadHostKeyException as e:
        client.close()
        raise HostError(f"host {name}: its SSH host key changed! ({e})", name) from None
    except paramiko.SSHException as e:
        client.close()
        raise HostError(f"host {name}: SSH: {e}", name) from None
    except OSError as e:  # includes timeouts
        client.close()
        raise HostError(f"host {name}: cannot reach SSH: {e}", name) from None
    return client


def run(client, command, timeout=60.0):
    """Run ``command`` on the host; return (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


def remote_paths():
    """Key and state directories on the hosts (``SPIKE_REMOTE_KEYS`` and
    ``SPIKE_REMOTE_STATE`` override; relative paths are from the login's home)."""
    return (
        config.get("SPIKE_REMOTE_KEYS"),
        config.get("SPIKE_REMOTE_STATE"),
    )


def upload_keys(client, keys_dir):
    """Copy the daemon's keys (never the client's secret) to the host, mode 0600.

    Returns
    -------
    home, keys : str
        The login's home directory and the key directory there.
    """
    sftp = client.open_sftp()
    try:
        home = sftp.normalize(".")
        remote = posixpath.join(home, remote_paths()[0])
        path = "/"
        for part in posixpath.join(remote, keyfiles.AUTHORIZED).split("/"):
            path = posixpath.join(path, part)
            try:
                sftp.stat(path)
            except OSError:
                try:
                    sftp.mkdir(path, 0o700)
                except OSError:  # made meanwhile (another upload to a shared home)?
                    sftp.stat(path)
        files = [f"{keyfiles.DAEMON}.key", f"{keyfiles.DAEMON}.key_secret"]
        local_auth = os.path.join(keys_dir, keyfiles.AUTHORIZED)
        files += [
            posixpath.join(keyfiles.AUTHORIZED, f)
            for f in sorted(os.listdir(local_auth)) if f.endswith(".key")
        ]
        for name in files:
            target = posixpath.join(remote, name)
            temporary = f"{target}.{secrets.token_hex(4)}.tmp"
            with sftp.open(temporary, "wb") as f:
                f.chmod(0o600)
                with open(os.path.join(keys_dir, name), "rb") as local:
                    f.write(local.read())
            sftp.posix_rename(temporary, target)
        return home, remote
    finally:
        sftp.close()


def resolve(name):
    """The address the client reaches ``name`` at (the daemon listens there)."""
    config = lookup(name)
    target = config.get("hostname", name)
    try:
        return socket.getaddrinfo(target, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as e:
        raise HostError(f"host {name}: cannot resolve {target}: {e}", name) from None


def start_daemon(host, keys_dir=None, python=None, extra_args=None):
    """Start a daemon on ``host`` over SSH; return its pid once it answers.

    Parameters
    ----------
    host : Host
    keys_dir : str, optional
        Local key directory (its daemon keys and authorized clients are copied).
    python : str, optional
        Command running Python with Spike on the host (``SPIKE_REMOTE_PYTHON``,
        default ``python3``).
    extra_args : list of str, optional
        More daemon options (``SPIKE_SSH_DAEMON_ARGS``).
    """
    keys_dir = keys_dir or keyfiles.default_keys_dir()
    python = python or config.get("SPIKE_REMOTE_PYTHON")
    if extra_args is None:
        extra_args = config.get("SPIKE_SSH_DAEMON_ARGS")
    try:
        return _start_daemon(host, keys_dir, python, extra_args)
    except HostError as e:
        if e.host == str(host):
            raise
        raise HostError(str(e), str(host)) from None


def _start_daemon(host, keys_dir, python, extra_args):
    address = resolve(host.name)
    client = connect(host.name)
    try:
        home, remote_keys = upload_keys(client, keys_dir)
        state = posixpath.join(home, remote_paths()[1])
        log = posixpath.join(state, f"daemon-{host.port}.log")
        args = ["-m", "spike.cluster.daemon", "--listen", address, "--port", str(host.port),
                "--keys", remote_keys, "--log-file", log]
        if host.slots:
            args += ["--slots", str(host.slots)]
        args += extra_args
        status, _, err = run(client, f"mkdir -p -m 700 {shlex.quote(state)}")
        if status != 0:
            raise HostError(f"host {host}: cannot create {state}: {err.strip()}", str(host))
        # detached, every stream redirected, so that the SSH channel closes at once
        command = (
            f"setsid nohup {python} {' '.join(shlex.quote(a) for a in args)} "
            f"> {shlex.quote(log + '.out')} 2>&1 < /dev/null & echo $!"
        )
        status, out, err = run(client, command)
        if status != 0 or not out.strip().isdigit():
            raise HostError(f"host {host}: cannot start the daemon: {err.strip() or out}", str(host))
        pid = int(out.strip())
        with Query([host], keys_dir) as query:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                reply = query.ask(timeout=1.0)[str(host)]
                if "error" not in reply:
                    break
                alive, _, _ = run(client, f"kill -0 {pid}")
                if alive != 0 or time.monotonic() > deadline:
                    _, tail, _ = run(client, f"tail -n 5 {shlex.quote(log + '.out')}")
                    raise HostError(
                        f"host {host}: the daemon did not start: {tail.strip() or reply['error']}",
                        str(host),
                    )
        logger.info("started the daemon of %s over SSH (pid %d)", host, pid)
        return pid
    finally:
        client.close()


def start_daemons(hosts, keys_dir=None):
    """Start daemons on ``hosts`` in parallel: ``{host: pid or the HostError}``."""
    hosts = as_hosts(hosts)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        futures = {h: pool.submit(start_daemon, h, keys_dir) for h in hosts}
    results = {}
    for host, future in futures.items():
        try:
            results[host] = future.result()
        except HostError as e:
            results[host] = e
    return results


def stop_daemon(host, pid, keys_dir=None):
    """Stop a daemon started over SSH: a shutdown request, else ``kill`` over SSH."""
    with Query([host], keys_dir) as query:
        reply = query.ask(protocol.SHUTDOWN, timeout=3.0)[str(host)]
    if "error" not in reply:
        return True
    try:
        client = connect(host.name, timeout=5.0)
    except HostError as e:
        logger.warning("cannot stop the daemon of %s (pid %d): %s", host, pid, e)
        return False
    try:
        status, _, _ = run(client, f"kill {pid}", timeout=10.0)
        return status == 0
    finally:
        client.close()


class SSHHostPool(HostPool):
    """A `HostPool` whose daemons it starts over SSH, and stops at shutdown.

    Hosts whose daemon already answers are used as they are (and left running).
    """

    def __init__(self, hosts, keys_dir=None, on_unreachable="error", **options):
        check_on_unreachable(on_unreachable)
        hosts = as_hosts(hosts)
        self.started = {}
        with Query(hosts, keys_dir) as query:
            running = query.ask(timeout=1.0)
        missing = [h for h in hosts if "error" in running[str(h)]]
        failures = []
        if missing:
            for host, result in start_daemons(missing, keys_dir).items():
                if isinstance(result, HostError):
                    failures.append(result)
                else:
                    self.started[host] = result
        self.keys_dir = keys_dir
        try:
            if failures and on_unreachable == "error":
                raise failures[0]
            for failure in failures:
                logger.warning("skipping %s", failure)
            failed = {f.host for f in failures}
            usable = [h for h in hosts if str(h) not in failed]
            if not usable:
                raise HostError(
                    "no host is available: " + "; ".join(str(f) for f in failures),
                    failures[0].host if failures else None,
                )
            super().__init__(usable, keys_dir=keys_dir, on_unreachable=on_unreachable,
                             **options)
        except BaseException:
            self._stop_started()
            raise

    def _stop_started(self):
        for host, pid in self.started.items():
            stop_daemon(host, pid, self.keys_dir)
        self.started = {}

    def shutdown(self):
        try:
            super().shutdown()
        finally:
            self._stop_started()
