"""Workers and the client's requests to them; local workers pooled between Simulators.

Two parts, composed by each kind of pool:

- `WorkerControl`, the request/reply part: the client's ZeroMQ ROUTER socket that
  every worker connects to, sending requests (`send`), receiving replies (`pump`,
  `expect`, checked against `spike.comm.protocol`), the workers' hello, a worker's
  ``error`` rebuilt as its exception (`remote_error`), and noticing dead workers
  (`check_alive`). Whoever started the workers, the session drives them through it.
- a launcher, which starts worker processes that connect to that socket: here
  `LocalLauncher`, on this host; `spike.cluster.hostpool` has one that asks the host
  daemons.

`WorkerPool` is the local pool. Starting a Python process that imports nengo is slow
next to a small model's run, and a test suite creates hundreds of Simulators, so
workers outlive the Simulator that used them: `WorkerPool.acquire` hands out idle
workers (starting more when needed) and `WorkerPool.release` takes them back once
they have dropped their model. Workers exit with the client: at interpreter exit
the pool stops them, and each worker also asks Linux to kill it when its parent dies
(and checks its parent's pid regularly).
"""

import atexit
import collections
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import zmq

from spike import config, sysinfo
from spike.comm import protocol, shm, wire
from spike.comm.channels import bind_random_port
from spike.exceptions import ProtocolError, WorkerDied, WorkerError

logger = logging.getLogger(__name__)

# what other modules (the dry run, tests) have used from here: now in `spike.sysinfo`
process_running = sysinfo.process_running
peak_rss_bytes = sysinfo.peak_rss_bytes

SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []
"""Python's -P: the worker imports the Spike the client uses (PYTHONPATH), not a
``spike`` package that happens to be in the current directory."""

HELLO_TIMEOUT = 60.0
REPLY_TIMEOUT = 30.0

WORKER_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}
"""Environment of every worker: one BLAS thread each, so workers on a host share it."""

STALE_REPLIES = (
    protocol.ABORTED, protocol.DONE, protocol.PROGRESS, protocol.ERROR, protocol.READY,
    protocol.RESET_DONE, protocol.PROBES,
)
"""Replies a worker being released may still send to requests the session gave up on
(a failed or interrupted Simulator): skipped while waiting for ``released``."""


class WorkerHandle:
    """The client's view of one worker process.

    Attributes
    ----------
    wid : str
        Its identity on the control socket.
    pid : int
    hostname : str or None
        The host name it reported in its hello.
    data_address : str or None
        Its data (PULL) socket, from its hello.
    inbox : collections.deque
        Replies received and not yet consumed.
    """

    def __init__(self, wid, proc):
        self.wid = wid
        self.proc = proc
        self.pid = proc.pid if proc is not None else None
        self.hostname = None
        self.data_address = None
        self.inbox = collections.deque()

    @property
    def host(self):
        """Where it runs, as error messages name it."""
        return self.hostname or "localhost"

    @property
    def name(self):
        return f"worker {self.wid} (pid {self.pid} on {self.host})"

    def exit_status(self):
        """None while running; otherwise a description of how the process ended."""
        code = self.proc.poll()
        return None if code is None else describe_exit(code)


