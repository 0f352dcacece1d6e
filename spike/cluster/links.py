"""Connections from a client to host daemons: requests, replies and heartbeats.

One `HostLinks` thread holds a CURVE-secured DEALER per daemon (a `DaemonLink`),
sends heartbeats, and answers requests made from other threads with futures. The
host pool (`spike.cluster.hostpool`) uses it for jobs; `Query` for status requests
(``spike cluster status``, ``spike monitor``, and waiting for a daemon started over
SSH).
"""

import concurrent.futures
import itertools
import logging
import queue
import secrets
import threading
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from spike import config
from spike.cluster import keys as keyfiles
from spike.cluster.hostfile import as_hosts
from spike.comm import protocol, wire
from spike.exceptions import HostError, ProtocolError

logger = logging.getLogger(__name__)


HEARTBEAT_INTERVAL = 0.5
"""Seconds between heartbeats to each daemon."""


HEARTBEAT_TIMEOUT = config.VARIABLES["SPIKE_HEARTBEAT_TIMEOUT"].default
"""A daemon silent this long (seconds) is taken for lost: host down or cut off."""


CONNECT_TIMEOUT = config.VARIABLES["SPIKE_CONNECT_TIMEOUT"].default
"""Seconds a daemon has to answer the first status request."""


REQUEST_TIMEOUT = 30.0


POLL_MS = 20


class DaemonLink:
    """The connection to one host's daemon. Used by the `HostLinks` thread only,
    except for the attributes it sets, which other threads read."""

    def __init__(self, host, context, client_keys, server_key):
        self.host = host
        self.name = str(host)
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTING_ID, secrets.token_bytes(16))
        self.socket.curve_serverkey = server_key
        self.socket.curve_publickey, self.socket.curve_secretkey = client_keys
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_DISCONNECTED
        )
        if ":" in host.name:
            self.socket.setsockopt(zmq.IPV6, 1)
        self.socket.connect(host.address)
        self.handshake = False
        self.refused = None  # why the handshake failed, if it did
        self.lost = None  # why the daemon is taken for lost, once it is
        self.last_reply = None
        self.status = None  # the daemon's last status reply (fields)
        self.exits = {}  # worker id -> how it ended
        self.pending = {}  # req -> Future
        self.next_heartbeat = 0.0

    def mark_lost(self, reason, quiet=False):
        if self.lost is None:
            self.lost = reason
            if not quiet:
                logger.warning("host %s lost: %s", self.name, reason)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(HostError(f"host {self.name}: {reason}", self.name))
        self.pending.clear()

    def close(self):
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)


