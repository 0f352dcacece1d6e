"""spike.Simulator has nengo.Simulator's interface."""

import importlib.metadata
import pickle

import nengo
import numpy as np
import pytest
from conftest import assert_same_probes, run_reference
from nengo.exceptions import ReadonlyError, SimulatorClosed, ValidationError

import spike


def sine(t):
    return np.sin(10 * t)


def small_net():
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(sine, label="stim")
        a = nengo.Ensemble(40, 1, label="a")
        b = nengo.Ensemble(40, 1, label="b")
        nengo.Connection(stim, a)
        nengo.Connection(a, b)
        net.pa = nengo.Probe(a, synapse=0.01)
        net.pb = nengo.Probe(b.neurons, sample_every=0.002)
    return net


def test_registered_as_nengo_backend():
    backends = importlib.metadata.entry_points(group="nengo.backends")
    assert any(ep.name == "spike" and ep.load() is spike.Simulator for ep in backends)


def test_surface_matches_nengo_simulator():
    net = small_net()
    with spike.Simulator(net, dt=0.002, workers=2, progress_bar=False) as sim:
        assert sim.dt == 0.002
        with pytest.raises(ReadonlyError):
            sim.dt = 0.1
        assert sim.n_steps == 0 and sim.time == 0.0
        sim.run(0.01)
        assert sim.n_steps == 5 and sim.time == pytest.approx(0.01)
        sim.run_steps(3)
        sim.step()
        assert sim.n_steps == 9
        np.testing.assert_allclose(sim.trange(), 0.002 * np.arange(1, 10))
        assert len(sim.data[net.pa]) == 9
        assert len(sim.data[net.pb]) == 9  # sample_every == dt here
        assert sim.data[net.pa].flags.writeable is False
        assert sim.data[net.pa.target].encoders.shape == (40, 1)  # built params
        sim.clear_probes()
        assert len(sim.data[net.pa]) == 0
        with pytest.warns(UserWarning, match="0 timesteps"):
            sim.run(0.0001)
        with pytest.raises(ValidationError):
            sim.run(-1)
    assert sim.closed
    for call in (lambda: sim.run(0.1), sim.step, lambda: sim.run_steps(1), sim.reset):
        with pytest.raises(SimulatorClosed):
            call()
    with pytest.raises(SimulatorClosed):
        sim.__enter__()


def test_trange_with_sample_every_matches_reference():
    net = small_net()
    ref = run_reference(net, 21)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        sim.run_steps(21)
        for every in (None, 0.002, 0.003, 0.005):
            np.testing.assert_array_equal(
                sim.trange(sample_every=every), ref.trange(sample_every=every)
            )
    assert_same_probes(net, ref, sim)


def test_signals_snapshot_reads_current_values():
    net = small_net()
    a, b = net.ensembles
    keys = [(a.neurons, "voltage"), (b.neurons, "refractory_time"), (b, "encoders")]
    keys += [(conn, "weighted") for conn in net.connections]
    with nengo.Simulator(net, optimize=False, progress_bar=False) as ref:
        ref.run_steps(30)
        expected = [ref.signals[ref.model.sig[obj][key]].copy() for obj, key in keys]
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        sim.run_steps(30)
        signals = sim.signals
        assert signals[sim.model.step] == 30
        for (obj, key), value in zip(keys, expected):
            np.testing.assert_allclose(
                signals[sim.model.sig[obj][key]], value, atol=1e-10, rtol=0
            )
    assert sim.signals is None


def test_pickled_simulator_continues_where_it_stopped():
    net = small_net()
    ref = run_reference(net, 100)
    with spike.Simulator(net, workers=2, progress_bar=False) as sim:
        sim.run_steps(60)
        saved = pickle.dumps(sim)
    with pickle.loads(saved) as restored:
        assert restored.n_steps == 60
        restored.run_steps(40)
        pa, pb = restored.model.probes
        np.testing.assert_allclose(restored.data[pa], ref.data[net.pa], atol=1e-10, rtol=0)
        np.testing.assert_array_equal(restored.data[pb], ref.data[net.pb])


def test_progress_bar_reports_simulation(capsys):
    class Recorder(nengo.utils.progress.ProgressBar):
        def __init__(self):
            super().__init__()
            self.updates = []

        def update(self, progress):
            self.updates.append((progress.name_during, progress.n_steps))

        def close(self):
            pass

    bar = Recorder()
    with spike.Simulator(small_net(), workers=2, progress_bar=bar) as sim:
        sim.run_steps(200)
    stages = {name for name, _ in bar.updates}
    assert "Simulating" in stages and "Building" in stages
    assert max(n for name, n in bar.updates if name == "Simulating") == 200