def describe_exit(code):
    """How a process ended, from its return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class WorkerControl:
    """The request/reply part of a pool: one ZeroMQ ROUTER socket all its workers
    connect to (see the module's docstring).

    Parameters
    ----------
    context : zmq.Context
        The pool's context (its sockets, and the sessions' data sockets).

    Attributes
    ----------
    handles : dict
        ``{worker id: WorkerHandle}`` of every worker started and not yet stopped;
        replies from others are dropped.
    address : str
        Where workers connect (once `bind_router` has run).
    """

    data_curve = None
    """CURVE keys for data sockets (None: plain TCP on loopback)."""

    def __init__(self, context):
        self.pid = os.getpid()
        self.context = context
        self.router = None
        self.address = None
        self.handles = {}
        self.lock = threading.RLock()

    def bind_router(self, host, curve_keys=None):
        """Bind the control socket on ``host`` (a CURVE server with
        ``curve_keys = (public, secret)``, for workers on other hosts)."""
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.LINGER, 0)
        if curve_keys is not None:
            router.curve_server = True
            router.curve_publickey, router.curve_secretkey = curve_keys
        self.address = bind_random_port(router, host)
        self.router = router

    def close_router(self):
        """Close the control socket (the workers' connections with it)."""
        if self.router is not None:
            self.router.close(linger=0)
            self.router = None

    def send(self, handle, op, fields=None, arrays=(), blobs=()):
        """Send ``handle`` the request ``op`` (a `spike.comm.protocol` name) with
        its ``fields``, ``arrays`` and ``blobs``; `WorkerError` if it is gone."""
        try:
            self.router.send_multipart(
                [handle.wid.encode()] + wire.encode(op, fields, arrays, blobs)
            )
        except zmq.ZMQError as e:
            raise WorkerError(f"cannot reach {handle.name}: {e}", handle.name) from None

    def pump(self, timeout_ms):
        """Receive whatever has arrived (waiting up to ``timeout_ms`` for the first)."""
        if not self.router.poll(timeout_ms):
            return 0
        count = 0
        while True:
            try:
                parts = self.router.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return count
            wid = parts[0].decode(errors="replace")
            handle = self.handles.get(wid)
            if handle is None:
                logger.warning("message from unknown worker %r dropped", wid)
                continue
            try:
                message = wire.decode(parts[1:])
            except ProtocolError as e:
                logger.warning("malformed message from %s dropped: %s", handle.name, e)
                continue
            try:
                protocol.check(message, protocol.WORKER_REPLIES)
            except ProtocolError as e:
                # a worker speaks this very protocol: a reply it should not send is a
                # bug, raised where the reply is awaited rather than awaited in vain
                message = wire.Message(protocol.ERROR, protocol.error_fields(
                    ProtocolError(f"{handle.name} sent a malformed reply: {e}")
                ), [], [])
            if message.op == protocol.WARNINGS:
                reissue_warnings(message, handle)
            else:
                handle.inbox.append(message)
            count += 1

    def check_alive(self, handles):
        """Raise `WorkerDied` naming the first of ``handles`` that is gone."""
        for handle in handles:
            status = handle.exit_status()
            if status is not None:
                raise WorkerDied(f"Spike {handle.name} {status}", handle.name)

    def expect(self, handle, ops, timeout=REPLY_TIMEOUT, ignore=()):
        """Wait for the next message from ``handle`` whose op is in ``ops``.

        An ``error`` reply is raised as the worker's exception (see `remote_error`);
        ops in ``ignore`` are skipped; anything else is a `ProtocolError`.
        """
        deadline = time.monotonic() + timeout
        while True:
            while handle.inbox:
                message = handle.inbox.popleft()
                if message.op in ops:
                    return message
                if message.op in ignore:
                    continue
                if message.op == protocol.ERROR:
                    raise remote_error(message, handle)
                raise ProtocolError(f"{handle.name} sent {message.op!r}, expected {ops}")
            self.check_alive([handle])
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(
                    f"{handle.name} did not answer within {timeout:.0f} s "
                    f"(waiting for {'/'.join(ops)})",
                    handle.name,
                )
            self.pump(int(min(left, 0.1) * 1000) + 1)

    def await_hello(self, handles, timeout=HELLO_TIMEOUT):
        """Wait until each of ``handles`` has said hello (its data address and host
        name); ``timeout`` seconds for all of them."""
        deadline = time.monotonic() + timeout
        for handle in handles:
            message = self.expect(handle, (protocol.HELLO,), deadline - time.monotonic())
            handle.data_address = message.fields["data"]
            handle.hostname = message.fields["host"]
        if handles:
            logger.info("started %d workers: %s", len(handles), ", ".join(h.name for h in handles))
        return handles


class LocalLauncher:
    """The local launcher part: starts worker processes on this host.

    Parameters
    ----------
    control_address : str
        The control socket the workers connect to.
    """

    def __init__(self, control_address):
        self.control_address = control_address
        self.pid = os.getpid()
        self.counter = 0

    def launch(self, n, preload=False):
        """Start ``n`` worker processes; return their handles (hello not awaited).

        With ``preload``, each imports the compiler right after its hello.
        """
        env = config.child_environment(WORKER_ENV)
        started = []
        for _ in range(n):
            self.counter += 1
            wid = f"{self.pid}-{self.counter}"
            cmd = [
                sys.executable, *SAFE_PATH, "-m", "spike.runtime.worker",
                "--control", self.control_address, "--id", wid, "--parent", str(self.pid),
            ] + (["--preload-compiler"] if preload else [])
            started.append(WorkerHandle(wid, subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)))
        return started


