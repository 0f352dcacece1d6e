"""Built-in processes whose output depends on the time alone, as a table look-up.

nengo's ``WhiteSignal`` draws one period of its signal when its step is made (at
each reset, from the operator's random state), then returns row
``round(t / dt) % n`` of it; ``PresentInput`` returns row
``int((t - dt) / presentation_time + 1e-7) % n`` of its inputs; ``Piecewise`` with
``interpolation="zero"`` returns the value of the last of its times ``tp`` before
``t + dt / 2`` (``searchsorted``), zeros before the first. Compiled, each is a
table, an input of the segment, and the same row index computed from the time
signal with the same floating-point operations (divisors are inputs, not graph
constants: PyTensor turns a division by a constant into a multiplication by its
inverse, which can differ in the last bit).

A WhiteSignal's table is filled at each reset (`fill_table`) by nengo's own step
function, made as nengo makes it (same random state), called at each step of one
period: Spike does not generate the signal itself.
"""

import numpy as np
from nengo.builder.signal import SignalDict
from nengo.processes import Piecewise, PresentInput, WhiteSignal

from .symbolic import NotLowerable

TABLE_PROCESSES = (WhiteSignal, PresentInput, Piecewise)

MAX_TABLE_ROWS = 1_000_000
"""A WhiteSignal whose period has more steps than this runs in Python (filling its
table would take seconds at each reset)..."""

MAX_TABLE_VALUES = 8_000_000
"""... and so does one whose table would hold more values than this (64 MB)."""


def white_signal_rows(process, dt):
    """Steps in one period of a WhiteSignal: the length of the signal nengo's
    ``make_step`` draws (the inverse real FFT of ``ceil(period / dt / 2) + 1``
    coefficients)."""
    return 2 * int(np.ceil(process.period / dt / 2.0))


def lower_table_process(op, signals, dt):
    """A WhiteSignal, PresentInput or Piecewise ``SimProcess`` (exact types: a
    subclass may override ``make_step``) as a row of its table, chosen by the time."""
    process = op.process
    if op.input is not None:
        raise NotLowerable(f"{type(process).__name__} with an input")
    if op.output.ndim != 1:
        raise NotLowerable(f"{type(process).__name__} on a matrix signal")
    from pytensor.tensor.extra_ops import searchsorted

    pt = signals.pt
    t = signals.read(op.t)
    if type(process) is WhiteSignal:
        rows = white_signal_rows(process, dt)
        if rows > MAX_TABLE_ROWS or rows * op.output.size > MAX_TABLE_VALUES:
            raise NotLowerable(f"WhiteSignal of {rows} x {op.output.size} values a period")
        _check_period(op, dt, rows)
        table = signals.reset_table(op, (rows, op.output.size))
        row = pt.cast(pt.round(t / signals.scalar_input(dt), mode="half_to_even"), "int64")
        row = row % rows
    elif type(process) is Piecewise:
        if process.interpolation != "zero":
            raise NotLowerable(f"Piecewise with {process.interpolation} interpolation")
        times, values = zip(*sorted(process.data.items()))
        if any(callable(value) for value in values):
            raise NotLowerable("Piecewise with functions of the time")
        # row 0: zeros (before the first time); row i: the value from times[i - 1]
        rows = [np.zeros(op.output.size)] + [np.ravel(value) for value in values]
        table = signals.constant(np.array(rows, dtype=np.float64))
        times = signals.constant(np.array(times, dtype=np.float64))
        row = searchsorted(times, t + 0.5 * dt)
    else:
        inputs = np.asarray(process.inputs, dtype=np.float64)
        rows = len(inputs)
        table = signals.constant(inputs.reshape(rows, -1))
        presentation_time = float(process.presentation_time)
        position = (t - dt) / signals.scalar_input(presentation_time) + 1e-7
        row = pt.cast(pt.trunc(position), "int64") % rows
    signals.write(op.output, table[row], inc=op.mode == "inc")


def _check_period(op, dt, rows):
    """Raise `NotLowerable` unless nengo's signal for ``op`` repeats every ``rows``
    steps (as `white_signal_rows` says), made here with a scratch random state: a
    check that nengo still draws a period of that length."""
    table = np.zeros((2, op.output.size))
    fill_table(op, table, dt, np.random.RandomState(0), steps=(0, rows))
    if not np.array_equal(table[0], table[1]):
        raise NotLowerable("WhiteSignal whose period is not the expected number of steps")


def fill_table(op, table, dt, rng, steps=None):
    """Fill ``op``'s table (a WhiteSignal's) with its outputs at steps ``0 .. n-1``
    (or at ``steps``): nengo's own step function, made with ``rng`` as nengo makes
    it, called with the time each step has (``step * dt``, as nengo's
    ``TimeUpdate`` computes it)."""
    scratch = SignalDict()
    op.init_signals(scratch)
    step = op.make_step(scratch, dt, rng)
    time, output = scratch[op.t], scratch[op.output]
    for i, k in enumerate(range(table.shape[0]) if steps is None else steps):
        time[...] = k * dt
        output[...] = -0.0  # an "inc" operator adds to it: -0.0 + x is x, even -0.0
        step()
        table[i] = output
