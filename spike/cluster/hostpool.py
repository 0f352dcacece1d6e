"""Workers on many hosts: the client's side of the host daemons.

`HostPool` gives a `spike.client.session.Session` workers started by the `spike-daemon` of
each host of a hostfile, with the interface of the local `spike.client.pool.WorkerPool`:
the same request/reply part (`spike.client.pool.WorkerControl`), with workers started
by the daemons (`DaemonLauncher`) instead of by the client:

1. At start it asks every daemon for its status (over CURVE, with the client key of
   the key directory; a daemon is accepted only if it holds the daemon key the
   client expects). Hosts that are down, unreachable, refuse our key or have no free
   slot are skipped or raise `spike.exceptions.HostError`, as ``on_unreachable``
   says.
2. It makes three short-lived keypairs for the job: one for its control socket (the
   ROUTER workers connect to), one that workers present to it, one for every data
   socket. Daemons hand them to their workers through a pipe. So a worker only
   accepts a plan (the pickle) from this client, and the client and workers only
   accept data from the job's peers.
3. Workers are spread over the hosts (at most ``slots`` on each), connect back, and
   from then on the session drives them exactly as it drives local ones. The model
   travels over the control socket: no shared file system is needed. Workers on the
   same host exchange values through shared-memory rings in a directory their daemon
   made for the job; other pairs, and the client, over CURVE-secured ZeroMQ.
4. A thread keeps talking to every daemon (heartbeats every 0.5 s). A worker that
   exits is reported by its daemon at once; a daemon that dies closes its connection;
   a host that is cut off stops answering heartbeats. Either way the session's next
   check raises `spike.WorkerDied` naming the worker and its host, and the other
   workers are stopped through their daemons. Daemons stop a job whose client has
   been silent for their ``--job-timeout``.
"""

import logging
import secrets
import socket
import time

import zmq
from nengo.exceptions import ValidationError
from zmq.auth.thread import ThreadAuthenticator

from spike import config
from spike.client.pool import WorkerControl, WorkerHandle
from spike.cluster import keys as keyfiles
from spike.cluster.hostfile import as_hosts
from spike.cluster.links import REQUEST_TIMEOUT, HostLinks
from spike.comm import protocol
from spike.comm.channels import bind_random_port
from spike.exceptions import HostError, WorkerError

logger = logging.getLogger(__name__)

ON_UNREACHABLE = ("error", "skip")
"""What a pool may do with a host that cannot serve (``on_unreachable``)."""


def check_on_unreachable(value, obj=None):
    """Raise `nengo.exceptions.ValidationError` (a ``ValueError``) unless ``value``
    is one of `ON_UNREACHABLE`; ``obj`` is what has the setting (a Simulator)."""
    if value not in ON_UNREACHABLE:
        raise ValidationError(
            f"must be 'error' or 'skip' (got {value!r})", attr="on_unreachable", obj=obj
        )


class RemoteWorkerHandle(WorkerHandle):
    """A worker started by a daemon: alive until its daemon says otherwise."""

    def __init__(self, wid, pid, link):
        super().__init__(wid, None)
        self.pid = pid
        self.link = link

    @property
    def host(self):
        """The host as the hostfile names it (``name:port``)."""
        return self.link.name

    def exit_status(self):
        status = self.link.exits.get(self.wid)
        if status is not None:
            return status
        if self.link.lost:
            return f"lost: {self.link.lost}"
        return None


