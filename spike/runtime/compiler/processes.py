"""Built-in processes without an input, compiled as tables.

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

The other built-in processes without an input (`AHEAD_PROCESSES`: the noises,
which draw random numbers at every step, ``Piecewise`` with another interpolation,
a WhiteSignal whose period is too long for a table) are *run ahead*: `RunAhead`
calls nengo's own step function for the next ``rows`` steps at once, in step order,
into a table whose row ``s % rows`` the compiled step reads at step ``s``. The
same calls with the same random state in the same order give the same numbers; what
changes is only when they are made, so the compiled segment is not cut around them.
"""

import numpy as np
from nengo.builder.signal import SignalDict
from nengo.dists import Gaussian, Uniform
from nengo.processes import (
    BrownNoise,
    FilteredNoise,
    Piecewise,
    PresentInput,
    WhiteNoise,
    WhiteSignal,
)

from spike.runtime.compiler.symbolic import NotLowerable

AHEAD_PROCESSES = (WhiteNoise, FilteredNoise, BrownNoise)
"""Processes always run ahead (they draw random numbers at every step)."""

TABLE_PROCESSES = (WhiteSignal, PresentInput, Piecewise, *AHEAD_PROCESSES)
"""Every process type compiled by `lower_table_process`."""

AHEAD_BYTES = 256 * 1024
"""Bytes of a run-ahead table (a row per step), when that is from 1 to
`MAX_AHEAD_ROWS` rows."""

MAX_AHEAD_ROWS = 32
"""Most steps a run-ahead table holds: a refill then costs what 32 of nengo's
steps cost (or one batched draw), once every 32 steps. A table of a 200-neuron
ensemble's noise is then 50 kB."""

MAX_TABLE_ROWS = 1_000_000
"""A WhiteSignal whose period has more steps than this is run ahead (filling a
table of its period would take seconds at each reset)..."""

MAX_TABLE_VALUES = 8_000_000
"""... and so does one whose table would hold more values than this (64 MB)."""


def white_signal_rows(process, dt):
    """Steps in one period of a WhiteSignal: the length of the signal nengo's
    ``make_step`` draws (the inverse real FFT of ``ceil(period / dt / 2) + 1``
    coefficients)."""
    return 2 * int(np.ceil(process.period / dt / 2.0))