class WorkerPool(WorkerControl):
    """Worker processes on this host, reused between Simulators.

    Parameters
    ----------
    bind_host : str
        Interface of the control socket (and of the client's data sockets).
    """

    def __init__(self, bind_host="127.0.0.1"):
        super().__init__(zmq.Context())
        self.bind_host = bind_host
        self.bind_router(bind_host)
        self.launcher = LocalLauncher(self.address)
        self.idle = []
        self.starting = []  # launched by `prestart`, hello not yet awaited

    # -- starting and stopping processes ----------------------------------------

    def _launch(self, n, preload=False):
        """Start ``n`` workers (`LocalLauncher.launch`) and know their replies."""
        started = self.launcher.launch(n, preload)
        self.handles.update((handle.wid, handle) for handle in started)
        return started

    def prestart(self, n, preload=False):
        """Start workers now, without waiting, so ``n`` are ready for `acquire`.

        A Simulator calls this before it builds its model: the processes start, and
        with ``preload`` import the compiler, while the client builds.
        """
        with self.lock:
            live = [h for h in self.idle + self.starting if h.exit_status() is None]
            missing = n - len(live)
            if missing > 0:
                self.starting.extend(self._launch(missing, preload))

    def acquire(self, n):
        """``n`` workers for one Simulator: idle ones first, then prestarted ones."""
        with self.lock:
            taken = []
            while self.idle and len(taken) < n:
                handle = self.idle.pop()
                if handle.exit_status() is None:
                    taken.append(handle)
                else:
                    self.handles.pop(handle.wid, None)
            starting = self.starting[: n - len(taken)]
            del self.starting[: len(starting)]
            taken.extend(self.await_hello(starting))
            if len(taken) < n:
                taken.extend(self.await_hello(self._launch(n - len(taken))))
            return taken

    def release(self, handles):
        """Take workers back; those that do not drop their model in time are stopped."""
        with self.lock:
            for handle in handles:
                if handle.exit_status() is None:
                    try:
                        handle.inbox.clear()
                        self.send(handle, protocol.RELEASE)
                    except WorkerError:
                        pass
            keep = []
            for handle in handles:
                try:
                    self.expect(handle, (protocol.RELEASED,), 5.0, ignore=STALE_REPLIES)
                    keep.append(handle)
                except WorkerError:
                    self.discard([handle])
            max_idle = max(os.cpu_count() or 1, 4)
            for handle in keep:
                if len(self.idle) < max_idle:
                    self.idle.append(handle)
                else:
                    self.discard([handle], graceful=True)

    def discard(self, handles, graceful=False):
        """Stop these workers for good (politely if ``graceful``, else SIGKILL)."""
        with self.lock:
            for handle in handles:
                self.handles.pop(handle.wid, None)
                if handle in self.idle:
                    self.idle.remove(handle)
                if handle in self.starting:
                    self.starting.remove(handle)
                if handle.proc.poll() is None:
                    if graceful:
                        try:
                            self.send(handle, protocol.EXIT)
                        except WorkerError:
                            handle.proc.kill()
                    else:
                        handle.proc.kill()
            for handle in handles:
                try:
                    handle.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    handle.proc.kill()
                    handle.proc.wait()

    def shutdown(self):
        """Stop every worker (at interpreter exit)."""
        with self.lock:
            handles = list(self.handles.values())
            for handle in handles:
                if handle.proc.poll() is None:
                    try:
                        self.send(handle, protocol.EXIT)
                    except WorkerError:
                        pass
            deadline = time.monotonic() + 2.0
            for handle in handles:
                try:
                    handle.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    handle.proc.kill()
                    handle.proc.wait()
            self.handles.clear()
            self.idle.clear()
            self.starting.clear()
            self.close_router()
            self.context.term()
            shm.remove_client_directory(self.pid)

    def shm_groups(self, handles):
        """``{peer: directory}``: peers given the same directory share a host, and
        exchange values through `spike.comm.shm` rings in that directory.

        Here: the client (peer 0) and the workers on this host.
        """
        here = socket.gethostname()
        directory = shm.make_client_directory(self.pid)
        groups = {0: directory}
        groups.update({peer: directory for peer, h in handles.items() if h.hostname == here})
        return groups

    def bind_data(self, sock):
        """Bind a peer's data (PULL) socket where this pool's workers reach it."""
        return bind_random_port(sock, self.bind_host)


