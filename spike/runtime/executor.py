"""Running one peer's share of a model, step by step.

The `Executor` holds the peer's signals and step functions (nengo's own operator
implementations) and runs steps in the reference order. Before step ``t + 1`` it waits
for the values other peers computed at the end of step ``t``; after each step it sends
its own crossing values. There is no barrier: a peer runs ahead as far as its inputs
allow.
"""

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
from nengo.builder.signal import SignalDict

from spike.runtime import compiler, shares
from spike.runtime.merge import merge_plan
from spike.runtime.recording import ProbeRecorder

_SHARED_RNG = np.random.RandomState(0)  # for ops that never draw at make_step
_LOOK_UP = object()  # Executor's default for ``prepared``: look the share up


@dataclass
class StepTiming:
    """Where a peer's time went over ``steps`` steps, in seconds.

    ``compute``: its operators; ``wait``: waiting for (and unpacking) the values
    other peers sent; ``send``: packing and sending its own values, and recording
    probes.
    """

    steps: int = 0
    compute: float = 0.0
    wait: float = 0.0
    send: float = 0.0

    def as_dict(self):
        return asdict(self)

    def per_step_us(self):
        """``(compute, wait, send)`` in microseconds per step."""
        n = max(self.steps, 1)
        return tuple(1e6 * t / n for t in (self.compute, self.wait, self.send))


class Executor:
    """One peer's signals, steps and probe records.

    Parameters
    ----------
    plan : PeerPlan
        The peer's share of the model.
    share_key : str, optional
        `spike.runtime.shares.share_key` of the pickled plan: the merged plan and compiled
        program are then loaded from the share cache if there, and kept there if not.
    prepared : tuple or None, optional
        What `spike.runtime.shares.load` returned for ``share_key``, when the caller has
        looked the share up already: ``(plan, layout)`` (``plan`` is then ignored
        and may be None), or None if it is not in the cache. A worker looks the
        share up before unpickling what it received, so that on a hit it never
        holds the share twice. By default the Executor looks it up itself.
    """

    def __init__(self, plan, share_key=None, prepared=_LOOK_UP):
        if prepared is _LOOK_UP:
            prepared = shares.load(share_key)
        if prepared is not None:
            plan, layout = prepared
        else:
            plan = copy.copy(plan)  # merging replaces the plan's lists: keep the caller's
            layout = None
            if plan.optimize:
                merge_plan(plan)
        compiling = compiler.decide(plan.compile, plan.ops)
        self.plan = plan
        self.signals = SignalDict()
        if compiling:
            arena = compiler.Arena(
                [sig.base for op in plan.ops for sig in op.all_signals]
                + [sig.base for sig in plan.bases]
            )
            arena.bind(self.signals)
        for op in plan.ops:
            op.init_signals(self.signals)
        for sig in plan.bases:  # includes route, probe and constant signals
            if sig.base not in self.signals:
                self.signals.init(sig.base)
        self.program = None
        if compiling and layout is not None:
            self.program = compiler.reuse_program(
                layout, plan.ops, arena, self.signals, plan.matrix_dtype
            )
        elif compiling:
            self.program = compiler.Program(
                plan.ops, arena, self.signals, plan.dt, plan.matrix_dtype
            )
        if prepared is None and (plan.optimize or compiling):
            shares.store(share_key, plan, None if self.program is None else self.program.layout())
        self.n_steps = 0
        self.steps = []
        self.run_ahead = []  # `compiler.RunAhead` of each segment with run-ahead tables
        self.recorder = ProbeRecorder(plan.probes)
        self.timing = StepTiming()

    def reset(self, states):
        """Reset signals and remake step functions.

        Parameters
        ----------
        states : dict
            ``{position in the model's step order: RandomState state}`` from
            `rng_states` (only positions this peer runs are needed).
        """
        for key in self.signals:
            self.signals.reset(key)
        items = range(len(self.plan.ops)) if self.program is None else self.program.items
        positions = {id(op): self.plan.order[i] for i, op in enumerate(self.plan.ops)}

        def rng_of(op):
            state = states.get(positions[id(op)])
            if state is None:
                return _SHARED_RNG
            rng = np.random.RandomState()
            rng.set_state(state)
            return rng

        steps = []
        self.run_ahead = []
        for item in items:
            if isinstance(item, compiler.Segment):
                for op, table in item.reset_tables():
                    compiler.fill_table(op, table, self.plan.dt, rng_of(op))
                ahead = [
                    (op, table, rng_of(op), batched)
                    for op, table, batched in item.ahead_tables()
                ]
                if ahead:
                    run_ahead = compiler.RunAhead(
                        ahead, self.plan.dt, self.signals, lambda: self.n_steps + 1
                    )
                    self.run_ahead.append(run_ahead)
                    steps.append(run_ahead.step)
                steps.append(item.make_step())
                continue
            op = self.plan.ops[item]
            steps.append(op.make_step(self.signals, self.plan.dt, rng_of(op)))
        self.steps = steps
        self.n_steps = 0
        self.timing = StepTiming()
        self.clear_probes()

    def get_bases(self, positions):
        """Copies of the current values of ``plan.bases[i]`` for ``i`` in positions."""
        for run_ahead in self.run_ahead:
            run_ahead.sync_state(self.n_steps)
        return [self.signals[self.plan.bases[i]].copy() for i in positions]

    def set_state(self, positions, values, n_steps, exchange):
        """Overwrite signals and the step count, as when restoring a pickled run.

        The values other peers need for the next step are sent again, stamped
        ``n_steps``, since the messages of the original run are gone.
        """
        for i, value in zip(positions, values):
            base = self.plan.bases[i]
            if base.readonly:
                continue
            self.signals[base] = value
        self.n_steps = n_steps
        for run_ahead in self.run_ahead:
            run_ahead.invalidate()
        exchange.set_position(n_steps)
        if n_steps >= 1:
            for dst, route in self.plan.sends.items():
                exchange.send(dst, n_steps, route, self.signals)

    def clear_probes(self):
        self.recorder.clear()

    def take_probe_data(self):
        """Return ``{probe key: array of samples}`` recorded since the last call."""
        return self.recorder.take()

    def run(self, n_steps, exchange, progress=None):
        """Run ``n_steps`` steps, exchanging crossing values through ``exchange``.

        Parameters
        ----------
        n_steps : int
        exchange : Exchange
            Sends and receives per-step values (see `spike.comm.exchange`).
        progress : callable, optional
            Called as ``progress(steps_done_in_this_run)`` after each step.
        """
        plan = self.plan
        signals = self.signals
        recvs = list(plan.recvs.items())
        sends = list(plan.sends.items())
        record = self.recorder.record
        steps = self.steps
        clock = time.perf_counter
        timing = self.timing
        wait = compute = send = 0.0
        ran = 0
        old_err = np.seterr(invalid="raise", divide="ignore")
        try:
            for done in range(n_steps):
                start = clock()
                if self.n_steps >= 1:
                    for src, route in recvs:
                        exchange.recv(src, self.n_steps, route, signals)
                received = clock()
                for step in steps:
                    step()
                computed = clock()
                self.n_steps += 1
                record(signals, self.n_steps)
                for dst, route in sends:
                    exchange.send(dst, self.n_steps, route, signals)
                wait += received - start
                compute += computed - received
                send += clock() - computed
                ran += 1
                if progress is not None:
                    progress(done + 1)
        finally:
            timing.steps += ran
            timing.wait += wait
            timing.compute += compute
            timing.send += send
            np.seterr(**old_err)