def ahead_rows(size):
    """Rows of a run-ahead table of rows of ``size`` values (see `AHEAD_BYTES`)."""
    return int(np.clip(AHEAD_BYTES // (8 * max(size, 1)), 1, MAX_AHEAD_ROWS))


def runs_ahead(op, dt):
    """True if ``op`` (a ``SimProcess`` of `TABLE_PROCESSES`) is run ahead (see
    `RunAhead`), not tabled whole."""
    process = op.process
    if type(process) is WhiteSignal:
        rows = white_signal_rows(process, dt)
        return rows > MAX_TABLE_ROWS or rows * op.output.size > MAX_TABLE_VALUES
    if type(process) is Piecewise:
        return process.interpolation != "zero"
    return type(process) in AHEAD_PROCESSES


def draws_in_batches(process):
    """True for a white or filtered noise (exact types) of a Gaussian or real
    uniform distribution: numpy's legacy normal and uniform draws make the same
    numbers in the same order whether asked for one row at a time or many (the
    Gaussian's spare value is part of the random state), so its draws for many
    steps can be made in one call (see `_batched_draw`)."""
    if type(process) not in AHEAD_PROCESSES:
        return False
    dist = process.dist
    return type(dist) is Gaussian or (type(dist) is Uniform and not dist.integer)


def step_row(signals, t, dt, rows):
    """The step number ``round(t / dt)`` modulo ``rows``, symbolic."""
    pt = signals.pt
    step = pt.cast(pt.round(t / signals.scalar_input(dt), mode="half_to_even"), "int64")
    return step % rows


def ahead_row(op, signals, dt, batched):
    """The row of ``op``'s run-ahead table for the step (see `RunAhead`): its
    outputs, or with ``batched``, its white noise's draws (scaled as nengo scales
    them), the filter of a filtered noise being compiled."""
    rows = ahead_rows(op.output.size)
    table = signals.ahead_table(op, (rows, op.output.size), batched)
    return table[step_row(signals, signals.read(op.t), dt, rows)]


def lower_table_process(op, signals, dt):
    """A ``SimProcess`` of one of `TABLE_PROCESSES` (exact types: a subclass may
    override ``make_step``) as a row of its table, chosen by the time."""
    process = op.process
    if op.input is not None:
        raise NotLowerable(f"{type(process).__name__} with an input")
    if op.output.ndim != 1:
        raise NotLowerable(f"{type(process).__name__} on a matrix signal")
    from pytensor.tensor.extra_ops import searchsorted

    pt = signals.pt
    t = signals.read(op.t)
    if type(process) is Piecewise and any(callable(v) for v in process.data.values()):
        # a user's functions of the time: called ahead, their side effects would
        # come early
        raise NotLowerable("Piecewise with functions of the time")
    if runs_ahead(op, dt):
        batched = type(process) is WhiteNoise and draws_in_batches(process)
        ranges = signals.disjoint_arena_ranges((op.output, op.t))
        if ranges is None:
            value = ahead_row(op, signals, dt, batched)
            signals.write(op.output, value, inc=op.mode == "inc")
            return
        from spike.runtime.compiler.kernels import TableRowToArena

        rows = ahead_rows(op.output.size)
        kernel = TableRowToArena(
            time_at=ranges[1], dt=float(dt), rows=rows, dst_start=ranges[0],
            n=op.output.size, inc=op.mode == "inc", inplace=False,
        )
        signals.apply_to_arena(kernel, signals.ahead_table(op, (rows, op.output.size), batched))
        return
    if type(process) is WhiteSignal:
        rows = white_signal_rows(process, dt)
        _check_period(op, dt, rows)
        table = signals.reset_table(op, (rows, op.output.size))
        row = step_row(signals, t, dt, rows)
    elif type(process) is Piecewise:
        times, values = zip(*sorted(process.data.items()))
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


class _NengoSteps:
    """``op``'s own step function, made as nengo makes it (with ``rng``) on scratch
    signals, called at chosen steps: `output_at` sets the time as nengo's
    ``TimeUpdate`` computes it (``step * dt``) and returns the output."""

    def __init__(self, op, dt, rng):
        self.scratch = SignalDict()
        op.init_signals(self.scratch)
        self.step = op.make_step(self.scratch, dt, rng)
        self.dt = dt
        self.time, self.output = self.scratch[op.t], self.scratch[op.output]

    def output_at(self, step):
        self.time[...] = step * self.dt
        self.output[...] = -0.0  # an "inc" operator adds to it: -0.0 + x is x, even -0.0
        self.step()
        return self.output


def fill_table(op, table, dt, rng, steps=None):
    """Fill ``op``'s table (a WhiteSignal's) with its outputs at steps ``0 .. n-1``
    (or at ``steps``): nengo's own step function (`_NengoSteps`)."""
    nengo_steps = _NengoSteps(op, dt, rng)
    for i, k in enumerate(range(table.shape[0]) if steps is None else steps):
        table[i] = nengo_steps.output_at(k)


class RunAhead:
    """Fills a segment's run-ahead tables (see the module's docstring) before the
    steps that read them.

    Each operator's step function is made once, at the reset, as nengo makes it
    (the operator's random state, its own scratch signals), then called for the
    steps ``s .. s + rows - 1`` at once, with the time each has (``s * dt``), its
    outputs stored in rows ``s % rows``. A step that is not in an operator's window
    refills its window from that step: at the first step, after each ``rows`` steps,
    and after the signals were set (`invalidate`).

    A process with state (a filtered noise's filter) keeps it in its scratch
    signals, so the model's state signals would stay behind: the state after each
    step is kept in a table of its own, which `sync_state` copies into the model's
    signals (before they are read, for pickling), and a refill that does not
    continue the window starts from the model's state (after they were set).

    Parameters
    ----------
    entries : list of (op, table, rng, batched)
        The operators, their tables, the random states to make their steps with,
        and whether a table holds the white noise's draws (`_batched_draw`, drawn
        many steps at once) instead of the outputs of nengo's steps.
    dt : float
    signals : SignalDict
        The model's signals (the state signals of ``op``).
    next_step : callable
        The number of the step about to run (1 for the first after a reset).
    """

    def __init__(self, entries, dt, signals, next_step):
        self.signals = signals
        self.next_step = next_step
        self.entries = [
            _DrawnAhead(table, _batched_draw(op.process, op.output.size, rng, dt))
            if batched else _SteppedAhead(table, _NengoSteps(op, dt, rng), op.state)
            for op, table, rng, batched in entries
        ]
        self.low = self.high = 0  # steps every window holds: [low, high)

    def step(self):
        """Before a step: refill the windows that do not hold it."""
        n = self.next_step()
        if self.low <= n < self.high:
            return
        for entry in self.entries:
            if not entry.start <= n < entry.stop:
                entry.fill(n, self.signals)
        self.low = max(entry.start for entry in self.entries)
        self.high = min(entry.stop for entry in self.entries)

    def sync_state(self, n_steps):
        """Copy the state after step ``n_steps`` into the model's signals."""
        for entry in self.entries:
            if entry.start <= n_steps < entry.stop:
                row = n_steps % entry.table.shape[0]
                for sig, _, kept in entry.states:
                    self.signals[sig][...] = kept[row]

    def invalidate(self):
        """The model's signals were set: refill from them at the next step."""
        for entry in self.entries:
            entry.start = entry.stop = -1
        self.low = self.high = 0


def _batched_draw(process, size, rng, dt):
    """``draw(rows)``: the next ``rows`` steps' white values of ``process`` (see
    `draws_in_batches`) of ``size`` values, in one call, as nengo's step draws and
    scales them a step at a time (``process.get_rng``, ``dist.sample``, times
    ``1 / sqrt(dt)`` if ``scale``)."""
    rng = process.get_rng(rng)  # as nengo's SimProcess.make_step does, once
    alpha = 1.0 / np.sqrt(dt)  # nengo's WhiteNoise.make_step's
    dist, scale = process.dist, process.scale

    def draw(rows):
        values = dist.sample(n=rows, d=size, rng=rng)
        return alpha * values if scale else values

    return draw


class _Ahead:
    """One operator of `RunAhead`: its table, the steps it holds, its state."""

    states = ()  # (model signal, scratch array, table of states after each step)

    def __init__(self, table):
        self.table = table
        self.start = self.stop = 0  # the steps the table holds: [start, stop)

    def fill(self, first, signals):
        """Fill the table with steps ``first ..``, from the model's state unless
        this continues the last window."""
        if first != self.stop:
            for sig, now, _ in self.states:
                now[...] = signals[sig]
        rows = self.table.shape[0]
        self.start, self.stop = first, first + rows
        self._write(first, rows)


class _DrawnAhead(_Ahead):
    """A white noise's draws, ``rows`` steps in one call (`_batched_draw`)."""

    def __init__(self, table, draw):
        super().__init__(table)
        self.draw = draw

    def _write(self, first, rows):
        self.table[np.arange(first, first + rows) % rows] = self.draw(rows)


class _SteppedAhead(_Ahead):
    """Outputs of nengo's step, called step by step, with the state after each."""

    def __init__(self, table, nengo_steps, op_state):
        super().__init__(table)
        self.nengo_steps = nengo_steps
        self.states = [
            (sig, nengo_steps.scratch[sig], np.zeros((table.shape[0],) + sig.shape))
            for sig in op_state.values()
        ]

    def _write(self, first, rows):
        for k in range(first, first + rows):
            row = k % rows
            self.table[row] = self.nengo_steps.output_at(k)
            for _, now, kept in self.states:
                kept[row] = now
