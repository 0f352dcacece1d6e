"""Neuron updates as symbolic expressions, one function per built-in neuron type.

Each mirrors the type's ``step`` in ``nengo/neurons.py`` operation for operation.
Where nengo computes something only for some neurons (``log1p`` for the neurons
that spiked), the compiled form computes it for all but feeds the others a harmless
argument, and selects with ``switch``. Types are matched exactly: a user subclass
may override ``step``, so it runs in Python.
"""

import nengo.neurons as nn

from spike.runtime.compiler.kernels import LIFInArena, LIFStep, NumpyUfunc
from spike.runtime.compiler.symbolic import NotLowerable

NEURON_LOWERINGS = {}

def lowers(neuron_type):
    def register(function):
        NEURON_LOWERINGS[neuron_type] = function
        return function

    return register


def lower_neurons(op, signals, dt):
    """Lower a ``SimNeurons`` operator."""
    function = NEURON_LOWERINGS.get(type(op.neurons))
    if function is None:
        raise NotLowerable(f"no compiled form of {type(op.neurons).__name__} neurons")
    if op.J.ndim != 1:
        raise NotLowerable("neurons on a matrix signal")
    if type(op.neurons) is nn.LIF and _lif_in_arena(op, signals, dt):
        return
    J = signals.read(op.J)
    state = {name: signals.read(sig) for name, sig in op.state.items()}
    output, new_state = function(signals, op.neurons, dt, J, **state)
    signals.write(op.output, output)
    for name, value in new_state.items():
        signals.write(op.state[name], value)


def _lif_in_arena(op, signals, dt):
    """Lower LIF neurons as `LIFInArena` if their four signals are disjoint
    contiguous ranges of the arena (they are, unless a user built them oddly);
    False if not."""
    neurons = op.neurons
    starts = signals.disjoint_arena_ranges(
        (op.J, op.state["voltage"], op.state["refractory_time"], op.output)
    )
    if starts is None:
        return False
    n = op.J.size
    step = LIFInArena(
        dt=float(dt),
        tau_rc=float(neurons.tau_rc),
        tau_ref=float(neurons.tau_ref),
        min_voltage=float(neurons.min_voltage),
        amplitude=float(neurons.amplitude),
        starts=tuple(int(s) for s in starts),
        n=int(n),
        inplace=False,
    )
    signals.apply_to_arena(step, signals.ufunc_loops())
    return True


@lowers(nn.RectifiedLinear)
def rectified_linear(signals, neurons, dt, J):
    pt = signals.pt
    return neurons.amplitude * pt.maximum(0.0, J), {}


@lowers(nn.SpikingRectifiedLinear)
def spiking_rectified_linear(signals, neurons, dt, J, voltage):
    pt = signals.pt
    voltage = voltage + pt.maximum(J, 0) * dt
    n_spikes = pt.floor(voltage)
    output = (neurons.amplitude / dt) * n_spikes
    return output, {"voltage": voltage - n_spikes}


@lowers(nn.Sigmoid)
def sigmoid(signals, neurons, dt, J):
    return (1.0 / neurons.tau_ref) / (1 + NumpyUfunc("exp")(-J, signals.ufunc_loops())), {}


@lowers(nn.Tanh)
def tanh(signals, neurons, dt, J):
    return (1.0 / neurons.tau_ref) * NumpyUfunc("tanh")(J, signals.ufunc_loops()), {}


def _lif_rate(signals, neurons, J):
    pt = signals.pt
    j = J - 1
    positive = j > 0
    safe_j = pt.switch(positive, j, 1.0)
    log1p = NumpyUfunc("log1p")(1.0 / safe_j, signals.ufunc_loops())
    rate = neurons.amplitude / (neurons.tau_ref + neurons.tau_rc * log1p)
    return pt.switch(positive, rate, 0.0)


@lowers(nn.LIFRate)
def lif_rate(signals, neurons, dt, J):
    return _lif_rate(signals, neurons, J), {}


def _lif(signals, neurons, dt, J, voltage, refractory_time):
    step = LIFStep(dt, neurons.tau_rc, neurons.tau_ref, neurons.min_voltage, neurons.amplitude)
    return step(J, voltage, refractory_time, signals.ufunc_loops())


@lowers(nn.LIF)
def lif(signals, neurons, dt, J, voltage, refractory_time):
    output, voltage, refractory_time = _lif(signals, neurons, dt, J, voltage, refractory_time)
    return output, {"voltage": voltage, "refractory_time": refractory_time}


@lowers(nn.AdaptiveLIFRate)
def adaptive_lif_rate(signals, neurons, dt, J, adaptation):
    output = _lif_rate(signals, neurons, J - adaptation)
    n = adaptation + (dt / neurons.tau_n) * (neurons.inc_n * output - adaptation)
    return output, {"adaptation": n}


@lowers(nn.AdaptiveLIF)
def adaptive_lif(signals, neurons, dt, J, voltage, refractory_time, adaptation):
    output, voltage, refractory_time = _lif(
        signals, neurons, dt, J - adaptation, voltage, refractory_time
    )
    n = adaptation + (dt / neurons.tau_n) * (neurons.inc_n * output - adaptation)
    return output, {
        "voltage": voltage,
        "refractory_time": refractory_time,
        "adaptation": n,
    }


@lowers(nn.Izhikevich)
def izhikevich(signals, neurons, dt, J, voltage, recovery):
    pt = signals.pt
    J = pt.maximum(-30.0, J)
    dV = (0.04 * voltage**2 + 5 * voltage + 140 - recovery + J) * 1000
    voltage = voltage + dV * dt
    spiked = voltage >= 30
    output = spiked / dt
    voltage = pt.switch(spiked, neurons.reset_voltage, voltage)
    dU = (neurons.tau_recovery * (neurons.coupling * voltage - recovery)) * 1000
    recovery = recovery + dU * dt
    recovery = pt.switch(spiked, recovery + neurons.reset_recovery, recovery)
    return output, {"voltage": voltage, "recovery": recovery}


@lowers(nn.RegularSpiking)
def regular_spiking(signals, neurons, dt, J, voltage):
    pt = signals.pt
    voltage = voltage + dt * J
    n_spikes = pt.floor(voltage)
    output = (neurons.amplitude / dt) * n_spikes
    return output, {"voltage": voltage - n_spikes}
