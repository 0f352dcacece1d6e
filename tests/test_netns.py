"""Real hosts: network namespaces joined by a bridge, each with its own address, sshd
and a spike-daemon started over SSH. Skipped (with the reason) where namespaces
cannot be made; tests/test_hosts.py covers the same paths with loopback daemons.
"""

import json
import os
import subprocess
import sys
import threading
import time

import models
import nengo
import netns
import pytest
from conftest import assert_same_probes, kill_later, pid_alive, run_reference
from daemonctl import REPO, env, wait_gone

import spike
from spike.exceptions import HostError

REASON = netns.unavailable()
pytestmark = [
    pytest.mark.skipif(REASON is not None, reason=f"no namespace hosts: {REASON}"),
    pytest.mark.slow,  # hosts with sshd, daemons started over SSH
]

PORT = 9470



@pytest.fixture
def hosts(tmp_path, monkeypatch):
    """Three namespace hosts with sshd, and the environment to reach them over SSH."""
    with netns.TestHosts(3, tmp_path) as made:
        monkeypatch.setenv("SPIKE_SSH_CONFIG", made.ssh_config)
        monkeypatch.setenv(
            "SPIKE_REMOTE_PYTHON",
            f"env PYTHONPATH={REPO} SPIKE_CACHE_DIR={tmp_path / 'cache'} {sys.executable}",
        )
        monkeypatch.setenv("SPIKE_REMOTE_KEYS", str(tmp_path / "remote-keys"))
        monkeypatch.setenv("SPIKE_REMOTE_STATE", str(tmp_path / "remote-state"))
        monkeypatch.setenv("SPIKE_CONNECT_TIMEOUT", "5")
        hostfile = tmp_path / "hosts.txt"
        hostfile.write_text(
            "# namespace hosts made by the test\n"
            + "".join(f"{a}:{PORT} slots=1\n" for a in made.addresses)
        )
        made.hostfile = str(hostfile)
        yield made


def daemon_pids(hosts, k):
    """PIDs of spike processes (daemons, workers) in host ``k``'s namespace."""
    found = []
    for pid in hosts.pids(k):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"spike.cluster.daemon" in cmd or b"spike.runtime.worker" in cmd:
            if pid_alive(pid):
                found.append(pid)
    return found


def long_model():
    with nengo.Network(seed=1) as net:
        ensembles = [nengo.Ensemble(50, 1, label=f"e{k}") for k in range(3)]
        for a, b in zip(ensembles, ensembles[1:] + ensembles[:1]):
            nengo.Connection(a, b)
        nengo.Probe(ensembles[0], synapse=0.01)
    return net


def test_model_across_namespaces_over_ssh_equals_nengo(hosts, keys_dir):
    net = models.integrator_and_oscillator()
    ref = run_reference(net, 300)
    start = time.monotonic()
    sim = spike.Simulator(net, hosts=hosts.hostfile, ssh=True, keys=keys_dir,
                          progress_bar=False)
    startup = time.monotonic() - start
    with sim:
        assert sim.n_workers == 3
        handles = list(sim._session.handles.values())
        # each worker on its own namespace host, reached at that host's address
        assert sorted(h.data_address.split("//")[1].rsplit(":", 1)[0] for h in handles) == \
            sorted(hosts.addresses)
        assert sim._session.address.startswith(f"tcp://{hosts.client_address}:")
        for k in range(3):
            assert len(daemon_pids(hosts, k)) == 2  # the daemon and its worker
        sim.run_steps(300)
    assert_same_probes(net, ref, sim)
    for k in range(3):  # the daemons started over SSH were stopped with the Simulator
        deadline = time.monotonic() + 10
        while daemon_pids(hosts, k) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon_pids(hosts, k) == [], f"host {k} still runs spike processes"
    print(f"start-up on 3 namespace hosts over SSH (daemons started too): {startup:.2f} s")


def spike_cli(*args):
    return subprocess.run([sys.executable, "-m", "spike.tools.cli", *args],
                          capture_output=True, text=True, env=env(), timeout=180)


def test_cluster_over_ssh_and_a_daemon_killed_mid_run(hosts, keys_dir):
    common = ["--hosts", hosts.hostfile, "--keys", keys_dir]
    result = spike_cli("cluster", "start", "--ssh", *common)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("started over SSH") == 3
    try:
        status = json.loads(spike_cli("cluster", "status", "--json", *common).stdout)
        assert [status[f"{a}:{PORT}"]["address"] for a in hosts.addresses] == [
            f"tcp://{a}:{PORT}" for a in hosts.addresses
        ]  # each daemon listens on its host's address only
        start = time.monotonic()
        sim = spike.Simulator(long_model(), hosts=hosts.hostfile, keys=keys_dir,
                              progress_bar=False)
        startup = time.monotonic() - start
        pids = [h.pid for h in sim._session.handles.values()]
        victim = status[f"{hosts.addresses[1]}:{PORT}"]["pid"]
        killed_at = kill_later(victim, delay=1.0)
        with pytest.raises(spike.WorkerDied) as info:
            sim.run(1000.0)
        assert time.monotonic() - killed_at[0] < 5.0
        assert f"{hosts.addresses[1]}:{PORT}" in str(info.value)
        assert wait_gone(pids), "workers outlived the failed run"
        sim.close()
        print(f"start-up on 3 running namespace daemons: {startup:.2f} s")
    finally:
        stopped = spike_cli("cluster", "stop", *common)
    assert stopped.stdout.count("stopped") == 2  # the killed one cannot answer
    for k in range(3):
        assert wait_gone(daemon_pids(hosts, k)), f"host {k} still runs spike processes"


def test_host_cut_off_is_detected_and_its_workers_stop(hosts, keys_dir, monkeypatch):
    monkeypatch.setenv("SPIKE_SSH_DAEMON_ARGS", "--job-timeout 3")
    sim = spike.Simulator(long_model(), hosts=hosts.hostfile, ssh=True, keys=keys_dir,
                          progress_bar=False)
    cut_off = [h for h in sim._session.handles.values()
               if h.host == f"{hosts.addresses[2]}:{PORT}"]
    assert len(cut_off) == 1
    cut_at = []

    def cut():
        time.sleep(1.0)
        cut_at.append(time.monotonic())
        hosts.cut(2)

    threading.Thread(target=cut, daemon=True).start()
    with pytest.raises(spike.WorkerDied) as info:
        sim.run(1000.0)
    waited = time.monotonic() - cut_at[0]
    assert waited < 10.0
    message = str(info.value)
    assert f"{hosts.addresses[2]}:{PORT}" in message and cut_off[0].wid in message
    # the cut-off daemon stops the job of its silent client: nothing left running there
    assert wait_gone([cut_off[0].pid], timeout=15.0)
    sim.close()
    for k in range(2):
        assert wait_gone(daemon_pids(hosts, k)), f"host {k} still runs spike processes"


def test_unknown_ssh_host_key_is_refused(hosts, keys_dir, tmp_path, monkeypatch):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = open(hosts.ssh_config).read().replace(
        "UserKnownHostsFile " + os.path.join(os.path.dirname(hosts.ssh_config), "known_hosts"),
        f"UserKnownHostsFile {empty}",
    )
    (tmp_path / "config2").write_text(config)
    monkeypatch.setenv("SPIKE_SSH_CONFIG", str(tmp_path / "config2"))
    with pytest.raises(HostError, match="not found in known_hosts"):
        spike.Simulator(long_model(), hosts=hosts.hostfile, ssh=True, keys=keys_dir,
                        progress_bar=False)
    for k in range(3):
        assert daemon_pids(hosts, k) == []
