"""Bad input and dead processes: clear errors, no hangs, no processes left behind."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import nengo
import numpy as np
import pytest
import zmq
from conftest import kill_later, pid_alive, wait_gone

import spike
from spike.client.pool import get_pool


def long_model():
    with nengo.Network(seed=1) as net:
        a = nengo.Ensemble(50, 1, label="a")
        b = nengo.Ensemble(50, 1, label="b")
        nengo.Connection(a, b)
        nengo.Connection(b, a)
        nengo.Probe(b, synapse=0.01)
    return net


@pytest.mark.slow
def test_killed_worker_is_named_within_seconds_and_nothing_is_left():
    sim = spike.Simulator(long_model(), workers=2, progress_bar=False)
    handles = list(sim._session.handles.values())
    pids = [h.pid for h in handles]
    victim = handles[1]
    killed_at = kill_later(victim.pid)
    with pytest.raises(spike.WorkerDied) as info:
        sim.run(1000.0)  # far longer than the test
    waited = time.monotonic() - killed_at[0]
    assert waited < 5.0
    assert str(victim.pid) in str(info.value) and "SIGKILL" in str(info.value)
    assert info.value.worker == victim.name
    assert wait_gone(pids), "the other worker of the failed run is still running"
    with pytest.raises(spike.SpikeError, match="cannot continue"):
        sim.run_steps(10)
    sim.close()


@pytest.mark.slow
def test_error_in_node_function_is_raised_with_its_type():
    def bad(t):
        if t > 0.05:
            raise ValueError("node function gave up")
        return 0.0

    with nengo.Network(seed=2) as net:
        stim = nengo.Node(bad, label="bad node")
        a = nengo.Ensemble(20, 1)
        nengo.Connection(stim, a)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        with pytest.raises(ValueError, match="node function gave up"):
            sim.run(0.2)


@pytest.mark.slow
def test_error_in_worker_keeps_its_type_and_names_the_worker():
    def bad(t):
        if t > 0.05:
            raise nengo.exceptions.SimulationError("worker-side failure")
        return 0.0

    with nengo.Network(seed=2) as net:
        stim = nengo.Node(bad, label="bad node")
        a = nengo.Ensemble(20, 1)
        nengo.Connection(stim, a)
    with spike.Simulator(
        net, workers=2, assignments={stim: 1}, progress_bar=False
    ) as sim:
        with pytest.raises(nengo.exceptions.SimulationError, match="worker-side") as info:
            sim.run(0.2)
    assert any("Raised in Spike worker" in note for note in info.value.__notes__)


@pytest.mark.slow
def test_unpicklable_object_on_a_worker_is_named():
    lock = threading.Lock()

    def output(t):
        with lock:
            return np.sin(t)

    with nengo.Network() as net:
        node = nengo.Node(output, label="locked node")
        a = nengo.Ensemble(10, 1)
        nengo.Connection(node, a)
    with pytest.raises(spike.UnsupportedError, match="locked node.*cannot be sent"):
        spike.Simulator(net, workers=2, assignments={node: 0}, progress_bar=False)
    # kept in the client (the default), the same node runs fine
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        sim.run_steps(5)


def test_conflicting_assignments_name_both_objects():
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1, label="first")
        b = nengo.Ensemble(10, 1, label="second")
        nengo.Connection(a, b, synapse=None)
    with pytest.raises(spike.PlacementError, match="first.*second|second.*first"):
        spike.Simulator(net, workers=2, assignments={a: 0, b: 1}, progress_bar=False)


@pytest.mark.parametrize(
    "value, message",
    [(5, "only 2 workers"), ("gpu", "use a worker index"), (None, "not a worker index")],
)
def test_bad_assignment_values(value, message):
    with nengo.Network() as net:
        a = nengo.Ensemble(10, 1, label="ens")
    with pytest.raises(spike.PlacementError, match=message):
        spike.Simulator(net, workers=2, assignments={a: value}, progress_bar=False)


def test_assignment_of_foreign_object():
    with nengo.Network() as net:
        nengo.Ensemble(10, 1)
    with nengo.Network():
        stranger = nengo.Ensemble(10, 1, label="stranger")
    with pytest.raises(spike.PlacementError, match="stranger.*not part"):
        spike.Simulator(net, workers=2, assignments={stranger: 0}, progress_bar=False)


def test_garbage_on_a_data_socket_is_dropped_and_the_run_is_unchanged():
    net = long_model()
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(300)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        context = zmq.Context.instance()
        pushes = []
        for handle in sim._session.handles.values():
            push = context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.connect(handle.data_address)
            pushes.append(push)
        rng = np.random.RandomState(0)
        junk = [
            [rng.bytes(20)],
            [b"\x93\x01\x02", b"x"],  # msgpack [1, 2] + a frame
            [b"\x93\xcf" + b"\xff" * 8 + b"\x01\x01", b"payload"],  # wrong session
            [b"not msgpack", b"x", b"y"],
        ]
        for push in pushes:
            for parts in junk * 50:
                push.send_multipart(parts)
        sim.run_steps(300)
        for push in pushes:
            push.close()
    for probe in net.all_probes:
        np.testing.assert_allclose(sim.data[probe], ref.data[probe], atol=1e-10, rtol=0)


CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, nengo, spike
    with nengo.Network(seed=1) as net:
        a = nengo.Ensemble(50, 1)
        b = nengo.Ensemble(50, 1)
        nengo.Connection(a, b)
        nengo.Connection(b, a)
    sim = spike.Simulator(net, workers=2, progress_bar=False)
    print(" ".join(str(h.pid) for h in sim._session.handles.values()), flush=True)
    if sys.argv[1] == "run":
        sim.run(1000.0)
    # "exit": leave without closing the simulator
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9 during run", "exit without close"])
def test_workers_exit_with_their_client(tmp_path, how):
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    mode = "run" if how.startswith("kill") else "exit"
    client = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = [int(p) for p in client.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        if mode == "run":
            time.sleep(0.5)
            client.kill()
        # killed: it ends by SIGKILL; left without close: it exits by itself, cleanly
        # (`wait` raises TimeoutExpired if the client hangs on its workers)
        expected = -signal.SIGKILL if mode == "run" else 0
        assert client.wait(timeout=30) == expected
        assert wait_gone(pids), f"workers {pids} outlived their client"
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_closed_simulator_gives_workers_back_to_the_pool():
    pool = get_pool()
    with spike.Simulator(long_model(), workers=2, progress_bar=False) as sim:
        handles = list(sim._session.handles.values())
        sim.run_steps(10)
    assert all(h in pool.idle for h in handles)
    assert all(pid_alive(h.pid) for h in handles)
