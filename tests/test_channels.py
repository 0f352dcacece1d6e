"""The channels of `spike.comm.channels`, both ends in this process (no worker starts).

Each test sends a route's values through one transport (a shared-memory ring, or
ZeroMQ over loopback TCP or inproc) and checks what arrives: every step's values,
after the ring has wrapped around, with a stale session's values dropped, after a
reset; and that the registry picks the transport by the address's scheme.
"""

import contextlib
import time
import types
import uuid

import numpy as np
import pytest
import zmq
from nengo.builder.signal import Signal, SignalDict

from spike.comm import channels, shm
from spike.comm.channels import RECV, SEND, Endpoint, bind_random_port, open_channel
from spike.comm.exchange import Exchange
from spike.exceptions import ProtocolError
from spike.plan.peers import Route


class Blocked(Exception):
    """Raised by a wait hook: the channel would have waited."""


def give_up():
    raise Blocked


def make_route(size=3):
    """A route of one float64 signal, and a sender's and a receiver's SignalDict."""
    signal = Signal(np.zeros(size), name="crossing")
    sender, receiver = SignalDict(), SignalDict()
    sender.init(signal)
    receiver.init(signal)
    return Route([signal]), signal, sender, receiver


def values_of(step, size=3):
    return step * 10.0 + np.arange(size)


def carry(tx, rx, step, route, signal, sender, receiver):
    """Send ``step``'s values through ``tx``, receive them from ``rx``; return them."""
    sender[signal][...] = values_of(step)
    tx.send(step, route, sender)
    rx.recv(step, route, receiver)
    return receiver[signal].copy()


# -- shared memory ------------------------------------------------------------------


@pytest.fixture
def ring(tmp_path):
    """``(send end, receive end, route, signal, sender, receiver)`` of one ring in
    session 5; the receiver's wait hook gives up at once."""
    route, signal, sender, receiver = make_route()
    address = "shm://" + str(tmp_path / "ring")
    tx = open_channel(address, SEND, 1, route.nbytes, Endpoint(0, 5, wait_hook=give_up))
    rx = open_channel(address, RECV, 0, route.nbytes, Endpoint(1, 5, wait_hook=give_up))
    rx.reset(5)
    yield tx, rx, route, signal, sender, receiver
    tx.close()
    rx.close()


def test_shm_pair_carries_a_route_and_wraps_around(ring):
    """Values of every step arrive, when the sender runs a whole ring ahead and the
    slots are reused three times over."""
    tx, rx, route, signal, sender, receiver = ring
    assert isinstance(tx, channels.ShmSendChannel)
    assert isinstance(rx, channels.ShmReceiveChannel)
    slots = tx.ring.n_slots
    step = 0
    for _ in range(3):
        for ahead in range(1, slots + 1):
            sender[signal][...] = values_of(step + ahead)
            tx.send(step + ahead, route, sender)
        with pytest.raises(Blocked):  # a slot not yet consumed is never overwritten
            tx.send(step + slots + 1, route, sender)
        for ahead in range(1, slots + 1):
            rx.recv(step + ahead, route, receiver)
            np.testing.assert_array_equal(receiver[signal], values_of(step + ahead))
        step += slots
    assert step > 2 * slots


def test_shm_drops_a_stale_session(ring):
    """Values published in an earlier session are never taken for the new one's."""
    tx, rx, route, signal, sender, receiver = ring
    np.testing.assert_array_equal(carry(tx, rx, 1, route, signal, sender, receiver), values_of(1))
    rx.reset(6)  # the receiver is in a new session, the sender not yet
    sender[signal][...] = -1.0
    tx.send(1, route, sender)  # session 5's step 1 again
    with pytest.raises(Blocked):
        rx.recv(1, route, receiver)
    tx.reset(6)
    np.testing.assert_array_equal(carry(tx, rx, 1, route, signal, sender, receiver), values_of(1))


