"""A worker's `Executor` run in this process gives nengo.Simulator's signals and probes.

The model is prepared and planned for one worker (`prepare`, `plan_model`), the
worker's plan is run by an `Executor` here (no process, no exchange: one worker has
no routes), and every signal nengo's builder names (``model.sig``) and every probe is
compared with the reference after the same steps: spikes exactly, values to 1e-10.
The models have no Python callables, so the client's plan has nothing to run.
"""

import nengo
import numpy as np
import pytest
from conftest import TOLERANCE
from models import integrator_and_oscillator, networks, processes, recurrent_loop
from nengo.builder.signal import SignalDict

from spike.builder.pipeline import prepare
from spike.client.assemble import probe_samples
from spike.plan.pipeline import plan_model
from spike.runtime.executor import Executor
from spike.runtime.rng import rng_states

DT = 0.001


def neuron_types():
    """Every neuron type nengo ships but Direct (whose functions run in Python, in the
    client), the stochastic ones too, on inputs of processes."""
    types = [
        nengo.LIF(), nengo.LIFRate(), nengo.AdaptiveLIF(), nengo.AdaptiveLIFRate(),
        nengo.Izhikevich(), nengo.RectifiedLinear(), nengo.SpikingRectifiedLinear(),
        nengo.Sigmoid(), nengo.Tanh(), nengo.RegularSpiking(nengo.LIFRate()),
        nengo.PoissonSpiking(nengo.LIFRate()), nengo.StochasticSpiking(nengo.Tanh()),
    ]
    with nengo.Network(seed=6) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=8, seed=2), size_out=1)
        for neuron_type in types:
            a = nengo.Ensemble(20, 1, neuron_type=neuron_type)
            b = nengo.Ensemble(20, 1)
            nengo.Connection(stim, a)
            nengo.Connection(a, b, function=lambda x: x**2)
            nengo.Probe(a.neurons)
            nengo.Probe(b, synapse=0.01)
    return net


def learning():
    """BCM, Oja and Voja, and PES with its error computed by neurons."""
    with nengo.Network(seed=7) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=3))
        pre = nengo.Ensemble(40, 1)
        post = nengo.Ensemble(40, 1)
        error = nengo.Ensemble(40, 1)
        nengo.Connection(stim, pre)
        weights = np.random.RandomState(1).uniform(-1e-3, 1e-3, (40, 40))
        bcm = nengo.Connection(pre.neurons, post.neurons, transform=weights,
                               learning_rule_type=nengo.BCM())
        oja = nengo.Connection(pre.neurons, post.neurons, transform=weights,
                               learning_rule_type=nengo.Oja())
        voja = nengo.Connection(pre, post, learning_rule_type=nengo.Voja())
        pes = nengo.Connection(pre, post, learning_rule_type=nengo.PES(1e-3),
                               function=lambda x: 0)
        nengo.Connection(post, error)
        nengo.Connection(stim, error, transform=-1)
        nengo.Connection(error, pes.learning_rule)
        for conn in (bcm, oja, pes):
            nengo.Probe(conn, "weights", sample_every=0.01)
        nengo.Probe(voja.learning_rule, "scaled_encoders", sample_every=0.01)
        nengo.Probe(post.neurons)
    return net


MODELS = {
    "recurrent_loop": lambda: recurrent_loop(seed=3),
    "integrator_and_oscillator": lambda: integrator_and_oscillator(seed=3),
    "processes": lambda: processes(seed=3),
    "networks": lambda: networks(seed=3),
    "neuron_types": neuron_types,
    "learning": learning,
}


class OneWorker:
    """A model planned for one worker, and that worker's Executor in this process."""

    def __init__(self, net, optimize=True):
        self.prepared = prepare(net, dt=DT)
        self.layout = plan_model(self.prepared, 1, optimize=optimize, compile=False)
        client, self.plan = self.layout.plans
        assert client.is_idle, "the client has work: the model has a Python callable"
        self.model = self.prepared.model
        self.executor = Executor(self.plan)

    def reset(self, seed):
        self.executor.reset(rng_states(self.model.spike_rng_order, seed, DT))

    def step(self, n):
        """``n`` steps, as `Executor.run` takes them but without its loop."""
        executor = self.executor
        for _ in range(n):
            for step in executor.steps:
                step()
            executor.n_steps += 1
            executor.recorder.record(executor.signals, executor.n_steps)

    def signal(self, sig):
        """The current value of ``sig`` (a signal of the model as built; the
        executor's plan may hold it merged into a larger signal)."""
        position = next(i for i, base in enumerate(self.plan.bases) if base is sig.base)
        whole = SignalDict()  # as the client puts values together (`whole_signals`)
        dict.__setitem__(
            whole, sig.base, self.executor.signals[self.executor.plan.bases[position]]
        )
        return whole[sig]

    def probe_data(self):
        records = self.executor.take_probe_data()
        return probe_samples(
            records, self.model.probes, self.layout.probe_records, self.prepared.split.probes
        )


def spiking_output(obj, key):
    return (
        key == "out" and isinstance(obj, nengo.ensemble.Neurons)
        and obj.ensemble.neuron_type.spiking
    )