class HostLinks(threading.Thread):
    """A thread owning the sockets to every daemon: requests, heartbeats, events.

    Parameters
    ----------
    hosts : list of Host
    context : zmq.Context
    client_keys : (bytes, bytes)
        The client's public and secret key.
    default_server_key : bytes
        The daemons' public key (a `Host` with its own ``key`` overrides it).
    heartbeat_timeout : float
    """

    def __init__(self, hosts, context, client_keys, default_server_key, heartbeat_timeout):
        super().__init__(name="spike-host-links", daemon=True)
        self.context = context
        self.links = {}
        for host in hosts:
            server_key = host.key.encode() if host.key else default_server_key
            self.links[host] = DaemonLink(host, context, client_keys, server_key)
        self.heartbeat_timeout = heartbeat_timeout
        self.requests = queue.Queue()
        self.stopping = threading.Event()
        self.req = itertools.count(1)

    def request(self, host, op, fields=None):
        """Send a request to ``host``'s daemon; a `Future` of its reply `Message`."""
        future = concurrent.futures.Future()
        self.requests.put((self.links[host], op, dict(fields or {}), future))
        return future

    def ask(self, host, op, fields=None, timeout=REQUEST_TIMEOUT):
        """Send a request and wait for the reply (raises `HostError`)."""
        return self.result(host, self.request(host, op, fields), timeout)

    def result(self, host, future, timeout):
        link = self.links[host]
        try:
            message = future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise HostError(f"host {link.name}: {self.silence(link, timeout)}", link.name) from None
        if message.op == protocol.ERROR:
            raise HostError(f"host {link.name}: {message.fields['message']}", link.name)
        return message

    @staticmethod
    def silence(link, timeout):
        if link.refused:
            return link.refused
        if link.lost:
            return link.lost
        if not link.handshake:
            return (
                f"no answer within {timeout:.1f} s (daemon not running, host down or "
                "unreachable, or the daemon does not hold the key we expect)"
            )
        return f"the daemon did not answer within {timeout:.1f} s"

    def stop(self):
        self.stopping.set()
        self.join(timeout=5)

    def run(self):
        poller = zmq.Poller()
        by_socket = {}
        for link in self.links.values():
            poller.register(link.socket, zmq.POLLIN)
            poller.register(link.monitor, zmq.POLLIN)
            by_socket[link.socket] = link
            by_socket[link.monitor] = link
        try:
            while not self.stopping.is_set():
                self._send_requests()
                for sock, _ in poller.poll(POLL_MS):
                    link = by_socket[sock]
                    if sock is link.monitor:
                        self._on_event(link, recv_monitor_message(sock))
                    else:
                        self._on_message(link, sock.recv_multipart())
                self._heartbeats(time.monotonic())
        except Exception:  # never expected; make it visible and fail every link
            logger.exception("host link thread failed")
            for link in self.links.values():
                link.mark_lost("the client's link thread failed")
        finally:
            for link in self.links.values():
                link.mark_lost("the client closed its connections", quiet=True)
                link.close()

    def _send_requests(self):
        while True:
            try:
                link, op, fields, future = self.requests.get_nowait()
            except queue.Empty:
                return
            if link.lost:
                future.set_exception(HostError(f"host {link.name}: {link.lost}", link.name))
                continue
            req = next(self.req)
            fields["req"] = req
            link.pending[req] = future
            try:
                link.socket.send_multipart(wire.encode(op, fields), zmq.NOBLOCK)
            except zmq.ZMQError as e:
                link.pending.pop(req, None)
                future.set_exception(HostError(f"host {link.name}: cannot send: {e}", link.name))

    def _on_event(self, link, event):
        kind = event["event"]
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            link.handshake = True
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            link.refused = "the daemon refused our key (not in its authorized/ keys)"
            link.mark_lost(link.refused)
        elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            link.refused = "CURVE handshake failed (wrong daemon key, or not a Spike daemon)"
        elif kind == zmq.EVENT_DISCONNECTED and link.handshake:
            link.mark_lost("connection to the daemon closed (daemon stopped or host down)")

    def _on_message(self, link, parts):
        try:
            message = wire.decode(parts)
        except ProtocolError as e:
            logger.warning("malformed message from the daemon of %s dropped: %s", link.name, e)
            return
        link.last_reply = time.monotonic()
        req = message.fields.get("req")
        future = link.pending.pop(req, None) if isinstance(req, int) else None
        try:
            protocol.check(message, protocol.DAEMON_REPLIES)
        except ProtocolError as e:  # a daemon of another version, or a bug: say which
            logger.warning("malformed reply from the daemon of %s dropped: %s", link.name, e)
            if future is not None and not future.done():
                future.set_exception(
                    HostError(f"host {link.name}: malformed reply: {e}", link.name)
                )
            return
        if message.op == protocol.WORKER_EXIT:
            link.exits[message.fields["id"]] = message.fields["status"]
            return
        if message.op == protocol.STATUS:
            link.status = message.fields
        if future is not None and not future.done():
            future.set_result(message)

    def _heartbeats(self, now):
        for link in self.links.values():
            if link.lost or link.last_reply is None:
                continue  # not yet answered: the first request's timeout applies
            if now - link.last_reply > self.heartbeat_timeout:
                link.mark_lost(
                    f"no heartbeat from the daemon for {now - link.last_reply:.1f} s "
                    "(host down or network cut off)"
                )
                continue
            if now >= link.next_heartbeat:
                link.next_heartbeat = now + HEARTBEAT_INTERVAL
                req = next(self.req)
                try:
                    link.socket.send_multipart(
                        wire.encode(protocol.HEARTBEAT, {"req": req}), zmq.NOBLOCK
                    )
                except zmq.ZMQError:
                    pass  # the silence will tell


QUERY_TIMEOUT = 3.0


class Query:
    """Connections to a list of daemons for status requests (a `HostLinks` thread).

    Parameters
    ----------
    hosts : str or list
        Hostfile path or hosts (see `spike.cluster.hostfile.as_hosts`).
    keys_dir : str, optional
    """

    def __init__(self, hosts, keys_dir=None):
        self.hosts = as_hosts(hosts)
        client_keys, daemon_key = keyfiles.client_credentials(keys_dir, self.hosts)
        self.context = zmq.Context()
        self.links = HostLinks(
            self.hosts, self.context, client_keys, daemon_key, 10 * HEARTBEAT_TIMEOUT
        )
        self.links.start()

    def ask(self, op=protocol.STATUS, timeout=QUERY_TIMEOUT):
        """``{host: reply fields}``, or ``{host: {"error": why}}`` for a silent one."""
        futures = {h: self.links.request(h, op) for h in self.hosts}
        deadline = time.monotonic() + timeout
        result = {}
        for host, future in futures.items():
            try:
                message = self.links.result(host, future, max(0.0, deadline - time.monotonic()))
                result[str(host)] = dict(message.fields)
            except HostError as e:
                result[str(host)] = {"error": str(e)}
            result[str(host)].pop("req", None)
        return result

    def close(self):
        self.links.stop()
        self.context.destroy(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
