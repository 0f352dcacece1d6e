"""Channels: how one peer's crossing values reach another, a transport per address scheme.

Every ordered pair of peers that exchange values has one channel, named by an
address whose scheme picks the transport, as ``dask.distributed``'s ``comm``
registry picks a backend per scheme:

=====================  =================================================================
address                transport
=====================  =================================================================
``shm://PATH``         a ring of slots in the file ``PATH`` (`spike.comm.shm`), shared by
                       two peers on one host
``tcp://HOST:PORT``    ZeroMQ, to the receiving peer's PULL socket at that address (also
                       ``ipc://`` and ``inproc://``, ZeroMQ's other transports)
=====================  =================================================================

Both ends of a channel open the same address: the sending end with `SEND`, the
receiving end with `RECV` (`open_channel`). `REGISTRY` maps each scheme to the
factory that makes its ends; `register` adds one.

An MPI transport goes here, beside the two above: an ``open_mpi`` factory in
`REGISTRY` under ``"mpi"``, for addresses ``mpi://RANK`` naming the receiving
rank, whose sending end posts a route's bytes to that rank (tagged with the step)
and whose receiving end waits for them, with the session checks above. The session
would hand such addresses to peers launched under MPI
(`spike.client.session.Session._channel_addresses`), and `spike.comm.exchange`
would use them unchanged.

A channel's end has the same four methods whatever the transport (`Channel`):
``send(step, route, signals)`` packs ``route``'s signals and sends them as the
values after ``step``; ``recv(step, route, signals)`` waits for the values sent
after ``step`` and unpacks them into ``signals``; ``reset(session, last_step)``
starts a session; ``close()``. Each call is one step of one route, and the channel
adds no copy of its own: a ring's end packs into and unpacks from the slot, a
ZeroMQ end packs into a buffer it keeps and unpacks from the received frame.

Sessions. Every message carries the sender's session number, which changes with
every Simulator and every reset, so values left over from an earlier run (for
instance the last step's, which nobody consumed) are recognised and dropped instead
of being mistaken for new ones. A ring's slot holds ``[session, step]``; a ZeroMQ
message is ``[header, payload]`` with the msgpack header ``[session, source peer,
step]``, the payload the route's bytes.

One PULL socket per peer. A peer binds a single PULL socket for all it receives over
ZeroMQ (one port per peer, however many send to it), so its ZeroMQ receiving
channels share one `ZmqInbox`: whichever channel is waiting files every message
that arrives under its source, and a channel whose values came early finds them
queued. Messages from one source arrive in order.
"""

import collections
import logging

import msgpack
import numpy as np
import zmq

from spike.comm.shm import ShmChannel
from spike.exceptions import ProtocolError

logger = logging.getLogger(__name__)

SEND = "send"
RECV = "recv"

POLL_INTERVAL_MS = 100
"""Longest wait on a ZeroMQ socket between two calls of the wait hook."""
SEND_HWM = 100000
"""Messages a PUSH socket queues before a send waits (far more than a ring holds:
a receiver that falls behind slows its sender only when something is wrong)."""


class Endpoint:
    """What the ends of a peer's channels share: the peer, its ZeroMQ context and
    PULL socket, the session, and the hook called while waiting.

    Parameters
    ----------
    peer : int
        This peer's index.
    session : int
        The session the channels start in.
    wait_hook : callable, optional
        Called about every 100 ms while a channel waits for values or for room to
        send; it may raise to abandon the wait (a dead peer, an abort request).
    context : zmq.Context, optional
        For ZeroMQ channels.
    pull : zmq.Socket, optional
        This peer's bound PULL socket, for ZeroMQ receiving ends (owned by the
        caller; never closed here).
    curve : dict, optional
        ``{"server", "public", "secret"}``: CURVE keys of the PUSH sockets, where the
        peers' data sockets are CURVE servers (workers on other hosts).
    """

    def __init__(self, peer, session, wait_hook=None, context=None, pull=None, curve=None):
        self.peer = peer
        self.session = session
        self.wait_hook = wait_hook
        self.context = context
        self.pull = pull
        self.curve = curve
        self._inbox = None

    def inbox(self):
        """The `ZmqInbox` on this peer's PULL socket (made on first use)."""
        if self._inbox is None:
            if self.pull is None:
                raise ValueError(f"peer {self.peer} has no PULL socket to receive on")
            self._inbox = ZmqInbox(self.pull, self.peer, self.session, self.wait_hook)
        return self._inbox