def test_shm_reset_restarts_at_a_step(ring):
    """After a restore at step 42 the receiver waits for step 42's values, and the
    sender may run a whole ring ahead of it from there."""
    tx, rx, route, signal, sender, receiver = ring
    slots = tx.ring.n_slots
    rx.reset(5, last_step=41)
    for step in range(42, 42 + slots):  # 42 .. 41 + slots: room for all of them
        sender[signal][...] = values_of(step)
        tx.send(step, route, sender)
    with pytest.raises(Blocked):
        tx.send(42 + slots, route, sender)
    rx.recv(42, route, receiver)
    np.testing.assert_array_equal(receiver[signal], values_of(42))
    tx.send(42 + slots, route, sender)  # step 42's slot is free again


# -- ZeroMQ ---------------------------------------------------------------------------


@pytest.fixture(params=["tcp", "inproc"])
def zmq_peer(request):
    """``(context, address, pull)``: a receiving peer's bound PULL socket."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    if request.param == "tcp":
        address = bind_random_port(pull, "127.0.0.1")
    else:
        address = f"inproc://spike-test-{uuid.uuid4().hex}"
        pull.bind(address)
    yield context, address, pull
    pull.close(linger=0)
    context.destroy(linger=0)


def zmq_pair(zmq_peer, session=5, src=0):
    context, address, pull = zmq_peer
    route, signal, sender, receiver = make_route()
    tx = open_channel(address, SEND, 1, route.nbytes, Endpoint(src, session, give_up, context))
    receiving = Endpoint(1, session, give_up, context, pull)
    rx = open_channel(address, RECV, src, route.nbytes, receiving)
    return tx, rx, route, signal, sender, receiver


def test_zmq_pair_carries_a_route(zmq_peer):
    """Values sent before they are needed wait in the receiver's queue, in order."""
    tx, rx, route, signal, sender, receiver = zmq_pair(zmq_peer)
    assert isinstance(tx, channels.ZmqSendChannel)
    assert isinstance(rx, channels.ZmqReceiveChannel)
    try:
        for step in range(1, 6):
            sender[signal][...] = values_of(step)
            tx.send(step, route, sender)
        for step in range(1, 6):
            rx.recv(step, route, receiver)
            np.testing.assert_array_equal(receiver[signal], values_of(step))
        with pytest.raises(Blocked):  # nothing more was sent: the wait hook runs
            rx.recv(6, route, receiver)
    finally:
        tx.close()
        rx.close()


def test_zmq_drops_a_stale_session_and_refuses_a_wrong_step(zmq_peer):
    tx, rx, route, signal, sender, receiver = zmq_pair(zmq_peer)
    try:
        np.testing.assert_array_equal(
            carry(tx, rx, 1, route, signal, sender, receiver), values_of(1)
        )
        sender[signal][...] = -1.0
        tx.send(2, route, sender)  # session 5's, filed before the reset
        tx.send(3, route, sender)
        deadline = time.monotonic() + 10
        while len(rx.queue) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(Blocked):  # (the hook runs if nothing came yet)
                rx.inbox.drain(100)  # what a receiver waiting for another source does
        assert len(rx.queue) == 2
        tx.send(4, route, sender)  # session 5's, still in the socket at the reset
        rx.reset(6)
        tx.reset(6)
        np.testing.assert_array_equal(
            carry(tx, rx, 1, route, signal, sender, receiver), values_of(1)
        )
        tx.send(3, route, sender)  # step 2 never came
        with pytest.raises(ProtocolError, match="expected the values of step 2"):
            rx.recv(2, route, receiver)
    finally:
        tx.close()
        rx.close()