def test_step_timings_say_where_each_workers_time_went():
    """Each worker measures its compute, its waits for the others' values and its
    sends; the downstream worker of a chain is the one that waits."""
    import time

    with nengo.Network(seed=1) as net:
        a = nengo.Ensemble(300, 1, label="a")
        b = nengo.Ensemble(300, 1, label="b")
        nengo.Connection(nengo.Node(0.5), a)
        nengo.Connection(a, b)
        nengo.Probe(b, synapse=0.01)
    with spike.Simulator(
        net, workers=2, assignments={a: 0, b: 1}, progress_bar=False, compile=False
    ) as sim:
        start = time.perf_counter()
        sim.run_steps(150)
        sim.run_steps(50)
        wall = time.perf_counter() - start
        timings = sim.step_timings
        assert sorted(timings) == sorted(sim.workers)  # no Node function: no client
        for timing in timings.values():
            assert timing.steps == 200
            assert timing.compute > 0 and timing.wait >= 0 and timing.send > 0
            assert timing.compute + timing.wait + timing.send < wall
        upstream, downstream = (timings[name] for name in sim.workers)
        assert downstream.wait > upstream.wait  # the upstream one never waits
        sim.reset()
        assert sim.step_timings == {}
        sim.run_steps(10)
        assert {name: t.steps for name, t in sim.step_timings.items()} == {
            name: 10 for name in sim.workers
        }


def test_bad_worker_count():
    with pytest.raises(ValidationError, match="at least 1"):
        spike.Simulator(small_net(), workers=0)


def test_model_argument_with_prebuilt_model():
    net = small_net()
    model = nengo.builder.Model(dt=0.001)
    model.build(net)
    with spike.Simulator(None, model=model, workers=2, progress_bar=False) as sim:
        sim.run_steps(50)
    ref = run_reference(net, 50)
    np.testing.assert_allclose(sim.data[net.pa], ref.data[net.pa], atol=1e-10, rtol=0)


def test_second_simulator_reuses_the_pooled_workers_and_starts_no_process():
    """The workers a closed Simulator gave back are the next one's: the same
    processes, still running, and none launched for it. (How much faster that
    makes the start-up is measured by the bench, not asserted here.)"""
    from conftest import spike_processes

    from spike.client.pool import get_pool

    pool = get_pool()
    with spike.Simulator(small_net(), workers=2, progress_bar=False) as first:
        handles = set(first._session.handles.values())
    running = set(spike_processes())
    launched = pool.launcher.counter
    assert {h.pid for h in handles} <= running
    with spike.Simulator(small_net(), workers=2, progress_bar=False) as second:
        assert set(second._session.handles.values()) == handles
        assert pool.launcher.counter == launched  # nothing was started for it
        assert set(spike_processes()) == running
        second.run_steps(10)


def test_workers_started_before_the_build_are_the_ones_used():
    """`WorkerPool.prestart` launches workers while the client builds; `acquire`
    hands those same processes out."""
    from spike.client.pool import WorkerPool

    pool = WorkerPool()
    try:
        pool.prestart(2)
        launched = {h.pid for h in pool.starting}
        assert len(launched) == 2
        pool.prestart(2)  # enough are on their way: nothing more starts
        assert {h.pid for h in pool.starting} == launched
        handles = pool.acquire(2)
        assert {h.pid for h in handles} == launched and not pool.starting
        assert all(h.data_address for h in handles)
    finally:
        pool.shutdown()
    assert all(h.exit_status() is not None for h in handles)


def test_unreadable_step_timings_are_ignored_with_a_warning(caplog):
    from spike.client.session import step_timing
    from spike.runtime.executor import StepTiming

    good = {"steps": 10, "compute": 0.5, "wait": 0.1, "send": 0.0}
    assert step_timing(good) == StepTiming(10, 0.5, 0.1, 0.0)
    for bad in (None, {}, dict(good, steps="x"), dict(good, steps=float("inf")),
                dict(good, wait=-1.0), dict(good, compute=float("nan"))):
        caplog.clear()
        assert step_timing(bad) == StepTiming()
        assert "unreadable step timings" in caplog.text
