"""A Spike worker process: runs its share of a model on request.

Start it as ``python -m spike.runtime.worker --control tcp://HOST:PORT --id N``. It connects to
the client's control socket (a ZeroMQ ROUTER), binds its own data socket, says hello,
and then serves requests until told to exit or until its parent disappears:

=========  ==========================================================================
request    what the worker does
=========  ==========================================================================
setup      loads its `PeerPlan` (a pickle sent by the client that started it) and
           opens its channels to the peers it exchanges values with
reset      resets signals and makes step functions with the given random states
run        runs N steps, sending ``progress`` now and then, then ``done``
probes     sends the probe samples recorded since the last request, and forgets them
signals    sends the current values of the signals it is the authority on
set_state  overwrites signals and the step count (a restored Simulator)
release    drops the model: the worker is free for the next Simulator
exit       exits
=========  ==========================================================================

The requests and replies, and the fields of each, are those of
`spike.comm.protocol` (``WORKER_REQUESTS``, ``WORKER_REPLIES``): a request that is
not one of them, or lacks a field, is answered with an ``error``. Any error becomes
an ``error`` reply (type, message, traceback) and the worker keeps serving. Because
only the client that spawned the worker (or, on another host, the daemon that
authenticated that client) can reach its control socket, the plan is the only thing
it ever unpickles.
"""

import argparse
import ctypes
import logging
import os
import pickle
import signal
import socket as pysocket
import struct
import sys
import threading
import time
import warnings

import msgpack
import zmq

from spike import config
from spike.comm import protocol, wire
from spike.comm.channels import bind_random_port
from spike.comm.exchange import Exchange
from spike.exceptions import ProtocolError
from spike.runtime import shares
from spike.runtime.executor import Executor
from spike.runtime.rng import decode_states

logger = logging.getLogger("spike.runtime.worker")

PROGRESS_INTERVAL = 0.25  # seconds between progress reports during a run
PR_SET_PDEATHSIG = 1


class Aborted(Exception):
    """The client asked to stop the current run."""