def assert_same_signals(worker, ref, net):
    """Every signal ``model.sig`` names for the network's objects, and the clock."""
    compared = 0
    for obj in net.all_objects + [obj.neurons for obj in net.all_ensembles]:
        for key, sig in worker.model.sig[obj].items():
            if sig is None or key not in ref.model.sig[obj]:
                continue
            expected = ref.signals[ref.model.sig[obj][key]]
            actual = worker.signal(sig)
            assert actual.shape == expected.shape, (obj, key)
            if spiking_output(obj, key):
                np.testing.assert_array_equal(actual, expected, err_msg=f"{obj} {key}")
            else:
                np.testing.assert_allclose(
                    actual, expected, rtol=0, atol=TOLERANCE, err_msg=f"{obj} {key}"
                )
            compared += 1
    assert compared >= 2 * len(net.all_objects)  # most objects have several signals
    assert worker.signal(worker.model.step) == ref.signals[ref.model.step]
    assert worker.signal(worker.model.time) == pytest.approx(ref.signals[ref.model.time])


def assert_same_probe_data(worker, ref, net, start=None):
    """The probe data taken from the worker are the reference's (from sample
    ``start[probe]`` on, if given: what was recorded since the last take)."""
    data = worker.probe_data()
    assert set(data) == set(net.all_probes)
    for probe in net.all_probes:
        expected = ref.data[probe][start[probe] if start else 0:]
        actual = data[probe]
        assert actual.shape == expected.shape, probe
        target = probe.target
        if (isinstance(target, nengo.ensemble.Neurons) and probe.attr in ("output", "spikes")
                and target.ensemble.neuron_type.spiking and probe.synapse is None):
            np.testing.assert_array_equal(actual, expected, err_msg=str(probe))
        else:
            np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE,
                                       err_msg=str(probe))


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name == "networks" else name
    for name in sorted(MODELS)
])
def test_executor_gives_the_reference_signals_and_probes(name):
    net = MODELS[name]()
    worker = OneWorker(net)
    with nengo.Simulator(net, dt=DT, seed=5, progress_bar=False) as ref:
        worker.reset(seed=5)
        worker.step(120)
        ref.run_steps(120)
        assert_same_signals(worker, ref, net)
        assert_same_probe_data(worker, ref, net)
        # more steps: the data recorded since the last take
        taken = {probe: len(ref.data[probe]) for probe in net.all_probes}
        worker.step(30)
        ref.run_steps(30)
        assert_same_signals(worker, ref, net)
        assert_same_probe_data(worker, ref, net, start=taken)


def test_reset_with_another_seed_gives_the_reference_noise():
    """Processes and noise draw from the states `rng_states` replays: after a reset
    with another seed, the executor's noise is the reference's for that seed."""
    net = processes(seed=3)
    worker = OneWorker(net)
    with nengo.Simulator(net, dt=DT, seed=1, progress_bar=False) as ref:
        worker.reset(seed=1)
        worker.step(50)
        first = worker.probe_data()
        for seed in (9, 1):
            ref.reset(seed=seed)
            worker.reset(seed=seed)
            worker.step(80)
            ref.run_steps(80)
            assert_same_probe_data(worker, ref, net)
            assert_same_signals(worker, ref, net)
    # another seed gives other noise (the comparison above could not pass by luck)
    noise = next(
        p for p in net.all_probes
        if isinstance(getattr(p.target, "output", None), nengo.processes.WhiteNoise)
    )
    ref_other = nengo.Simulator(net, dt=DT, seed=9, progress_bar=False)
    with ref_other:
        ref_other.run_steps(50)
    assert not np.allclose(first[noise], ref_other.data[noise])


def test_unmerged_plan_gives_the_same_signals():
    """``optimize=False``: the worker runs the builder's operators one by one."""
    net = recurrent_loop(seed=3)
    merged, unmerged = OneWorker(net), OneWorker(net, optimize=False)
    assert len(unmerged.executor.plan.ops) > len(merged.executor.plan.ops)
    with nengo.Simulator(net, dt=DT, seed=2, progress_bar=False) as ref:
        ref.run_steps(100)
        for worker in (merged, unmerged):
            worker.reset(seed=2)
            worker.step(100)
            assert_same_signals(worker, ref, net)
            assert_same_probe_data(worker, ref, net)


def test_run_counts_steps_records_and_reports_progress():
    """`Executor.run` with no routes needs no exchange: it steps, records the probes
    at their periods and counts where its time went."""
    net = recurrent_loop(seed=3)
    with net:
        sampled = nengo.Probe(net.ensembles[0], synapse=0.01, sample_every=0.0025)
    worker = OneWorker(net)
    worker.reset(seed=4)
    done = []
    worker.executor.run(60, exchange=None, progress=done.append)
    worker.executor.run(40, exchange=None)
    assert done == list(range(1, 61))
    assert worker.executor.n_steps == 100
    timing = worker.executor.timing
    assert timing.steps == 100 and timing.compute > 0 and timing.wait >= 0
    with nengo.Simulator(net, dt=DT, seed=4, progress_bar=False) as ref:
        ref.run_steps(100)
    assert_same_probe_data(worker, ref, net)
    assert len(ref.data[sampled]) == 40
    worker.executor.run(10, exchange=None)
    worker.reset(seed=4)  # forgets the records not taken, and the count
    assert worker.executor.n_steps == 0 and worker.executor.timing.steps == 0
    assert all(len(v) == 0 for v in worker.executor.take_probe_data().values())


def test_get_bases_copies_the_current_values():
    net = recurrent_loop(seed=3)
    worker = OneWorker(net)
    worker.reset(seed=4)
    worker.step(20)
    positions = list(range(len(worker.plan.bases)))
    values = worker.executor.get_bases(positions)
    for base, value in zip(worker.plan.bases, values):
        np.testing.assert_array_equal(value, worker.signal(base))
    worker.step(1)
    voltage = worker.model.sig[net.ensembles[0].neurons]["voltage"].base
    position = next(i for i, b in enumerate(worker.plan.bases) if b is voltage)
    assert not np.array_equal(values[position], worker.signal(voltage))  # a copy