def local_address_towards(name, port):
    """The address of this machine on the route to ``name`` (no packet is sent)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(name, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(sockaddr)
        return probe.getsockname()[0]


class DaemonLauncher:
    """The remote launcher part: workers started and stopped by the hosts' daemons.

    Parameters
    ----------
    links : HostLinks
        The connections to the daemons.
    job : str
        The job's name (the daemons know the workers by it).
    job_keys : dict
        The job's keys, handed to each worker by its daemon (`protocol.JOB_KEYS`).
    control_address : str
        The client's control socket, which the workers connect to.
    """

    def __init__(self, links, job, job_keys, control_address):
        self.links = links
        self.job = job
        self.job_keys = job_keys
        self.control_address = control_address
        self.counter = 0
        self.shm_dirs = {}  # host -> the directory its daemon made for the job's rings

    def launch(self, counts):
        """Start ``counts[host]`` workers on each host; return their handles (hello
        not awaited) and the first failure of a host (None if every host started
        its share)."""
        futures = {}
        for host, count in counts.items():
            ids = []
            for _ in range(count):
                self.counter += 1
                ids.append(f"{self.job}-{self.counter}")
            futures[host] = self.links.request(host, protocol.SPAWN, {
                "job": self.job,
                "ids": ids,
                "control": self.control_address,
                "keys": self.job_keys,
                "log_level": config.get("SPIKE_LOG_LEVEL"),
            })
        started = []
        failure = None
        for host, future in futures.items():
            try:
                reply = self.links.result(host, future, REQUEST_TIMEOUT)
            except HostError as e:
                failure = failure or e
                continue
            link = self.links.links[host]
            self.shm_dirs[host] = reply.fields.get("shm")
            for entry in reply.fields["workers"]:
                started.append(RemoteWorkerHandle(entry["id"], entry["pid"], link))
        return started, failure

    def stop(self, hosts):
        """Stop the job's workers on ``hosts``; wait until each daemon confirms."""
        futures = {h: self.links.request(h, protocol.KILL, {"job": self.job}) for h in hosts}
        for host, future in futures.items():
            try:
                self.links.result(host, future, 10.0)
            except HostError as e:  # its daemon stops the job when we go silent
                logger.warning("could not stop the job's workers: %s", e)