def die_with_parent():
    """Ask Linux to kill this process when its parent exits (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def warning_fields(warning):
    """Describe a caught warning for a ``warnings`` message."""
    category = warning.category
    return [category.__module__, category.__name__, str(warning.message)]


class Worker:
    """The worker's state and request handlers.

    Parameters
    ----------
    control_address : str
        The client's (or daemon's) ROUTER address.
    worker_id : str
        Identity on the control socket.
    parent_pid : int or None
        Exit when this process is gone.
    bind_host : str
        Interface for the data socket.
    """

    def __init__(
        self, control_address, worker_id, parent_pid=None, bind_host="127.0.0.1",
        job_keys=None, status_file=None, preload_compiler=False,
    ):
        self.worker_id = worker_id
        self.preload_compiler = preload_compiler
        self.preloading = None  # the thread preloading the compiler
        self.parent_pid = parent_pid
        self.context = zmq.Context()
        self.auth = None
        self.data_curve = None
        self.control = self.context.socket(zmq.DEALER)
        self.control.setsockopt(zmq.IDENTITY, worker_id.encode())
        self.control.setsockopt(zmq.LINGER, 1000)
        self.pull = self.context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.RCVHWM, 0)
        if job_keys is not None:
            self._secure(job_keys)
        self.control.connect(control_address)
        self.data_address = bind_random_port(self.pull, bind_host)
        self.status = None
        if status_file is not None:
            self.status = os.open(status_file, os.O_WRONLY)
        self.executor = None
        self.exchange = None
        self.running = True
        self.handlers = {
            protocol.SETUP: self.on_setup,
            protocol.RESET: self.on_reset,
            protocol.RUN: self.on_run,
            protocol.PROBES: self.on_probes,
            protocol.SIGNALS: self.on_signals,
            protocol.SET_STATE: self.on_set_state,
            protocol.RELEASE: self.on_release,
            protocol.PING: self.on_ping,
            protocol.ABORT: self.on_abort,
            protocol.EXIT: self.on_exit,
        }
        """``{request: handler}``, one for each op of `protocol.WORKER_REQUESTS`."""

    def _secure(self, job_keys):
        """CURVE on every socket, with the job's keys (see `spike.cluster.hostpool`).

        The control socket accepts only a server holding the client's control key, so
        the plan this worker unpickles can only come from the client that asked its
        daemon for it. The data socket admits only peers holding the job's data key.
        """
        from zmq.auth.thread import ThreadAuthenticator

        self.control.curve_serverkey = job_keys["control_server"]
        self.control.curve_publickey = job_keys["public"]
        self.control.curve_secretkey = job_keys["secret"]
        self.auth = ThreadAuthenticator(self.context, log=logging.getLogger("spike.runtime.worker.auth"))
        self.auth.start()
        allowed = job_keys["data_public"]

        class Provider:
            @staticmethod
            def callback(domain, key):
                return key == allowed

        self.auth.configure_curve_callback("*", credentials_provider=Provider)
        self.pull.curve_server = True
        self.pull.curve_publickey = job_keys["data_public"]
        self.pull.curve_secretkey = job_keys["data_secret"]
        self.data_curve = {
            "server": job_keys["data_public"],
            "public": job_keys["data_public"],
            "secret": job_keys["data_secret"],
        }

    def send(self, op, fields=None, arrays=(), blobs=()):
        self.control.send_multipart(wire.encode(op, fields, arrays, blobs))

    def parent_alive(self):
        if self.parent_pid is None:
            return True
        return os.getppid() == self.parent_pid

    def check_abort(self):
        """Wait hook during a run: stop if the parent is gone or asks to abort."""
        if not self.parent_alive():
            logger.error("worker %s: parent %s is gone, exiting", self.worker_id, self.parent_pid)
            os._exit(3)
        if self.control.poll(0):
            message = wire.decode(self.control.recv_multipart())
            if message.op in (protocol.ABORT, protocol.EXIT, protocol.RELEASE):
                if message.op == protocol.EXIT:
                    self.running = False
                raise Aborted(message.op)
            logger.warning("worker %s: ignored %r during a run", self.worker_id, message.op)

    def serve(self):
        self.send(
            protocol.HELLO,
            {
                "id": self.worker_id,
                "pid": os.getpid(),
                "host": pysocket.gethostname(),
                "data": self.data_address,
            },
        )
        if self.preload_compiler:  # in the background, yielding to the client's build
            self.preloading = threading.Thread(
                target=preload_compiler, kwargs={"nice": PRELOAD_NICE}, daemon=True
            )
            self.preloading.start()
        while self.running:
            if not self.control.poll(1000):
                if not self.parent_alive():
                    logger.error("worker %s: parent is gone, exiting", self.worker_id)
                    break
                continue
            try:
                message = wire.decode(self.control.recv_multipart())
            except Exception as e:  # not even a message: report and keep serving
                logger.warning("worker %s: bad control message: %s", self.worker_id, e)
                continue
            try:
                protocol.check(message, protocol.WORKER_REQUESTS)
            except ProtocolError as e:  # a request it cannot serve: say so
                self.send(protocol.ERROR, protocol.error_fields(e))
                continue
            handler = self.handlers[message.op]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    handler(message)
                except Aborted as stop:
                    if str(stop) == protocol.RELEASE:  # released in the middle of a run
                        self.release()
                        self.send(protocol.RELEASED)
                    else:
                        self.send(protocol.ABORTED)
                except Exception as e:  # report every failure to the client
                    self.send(protocol.ERROR, protocol.error_fields(e))
            if caught:
                self.send(
                    protocol.WARNINGS, {"warnings": [warning_fields(w) for w in caught]}
                )
        self.release()
        self.pull.close(linger=0)
        self.control.close()
        if self.auth is not None:
            self.auth.stop()
        self.context.term()

    def release(self):
        if self.exchange is not None:
            self.exchange.close()
        self.executor = None
        self.exchange = None

    # -- request handlers ------------------------------------------------------

    def on_setup(self, message):
        if self.preloading is not None:  # the compiler is imported by one thread only
            self.preloading.join()
            self.preloading = None
        self.release()
        # The share is looked up in the cache before it is unpickled, and the
        # received bytes are dropped once read: a worker's peak memory is what it
        # holds plus one copy in flight, not three (`spike.plan.cost.estimated_peak_rss`).
        blob = message.blobs.pop(0)
        key = shares.share_key(blob)
        prepared = shares.load(key)
        plan = pickle.loads(blob) if prepared is None else None
        del blob
        self.executor = Executor(plan, share_key=key, prepared=prepared)
        plan = self.executor.plan
        self.exchange = Exchange(
            self.context,
            self.pull,
            message.fields["session"],
            plan,
            message.fields["sends"],
            message.fields["recvs"],
            wait_hook=self.check_abort,
            curve=self.data_curve,
        )
        self.send(protocol.READY, {"peer": plan.peer})

    def on_reset(self, message):
        self.exchange.set_session(message.fields["session"])
        self.executor.reset(decode_states(message))
        self.send(protocol.RESET_DONE)

    def on_run(self, message):
        n_steps = message.fields["steps"]
        last = [time.monotonic()]
        start = self.executor.n_steps

        def progress(done):
            now = time.monotonic()
            if now - last[0] > PROGRESS_INTERVAL:
                last[0] = now
                self.send(protocol.PROGRESS, {"steps": done})
                if self.status is not None:  # read by the daemon (steps per second)
                    os.pwrite(self.status, struct.pack("<q", start + done), 0)

        self.executor.run(n_steps, self.exchange, progress=progress)
        if self.status is not None:
            os.pwrite(self.status, struct.pack("<q", self.executor.n_steps), 0)
        self.send(
            protocol.DONE,
            {"n_steps": self.executor.n_steps, "timing": self.executor.timing.as_dict()},
        )

    def on_probes(self, message):
        data = self.executor.take_probe_data()
        keys = sorted(data)
        self.send(protocol.PROBES, {"keys": keys}, [data[k] for k in keys])

    def on_signals(self, message):
        """Current values of the signals this worker is the authority on."""
        positions = self.executor.plan.owned
        self.send(
            protocol.SIGNALS, {"positions": positions}, self.executor.get_bases(positions)
        )

    def on_set_state(self, message):
        """Overwrite signals and the step count (restoring a pickled Simulator)."""
        self.executor.set_state(
            message.fields["positions"], message.arrays, message.fields["n_steps"], self.exchange
        )
        self.send(protocol.STATE_SET)

    def on_release(self, message):
        self.release()
        self.send(protocol.RELEASED)

    def on_ping(self, message):
        self.send(protocol.PONG)

    def on_abort(self, message):
        self.send(protocol.ABORTED)

    def on_exit(self, message):
        self.running = False


PRELOAD_NICE = 5
"""Niceness added to the thread preloading the compiler: on a machine with as many
cores as workers, the client building the model keeps a core of its own, while the
workers' preloads share what is left."""


