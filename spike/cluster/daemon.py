"""``spike-daemon``: starts, watches and stops a host's Spike workers for its clients.

One daemon runs on each host of a cluster. It listens on one ZeroMQ ROUTER socket,
on the address it is given (``127.0.0.1`` unless told otherwise: it never listens on
every interface unless asked with ``--listen 0.0.0.0``). Every connection is
encrypted and authenticated with CURVE: the daemon holds the cluster's
``daemon.key_secret`` and serves only clients whose public key is in
``authorized/`` of its key directory (see `spike.cluster.keys`); others never get past the
handshake.

Requests are `spike.comm.wire` messages (msgpack header, nothing unpickled), with
the fields `spike.comm.protocol` gives them (``DAEMON_REQUESTS``; its replies,
``DAEMON_REPLIES``):

=============  ==========================================================================
request        what the daemon does
=============  ==========================================================================
status         replies ``status``: host name, slots, CPU and memory use, load, and each
               job's workers with their CPU use and steps per second
heartbeat      the same reply; it also tells the daemon the client of a job is alive
spawn          starts N workers for a job (``python -m spike.runtime.worker``), handing each its
               job keys through a pipe; they connect to the client's control address
kill           stops a job's workers (SIGKILL) and replies ``killed``
shutdown       stops every job and the daemon (``spike cluster stop``)
=============  ==========================================================================

Replies echo the request's ``req`` number. A worker that exits on its own is reported
to its job's client at once (``worker_exit``). A job whose client has sent nothing for
``--job-timeout`` seconds (dead client, cut network) is stopped. Workers also die with
the daemon (``PR_SET_PDEATHSIG``), so nothing outlives it.

Malformed messages (random bytes, bad msgpack, wrong frames, bad fields, huge sizes)
are logged and answered with ``error``; the daemon keeps serving. Host and worker
figures come from psutil (`spike.sysinfo`).
"""

import argparse
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import msgpack
import psutil
import zmq
from zmq.auth.thread import ThreadAuthenticator

from spike import config, sysinfo
from spike.client.pool import WORKER_ENV, describe_exit
from spike.cluster import keys as keyfiles
from spike.cluster.hostfile import DEFAULT_PORT
from spike.comm import protocol, shm, wire
from spike.exceptions import KeyFileError, ProtocolError
from spike.version import __version__

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest message a daemon accepts (its requests are small); larger ones close the
sender's connection inside ZeroMQ."""
SAMPLE_INTERVAL = 1.0  # seconds between load samples
REAP_INTERVAL = 0.1  # seconds between checks of the workers
JOB_TIMEOUT = 10.0


STATUS_PREFIX = "spike-daemon-"


