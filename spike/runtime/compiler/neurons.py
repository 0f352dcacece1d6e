"""Neuron updates as symbolic expressions, one function per built-in neuron type.

Each mirrors the type's ``step`` in ``nengo/neurons.py`` operation for operation.
Where nengo computes something only for some neurons (``log1p`` for the neurons
that spiked), the compiled form computes it for all but feeds the others a harmless
argument, and selects with ``switch``. Types are matched exactly: a user subclass
may override ``step``, so it runs in Python.
"""

import nengo.neurons as nn

from spike.runtime.compiler import libm
from spike.runtime.compiler.kernels import LIFInArena, LIFStep
from spike.runtime.compiler.symbolic import NotLowerable

NEURON_LOWERINGS = {}

SPIKE_TIMES_FROM_LIBM = (nn.LIF, nn.AdaptiveLIF)
"""Types whose spikes hang on the last bits of ``expm1`` and ``log1p``: compiled
only where numpy's are the C library's (`libm.matches_numpy`)."""


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
    if type(op.neurons) in SPIKE_TIMES_FROM_LIBM and not libm.matches_numpy():
        raise NotLowerable("numpy's expm1/log1p here are not the C library's")
    if type(op.neurons) is nn.LIF and _lif_in_arena(op, signals, dt):
        return
    J = signals.read(op.J)
    state = {name: signals.read(sig) for name, sig in op.state.items()}
    output, new_state = function(signals.pt, op.neurons, dt, J, **state)
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
    signals.apply_to_arena(step)
    return True


@lowers(nn.RectifiedLinear)
def rectified_linear(pt, neurons, dt, J):
    return neurons.amplitude * pt.maximum(0.0, J), {}


@lowers(nn.SpikingRectifiedLinear)
def spiking_rectified_linear(pt, neurons, dt, J, voltage):
    voltage = voltage + pt.maximum(J, 0) * dt
    n_spikes = pt.floor(voltage)
    output = (neurons.amplitude / dt) * n_spikes
    return output, {"voltage": voltage - n_spikes}


@lowers(nn.Sigmoid)
def sigmoid(pt, neurons, dt, J):
    return (1.0 / neurons.tau_ref) / (1 + pt.exp(-J)), {}


@lowers(nn.Tanh)
def tanh(pt, neurons, dt, J):
    return (1.0 / neurons.tau_ref) * pt.tanh(J), {}


def _lif_rate(pt, neurons, J):
    j = J - 1
    positive = j > 0
    safe_j = pt.switch(positive, j, 1.0)
    rate = neurons.amplitude / (neurons.tau_ref + neurons.tau_rc * pt.log1p(1.0 / safe_j))
    return pt.switch(positive, rate, 0.0)


@lowers(nn.LIFRate)
def lif_rate(pt, neurons, dt, J):
    return _lif_rate(pt, neurons, J), {}


def _lif(pt, neurons, dt, J, voltage, refractory_time):
    step = LIFStep(dt, neurons.tau_rc, neurons.tau_ref, neurons.min_voltage, neurons.amplitude)
    return step(J, voltage, refractory_time)


@lowers(nn.LIF)
def lif(pt, neurons, dt, J, voltage, refractory_time):
    output, voltage, refractory_time = _lif(pt, neurons, dt, J, voltage, refractory_time)
    return output, {"voltage": voltage, "refractory_time": refractory_time}


@lowers(nn.AdaptiveLIFRate)
def adaptive_lif_rate(pt, neurons, dt, J, adaptation):
    output = _lif_rate(pt, neurons, J - adaptation)
    n = adaptation + (dt / neurons.tau_n) * (neurons.inc_n * output - adaptation)
    return output, {"adaptation": n}


@lowers(nn.AdaptiveLIF)
def adaptive_lif(pt, neurons, dt, J, voltage, refractory_time, adaptation):
    output, voltage, refractory_time = _lif(
        pt, neurons, dt, J - adaptation, voltage, refractory_time
    )
    n = adaptation + (dt / neurons.tau_n) * (neurons.inc_n * output - adaptation)
    return output, {
        "voltage": voltage,
        "refractory_time": refractory_time,
        "adaptation": n,
    }


@lowers(nn.Izhikevich)
def izhikevich(pt, neurons, dt, J, voltage, recovery):
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
def regular_spiking(pt, neurons, dt, J, voltage):
    voltage = voltage + dt * J
    n_spikes = pt.floor(voltage)
    output = (neurons.amplitude / dt) * n_spikes
    return output, {"voltage": voltage - n_spikes}
