"""The protocol table: what `spike.comm.protocol.check` accepts and what it names
when it refuses a message, and what the worker and the client do with a message it
refuses (no process starts)."""

import re
import threading

import numpy as np
import pytest
import zmq

from spike.client.pool import WorkerControl, WorkerHandle
from spike.cluster.daemon import Daemon
from spike.comm import protocol, wire
from spike.comm.channels import bind_random_port
from spike.exceptions import ProtocolError, WorkerDied
from spike.runtime.worker import Worker


def received(op, fields=None, arrays=(), blobs=()):
    """``op`` as a receiver decodes it."""
    return wire.decode(wire.encode(op, fields, arrays, blobs))


def job_keys():
    return {field.name: zmq.curve_keypair()[0].decode() for field in protocol.JOB_KEYS}


def spawn(**changes):
    fields = {"job": "j1", "ids": ["j1-1"], "control": "tcp://127.0.0.1:5000",
              "keys": job_keys(), "req": 3}
    fields.update(changes)
    return received(protocol.SPAWN, fields)


def test_well_formed_messages_pass():
    protocol.check(spawn(), protocol.DAEMON_REQUESTS)
    protocol.check(spawn(log_level=None), protocol.DAEMON_REQUESTS)  # optional
    protocol.check(received(protocol.RUN, {"steps": 10}), protocol.WORKER_REQUESTS)
    probes = received(protocol.PROBES, {"keys": [0, 1]}, [np.zeros(3), np.ones(2)])
    protocol.check(probes, protocol.WORKER_REPLIES)
    setup = received(protocol.SETUP, {"session": 0, "sends": {"1": "shm:///dev/shm/x"},
                                      "recvs": {}}, blobs=[b"plan"])
    protocol.check(setup, protocol.WORKER_REQUESTS)
    extra = received(protocol.STATUS, {"req": 1, "from_a_newer_client": True})
    protocol.check(extra, protocol.DAEMON_REQUESTS)  # unknown fields are ignored


@pytest.mark.parametrize(
    "message, table, error",
    [
        (received("run_arbitrary_code"), protocol.DAEMON_REQUESTS,
         "unknown daemon request 'run_arbitrary_code'"),
        (received(protocol.SPAWNED), protocol.DAEMON_REQUESTS,
         "unknown daemon request 'spawned'"),  # a reply is no request
        (received(protocol.RUN), protocol.WORKER_REQUESTS,
         "worker request 'run': field 'steps' is missing"),
        (received(protocol.RUN, {"steps": True}), protocol.WORKER_REQUESTS,
         "worker request 'run': field 'steps' must be int"),  # bool is not an int
        (received(protocol.RUN, {"steps": -1}), protocol.WORKER_REQUESTS,
         "field 'steps' must be a step count"),
        (spawn(job="a b; rm -rf /"), protocol.DAEMON_REQUESTS,
         "daemon request 'spawn': field 'job' must be a short name"),
        (spawn(ids=["../../etc/passwd"]), protocol.DAEMON_REQUESTS,
         "field 'ids' must be a list of 1 to 1024 worker ids"),
        (spawn(ids=[]), protocol.DAEMON_REQUESTS, "field 'ids' must be a list of 1 to"),
        (spawn(control="ipc:///tmp/x"), protocol.DAEMON_REQUESTS,
         "field 'control' must be tcp://HOST:PORT"),
        (spawn(keys={**job_keys(), "secret": "~" * 40}), protocol.DAEMON_REQUESTS,
         "field 'keys.secret' must be a 40-character Z85 key"),
        (spawn(keys="none"), protocol.DAEMON_REQUESTS, "field 'keys' must be dict"),
        (spawn(log_level="LOUD"), protocol.DAEMON_REQUESTS,
         "field 'log_level' must be DEBUG or INFO or WARNING or ERROR"),
        (spawn(req="7"), protocol.DAEMON_REQUESTS, "field 'req' must be int"),
        (received(protocol.SETUP, {"session": 0, "sends": {}, "recvs": {}}),
         protocol.WORKER_REQUESTS, "worker request 'setup' carries 0 byte frames, not 1"),
        (received(protocol.RUN, {"steps": 1}, [np.zeros(2)]), protocol.WORKER_REQUESTS,
         "worker request 'run' carries no arrays"),
        (received(protocol.ERROR, {"message": "no traceback"}), protocol.WORKER_REPLIES,
         "worker reply 'error': field 'type' is missing"),
        (received(protocol.WORKER_EXIT, {"job": "j", "id": 3, "pid": 1, "status": "x"}),
         protocol.DAEMON_REPLIES, "daemon reply 'worker_exit': field 'id' must be str"),
    ],
)
def test_a_bad_message_is_refused_naming_op_and_field(message, table, error):
    with pytest.raises(ProtocolError, match=re.escape(error)):
        protocol.check(message, table)


