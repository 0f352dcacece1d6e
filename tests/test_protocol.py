"""The protocol table: what `spike.comm.protocol.check` accepts and what it names
when it refuses a message (no process starts)."""

import re

import numpy as np
import pytest
import zmq

from spike.cluster.daemon import Daemon
from spike.comm import protocol, wire
from spike.exceptions import ProtocolError
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
