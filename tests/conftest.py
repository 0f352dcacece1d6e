"""Shared fixtures and helpers for Spike's own tests.

Every process a test starts is stopped by the test (or by the worker pool at exit);
every socket is on 127.0.0.1.
"""

import os
import pickle
import signal
import threading
import time

import nengo
import numpy as np
import pytest

import spike
from spike.client.pool import process_running as pid_alive

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

TOLERANCE = 1e-10
"""Largest difference allowed between Spike's and nengo.Simulator's probe values."""


def run_reference(net, steps, seed=None, dt=0.001):
    with nengo.Simulator(net, seed=seed, dt=dt, progress_bar=False) as ref:
        ref.run_steps(steps)
    return ref


def run_spike(net, steps, seed=None, dt=0.001, **kwargs):
    with spike.Simulator(net, seed=seed, dt=dt, progress_bar=False, **kwargs) as sim:
        sim.run_steps(steps)
    return sim


def assert_same_probes(net, ref, sim):
    """Spike's probe data equal the reference's: spikes exactly, values to 1e-10."""
    assert sim.n_steps == ref.n_steps
    assert sim.time == ref.time
    np.testing.assert_array_equal(sim.trange(), ref.trange())
    for probe in net.all_probes:
        expected = ref.data[probe]
        actual = sim.data[probe]
        assert actual.shape == expected.shape, probe
        target = probe.target
        neurons = isinstance(target, nengo.ensemble.Neurons) and probe.attr in (
            "output", "spikes"
        )
        if neurons and not isinstance(target.ensemble.neuron_type, nengo.Direct):
            spiking = target.ensemble.neuron_type.spiking
            if spiking and probe.synapse is None:
                np.testing.assert_array_equal(actual, expected, err_msg=str(probe))
                continue
        np.testing.assert_allclose(
            actual, expected, rtol=0, atol=TOLERANCE, err_msg=str(probe)
        )


def assert_equivalent(net, steps=300, seed=None, **kwargs):
    """Run ``net`` on nengo.Simulator and on Spike, and compare every probe."""
    ref = run_reference(net, steps, seed=seed)
    sim = run_spike(net, steps, seed=seed, **kwargs)
    assert_same_probes(net, ref, sim)
    return sim


def assert_pickled_continues(net, before, after, check, **kwargs):
    """Run ``net`` ``before`` steps on Spike, pickle and unpickle the Simulator, run
    the copy ``after`` steps more: its probes equal the reference's over all of them.
    ``check(clone)`` is asserted on the copy (what it kept)."""
    ref = run_reference(net, before + after)
    with spike.Simulator(net, progress_bar=False, **kwargs) as sim:
        sim.run_steps(before)
        clone = pickle.loads(pickle.dumps(sim))
    with clone:
        clone.run_steps(after)
        assert check(clone)
        for mine, theirs in zip(clone.model.probes, ref.model.probes):
            np.testing.assert_allclose(
                clone.data[mine], ref.data[theirs], rtol=0, atol=TOLERANCE
            )


def wait_gone(pids, timeout=5.0):
    """True once none of ``pids`` is alive, False if one still is after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def kill_later(pid, delay=0.5, sig=signal.SIGKILL):
    """Send ``sig`` to ``pid`` from a thread after ``delay`` seconds; the returned list
    receives the monotonic time it was sent (to time how fast a failure is seen)."""
    sent_at = []

    def kill():
        time.sleep(delay)
        sent_at.append(time.monotonic())
        os.kill(pid, sig)

    threading.Thread(target=kill, daemon=True).start()
    return sent_at


@pytest.fixture
def keys_dir(tmp_path):
    """A key directory with a client and a daemon keypair (`spike keys`)."""
    from spike.cluster import keys

    path = tmp_path / "keys"
    keys.make_cluster_keys(str(path))
    return str(path)


def spike_processes():
    """PIDs of live Spike worker processes started from this test process."""
    pids = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"spike.runtime.worker" in cmd and me.encode() in cmd and state != "Z":
            pids.append(int(entry))
    return pids