def test_the_same_name_means_what_its_direction_says():
    """``error`` from a worker has a traceback; from a daemon, a message only."""
    daemon_error = received(protocol.ERROR, {"message": "busy", "busy": True})
    protocol.check(daemon_error, protocol.DAEMON_REPLIES)
    with pytest.raises(ProtocolError, match="worker reply 'error'"):
        protocol.check(daemon_error, protocol.WORKER_REPLIES)


def test_job_keys_are_checked_on_their_own():
    protocol.check_fields("job keys", job_keys(), protocol.JOB_KEYS)
    with pytest.raises(ProtocolError, match="job keys: field 'data_secret' is missing"):
        protocol.check_fields("job keys", {**job_keys(), "data_secret": None}, protocol.JOB_KEYS)
    with pytest.raises(ProtocolError, match="job keys is not a map"):
        protocol.check_fields("job keys", [1, 2], protocol.JOB_KEYS)


@pytest.mark.parametrize(
    "server, table", [(Worker, protocol.WORKER_REQUESTS), (Daemon, protocol.DAEMON_REQUESTS)]
)
def test_every_request_has_a_handler(server, table):
    """Each request of the table is served by an ``on_<op>`` method, and no
    ``on_`` method serves a request the table lacks."""
    handlers = {name[3:] for name in dir(server) if name.startswith("on_")}
    assert handlers == set(table)


# -- on receipt, in the worker and in the client (threads and sockets, no process) --------


class FakeWorker(WorkerHandle):
    """A worker handle for a DEALER socket of this test: alive while the test says."""

    def __init__(self, wid):
        super().__init__(wid, None)
        self.pid = 0
        self.gone = None

    def exit_status(self):
        return self.gone


def test_the_client_raises_a_malformed_reply_where_it_is_awaited():
    """A reply that breaks the protocol is raised as a `ProtocolError` naming the op
    and field by the `expect` waiting for it (not dropped, which would leave the
    client waiting); warnings are warned; the hello fills in the handle."""
    control = WorkerControl(zmq.Context())
    control.bind_router("127.0.0.1")
    worker = control.context.socket(zmq.DEALER)
    worker.setsockopt(zmq.IDENTITY, b"w1")
    worker.setsockopt(zmq.LINGER, 0)
    worker.connect(control.address)
    handle = control.handles["w1"] = FakeWorker("w1")
    try:
        worker.send_multipart(wire.encode(protocol.HELLO, {
            "id": "w1", "pid": 0, "host": "there", "data": "tcp://127.0.0.1:1"}))
        assert control.await_hello([handle], timeout=10) == [handle]
        assert handle.data_address == "tcp://127.0.0.1:1" and handle.hostname == "there"
        worker.send_multipart(wire.encode(
            protocol.WARNINGS, {"warnings": [["builtins", "RuntimeWarning", "careful"]]}))
        worker.send_multipart(wire.encode(protocol.DONE, {"steps": 3}))
        with pytest.warns(RuntimeWarning, match="careful"), pytest.raises(
            ProtocolError, match="worker reply 'done': field 'n_steps' is missing"
        ):
            control.expect(handle, (protocol.DONE,), timeout=10)
        handle.gone = "killed by SIGKILL"
        with pytest.raises(WorkerDied, match="w1.*SIGKILL"):
            control.expect(handle, (protocol.DONE,), timeout=10)
    finally:
        worker.close(linger=0)
        control.close_router()
        control.context.term()


def test_a_worker_answers_a_bad_request_with_an_error_and_keeps_serving():
    """The worker (serving in a thread here) answers requests the protocol lacks, or
    missing a field, with an ``error`` naming it, then still answers a ``ping``."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    address = bind_random_port(router, "127.0.0.1")
    worker = Worker(address, "w1")
    serving = threading.Thread(target=worker.serve, daemon=True)
    serving.start()

    def reply():
        assert router.poll(10000), "the worker did not answer"
        _identity, *parts = router.recv_multipart()
        return protocol.check(wire.decode(parts), protocol.WORKER_REPLIES)

    try:
        assert reply().op == protocol.HELLO
        for op, fields, error in [
            ("__init__", {}, "unknown worker request '__init__'"),
            (protocol.RUN, {}, "worker request 'run': field 'steps' is missing"),
            (protocol.SETUP, {"session": 0, "sends": {}, "recvs": {}},
             "worker request 'setup' carries 0 byte frames, not 1"),
        ]:
            router.send_multipart([b"w1"] + wire.encode(op, fields))
            answer = reply()
            assert answer.op == protocol.ERROR and answer.fields["type"] == "ProtocolError"
            assert error in answer.fields["message"]
        router.send_multipart([b"w1"] + wire.encode(protocol.PING))
        assert reply().op == protocol.PONG
        router.send_multipart([b"w1"] + wire.encode(protocol.EXIT))
        serving.join(timeout=10)
        assert not serving.is_alive()
    finally:
        router.close(linger=0)
        context.term()