class Channel:
    """One end of a channel (see the module's docstring).

    A sending end implements `send`, a receiving end `recv`; both `reset` and
    `close`.
    """

    address = None

    def send(self, step, route, signals):
        """Send the values of ``route``'s signals after ``step``."""
        raise TypeError(f"the channel end at {self.address} only receives")

    def recv(self, step, route, signals):
        """Wait for the values sent after ``step``; unpack them into ``signals``."""
        raise TypeError(f"the channel end at {self.address} only sends")

    def reset(self, session, last_step=0):
        """Start session ``session``: values of other sessions are dropped, and a
        receiving end forgets what it kept and next waits for the values sent after
        ``last_step + 1`` (``last_step``: the step a restored run stands at, less
        one)."""
        self.session = session

    def close(self):
        """Release the channel's resources."""


# -- shared memory ---------------------------------------------------------------------


class ShmEnd(Channel):
    """Either end of a ring (`spike.comm.shm.ShmChannel`); both open its file."""

    def __init__(self, path, nbytes, endpoint):
        self.address = "shm://" + path
        self.ring = ShmChannel(path, nbytes)
        self.session = endpoint.session
        self.wait_hook = endpoint.wait_hook

    def close(self):
        self.ring.close()


class ShmSendChannel(ShmEnd):
    """The sending end of a ring: packs straight into the slot of the step."""

    def send(self, step, route, signals):
        ring = self.ring
        route.pack(signals, ring.claim(step, self.wait_hook))
        ring.publish(self.session, step)


class ShmReceiveChannel(ShmEnd):
    """The receiving end of a ring: unpacks straight from the slot of the step."""

    def recv(self, step, route, signals):
        ring = self.ring
        route.unpack(signals, ring.wait_for(self.session, step, self.wait_hook))
        ring.release(step)

    def reset(self, session, last_step=0):
        self.session = session
        self.ring.reset(last_step)  # the receiver owns the ring's consumed step


def open_shm(address, end, other, nbytes, endpoint):
    """The end of the ring ``shm://PATH`` (created by whichever end comes first)."""
    path = address[len("shm://"):]
    if not path.startswith("/"):
        raise ProtocolError(f"shared-memory address {address!r} is not shm:///absolute/path")
    kind = ShmSendChannel if end == SEND else ShmReceiveChannel
    return kind(path, nbytes, endpoint)


# -- ZeroMQ ---------------------------------------------------------------------------


class ZmqInbox:
    """A peer's PULL socket and the values that came before they were needed, one
    queue per source (shared by the peer's `ZmqReceiveChannel` s)."""

    def __init__(self, pull, peer, session, wait_hook):
        self.pull = pull
        self.peer = peer
        self.session = session
        self.wait_hook = wait_hook
        self.queues = {}  # source peer -> deque of (step, payload)

    def queue(self, src):
        """The queue of what ``src`` sent (made on first use)."""
        return self.queues.setdefault(src, collections.deque())

    def drain(self, timeout_ms):
        """File everything that has arrived, waiting up to ``timeout_ms`` for the
        first message; call the wait hook if none came."""
        pull = self.pull
        if pull.poll(timeout_ms):
            while True:
                try:
                    parts = pull.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    return
                self._accept(parts)
        elif self.wait_hook is not None:
            self.wait_hook()

    def _accept(self, parts):
        """File one received message under its source; drop stale or bad ones."""
        try:
            if len(parts) != 2:
                raise ProtocolError(f"data message with {len(parts)} frames")
            header = msgpack.unpackb(parts[0])
            if (
                not isinstance(header, list)
                or len(header) != 3
                or not all(isinstance(x, int) for x in header)
            ):
                raise ProtocolError("data header is not [session, peer, step]")
        except Exception as e:  # msgpack raises several types on bad input
            logger.warning("peer %d dropped a malformed data message: %s", self.peer, e)
            return
        session, src, step = header
        if session != self.session:
            return  # an earlier session's (or a forged session number)
        queue = self.queues.get(src)
        if queue is None:
            logger.warning("peer %d dropped values from peer %d, which sends it none",
                           self.peer, src)
            return
        queue.append((step, parts[1]))


