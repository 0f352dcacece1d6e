"""Many hosts on loopback: hostfiles, keys, real spike-daemon processes, jobs on them.

Every daemon is a real process listening on 127.0.0.1, started by the test and stopped
by its pid; every socket is on loopback.
"""

import os
import random
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time

import models
import msgpack
import nengo
import numpy as np
import pytest
import zmq
from conftest import assert_same_probes, kill_later, pid_alive, run_reference
from daemonctl import REPO, DaemonProcess, children, env, wait_gone

import spike
from spike.cluster import keys as keyfiles
from spike.cluster.daemon import remove_stale_directories
from spike.cluster.hostfile import DEFAULT_PORT, Host, parse_hostfile, read_hostfile
from spike.cluster.hostpool import HostPool
from spike.comm import wire
from spike.exceptions import HostError, HostfileError, KeyFileError


@pytest.fixture
def daemons(keys_dir, tmp_path):
    """``start(**options)`` starts a daemon; all are stopped (by pid) at the end."""
    started = []

    def start(**options):
        daemon = DaemonProcess(keys_dir, tmp_path / f"daemon{len(started)}.log", **options)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch):
    monkeypatch.setenv("SPIKE_CONNECT_TIMEOUT", "2")


def long_model():
    with nengo.Network(seed=1) as net:
        a = nengo.Ensemble(50, 1, label="a")
        b = nengo.Ensemble(50, 1, label="b")
        nengo.Connection(a, b)
        nengo.Connection(b, a)
        nengo.Probe(b, synapse=0.01)
    return net


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- hostfiles ------------------------------------------------------------------------


def test_hostfile_format(tmp_path):
    text = textwrap.dedent(
        """\
        # the cluster
        node1
        node2:9500 slots=4     # a comment after a host
        10.0.0.3 slots=2 key=#bcdefghij0123456789ABCDEFGHIJ.-:+=^!/*?
        [fd00::7]:9471 slots=8

        """
    )
    path = tmp_path / "hosts.txt"
    path.write_text(text)
    hosts = read_hostfile(str(path))
    assert hosts == [
        Host("node1", DEFAULT_PORT, None),
        Host("node2", 9500, 4),
        Host("10.0.0.3", DEFAULT_PORT, 2, "#bcdefghij0123456789ABCDEFGHIJ.-:+=^!/*?"),
        Host("fd00::7", 9471, 8),
    ]
    assert hosts[3].address == "tcp://[fd00::7]:9471"
    assert str(hosts[1]) == "node2:9500"


@pytest.mark.parametrize(
    "text, message",
    [
        ("node slots=0", "slots must be a positive integer"),
        ("node slots=x", "slots must be a positive integer"),
        ("node:99999", "bad port"),
        ("node cpus=3", "unknown or repeated option"),
        ("node slots=1 slots=2", "unknown or repeated option"),
        ("node\nnode", "named twice"),
        ("fd00::7", "IPv6 addresses in brackets"),
        ("node key=short", "40-character"),
    ],
)
def test_hostfile_errors_name_the_line(text, message):
    with pytest.raises(HostfileError, match=message) as info:
        parse_hostfile(text, source="hosts.txt")
    assert "hosts.txt, line" in str(info.value)