def status_root():
    """Where daemons keep their status files and job rings (``/dev/shm`` if any)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def remove_stale_directories():
    """Remove the status directories of daemons that no longer run (killed before
    they could clean up). Returns how many were removed."""
    removed = 0
    root = status_root()
    for name in os.listdir(root):
        if not name.startswith(STATUS_PREFIX):
            continue
        pid = name[len(STATUS_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not sysinfo.process_running(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed += 1
    return removed


class WorkerProcess:
    """One worker started by the daemon, and what the daemon measures of it."""

    def __init__(self, wid, proc, status_path):
        self.wid = wid
        self.proc = proc
        self.pid = proc.pid
        self.process = psutil.Process(proc.pid)  # what it uses (checks pid reuse)
        self.status_path = status_path
        self.steps = 0
        self.rate = 0.0
        self.cpu = 0.0
        self.rss = 0
        self._last = None  # (time, steps, cpu seconds)

    def read_steps(self):
        try:
            with open(self.status_path, "rb") as f:
                data = f.read(8)
        except OSError:
            return self.steps
        return struct.unpack("<q", data)[0] if len(data) == 8 else self.steps

    def sample(self, now):
        """Update steps per second, CPU use since the last sample and resident
        memory (bytes)."""
        try:
            with self.process.oneshot():
                cpu = self.process.cpu_times()
                self.rss = self.process.memory_info().rss
        except psutil.Error:  # gone: reaped and reported like any other exit
            return
        cpu_seconds = cpu.user + cpu.system
        steps = self.read_steps()
        if self._last is not None:
            then, last_steps, last_cpu = self._last
            elapsed = max(now - then, 1e-6)
            self.rate = max(steps - last_steps, 0) / elapsed
            self.cpu = max(cpu_seconds - last_cpu, 0.0) / elapsed
        self._last = (now, steps, cpu_seconds)
        self.steps = steps

    def describe(self):
        running = self.rate > 0
        return {
            "id": self.wid,
            "pid": self.pid,
            "steps": self.steps,
            "rate": round(self.rate, 1),
            "cpu": round(100 * self.cpu, 1),
            "rss": self.rss,
            # a worker off the CPU while it is stepping is waiting for its peers
            "wait": round(100 * max(0.0, 1.0 - self.cpu), 1) if running else None,
        }


class Job:
    """The workers one client asked for.

    ``shm_dir`` holds the shared-memory rings its workers on this host exchange
    values through (see `spike.comm.shm`); None where shared memory is not used.
    """

    def __init__(self, name, owner, shm_dir=None):
        self.name = name
        self.owner = owner
        self.workers = {}
        self.last_seen = time.monotonic()
        self.shm_dir = shm_dir


class Daemon:
    """A host's daemon: the socket, the jobs and their workers.

    Parameters
    ----------
    listen : str
        Interface address to listen on (default ``127.0.0.1``; ``0.0.0.0`` for all
        interfaces, only if asked).
    port : int
        TCP port (0: a free one, see `address`).
    keys_dir : str
        Key directory holding ``daemon.key_secret`` and ``authorized/*.key``.
    slots : int, optional
        Most workers at once (default: one per core).
    advertise : str, optional
        Address workers bind their data sockets to and peers reach them at
        (default: ``listen``; required when listening on all interfaces).
    job_timeout : float
        Stop a job whose client has been silent this long (seconds).
    python : str
        Interpreter for the workers (default: this one).
    """

    def __init__(
        self,
        listen="127.0.0.1",
        port=DEFAULT_PORT,
        keys_dir=None,
        slots=None,
        advertise=None,
        job_timeout=JOB_TIMEOUT,
        python=None,
    ):
        keys_dir = keys_dir or keyfiles.default_keys_dir()
        public, secret = keyfiles.load_keypair(keys_dir, keyfiles.DAEMON)
        self.keys_dir = keys_dir
        self.allowed = keyfiles.authorized_clients(keys_dir)
        if not self.allowed:
            raise KeyFileError(
                f"no authorized client keys in {os.path.join(keys_dir, keyfiles.AUTHORIZED)}"
                ": nobody could use this daemon (run `spike keys`)"
            )
        self.slots = slots or os.cpu_count() or 1
        if listen in ("0.0.0.0", "*", "::") and not advertise:
            raise ValueError("listening on all interfaces needs --advertise ADDRESS")
        self.advertise = advertise or listen
        self.job_timeout = job_timeout
        self.python = python or sys.executable
        self.hostname = socket.gethostname()
        self.jobs = {}
        self.running = True
        self.handlers = {
            protocol.STATUS: self.on_status,
            protocol.HEARTBEAT: self.on_heartbeat,
            protocol.SPAWN: self.on_spawn,
            protocol.KILL: self.on_kill,
            protocol.SHUTDOWN: self.on_shutdown,
        }
        """``{request: handler}``, one for each op of `protocol.DAEMON_REQUESTS`;
        ``handler(owner, fields)`` returns the reply's op and fields."""
        self.bad_messages = 0
        self.denied = 0
        self.counter = 0
        remove_stale_directories()
        self.status_dir = tempfile.mkdtemp(
            prefix=f"{STATUS_PREFIX}{os.getpid()}-", dir=status_root()
        )

        self.context = zmq.Context()
        self.auth = ThreadAuthenticator(self.context, log=logging.getLogger(__name__ + ".auth"))
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=self)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.router.curve_server = True
        self.router.curve_publickey = public
        self.router.curve_secretkey = secret
        host = f"[{listen}]" if ":" in listen else listen
        if listen == "::":
            self.router.setsockopt(zmq.IPV6, 1)
        if port:
            self.router.bind(f"tcp://{host}:{port}")
        else:
            port = self.router.bind_to_random_port(f"tcp://{host}")
        self.port = port
        self.address = f"tcp://{host}:{port}"
        self._cpu_last = sysinfo.cpu_busy_total()
        self.cpu_percent = 0.0
        self._next_sample = time.monotonic() + SAMPLE_INTERVAL
        logger.info(
            "spike-daemon %s listening on %s (%d slots, %d authorized client keys)",
            __version__, self.address, self.slots, len(self.allowed),
        )

    # -- authentication ------------------------------------------------------------

    def callback(self, domain, key):
        """ZAP: admit a CURVE client only if its public key is authorized."""
        allowed = key in self.allowed
        if not allowed:
            self.denied += 1
            if self.denied <= 20 or self.denied % 1000 == 0:
                logger.warning(
                    "refused a client with unknown key %s (%d refused so far)",
                    key.decode(errors="replace"), self.denied,
                )
        return allowed

    # -- the loop ----------------------------------------------------------------------

    def serve(self):
        """Serve until `shutdown` (request or SIGTERM); then stop every worker."""
        try:
            while self.running:
                if self.router.poll(int(REAP_INTERVAL * 1000)):
                    for _ in range(1000):  # a burst of messages; then check workers
                        try:
                            parts = self.router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.handle(parts)
                self.reap()
                now = time.monotonic()
                if now >= self._next_sample:
                    self.sample(now)
                    self._next_sample = now + SAMPLE_INTERVAL
                self.expire(now)
        finally:
            self.close()

    def close(self):
        for job in list(self.jobs.values()):
            self.kill_job(job)
        self.jobs.clear()
        self.router.close(linger=0)
        self.auth.stop()
        self.context.term()
        shutil.rmtree(self.status_dir, ignore_errors=True)
        logger.info("spike-daemon on %s stopped", self.address)

    def send(self, owner, op, fields=None):
        try:
            self.router.send_multipart([owner] + wire.encode(op, fields), zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the client is gone; its jobs will time out
            logger.debug("cannot send %s: %s", op, e)

    def handle(self, parts):
        owner = parts[0]
        req = None
        try:
            message = wire.decode(parts[1:])
            req = message.fields.get("req")  # echoed even in the reply to a bad request
            if not isinstance(req, int) or isinstance(req, bool):
                req = None
            protocol.check(message, protocol.DAEMON_REQUESTS)
            for job in self.jobs.values():
                if job.owner == owner:
                    job.last_seen = time.monotonic()
            op, fields = self.handlers[message.op](owner, message.fields)
        except ProtocolError as e:
            self.bad_messages += 1
            if self.bad_messages <= 20 or self.bad_messages % 1000 == 0:
                logger.warning(
                    "rejected a malformed request (%d so far): %s", self.bad_messages, e
                )
            op, fields = protocol.ERROR, {"message": f"malformed request: {e}"}
        except Exception as e:  # a failure of ours, e.g. a worker that cannot start
            logger.exception("request failed")
            op, fields = protocol.ERROR, {"message": f"{type(e).__name__}: {e}"}
        fields = dict(fields or {})
        if req is not None:
            fields["req"] = req
        self.send(owner, op, fields)

    # -- requests ------------------------------------------------------------------------

    def free_slots(self):
        return self.slots - sum(len(j.workers) for j in self.jobs.values())

    def describe(self):
        memory = psutil.virtual_memory()
        try:
            load = list(os.getloadavg())
        except OSError:
            load = []
        return {
            "host": self.hostname,
            "pid": os.getpid(),
            "version": __version__,
            "address": self.address,
            "advertise": self.advertise,
            "slots": self.slots,
            "free": self.free_slots(),
            "cpus": os.cpu_count() or 1,
            "cpu": round(self.cpu_percent, 1),
            "load": [round(x, 2) for x in load],
            "mem_total": memory.total,
            "mem_available": memory.available,
            "jobs": [
                {"job": job.name, "workers": [w.describe() for w in job.workers.values()]}
                for job in self.jobs.values()
            ],
            "bad_messages": self.bad_messages,
            "refused": self.denied,
        }

    def on_status(self, owner, fields):
        return protocol.STATUS, self.describe()

    def on_heartbeat(self, owner, fields):
        return protocol.STATUS, self.describe()

    def on_spawn(self, owner, fields):
        """Start the workers ``fields["ids"]`` of job ``fields["job"]`` (the fields
        are checked by `protocol.check`)."""
        name = fields["job"]
        ids = fields["ids"]
        control = fields["control"]
        job_keys = {field.name: fields["keys"][field.name] for field in protocol.JOB_KEYS}
        log_level = fields.get("log_level") or "WARNING"
        job = self.jobs.get(name)
        if job is not None and job.owner != owner:
            return protocol.ERROR, {
                "message": f"job {name} belongs to another client", "busy": True
            }
        if len(ids) > self.free_slots():
            return protocol.ERROR, {
                "message": f"busy: {len(ids)} workers asked, {self.free_slots()} of "
                f"{self.slots} slots free",
                "busy": True,
            }
        if job is None:
            shm_dir = None
            if shm.available():
                shm_dir = os.path.join(self.status_dir, f"job-{name}")
                os.makedirs(shm_dir, mode=0o700, exist_ok=True)
            job = self.jobs[name] = Job(name, owner, shm_dir)
        started = []
        for wid in ids:
            if any(wid in j.workers for j in self.jobs.values()):
                raise ProtocolError(f"worker id {wid} is in use")
            started.append(self.start_worker(job, wid, control, job_keys, log_level))
        logger.info(
            "job %s: started %d workers (pids %s)",
            name, len(started), ", ".join(str(w.pid) for w in started),
        )
        return protocol.SPAWNED, {
            "job": name,
            "workers": [{"id": w.wid, "pid": w.pid} for w in started],
            "host": self.hostname,
            "shm": job.shm_dir,
        }

    def start_worker(self, job, wid, control, job_keys, log_level):
        env = config.child_environment({**WORKER_ENV, "SPIKE_LOG_LEVEL": log_level})
        self.counter += 1
        status_path = os.path.join(self.status_dir, f"w{self.counter}")
        with open(status_path, "wb") as f:
            f.write(b"\0" * 8)
        cmd = [
            self.python, "-m", "spike.runtime.worker",
            "--control", control, "--id", wid, "--parent", str(os.getpid()),
            "--bind-host", self.advertise, "--keys-from-stdin",
            "--status-file", status_path,
        ]
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, close_fds=True)
        try:
            proc.stdin.write(msgpack.packb(job_keys))
            proc.stdin.close()
        except OSError:  # it died already: reaped and reported like any other exit
            pass
        worker = WorkerProcess(wid, proc, status_path)
        job.workers[wid] = worker
        return worker

    def on_kill(self, owner, fields):
        name = fields["job"]
        job = self.jobs.get(name)
        if job is None or job.owner != owner:
            return protocol.KILLED, {"job": name, "workers": []}
        stopped = self.kill_job(job)
        self.end_job(job)
        return protocol.KILLED, {"job": name, "workers": stopped}

    def end_job(self, job):
        """Forget a job whose workers are gone; remove its shared-memory rings."""
        self.jobs.pop(job.name, None)
        if job.shm_dir is not None:
            shutil.rmtree(job.shm_dir, ignore_errors=True)

    def on_shutdown(self, owner, fields):
        self.running = False
        return protocol.BYE, {"host": self.hostname}

    # -- watching workers ---------------------------------------------------------------

    def kill_job(self, job):
        """SIGKILL a job's workers and wait for them; describe how each ended."""
        for worker in job.workers.values():
            if worker.proc.poll() is None:
                worker.proc.kill()
        stopped = []
        for worker in job.workers.values():
            try:
                code = worker.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # unkillable (D state): report it
                code = None
            stopped.append({"id": worker.wid, "pid": worker.pid,
                            "status": "still running" if code is None else describe_exit(code)})
            self._forget(worker)
        logger.info("job %s: stopped %d workers", job.name, len(stopped))
        job.workers = {}
        return stopped

    def _forget(self, worker):
        try:
            os.unlink(worker.status_path)
        except OSError:
            pass

    def reap(self):
        """Report workers that exited on their own to their job's client."""
        for job in list(self.jobs.values()):
            for wid, worker in list(job.workers.items()):
                code = worker.proc.poll()
                if code is None:
                    continue
                del job.workers[wid]
                self._forget(worker)
                status = describe_exit(code)
                logger.warning("job %s: worker %s (pid %d) %s", job.name, wid, worker.pid, status)
                self.send(job.owner, protocol.WORKER_EXIT,
                          {"job": job.name, "id": wid, "pid": worker.pid, "status": status})
            if not job.workers:
                self.end_job(job)

    def expire(self, now):
        """Stop jobs whose client has been silent for ``job_timeout`` seconds."""
        for job in list(self.jobs.values()):
            if now - job.last_seen > self.job_timeout:
                logger.warning(
                    "job %s: no word from its client for %.0f s; stopping its workers",
                    job.name, now - job.last_seen,
                )
                self.kill_job(job)
                self.end_job(job)

    def sample(self, now):
        busy, total = sysinfo.cpu_busy_total()
        last_busy, last_total = self._cpu_last
        if total > last_total:
            self.cpu_percent = 100.0 * (busy - last_busy) / (total - last_total)
        self._cpu_last = (busy, total)
        for job in self.jobs.values():
            for worker in job.workers.values():
                worker.sample(now)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spike-daemon",
        description="The Spike host daemon: starts, watches and stops Spike worker "
        "processes for authorised clients (CURVE-authenticated ZeroMQ). Run one on "
        "each host named in a hostfile.",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this host only). Give the "
        "host's address on the cluster network; 0.0.0.0 listens on every interface "
        "and needs --advertise",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one and prints it)",
    )
    parser.add_argument(
        "--keys", metavar="DIR", default=None,
        help="key directory with daemon.key_secret and authorized/*.key "
        "(default $SPIKE_KEYS_DIR or ~/.config/spike/keys; see `spike keys`)",
    )
    parser.add_argument(
        "--slots", type=int, default=None,
        help="most workers at once, over all jobs (default: one per core)",
    )
    parser.add_argument(
        "--advertise", metavar="ADDRESS", default=None,
        help="address workers bind their data sockets to (default: --listen)",
    )
    parser.add_argument(
        "--job-timeout", type=float, default=JOB_TIMEOUT,
        help=f"stop a job whose client is silent this many seconds (default {JOB_TIMEOUT:g})",
    )
    parser.add_argument("--log-file", default=None, help="log here instead of stderr")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO",
    )
    parser.add_argument(
        "--pid-file", default=None, help="write the daemon's pid here (removed at exit)"
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        filename=args.log_file,
        format="%(asctime)s spike-daemon %(levelname)s %(message)s",
    )
    try:
        daemon = Daemon(
            listen=args.listen, port=args.port, keys_dir=args.keys, slots=args.slots,
            advertise=args.advertise, job_timeout=args.job_timeout,
        )
    except (KeyFileError, ValueError, zmq.ZMQError) as e:
        print(f"spike-daemon: {e}", file=sys.stderr)
        return 2

    def stop(signum, frame):
        daemon.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    # the first line on stdout says where we listen (tests and `spike cluster` read it)
    print(f"spike-daemon listening on {daemon.address} pid {os.getpid()}", flush=True)
    try:
        daemon.serve()
    finally:
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