class ZmqSendChannel(Channel):
    """A PUSH socket connected to the receiving peer's PULL socket."""

    def __init__(self, address, nbytes, endpoint):
        self.address = address
        self.peer = endpoint.peer
        self.session = endpoint.session
        self.wait_hook = endpoint.wait_hook
        self.buffer = np.empty(nbytes, dtype=np.uint8)  # packed into at every step
        push = endpoint.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDHWM, SEND_HWM)
        curve = endpoint.curve
        if curve is not None:
            push.curve_serverkey = curve["server"]
            push.curve_publickey = curve["public"]
            push.curve_secretkey = curve["secret"]
        if address.startswith("tcp://["):  # IPv6, as `bind_random_port` binds it
            push.setsockopt(zmq.IPV6, 1)
        push.connect(address)
        self.push = push

    def send(self, step, route, signals):
        payload = route.pack(signals, self.buffer)
        header = msgpack.packb([self.session, self.peer, step])
        push = self.push
        while True:
            try:
                push.send_multipart([header, payload], flags=zmq.NOBLOCK, copy=True)
                return
            except zmq.Again:
                if not push.poll(POLL_INTERVAL_MS, zmq.POLLOUT) and self.wait_hook is not None:
                    self.wait_hook()

    def close(self):
        self.push.close(linger=0)


class ZmqReceiveChannel(Channel):
    """What one source sends this peer over ZeroMQ, from the peer's shared inbox."""

    def __init__(self, address, src, endpoint):
        self.address = address
        self.src = src
        self.inbox = endpoint.inbox()
        self.queue = self.inbox.queue(src)

    def recv(self, step, route, signals):
        queue = self.queue
        while not queue:
            self.inbox.drain(POLL_INTERVAL_MS)
        got, payload = queue.popleft()
        if got != step:
            raise ProtocolError(
                f"peer {self.inbox.peer} expected the values of step {step} from peer "
                f"{self.src}, got step {got}"
            )
        route.unpack(signals, payload)

    def reset(self, session, last_step=0):
        self.inbox.session = session  # shared: every channel of the inbox is reset too
        self.queue.clear()

    def close(self):
        self.queue.clear()


def open_zmq(address, end, other, nbytes, endpoint):
    """A ZeroMQ end: a PUSH socket to ``address``, or the queue of source ``other``
    in the inbox of the PULL socket bound at ``address``."""
    if end == SEND:
        return ZmqSendChannel(address, nbytes, endpoint)
    return ZmqReceiveChannel(address, other, endpoint)


# -- the registry ---------------------------------------------------------------------


REGISTRY = {
    "shm": open_shm,
    "tcp": open_zmq,
    "ipc": open_zmq,
    "inproc": open_zmq,
}
"""``{scheme: factory}``; ``factory(address, end, other, nbytes, endpoint)`` returns
the `Channel` end ``end`` (`SEND` or `RECV`) of the channel at ``address`` between
this peer (``endpoint``) and peer ``other``, carrying ``nbytes`` a step."""


def register(scheme, factory):
    """Make ``factory`` open the channels of addresses ``scheme://...``."""
    REGISTRY[scheme] = factory


def open_channel(address, end, other, nbytes, endpoint):
    """Open this peer's end of the channel at ``address`` (the transport is chosen
    by the address's scheme).

    Parameters
    ----------
    address : str
        ``scheme://...`` (see the module's docstring).
    end : {SEND, RECV}
    other : int
        The peer at the other end.
    nbytes : int
        The route's bytes per step.
    endpoint : Endpoint
        This peer's side.

    Raises
    ------
    ProtocolError
        If no transport is registered for the address's scheme.
    """
    scheme, sep, _ = address.partition("://") if isinstance(address, str) else ("", "", "")
    factory = REGISTRY.get(scheme) if sep else None
    if factory is None:
        raise ProtocolError(
            f"no channel transport for address {str(address)[:80]!r}: the known "
            f"schemes are {', '.join(s + '://' for s in sorted(REGISTRY))}"
        )
    if end not in (SEND, RECV):
        raise ValueError(f"a channel's end is {SEND!r} or {RECV!r}, not {end!r}")
    return factory(address, end, other, nbytes, endpoint)


def bind_random_port(sock, host):
    """Bind ``sock`` to a free TCP port of ``host`` (a name, IPv4 or IPv6 address);
    return the address peers connect to."""
    if ":" in host:  # IPv6: bracketed in ZeroMQ addresses
        sock.setsockopt(zmq.IPV6, 1)
        host = f"[{host}]"
    port = sock.bind_to_random_port(f"tcp://{host}")
    return f"tcp://{host}:{port}"
