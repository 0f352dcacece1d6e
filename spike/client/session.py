"""The client's side of one simulation: its workers, its own share, and the run loop.

A `Session` owns the workers serving one Simulator. It sends them their plans, resets
them, runs steps while running the client's own share (Nodes with Python callables),
watches for errors and dead workers, and gathers probe data. All of it happens in the
user's thread: ZeroMQ sockets are used from one thread only.
"""

import contextlib
import dataclasses
import logging
import math
import os
import pickle
import secrets
import time

import cloudpickle
import zmq

from spike import config
from spike.builder.partition import describe_object
from spike.client.pool import remote_error
from spike.comm import protocol, shm
from spike.comm.exchange import Exchange
from spike.exceptions import SpikeError, UnsupportedError
from spike.plan.placement import CLIENT
from spike.runtime.executor import Executor, StepTiming
from spike.runtime.rng import encode_states, rng_states

logger = logging.getLogger(__name__)

WATCH_INTERVAL_MS = 100
PROGRESS_LOOK_INTERVAL = 0.25  # seconds between looks at workers' progress (progress bars)
SETUP_TIMEOUT = 600.0  # seconds a worker may take to set up (compiling on a cold cache)


def _pickle_plan(plan, owners):
    """Pickle a worker's plan; name the object at fault if that is impossible."""
    try:
        return cloudpickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        for op in plan.ops:
            try:
                cloudpickle.dumps(op)
            except Exception as op_error:
                owner = owners.get(op)
                what = describe_object(owner) if owner is not None else str(op)
                raise UnsupportedError(
                    f"{what} cannot be sent to a worker process: {op_error}. Keep it in "
                    "the client with assignments={obj: 'client'}, or make it picklable."
                ) from op_error
        raise UnsupportedError(f"the model cannot be sent to a worker: {e}") from e


def step_timing(fields):
    """A worker's reported `StepTiming`; an empty one (and a warning) if what it
    sent is not one."""
    try:
        steps = int(fields["steps"])
        seconds = {name: float(fields[name]) for name in ("compute", "wait", "send")}
        if steps < 0 or not all(math.isfinite(t) and t >= 0 for t in seconds.values()):
            raise ValueError("negative or not finite")
        return StepTiming(steps=steps, **seconds)
    except (TypeError, KeyError, ValueError, OverflowError) as e:
        logger.warning("a worker reported unreadable step timings (%s): ignored", e)
        return StepTiming()