def test_zmq_sources_share_the_peers_inbox(zmq_peer):
    """Two sources send to one PULL socket: waiting for one files the other's values
    under their source, and a message from a peer that sends nothing is dropped."""
    context, address, pull = zmq_peer
    route, signal, sender, receiver = make_route()
    receiving = Endpoint(1, 5, give_up, context, pull)
    from_0 = open_channel(address, RECV, 0, route.nbytes, receiving)
    from_2 = open_channel(address, RECV, 2, route.nbytes, receiving)
    to_1 = {
        src: open_channel(address, SEND, 1, route.nbytes, Endpoint(src, 5, give_up, context))
        for src in (0, 2, 3)
    }
    try:
        assert from_0.inbox is from_2.inbox
        for src in (3, 2, 0):  # peer 3 is not a source of peer 1
            sender[signal][...] = values_of(src)
            to_1[src].send(1, route, sender)
        from_0.recv(1, route, receiver)
        np.testing.assert_array_equal(receiver[signal], values_of(0))
        assert len(from_2.queue) == 1 and 3 not in from_2.inbox.queues
        from_2.recv(1, route, receiver)
        np.testing.assert_array_equal(receiver[signal], values_of(2))
    finally:
        for channel in [from_0, from_2, *to_1.values()]:
            channel.close()


# -- the registry and the exchange ---------------------------------------------------------


@pytest.mark.parametrize("address", ["mpi://3", "/dev/shm/ring", "", None])
def test_an_unknown_scheme_is_refused_by_name(address):
    with pytest.raises(ProtocolError, match=r"no channel transport .* schemes are .*shm://.*tcp://"):
        open_channel(address, SEND, 1, 8, Endpoint(0, 5))


def test_the_registry_chooses_by_scheme(monkeypatch, tmp_path):
    opened = []

    def fake(address, end, other, nbytes, endpoint):
        opened.append((address, end, other, nbytes, endpoint.peer))
        return "fake channel"

    monkeypatch.setitem(channels.REGISTRY, "fake", fake)
    endpoint = Endpoint(0, 5)
    assert open_channel("fake://x", RECV, 2, 16, endpoint) == "fake channel"
    assert opened == [("fake://x", RECV, 2, 16, 0)]
    ring = open_channel("shm://" + str(tmp_path / "r"), SEND, 2, 16, endpoint)
    try:
        assert isinstance(ring, channels.ShmSendChannel)
    finally:
        ring.close()
    with pytest.raises(ValueError, match="end"):
        open_channel("fake://x", "both", 2, 16, endpoint)


@pytest.mark.skipif(not shm.available(), reason="no shared-memory rings here")
def test_an_exchange_holds_one_channel_per_peer_of_its_address(tmp_path):
    """Peer 0 sends to peer 1 through a ring, peer 1 to peer 0 over ZeroMQ; a new
    session drops what the old one left."""
    route, signal, values_0, values_1 = make_route()
    context = zmq.Context()
    pulls = [context.socket(zmq.PULL) for _ in range(2)]
    data = [bind_random_port(pull, "127.0.0.1") for pull in pulls]
    ring = "shm://" + str(tmp_path / "0-1")
    plans = [
        types.SimpleNamespace(peer=0, sends={1: route}, recvs={1: route}),
        types.SimpleNamespace(peer=1, sends={0: route}, recvs={0: route}),
    ]
    exchanges = [
        Exchange(context, pulls[0], 7, plans[0], {"1": ring}, {"1": data[0]}, give_up),
        Exchange(context, pulls[1], 7, plans[1], {"0": data[0]}, {"0": ring}, give_up),
    ]
    try:
        first, second = exchanges
        assert isinstance(first.senders[1], channels.ShmSendChannel)
        assert isinstance(first.receivers[1], channels.ZmqReceiveChannel)
        assert isinstance(second.senders[0], channels.ZmqSendChannel)
        values_0[signal][...] = values_of(1)
        first.send(1, 1, route, values_0)
        second.recv(0, 1, route, values_1)
        np.testing.assert_array_equal(values_1[signal], values_of(1))
        values_1[signal][...] = values_of(2)
        second.send(0, 1, route, values_1)  # left over: nobody takes it in session 7
        for exchange in exchanges:
            exchange.set_session(8)
        values_1[signal][...] = values_of(3)
        second.send(0, 1, route, values_1)
        first.recv(1, 1, route, values_0)
        np.testing.assert_array_equal(values_0[signal], values_of(3))
    finally:
        for exchange in exchanges:
            exchange.close()
        for pull in pulls:
            pull.close(linger=0)
        context.destroy(linger=0)