class HostPool(WorkerControl):
    """Workers started by the daemons of a hostfile's hosts, for one Simulator.

    Parameters
    ----------
    hosts : str or list
        A hostfile path, or a list of `Host` or ``"host[:port] [slots=N]"`` strings.
    keys_dir : str, optional
        Key directory (see `spike.cluster.keys`; default ``~/.config/spike/keys``).
    on_unreachable : {"error", "skip"}
        What to do with a host that is down, unreachable, busy or refuses our key.
    client_address : str, optional
        Address of this machine that the hosts reach (default: the address on the
        route to the first host; ``SPIKE_CLIENT_ADDRESS`` overrides).
    connect_timeout, heartbeat_timeout : float, optional
        Seconds (default the environment
        variables ``SPIKE_CONNECT_TIMEOUT`` and ``SPIKE_HEARTBEAT_TIMEOUT``).
    """

    def __init__(
        self,
        hosts,
        keys_dir=None,
        on_unreachable="error",
        client_address=None,
        connect_timeout=None,
        heartbeat_timeout=None,
    ):
        check_on_unreachable(on_unreachable)
        if connect_timeout is None:
            connect_timeout = config.get("SPIKE_CONNECT_TIMEOUT")
        if heartbeat_timeout is None:
            heartbeat_timeout = config.get("SPIKE_HEARTBEAT_TIMEOUT")
        self.hosts = as_hosts(hosts)
        client_keys, daemon_key = keyfiles.client_credentials(keys_dir, self.hosts)
        super().__init__(zmq.Context())
        self.job = secrets.token_hex(4)
        self.links = None
        self.auth = None
        self.launcher = None
        try:
            self._start(client_keys, daemon_key, on_unreachable, client_address,
                        connect_timeout, heartbeat_timeout)
        except BaseException:
            self.shutdown()
            raise

    def _start(self, client_keys, daemon_key, on_unreachable, client_address,
               connect_timeout, heartbeat_timeout):
        control = zmq.curve_keypair()
        worker = zmq.curve_keypair()
        data = zmq.curve_keypair()
        job_keys = {
            "control_server": control[0].decode(),
            "public": worker[0].decode(),
            "secret": worker[1].decode(),
            "data_public": data[0].decode(),
            "data_secret": data[1].decode(),
        }
        self.data_curve = {"server": data[0], "public": data[0], "secret": data[1]}
        allowed = {worker[0], data[0]}

        class Provider:
            @staticmethod
            def callback(domain, key):
                return key in allowed

        self.auth = ThreadAuthenticator(self.context, log=logging.getLogger(__name__ + ".auth"))
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=Provider)

        self.links = HostLinks(self.hosts, self.context, client_keys, daemon_key, heartbeat_timeout)
        self.links.start()
        self.capacity = {}
        self.unavailable = {}
        futures = {h: self.links.request(h, protocol.STATUS) for h in self.hosts}
        deadline = time.monotonic() + connect_timeout
        for host, future in futures.items():
            try:
                status = self.links.result(
                    host, future, max(0.0, deadline - time.monotonic())
                ).fields
            except HostError as e:
                self.unavailable[host] = str(e)
                continue
            free = status["free"]
            slots = min(free, host.slots) if host.slots else free
            if slots <= 0:
                self.unavailable[host] = (
                    f"host {host}: busy (no free slot of {status['slots']})"
                )
            else:
                self.capacity[host] = slots
        if self.unavailable and (on_unreachable == "error" or not self.capacity):
            reasons = "; ".join(self.unavailable.values())
            first = next(iter(self.unavailable))
            hint = "" if self.capacity else " (no host is available)"
            raise HostError(f"cannot use every host{hint}: {reasons}", str(first))
        for host, reason in self.unavailable.items():
            logger.warning("skipping %s", reason)

        self.client_address = (
            client_address
            or config.get("SPIKE_CLIENT_ADDRESS")
            or local_address_towards(next(iter(self.capacity)).name, 1)
        )
        self.bind_router(self.client_address, curve_keys=control)
        self.launcher = DaemonLauncher(self.links, self.job, job_keys, self.address)
        logger.info(
            "job %s: %d hosts with %d slots; control socket %s",
            self.job, len(self.capacity), self.total_slots, self.address,
        )

    @property
    def total_slots(self):
        """Workers the available hosts can take."""
        return sum(self.capacity.values())

    @property
    def shm_dirs(self):
        """``{host: directory}`` its daemon made for the job's rings (None: none)."""
        return self.launcher.shm_dirs

    def shm_groups(self, handles):
        """Workers on the same host share rings in the directory their daemon made
        for the job; the client exchanges with them over CURVE only."""
        groups = {peer: self.shm_dirs.get(h.link.host) for peer, h in handles.items()}
        return {peer: directory for peer, directory in groups.items() if directory}

    def bind_data(self, sock):
        """Bind the client's data socket (a CURVE server with the job's data key)."""
        sock.curve_server = True
        sock.curve_publickey = self.data_curve["public"]
        sock.curve_secretkey = self.data_curve["secret"]
        return bind_random_port(sock, self.client_address)

    def check_workers(self, n):
        """Raise `HostError` unless the available hosts have ``n`` slots."""
        if n > self.total_slots:
            raise HostError(
                f"{n} workers asked, but the hosts offer {self.total_slots} slots "
                f"({', '.join(f'{h}: {c}' for h, c in self.capacity.items())})"
            )

    def distribute(self, n):
        """``{host: count}`` for ``n`` workers, round-robin within each host's slots."""
        self.check_workers(n)
        counts = dict.fromkeys(self.capacity, 0)
        while n:
            for host, slots in self.capacity.items():
                if n and counts[host] < slots:
                    counts[host] += 1
                    n -= 1
        return {h: c for h, c in counts.items() if c}

    def acquire(self, n):
        """``n`` new workers on the hosts (never reused between Simulators)."""
        with self.lock:
            started, failure = self.launcher.launch(self.distribute(n))
            # known before anything can fail: `shutdown` stops them whatever happens
            self.handles.update((handle.wid, handle) for handle in started)
            if failure is not None:
                raise failure
            return self.await_hello(started)

    def release(self, handles):
        """Stop these workers (each Simulator gets fresh ones)."""
        self.discard(handles)

    def discard(self, handles, graceful=False):
        """Stop workers through their daemons; wait until each daemon confirms."""
        with self.lock:
            hosts = set()
            for handle in handles:
                self.handles.pop(handle.wid, None)
                hosts.add(handle.link.host)
            self.launcher.stop(hosts)

    def host_status(self):
        """``{host: last status reply}`` of the daemons in use (None if none yet)."""
        return {str(h): link.status for h, link in self.links.links.items()}

    def shutdown(self):
        """Stop every worker of the job, close the sockets and the link thread."""
        with self.lock:
            if self.handles and self.launcher is not None:
                try:
                    self.discard(list(self.handles.values()))
                except WorkerError:
                    pass
            self.handles.clear()
            if self.links is not None:
                self.links.stop()
                self.links = None
            self.close_router()
            if self.auth is not None:
                self.auth.stop()
                self.auth = None
            self.context.destroy(linger=0)
