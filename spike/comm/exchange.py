"""Per-step exchange of crossing values between peers: one channel per peer.

After step ``t`` a peer sends each peer it feeds the values that peer needs (packed
by their `Route`), and before step ``t + 1`` it receives what each of its sources
sent after ``t``. `Exchange` holds this peer's end of the channel to every such
peer, each of the transport its address names (`spike.comm.channels`: a
shared-memory ring for peers on one host, ZeroMQ otherwise), so sending and
receiving cost one method call on top of the transport's own work.
"""

from spike.comm.channels import RECV, SEND, Endpoint, open_channel


class Exchange:
    """The channels of one peer for one Simulator.

    Parameters
    ----------
    context : zmq.Context
    pull : zmq.Socket
        This peer's bound PULL socket (owned by the caller; not closed here), which
        its ZeroMQ channels receive on.
    session : int
        Session number; values of other sessions are dropped.
    plan : PeerPlan
        This peer's share: its index (``peer``) and its routes (``sends``,
        ``recvs``: ``{peer: Route}``).
    sends, recvs : dict
        ``{peer: channel address}`` for every peer this one sends to and receives
        from (keys may be strings, as they come over the wire).
    wait_hook : callable, optional
        Called about every 100 ms while waiting for values or for room to send; it
        may raise to abandon the wait (a dead peer, an abort request).
    curve : dict, optional
        ``{"server", "public", "secret"}``: CURVE keys for ZeroMQ channels, when the
        peers' data sockets are CURVE servers (workers on other hosts).
    """

    def __init__(
        self, context, pull, session, plan, sends, recvs, wait_hook=None, curve=None,
    ):
        self.session = session
        self.peer = plan.peer
        endpoint = Endpoint(plan.peer, session, wait_hook, context, pull, curve)
        sends = {int(k): v for k, v in sends.items()}
        recvs = {int(k): v for k, v in recvs.items()}
        self.senders = {}
        self.receivers = {}
        try:
            for dst, route in plan.sends.items():
                self.senders[dst] = open_channel(sends[dst], SEND, dst, route.nbytes, endpoint)
            for src, route in plan.recvs.items():
                self.receivers[src] = open_channel(recvs[src], RECV, src, route.nbytes, endpoint)
        except BaseException:
            self.close()
            raise

    def set_session(self, session):
        """Start a new session: forget every value kept from the old one."""
        self.session = session
        for channel in self.channels():
            channel.reset(session)

    def set_position(self, n_steps):
        """After a restore at ``n_steps``: the next values expected are that step's."""
        for channel in self.receivers.values():
            channel.reset(self.session, n_steps - 1)

    def send(self, dst, step, route, signals):
        """Send peer ``dst`` the values of ``route``'s signals after ``step``."""
        self.senders[dst].send(step, route, signals)

    def recv(self, src, step, route, signals):
        """Wait for the values peer ``src`` sent after ``step``; unpack them into
        ``signals`` through ``route``."""
        self.receivers[src].recv(step, route, signals)

    def channels(self):
        return list(self.senders.values()) + list(self.receivers.values())

    def close(self):
        for channel in self.channels():
            channel.close()
        self.senders.clear()
        self.receivers.clear()