class Session:
    """The workers and exchange of one Simulator.

    Parameters
    ----------
    plans : list of PeerPlan
        One per peer; ``plans[0]`` is the client's.
    order : list of Operator
        The model's step order (to compute random states at reset).
    pool : WorkerPool
    owners : dict
        ``{operator: NengoObject}`` for error messages.
    """

    def __init__(self, plans, order, pool, owners):
        self.pool = pool
        self.order = order
        self.dt = plans[0].dt
        self.plans = plans
        self.broken = None
        self.session_id = 0
        self.token = secrets.token_hex(6)
        self.shm_paths = []
        self.worker_peers = [p.peer for p in plans[1:] if not p.is_idle]
        blobs = {peer: _pickle_plan(plans[peer], owners) for peer in self.worker_peers}

        self.pull = pool.context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, 0)
        self.address = pool.bind_data(self.pull)

        self.handles = {}
        self.client = None
        self.exchange = None
        try:
            handles = pool.acquire(len(self.worker_peers))
            self.handles = dict(zip(self.worker_peers, handles))
            data_addresses = {CLIENT: self.address}
            data_addresses.update({p: h.data_address for p, h in self.handles.items()})
            channels = self._channel_addresses(data_addresses)
            # the client prepares its own share while the workers prepare theirs
            for peer, handle in self.handles.items():
                pool.send(
                    handle,
                    protocol.SETUP,
                    {
                        "session": 0,
                        "sends": channels[peer]["send"],
                        "recvs": channels[peer]["recv"],
                    },
                    blobs=[blobs[peer]],
                )
            del blobs
            if not plans[0].is_idle:
                self.client = Executor(plans[0])
                self.exchange = Exchange(
                    pool.context,
                    self.pull,
                    0,
                    plans[0],
                    channels[CLIENT]["send"],
                    channels[CLIENT]["recv"],
                    wait_hook=self.watch,
                    curve=pool.data_curve,
                )
            for handle in self.handles.values():
                pool.expect(handle, (protocol.READY,), SETUP_TIMEOUT)
        except BaseException:
            self.close(failed=True)
            raise
        self.progress = {}
        self.done = {}
        self.timings = {}

    def _channel_addresses(self, data_addresses):
        """Per peer, the address of the channel of each route to and from it
        (`spike.comm.channels`): ``{peer: {"send": {dst: address}, "recv": {src:
        address}}}``, peers as strings (as the setup message carries them).

        Peers on one host share a ring, ``shm://PATH``; other pairs use ZeroMQ to the
        receiver's data socket (its address in ``data_addresses``). The pool says
        which peers share a host and where their rings go (`WorkerPool.shm_groups`):
        locally, a directory of this client's under /dev/shm, removed at close (and,
        if the client was killed, by the next client's pool); on other hosts, a
        directory their daemon made for the job. Setting ``SPIKE_EXCHANGE=zmq`` sends
        everything over ZeroMQ instead.
        """
        channels = {p.peer: {"send": {}, "recv": {}} for p in self.plans}
        groups = {}
        if config.get("SPIKE_EXCHANGE") != "zmq" and shm.available():
            groups = self.pool.shm_groups(self.handles)
        own = shm.client_directory(self.pool.pid)
        for plan in self.plans:
            src = plan.peer
            for dst in plan.sends:
                directory = groups.get(src)
                if directory is not None and groups.get(dst) == directory:
                    path = os.path.join(directory, f"{self.token}-{src}-{dst}")
                    if directory == own:  # others are removed by their daemon
                        self.shm_paths.append(path)
                    address = "shm://" + path
                else:
                    address = data_addresses[dst]
                channels[src]["send"][str(dst)] = address
                channels[dst]["recv"][str(src)] = address
        return channels

    @property
    def workers(self):
        """Names of the worker processes in use."""
        return [h.name for h in self.handles.values()]

    def step_timings(self):
        """``{name: StepTiming}`` since the last reset: each worker's as it reported
        at the end of its last run, and the client's if it runs operators."""
        timings = {
            handle.name: self.timings[peer]
            for peer, handle in self.handles.items()
            if peer in self.timings
        }
        if self.client is not None:
            timings["client"] = dataclasses.replace(self.client.timing)  # a snapshot
        return timings

    def _guard(self):
        if self.broken is not None:
            raise SpikeError(
                f"this Simulator cannot continue after an earlier failure ({self.broken}); "
                "create a new Simulator"
            )

    def _fail(self, exc):
        """Stop every worker of the session: their state can no longer be trusted."""
        self.broken = f"{type(exc).__name__}: {exc}"
        self.pool.discard(list(self.handles.values()))
        self.handles = {}

    @contextlib.contextmanager
    def _guarded(self):
        """Refuse to work after an earlier failure; and on any failure (or
        interruption) inside, stop every worker (`_fail`) and raise it."""
        self._guard()
        try:
            yield
        except BaseException as e:
            self._fail(e)
            raise

    def reset(self, seed):
        with self._guarded():
            states = rng_states(self.order, seed, self.dt)
            self.session_id = secrets.randbits(62)
            for peer, handle in self.handles.items():
                mine = set(self.plans[peer].order)
                fields, keys = encode_states({k: v for k, v in states.items() if k in mine})
                fields["session"] = self.session_id
                self.pool.send(handle, protocol.RESET, fields, keys)
            if self.client is not None:
                self.exchange.set_session(self.session_id)
                self.client.reset(states)
            self.timings = {}
            for handle in self.handles.values():
                self.pool.expect(handle, (protocol.RESET_DONE,))

    def watch(self):
        """Handle worker messages that may arrive during a run; raise on trouble."""
        self.pool.pump(0)
        for peer, handle in self.handles.items():
            inbox = handle.inbox
            while inbox:
                message = inbox.popleft()
                if message.op == protocol.PROGRESS:
                    self.progress[peer] = message.fields["steps"]
                elif message.op == protocol.DONE:
                    self.done[peer] = message.fields["n_steps"]
                    self.timings[peer] = step_timing(message.fields.get("timing"))
                elif message.op == protocol.ERROR:
                    raise remote_error(message, handle)
                else:
                    logger.warning("%s sent %r during a run", handle.name, message.op)
        self.pool.check_alive(self.handles.values())

    def run(self, n_steps, progress=None):
        """Run ``n_steps`` on every peer; ``progress(steps)`` reports the slowest."""
        with self._guarded():
            self.progress = {peer: 0 for peer in self.handles}
            self.done = {}
            reported = [0]
            looked = [0, time.monotonic() + PROGRESS_LOOK_INTERVAL]

            def report(done):
                if progress is None:
                    return
                if done - looked[0] >= 64:  # the client steps on: read the workers' progress
                    looked[0] = done        # now and then (its wait hook may never run)
                    now = time.monotonic()
                    if now >= looked[1]:
                        looked[1] = now + PROGRESS_LOOK_INTERVAL
                        self.watch()
                slowest = min([done] + list(self.progress.values()))
                if slowest > reported[0]:
                    progress(slowest - reported[0])
                    reported[0] = slowest

            for handle in self.handles.values():
                self.pool.send(handle, protocol.RUN, {"steps": n_steps})
            if self.client is not None:
                self.client.run(n_steps, self.exchange, progress=report)
            while len(self.done) < len(self.handles):
                self.pool.pump(WATCH_INTERVAL_MS)
                self.watch()
                report(n_steps)
            report(n_steps)

    def _ask_every_worker(self, op):
        """Send every worker the request ``op`` (no fields), all before waiting for
        any; ``{peer: its reply}`` (a reply of the same name)."""
        for handle in self.handles.values():
            self.pool.send(handle, op)
        return {peer: self.pool.expect(handle, (op,)) for peer, handle in self.handles.items()}

    def take_probe_data(self):
        """``{probe key: samples}`` recorded everywhere since the last call."""
        data = {}
        with self._guarded():
            for message in self._ask_every_worker(protocol.PROBES).values():
                data.update(zip(message.fields["keys"], message.arrays))
        if self.client is not None:
            data.update(self.client.take_probe_data())
        return data

    def gather_signals(self):
        """``{base signal: current value}`` from the peer authoritative for each."""
        values = {}
        with self._guarded():
            for peer, message in self._ask_every_worker(protocol.SIGNALS).items():
                bases = self.plans[peer].bases
                for i, value in zip(message.fields["positions"], message.arrays):
                    values[bases[i]] = value.copy()
        plan = self.plans[0]
        if self.client is not None:
            for i, value in zip(plan.owned, self.client.get_bases(plan.owned)):
                values[plan.bases[i]] = value
        for plan in self.plans:  # constants held by idle peers only
            for base in plan.bases:
                if base not in values:
                    values[base] = base.initial_value.copy()
        return values

    def restore(self, values, n_steps):
        """Give every peer these signal values and step count (unpickling)."""
        with self._guarded():
            for peer, handle in self.handles.items():
                bases = self.plans[peer].bases
                positions = [i for i, b in enumerate(bases) if b in values]
                self.pool.send(
                    handle,
                    protocol.SET_STATE,
                    {"positions": positions, "n_steps": n_steps},
                    [values[bases[i]] for i in positions],
                )
            if self.client is not None:
                bases = self.plans[0].bases
                positions = [i for i, b in enumerate(bases) if b in values]
                self.client.set_state(
                    positions, [values[bases[i]] for i in positions], n_steps, self.exchange
                )
            for handle in self.handles.values():
                self.pool.expect(handle, (protocol.STATE_SET,))

    def close(self, failed=False):
        handles = list(self.handles.values())
        self.handles = {}
        if handles:
            if failed:
                self.pool.discard(handles)
            else:
                self.pool.release(handles)
        if self.exchange is not None:
            self.exchange.close()
            self.exchange = None
        self.client = None
        if self.pull is not None:
            self.pull.close(linger=0)
            self.pull = None
        for path in self.shm_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.shm_paths = []
