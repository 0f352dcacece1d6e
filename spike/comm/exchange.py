"""Per-step exchange of crossing values between peers, over ZeroMQ.

Each peer binds one PULL socket for everything sent to it and connects one PUSH socket
to each peer it sends to. After step ``t`` a peer sends each destination a single
message ``[header, payload]``: the header is msgpack ``[session, source peer, t]``,
the payload all crossing values for that destination packed by its `Route`. Messages
from one source arrive in order; a receiver keeps early arrivals until it needs them.

The session number changes with every Simulator and every reset, so a message left
over from an earlier run (for instance the last step's values, which nobody consumed)
is recognised and dropped instead of being mistaken for a new one.
"""

import collections
import logging

import msgpack
import numpy as np
import zmq

from spike.comm.shm import ShmChannel
from spike.exceptions import ProtocolError

logger = logging.getLogger(__name__)

POLL_INTERVAL_MS = 100
SEND_HWM = 100000


class Exchange:
    """The data channels of one peer for one session.

    Parameters
    ----------
    context : zmq.Context
    pull : zmq.Socket
        This peer's bound PULL socket (owned by the caller; not closed here).
    session : int
        Session number; messages of other sessions are dropped.
    peer : int
        This peer's index.
    addresses : dict
        ``{peer: data address}`` of every peer this one sends to.
    wait_hook : callable, optional
        Called about every 100 ms while waiting for a message or for room to send;
        it may raise to abandon the wait (a dead peer, an abort request).
    channels : dict, optional
        Shared-memory rings for peers on the same host (see `spike.comm.shm`):
        ``{"send": {dst: (path, nbytes)}, "recv": {src: (path, nbytes)}}``. Values to
        and from those peers go through the ring instead of ZeroMQ.
    curve : dict, optional
        ``{"server", "public", "secret"}``: CURVE keys for the PUSH sockets, when the
        peers' data sockets are CURVE servers (workers on other hosts).
    """

    def __init__(
        self, context, pull, session, peer, addresses, wait_hook=None, channels=None,
        curve=None,
    ):
        self.pull = pull
        self.session = session
        self.peer = peer
        self.wait_hook = wait_hook
        self.pending = collections.defaultdict(collections.deque)
        channels = channels or {}
        self.shm_send = {
            int(dst): ShmChannel(path, nbytes)
            for dst, (path, nbytes) in channels.get("send", {}).items()
        }
        self.shm_recv = {
            int(src): ShmChannel(path, nbytes)
            for src, (path, nbytes) in channels.get("recv", {}).items()
        }
        self.pushes = {}
        self.buffers = {}
        for dst, address in addresses.items():
            if dst in self.shm_send:
                continue
            push = context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.setsockopt(zmq.SNDHWM, SEND_HWM)
            if curve is not None:
                push.curve_serverkey = curve["server"]
                push.curve_publickey = curve["public"]
                push.curve_secretkey = curve["secret"]
            push.connect(address)
            self.pushes[dst] = push

    def set_session(self, session):
        """Start a new session: forget every message kept from the old one."""
        self.session = session
        self.pending.clear()
        for channel in self.shm_recv.values():
            channel.reset()

    def set_position(self, n_steps):
        """After a restore at ``n_steps``: the next value expected is that step's."""
        for channel in self.shm_recv.values():
            channel.reset(n_steps - 1)

    def _wait(self):
        if self.wait_hook is not None:
            self.wait_hook()

    def send(self, dst, step, route, signals):
        """Send peer ``dst`` the values of ``route``'s signals after ``step``.

        Over shared memory the values are packed straight into the ring's slot;
        over ZeroMQ into a buffer kept per destination.
        """
        channel = self.shm_send.get(dst)
        if channel is not None:
            route.pack(signals, channel.claim(step, self.wait_hook))
            channel.publish(self.session, step)
            return
        buffer = self.buffers.get(dst)
        if buffer is None:
            buffer = self.buffers[dst] = np.empty(route.nbytes, dtype=np.uint8)
        payload = route.pack(signals, buffer)
        header = msgpack.packb([self.session, self.peer, step])
        push = self.pushes[dst]
        while True:
            try:
                push.send_multipart([header, payload], flags=zmq.NOBLOCK, copy=True)
                return
            except zmq.Again:
                if not push.poll(POLL_INTERVAL_MS, zmq.POLLOUT):
                    self._wait()

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
            return
        self.pending[src].append((step, parts[1]))

    def recv(self, src, step, route, signals):
        """Wait for the values peer ``src`` sent after ``step``; unpack them into
        ``signals`` through ``route``."""
        channel = self.shm_recv.get(src)
        if channel is not None:
            route.unpack(signals, channel.wait_for(self.session, step, self.wait_hook))
            channel.release(step)
            return
        route.unpack(signals, self._recv_zmq(src, step))

    def _recv_zmq(self, src, step):
        queue = self.pending[src]
        pull = self.pull
        while not queue:
            if pull.poll(POLL_INTERVAL_MS):
                while True:
                    try:
                        parts = pull.recv_multipart(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._accept(parts)
            else:
                self._wait()
        got, payload = queue.popleft()
        if got != step:
            raise ProtocolError(
                f"peer {self.peer} expected the values of step {step} from peer "
                f"{src}, got step {got}"
            )
        return payload

    def close(self):
        for push in self.pushes.values():
            push.close(linger=0)
        self.pushes.clear()
        for channel in list(self.shm_send.values()) + list(self.shm_recv.values()):
            channel.close()
        self.shm_send.clear()
        self.shm_recv.clear()
        self.pending.clear()