def preload_compiler(nice=0):
    """Make the compiler ready now (importing and configuring it), if installed.

    With ``nice``, the calling thread first lowers its own priority (Linux gives
    each thread its own niceness; elsewhere this is skipped).
    """
    if nice and sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
        except OSError:
            pass
    try:
        from spike.runtime.compiler import available, preload

        if available():
            preload()
    except Exception as e:  # then the first compiled share does it, and says why
        logger.warning("could not preload the compiler: %s", e)


def read_job_keys(stream):
    """The job's keys, written by the daemon to our standard input (msgpack map)."""
    try:
        keys = msgpack.unpackb(stream.read(4096), raw=False)
        protocol.check_fields("job keys", keys, protocol.JOB_KEYS)
    except Exception as e:  # msgpack raises several types on bad input
        raise SystemExit(f"spike.runtime.worker: bad job keys on standard input: {e}") from None
    return {field.name: keys[field.name].encode("ascii") for field in protocol.JOB_KEYS}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m spike.runtime.worker",
        description="A Spike worker: runs its share of a Nengo model for a client.",
    )
    parser.add_argument("--control", required=True, help="client's ZeroMQ control address")
    parser.add_argument("--id", required=True, help="this worker's identity")
    parser.add_argument("--parent", type=int, default=None, help="exit when this pid is gone")
    parser.add_argument("--bind-host", default="127.0.0.1", help="interface for data")
    parser.add_argument(
        "--preload-compiler", action="store_true",
        help="import PyTensor right after saying hello (while the client builds)",
    )
    parser.add_argument(
        "--keys-from-stdin", action="store_true",
        help="read the job's CURVE keys (msgpack) from standard input, as a daemon "
        "hands them (keys are never put on a command line)",
    )
    parser.add_argument(
        "--status-file", default=None, help="write the step count here (for the daemon)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=config.get("SPIKE_LOG_LEVEL"),
        format=f"%(asctime)s worker {args.id} %(levelname)s %(message)s",
    )
    if args.parent is not None:
        die_with_parent()
        if os.getppid() != args.parent:
            return 3
    job_keys = read_job_keys(sys.stdin.buffer) if args.keys_from_stdin else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Worker(
        args.control, args.id, args.parent, args.bind_host, job_keys,
        args.status_file, args.preload_compiler,
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