def test_missing_or_empty_hostfile(tmp_path):
    with pytest.raises(HostfileError, match="cannot read hostfile"):
        read_hostfile(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(HostfileError, match="names no host"):
        read_hostfile(str(tmp_path / "empty.txt"))


# -- keys -------------------------------------------------------------------------------


@pytest.mark.slow
def test_spike_keys_creates_private_files(tmp_path):
    directory = tmp_path / "k"
    result = subprocess.run(
        [sys.executable, "-m", "spike.tools.cli", "keys", "--dir", str(directory)],
        capture_output=True, text=True, env=env(), timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("client", "daemon"):
        assert stat.S_IMODE((directory / f"{name}.key_secret").stat().st_mode) == 0o600
        public, secret = keyfiles.load_keypair(str(directory), name)
        assert zmq.curve_public(secret) == public
        # ZeroMQ's own reader agrees
        assert zmq.auth.load_certificate(str(directory / f"{name}.key_secret")) == (
            public, secret
        )
    assert keyfiles.authorized_clients(str(directory)) == {
        keyfiles.load_public(str(directory / "client.key"))
    }
    # a second run keeps the keys
    before = (directory / "client.key_secret").read_text()
    subprocess.run(
        [sys.executable, "-m", "spike.tools.cli", "keys", "--dir", str(directory)],
        capture_output=True, env=env(), timeout=60, check=True,
    )
    assert (directory / "client.key_secret").read_text() == before


def test_secret_readable_by_others_is_refused(keys_dir):
    path = os.path.join(keys_dir, "client.key_secret")
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        keyfiles.load_keypair(keys_dir, "client")


# -- the daemon ---------------------------------------------------------------------------


def listening_addresses(port):
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, hexport = fields[1].split(":")
            if int(hexport, 16) == port and fields[3] == "0A":
                found.append(address)
    return found


def test_daemon_listens_only_where_told(daemons):
    daemon = daemons()
    port = int(daemon.host.rsplit(":", 1)[1])
    assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, nothing else


@pytest.mark.slow
def test_daemon_refuses_all_interfaces_without_advertise(keys_dir, tmp_path):
    with pytest.raises(RuntimeError, match="did not start"):
        DaemonProcess(keys_dir, tmp_path / "d.log", listen="0.0.0.0")
    result = subprocess.run(
        [sys.executable, "-m", "spike.cluster.daemon", "--keys", keys_dir, "--listen", "0.0.0.0"],
        capture_output=True, text=True, env=env(), timeout=60,
    )
    assert result.returncode == 2 and "needs --advertise" in result.stderr


def test_daemon_without_keys_explains(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "spike.cluster.daemon", "--keys", str(tmp_path / "none"), "--port", "0"],
        capture_output=True, text=True, env=env(), timeout=60,
    )
    assert result.returncode == 2 and "spike keys" in result.stderr


def test_status_reports_host_load(daemons, keys_dir):
    daemon = daemons(slots=3)
    pool = HostPool([daemon.host], keys_dir=keys_dir)
    try:
        status = pool.links.ask(pool.hosts[0], "status").fields
    finally:
        pool.shutdown()
    assert status["slots"] == 3 and status["free"] == 3
    assert status["pid"] == daemon.pid and status["host"] == socket.gethostname()
    assert 0 < status["mem_available"] <= status["mem_total"]
    assert 0 <= status["cpu"] <= 100 and len(status["load"]) == 3
    assert status["jobs"] == []


def test_unauthorised_client_is_refused_and_daemon_keeps_serving(daemons, keys_dir, tmp_path):
    daemon = daemons()
    stranger = str(tmp_path / "stranger")
    keyfiles.generate(stranger, "client")
    # the stranger knows the daemon's public key, but the daemon does not know theirs
    os.link(os.path.join(keys_dir, "daemon.key"), os.path.join(stranger, "daemon.key"))
    start = time.monotonic()
    with pytest.raises(HostError, match="refused our key") as info:
        HostPool([daemon.host], keys_dir=stranger)
    assert time.monotonic() - start < 2.0
    assert info.value.host == daemon.host
    assert "refused a client with unknown key" in daemon.read_log()
    pool = HostPool([daemon.host], keys_dir=keys_dir)  # the real client still gets in
    pool.shutdown()


@pytest.mark.slow
def test_client_refuses_a_daemon_with_another_key(daemons, keys_dir, tmp_path):
    daemon = daemons()
    impostor_key = zmq.curve_keypair()[0].decode()
    with pytest.raises(HostError, match="handshake failed .wrong daemon key"):
        HostPool([f"{daemon.host} key={impostor_key}"], keys_dir=keys_dir)


def bad_requests(rng):
    """Malformed messages of every kind, as lists of frames."""
    def header(**fields):
        return msgpack.packb(fields)

    good_keys = {
        k: zmq.curve_keypair()[0].decode()
        for k in ("control_server", "public", "secret", "data_public", "data_secret")
    }
    spawn = dict(op="spawn", frames=[], job="j", ids=["a"], control="tcp://127.0.0.1:1",
                 keys=good_keys)
    fixed = [
        [b""],
        [b"\xc1"],  # never-used msgpack byte
        [b"\xdd\xff\xff\xff\xff"],  # array of 4 G elements, truncated
        [b"\xdb\xff\xff\xff\xff" + b"x" * 10],  # 4 GB string, truncated
        [b"\xc6\xff\xff\xff\xff"],  # 4 GB binary, truncated
        [b"\xdf\xff\xff\xff\xff"],  # map of 4 G entries
        [msgpack.packb([1, 2, 3])],
        [msgpack.packb("status")],
        [header(frames=[])],
        [header(op=5, frames=[])],
        [header(op="status", frames=[["bytes"]])],  # frame announced, none sent
        [header(op="status", frames=[]), b"extra"],
        [header(op="status", frames=[["array", "|O", [1]]]), b"x" * 8],
        [header(op="status", frames=[["array", "<f8", [2 ** 62, 2 ** 62]]]), b"x"],
        [header(op="status", frames=[["array", "<f8", [-1]]]), b""],
        [header(op="status", frames=[["bogus"]]), b""],
        [header(op="run_arbitrary_code", frames=[])],
        [header(op="__init__", frames=[])],
        [header(**{**spawn, "ids": "a"})],
        [header(**{**spawn, "ids": []})],
        [header(**{**spawn, "ids": [1, 2]})],
        [header(**{**spawn, "ids": ["../../etc/passwd"]})],
        [header(**{**spawn, "job": "a b; rm -rf /"})],
        [header(**{**spawn, "control": "ipc:///tmp/x"})],
        [header(**{**spawn, "control": "tcp://host:1; touch /tmp/x"})],
        [header(**{**spawn, "keys": {**good_keys, "secret": "short"}})],
        [header(**{**spawn, "keys": {**good_keys, "secret": "~" * 40}})],
        [header(**{**spawn, "keys": "none"})],
        [header(**{**spawn, "log_level": "LOUD"})],
        [header(op="kill", frames=[], job=["x"])],
        [header(op="kill", frames=[])],
    ]
    valid = msgpack.packb(dict(op="kill", frames=[], job="some-job", req=7))
    messages = list(fixed)
    for _ in range(1500):
        kind = rng.randrange(4)
        if kind == 0:
            messages.append([rng.randbytes(rng.randrange(1, 200))])
        elif kind == 1:
            messages.append([rng.randbytes(rng.randrange(1, 50)) for _ in range(rng.randrange(1, 5))])
        elif kind == 2:  # a valid (harmless) request cut short
            messages.append([valid[: rng.randrange(1, len(valid))]])
        else:  # a valid request with flipped bytes
            data = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            messages.append([bytes(data)])
    return messages


@pytest.mark.slow
def test_fuzzed_daemon_rejects_everything_then_runs_a_job(daemons, keys_dir, tmp_path):
    daemon = daemons(slots=2)
    host, port = daemon.host.rsplit(":", 1)
    rng = random.Random(0)
    context = zmq.Context()
    daemon_key = keyfiles.load_public(os.path.join(keys_dir, "daemon.key"))
    sent_unauthenticated = 0
    try:
        # 1. not even ZeroMQ: raw bytes on the TCP port
        for _ in range(500):
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                raw.sendall(rng.randbytes(rng.randrange(1, 600)))
            sent_unauthenticated += 1
        # 2. ZeroMQ without CURVE, and CURVE with a key the daemon does not know
        plain = context.socket(zmq.DEALER)
        stranger = context.socket(zmq.DEALER)
        stranger.curve_serverkey = daemon_key
        stranger.curve_publickey, stranger.curve_secretkey = zmq.curve_keypair()
        for sock in (plain, stranger):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.connect(daemon.address)
            for _ in range(400):  # until the failed handshake leaves no peer to queue for
                try:
                    sock.send_multipart(wire.encode("status"), zmq.NOBLOCK)
                except zmq.Again:
                    break
                sent_unauthenticated += 1
        time.sleep(1.0)
        for sock in (plain, stranger):
            assert not sock.poll(0), "an unauthenticated client got an answer"
            sock.close()
        # 3. an authorised client sending garbage: every message answered with an error
        client = context.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.setsockopt(zmq.SNDHWM, 0)
        client.setsockopt(zmq.RCVHWM, 0)
        client.curve_serverkey = daemon_key
        client_keys = keyfiles.load_keypair(keys_dir, "client")
        client.curve_publickey, client.curve_secretkey = client_keys
        client.connect(daemon.address)
        messages = bad_requests(rng)
        for parts in messages:
            client.send_multipart(parts)
        replies = []
        deadline = time.monotonic() + 60
        while len(replies) < len(messages) and time.monotonic() < deadline:
            if client.poll(1000):
                replies.append(wire.decode(client.recv_multipart()))
        assert len(replies) == len(messages)
        rejected = 0
        for parts, reply in zip(messages, replies):  # replies come in order
            try:
                wire.decode(parts)
            except spike.ProtocolError:
                assert reply.op == "error" and "malformed" in reply.fields["message"]
                rejected += 1
            else:  # well-formed, possibly mangled into another valid, harmless request
                assert reply.op in ("error", "killed"), reply
        assert rejected > 1000
        # 4. an oversized message: ZeroMQ drops the connection, the daemon goes on
        big = context.socket(zmq.DEALER)
        big.setsockopt(zmq.LINGER, 0)
        big.curve_serverkey = daemon_key
        big.curve_publickey, big.curve_secretkey = client_keys
        big.connect(daemon.address)
        big.send_multipart([wire.encode("status")[0], b"\0" * (1 << 20)])
        assert not big.poll(1000)
        big.close()
        client.close()
    finally:
        context.destroy(linger=0)
    total = sent_unauthenticated + len(messages) + 1
    assert total > 2000
    assert daemon.alive()
    log = daemon.read_log()
    assert "rejected a malformed request" in log and "refused a client" in log
    # and a real job runs on it, with nengo's results
    net = models.recurrent_loop()
    ref = run_reference(net, 200)
    with spike.Simulator(net, hosts=[daemon.host], keys=keys_dir, progress_bar=False) as sim:
        status = sim._pool.links.ask(sim._pool.hosts[0], "status").fields
        sim.run_steps(200)
    assert_same_probes(net, ref, sim)
    assert status["bad_messages"] >= rejected and status["refused"] >= 1
    assert status["jobs"] and len(status["jobs"][0]["workers"]) == 2


# -- jobs across daemons ------------------------------------------------------------------


@pytest.mark.slow
def test_model_across_loopback_daemons_equals_nengo(daemons, keys_dir, tmp_path):
    started = [daemons(slots=1) for _ in range(3)]
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text("".join(f"{d.host} slots=1  # daemon {i}\n" for i, d in enumerate(started)))
    net = models.integrator_and_oscillator()
    ref = run_reference(net, 300)
    start = time.monotonic()
    sim = spike.Simulator(net, hosts=str(hostfile), keys=keys_dir, progress_bar=False)
    startup = time.monotonic() - start
    with sim:
        assert sim.n_workers == 3
        hosts = sorted(name.rsplit(" on ", 1)[1].rstrip(")") for name in sim.workers)
        assert hosts == sorted(d.host for d in started)
        pids = [h.pid for h in sim._session.handles.values()]
        # each daemon (one slot each) started exactly one of the workers
        started_by = [set(children(d.pid)) & set(pids) for d in started]
        assert [len(mine) for mine in started_by] == [1, 1, 1]
        assert set.union(*started_by) == set(pids)
        sim.run_steps(150)
        sim.run_steps(150)  # in pieces, as nengo allows
    assert_same_probes(net, ref, sim)
    assert wait_gone(pids), "workers outlived their Simulator"
    print(f"start-up on 3 loopback daemons: {startup:.2f} s")


@pytest.mark.slow
def test_killed_worker_is_named_with_its_host(daemons, keys_dir):
    first, second = daemons(), daemons()
    sim = spike.Simulator(
        long_model(), hosts=[first.host, second.host], workers=2, keys=keys_dir,
        progress_bar=False,
    )
    handles = list(sim._session.handles.values())
    pids = [h.pid for h in handles]
    victim = handles[1]
    killed_at = kill_later(victim.pid)
    with pytest.raises(spike.WorkerDied) as info:
        sim.run(1000.0)
    assert time.monotonic() - killed_at[0] < 5.0
    message = str(info.value)
    assert victim.wid in message and str(victim.pid) in message
    assert victim.host in message and "SIGKILL" in message
    assert wait_gone(pids), "the other worker is still running"
    assert first.alive() and second.alive()
    assert children(first.pid) == [] and children(second.pid) == []
    sim.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_stopped_daemon_is_named_and_nothing_is_left(daemons, keys_dir, how):
    first, second = daemons(), daemons()
    sim = spike.Simulator(
        long_model(), hosts=[first.host, second.host], workers=2, keys=keys_dir,
        progress_bar=False,
    )
    pids = [h.pid for h in sim._session.handles.values()]
    killed_at = kill_later(second.pid, sig=getattr(signal, how))
    with pytest.raises(spike.WorkerDied) as info:
        sim.run(1000.0)
    assert time.monotonic() - killed_at[0] < 5.0
    assert second.host in str(info.value) and "daemon" in str(info.value)
    assert wait_gone(pids), "workers outlived the failed run"
    assert first.alive() and children(first.pid) == []
    sim.close()


@pytest.mark.slow
def test_unreachable_host_raises_or_is_skipped(daemons, keys_dir):
    daemon = daemons()
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(HostError, match="no answer") as info:
        spike.Simulator(long_model(), hosts=[daemon.host, dead], keys=keys_dir, progress_bar=False)
    assert info.value.host == dead and dead in str(info.value)
    with spike.Simulator(
        long_model(), hosts=[dead, daemon.host], keys=keys_dir, on_unreachable="skip",
        progress_bar=False,
    ) as sim:
        assert sim.n_workers == 2 and all(daemon.host in w for w in sim.workers)
        sim.run_steps(20)
    with pytest.raises(HostError, match="no host is available"):
        spike.Simulator(long_model(), hosts=[dead], keys=keys_dir, on_unreachable="skip",
                        progress_bar=False)


@pytest.mark.slow
def test_busy_host_raises_or_is_skipped(daemons, keys_dir):
    small, other = daemons(slots=1), daemons(slots=1)
    with spike.Simulator(long_model(), hosts=[small.host], keys=keys_dir, progress_bar=False) as hog:
        assert hog.n_workers == 1
        with pytest.raises(HostError, match="busy") as info:
            spike.Simulator(long_model(), hosts=[small.host, other.host], keys=keys_dir,
                            progress_bar=False)
        assert info.value.host == small.host
        with spike.Simulator(long_model(), hosts=[small.host, other.host], keys=keys_dir,
                             on_unreachable="skip", progress_bar=False) as sim:
            assert sim.workers and all(other.host in w for w in sim.workers)
            sim.run_steps(10)
    with pytest.raises(HostError, match="3 workers asked, but the hosts offer 2 slots"):
        spike.Simulator(long_model(), hosts=[small.host, other.host], workers=3,
                        keys=keys_dir, progress_bar=False)


CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, nengo, spike
    with nengo.Network(seed=1) as net:
        a = nengo.Ensemble(50, 1)
        b = nengo.Ensemble(50, 1)
        nengo.Connection(a, b)
        nengo.Connection(b, a)
    sim = spike.Simulator(net, hosts=sys.argv[1:], keys=sys.argv[0].replace("client.py", "keys"),
                          progress_bar=False)
    print(" ".join(str(h.pid) for h in sim._session.handles.values()), flush=True)
    sim.run(1000.0)
    """
)


@pytest.mark.slow
def test_daemon_stops_the_job_of_a_killed_client(daemons, keys_dir, tmp_path):
    daemon = daemons(job_timeout=2.0)
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    client = subprocess.Popen(
        [sys.executable, str(script), daemon.host], stdout=subprocess.PIPE, text=True,
        env=env(),
    )
    try:
        pids = [int(p) for p in client.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        time.sleep(0.5)
        client.kill()
        assert client.wait(timeout=30) == -signal.SIGKILL
        assert wait_gone(pids, timeout=10.0), "workers outlived their client"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert "no word from its client" in daemon.read_log()
    assert daemon.alive()


@pytest.mark.slow
def test_spike_run_on_hosts(daemons, keys_dir, tmp_path):
    first, second = daemons(), daemons()
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text(f"{first.host} slots=1\n{second.host} slots=1\n")
    out = tmp_path / "probes.npz"
    result = subprocess.run(
        [sys.executable, "-m", "spike.tools.cli", "run",
         os.path.join(REPO, "examples", "communication_channel.py"), "--hosts",
         str(hostfile), "--keys", keys_dir, "--time", "0.2", "-o", str(out), "--no-progress"],
        capture_output=True, text=True, env=env(), timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "workers: 2" in result.stdout
    assert first.host in result.stdout and second.host in result.stdout
    assert np.load(out)["t"].shape == (200,)
    # a host that is down: a clear error, or skipped on request
    hostfile.write_text(f"{first.host}\n127.0.0.1:{free_port()}\n")
    args = [sys.executable, "-m", "spike.tools.cli", "run",
            os.path.join(REPO, "examples", "communication_channel.py"), "--hosts",
            str(hostfile), "--keys", keys_dir, "--time", "0.05", "-o", str(out), "--no-progress"]
    result = subprocess.run(args, capture_output=True, text=True, env=env(), timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 1 and "spike: cannot use every host" in result.stderr
    result = subprocess.run(args + ["--skip-unreachable"], capture_output=True, text=True,
                            env=env(), timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# -- spike cluster and spike monitor ----------------------------------------------------


def spike_cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "spike.tools.cli", *args],
        capture_output=True, text=True, env=env(), timeout=timeout,
    )


@pytest.mark.slow
def test_cluster_start_status_stop(keys_dir, tmp_path):
    import json

    hostfile = tmp_path / "hosts.txt"
    ports = [free_port(), free_port()]
    hostfile.write_text(f"127.0.0.1:{ports[0]} slots=2\n127.0.0.1:{ports[1]} slots=3\n")
    state = tmp_path / "state"
    common = ["--hosts", str(hostfile), "--keys", keys_dir]
    pids = []
    try:
        result = spike_cli("cluster", "start", *common, "--state-dir", str(state))
        assert result.returncode == 0, result.stderr
        pids = [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in result.stdout.splitlines()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        assert listening_addresses(ports[0]) == ["0100007F"]
        again = spike_cli("cluster", "start", *common, "--state-dir", str(state))
        assert again.returncode == 0 and again.stdout.count("already running") == 2
        status = spike_cli("cluster", "status", *common, "--json")
        assert status.returncode == 0, status.stderr
        statuses = json.loads(status.stdout)
        assert [statuses[f"127.0.0.1:{p}"]["slots"] for p in ports] == [2, 3]
        assert sorted(s["pid"] for s in statuses.values()) == sorted(pids)
        # the daemons serve jobs
        with spike.Simulator(long_model(), hosts=str(hostfile), workers=2, keys=keys_dir,
                             progress_bar=False) as sim:
            sim.run_steps(10)
        stopped = spike_cli("cluster", "stop", *common)
        assert stopped.returncode == 0 and stopped.stdout.count("stopped") == 2
        assert wait_gone(pids)
        down = spike_cli("cluster", "status", *common)
        assert down.returncode == 1 and down.stdout.count("DOWN") == 2
    finally:
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_gone(pids)
        remove_stale_directories()  # of daemons killed above


def test_cluster_start_refuses_a_remote_host_without_ssh(keys_dir, tmp_path):
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text("node7.invalid:9470\n")  # refused before any lookup or packet
    result = spike_cli("cluster", "start", "--hosts", str(hostfile), "--keys", keys_dir,
                       "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1 and "use --ssh" in result.stderr


@pytest.mark.slow
def test_monitor_shows_workers_stepping(daemons, keys_dir, tmp_path):
    import json

    first, second = daemons(), daemons()
    hostfile = tmp_path / "hosts.txt"
    dead = f"127.0.0.1:{free_port()}"
    hostfile.write_text(f"{first.host}\n{second.host}\n")
    stop = threading.Event()
    started = threading.Event()
    errors = []

    def run():
        try:
            with spike.Simulator(long_model(), hosts=str(hostfile), workers=2, keys=keys_dir,
                                 progress_bar=False) as sim:
                started.set()
                while not stop.is_set():
                    sim.run_steps(200)
        except Exception as e:  # reported below
            errors.append(e)
            started.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(60) and not errors
        time.sleep(2.5)  # two load samples, one second apart
        result = spike_cli("monitor", "--hosts", str(hostfile), "--keys", keys_dir,
                           "--once", "--json")
        assert result.returncode == 0, result.stderr
        hosts = json.loads(result.stdout)["hosts"]
        for daemon in (first, second):
            status = hosts[daemon.host]
            workers = [w for job in status["jobs"] for w in job["workers"]]
            assert len(workers) == 1
            assert workers[0]["rate"] > 0 and workers[0]["steps"] > 0
            assert 0 <= workers[0]["wait"] <= 100 and workers[0]["rss"] > 0
        hostfile.write_text(f"{first.host}\n{dead}\n")
        table = spike_cli("monitor", "--hosts", str(hostfile), "--keys", keys_dir, "--once")
        assert table.returncode == 0, table.stderr
        assert "steps/s" in table.stdout and "CPU" in table.stdout
        assert f"{dead}" in table.stdout and "DOWN" in table.stdout
        assert "worker" in table.stdout
    finally:
        stop.set()
        thread.join(60)
    assert not errors


def test_run_progress_bar_shows_simulated_time_rate_and_eta(capsys):
    from nengo.utils.progress import Progress

    from spike.tools.progress import RunProgressBar

    bar = RunProgressBar(dt=0.001)
    with Progress("Simulating", "Simulation", max_steps=10000) as progress:
        time.sleep(0.05)
        progress.step(2500)
        bar.update(progress)
        line = capsys.readouterr().out
        assert "2.500/10.000 s simulated" in line and "steps/s" in line and "ETA" in line
        assert "[" + "#" in line
        rate = float(line.split(" steps/s")[0].rsplit(" ", 1)[1].replace(",", ""))
        assert 0 < rate < 2500 / 0.05 * 1.01
        progress.step(7500)
    bar.update(progress)
    bar.close()
    assert "10.000 s simulated" in capsys.readouterr().out


@pytest.mark.slow
def test_workers_on_one_host_share_memory_rings(daemons, keys_dir):
    first, second = daemons(slots=2), daemons(slots=2)
    with nengo.Network(seed=3) as net:
        ensembles = [nengo.Ensemble(40, 1, label=f"e{k}") for k in range(4)]
        for a, b in zip(ensembles, ensembles[1:] + ensembles[:1]):
            nengo.Connection(a, b, synapse=0.01)
        for e in ensembles:
            nengo.Probe(e, synapse=0.01)
            nengo.Probe(e.neurons)
    ref = run_reference(net, 300)
    sim = spike.Simulator(net, hosts=[first.host, second.host], workers=4,
                          assignments={e: k for k, e in enumerate(ensembles)},
                          keys=keys_dir, progress_bar=False)
    with sim:
        directories = {str(h): d for h, d in sim._pool.shm_dirs.items()}
        assert set(directories) == {first.host, second.host}
        assert all(d and d.startswith("/dev/shm/") for d in directories.values())
        sim.run_steps(300)
        by_host = {}
        for peer, handle in sim._session.handles.items():
            by_host.setdefault(handle.host, []).append(peer)
        plans = sim._session.plans
        for host, peers in by_host.items():  # a ring for each send within a host
            expected = sorted(
                f"-{src}-{dst}" for src in peers for dst in plans[src].sends if dst in peers
            )
            rings = sorted(ring[ring.index("-"):] for ring in os.listdir(directories[host]))
            assert rings == expected and len(expected) == 1
    assert_same_probes(net, ref, sim)
    assert not any(os.path.exists(d) for d in directories.values()), "rings left behind"


def test_daemon_removes_what_killed_daemons_left(daemons):
    from spike.cluster.daemon import STATUS_PREFIX, status_root

    first = daemons()
    left = [d for d in os.listdir(status_root()) if d.startswith(f"{STATUS_PREFIX}{first.pid}-")]
    assert len(left) == 1
    first.proc.kill()  # SIGKILL: no chance to clean up
    first.proc.wait()
    assert os.path.isdir(os.path.join(status_root(), left[0]))
    daemons()
    assert not os.path.exists(os.path.join(status_root(), left[0]))