_TRUSTED_MODULES = ("builtins", "nengo.exceptions", "spike.exceptions")
_remote_types = {}


def _local_type(module, name, base):
    """The class ``module.name`` if it is a trusted subclass of ``base``, else None."""
    if module not in _TRUSTED_MODULES or not isinstance(name, str):
        return None
    cls = getattr(sys.modules.get(module), name, None)
    if isinstance(cls, type) and issubclass(cls, base):
        return cls
    return None


def _remote_type(cls):
    """A subclass of ``cls`` built from a message alone (constructors differ)."""
    if cls not in _remote_types:
        _remote_types[cls] = type(
            cls.__name__,
            (cls,),
            {
                "__init__": lambda self, text: BaseException.__init__(self, text),
                "__str__": lambda self: self.args[0],
                "__module__": cls.__module__,
                "__reduce__": lambda self: (WorkerError, (self.args[0],)),
            },
        )
    return _remote_types[cls]


def remote_error(message, handle):
    """Rebuild a worker's exception from its ``error`` reply, without unpickling.

    The exception is an instance of its original type where that is a built-in,
    nengo or Spike exception (so ``except ValidationError`` still works); anything
    else becomes a `WorkerError`. A note names the worker and carries its traceback.
    """
    fields = message.fields
    text = str(fields.get("message", ""))
    cls = _local_type(fields.get("module"), fields.get("type"), Exception)
    if cls is not None:
        exc = _remote_type(cls)(text)
    else:
        exc = WorkerError(f"{fields.get('type')}: {text} (in {handle.name})", handle.name)
    exc.add_note(f"Raised in Spike {handle.name}. Worker traceback:\n{fields.get('traceback', '')}")
    return exc


def reissue_warnings(message, handle):
    """Warn in the client about each warning a worker caught."""
    for entry in message.fields.get("warnings", []):
        if not (isinstance(entry, list) and len(entry) == 3):
            continue
        module, name, text = entry
        category = _local_type(module, name, Warning) or UserWarning
        warnings.warn(str(text), category, stacklevel=2)


_pool = None
_pool_lock = threading.Lock()


def get_pool():
    """The process-wide pool (a new one after ``fork``)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = WorkerPool()
        return _pool


def shutdown_pool():
    """Stop every pooled worker process of this client now (also done at exit)."""
    global _pool
    with _pool_lock:
        if _pool is not None and _pool.pid == os.getpid():
            _pool.shutdown()
        _pool = None


atexit.register(shutdown_pool)
