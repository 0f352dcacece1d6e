"""The control protocol: every operation Spike's processes send each other, and what
each one carries.

Control messages are `spike.comm.wire` messages (a msgpack header naming the
operation, then raw frames). They travel on two kinds of connection, each in both
directions, and each direction has its own table of operations here:

===================  ============================  ====================================
table                from → to                     operations
===================  ============================  ====================================
`WORKER_REQUESTS`    client → worker               setup, reset, run, probes, signals,
                                                   set_state, release, ping, abort, exit
`WORKER_REPLIES`     worker → client               hello, ready, reset_done, progress,
                                                   done, probes, signals, state_set,
                                                   released, pong, aborted, error,
                                                   warnings
`DAEMON_REQUESTS`    client → host daemon          status, heartbeat, spawn, kill,
                                                   shutdown
`DAEMON_REPLIES`     host daemon → client          status, spawned, killed, bye,
                                                   worker_exit, error
===================  ============================  ====================================

A name may mean different things in two tables (``probes`` asks for probe data one
way and carries it the other; a worker's ``error`` has a traceback, a daemon's does
not), so a message is always checked against the table of the direction it came
from. Each operation is an `Op`: its name, its header `Field` s (name, types, whether
it may be left out, and a test of the value where the type alone says too little),
and how many array and byte frames it carries. `check` is what every receiver calls
on a decoded message: it raises `spike.exceptions.ProtocolError` naming the
operation and the field at fault. Fields a table does not name are let through (and
ignored), so that a newer sender may add some.

The per-step values that peers exchange are not control messages: they go through
the channels of `spike.comm.channels`, whose data header is ``[session, peer, step]``.
"""

import re
import traceback

import zmq.utils.z85

from spike.exceptions import ProtocolError

# -- client → worker -------------------------------------------------------------------
SETUP = "setup"
RESET = "reset"
RUN = "run"
PROBES = "probes"  # the request, and the reply carrying the samples
SIGNALS = "signals"  # the request, and the reply carrying the values
SET_STATE = "set_state"
RELEASE = "release"
PING = "ping"
ABORT = "abort"
EXIT = "exit"

# -- worker → client -------------------------------------------------------------------
HELLO = "hello"
READY = "ready"
RESET_DONE = "reset_done"
PROGRESS = "progress"
DONE = "done"
STATE_SET = "state_set"
RELEASED = "released"
PONG = "pong"
ABORTED = "aborted"
ERROR = "error"  # also a daemon's reply to a request it refuses
WARNINGS = "warnings"

# -- client → daemon -------------------------------------------------------------------
STATUS = "status"  # the request, and the reply to it and to heartbeats
HEARTBEAT = "heartbeat"
SPAWN = "spawn"
KILL = "kill"
SHUTDOWN = "shutdown"

# -- daemon → client -------------------------------------------------------------------
SPAWNED = "spawned"
KILLED = "killed"
BYE = "bye"
WORKER_EXIT = "worker_exit"

MAX_WORKERS_PER_REQUEST = 1024
"""Most workers one ``spawn`` may ask for."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TCP_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")


class Field:
    """One header field of an operation.

    Parameters
    ----------
    name : str
    types : type or tuple of types
        What the value may be (``bool`` is never taken for an ``int``).
    optional : bool
        Whether the field may be absent (or None).
    valid : callable, optional
        ``valid(value) -> bool``: a test of a value of the right type.
    means : str, optional
        What ``valid`` asks for, as error messages say it ("a short name").
    fields : tuple of Field, optional
        For a map: the fields it must hold, checked the same way.
    """

    __slots__ = ("fields", "means", "name", "optional", "types", "valid")

    def __init__(self, name, types, optional=False, valid=None, means=None, fields=None):
        self.name = name
        self.types = types if isinstance(types, tuple) else (types,)
        self.optional = optional
        self.valid = valid
        self.means = means
        self.fields = fields

    def __repr__(self):
        kinds = "/".join(t.__name__ for t in self.types)
        return f"Field({self.name!r}, {kinds}{', optional' if self.optional else ''})"


class Op:
    """One operation: its name, header fields and frames.

    Parameters
    ----------
    name : str
    fields : tuple of Field
    arrays : bool
        Whether it may carry array frames (any number).
    blobs : int
        How many byte frames it carries.
    """

    __slots__ = ("arrays", "blobs", "fields", "name")

    def __init__(self, name, *fields, arrays=False, blobs=0):
        self.name = name
        self.fields = fields
        self.arrays = arrays
        self.blobs = blobs

    def __repr__(self):
        return f"Op({self.name!r}, {', '.join(f.name for f in self.fields)})"


class Table(dict):
    """``{name: Op}`` of one direction of one kind of connection.

    Parameters
    ----------
    direction : str
        What the messages are, as error messages say it ("worker request").
    ops : list of Op
    """

    def __init__(self, direction, ops):
        super().__init__((op.name, op) for op in ops)
        self.direction = direction


def _of_type(value, types):
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def check_fields(what, fields, expected, _within=""):
    """Check a map of ``fields`` against ``expected`` (a tuple of `Field`).

    ``what`` names the map in errors (``"daemon request 'spawn'"``, ``"job keys"``).
    Raises `ProtocolError` naming the first field missing, of the wrong type or
    failing its test (a field of a map inside the map as ``keys.secret``).
    """
    if not isinstance(fields, dict):
        raise ProtocolError(f"{what} is not a map")  # (a map's fields: typed dict first)
    for field in expected:
        name = _within + field.name
        value = fields.get(field.name)
        if value is None:
            if field.optional:
                continue
            raise ProtocolError(f"{what}: field {name!r} is missing")
        if not _of_type(value, field.types):
            kinds = " or ".join(t.__name__ for t in field.types)
            raise ProtocolError(f"{what}: field {name!r} must be {kinds}")
        if field.valid is not None and not field.valid(value):
            raise ProtocolError(f"{what}: field {name!r} must be {field.means}")
        if field.fields is not None:
            check_fields(what, value, field.fields, name + ".")


def check(message, table):
    """Check a decoded message against the `Table` of the direction it came from.

    Returns the message. Raises `ProtocolError` for an operation the table lacks, a
    field missing, of the wrong type or with a value its test refuses, or frames the
    operation does not carry; the error names the operation and the field.
    """
    op = table.get(message.op)
    if op is None:
        raise ProtocolError(f"unknown {table.direction} {message.op[:40]!r}")
    what = f"{table.direction} {op.name!r}"
    check_fields(what, message.fields, op.fields)
    if len(message.blobs) != op.blobs:
        raise ProtocolError(
            f"{what} carries {len(message.blobs)} byte frames, not {op.blobs}"
        )
    if message.arrays and not op.arrays:
        raise ProtocolError(f"{what} carries no arrays, got {len(message.arrays)}")
    return message


# -- value tests ----------------------------------------------------------------------


def is_name(value):
    """A short name: a job, a worker id (no path separators, no spaces)."""
    return bool(_NAME.match(value))


def is_tcp_address(value):
    return bool(_TCP_ADDRESS.match(value))


def is_z85_key(value):
    """A 40-character Z85 CURVE key."""
    if len(value) != 40:
        return False
    try:
        zmq.utils.z85.decode(value.encode("ascii"))
    except (KeyError, ValueError):  # a character outside Z85's alphabet, or not ASCII
        return False
    return True


def _worker_ids(ids):
    return 0 < len(ids) <= MAX_WORKERS_PER_REQUEST and all(
        isinstance(wid, str) and is_name(wid) for wid in ids
    )


def _all_int(values):
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _all_numbers(values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _spawned_workers(entries):
    return all(
        isinstance(e, dict) and isinstance(e.get("id"), str) and _all_int([e.get("pid")])
        for e in entries
    )


def _peer_addresses(addresses):
    return all(
        isinstance(k, str) and k.isdigit() and isinstance(v, str)
        for k, v in addresses.items()
    )


JOB_KEYS = tuple(
    Field(name, str, valid=is_z85_key, means="a 40-character Z85 key")
    for name in ("control_server", "public", "secret", "data_public", "data_secret")
)
"""The keys a job's workers get from their daemon (`spike.cluster.hostpool`): the
client's control key, the key they present to it, and the job's data key."""

_REQ = Field("req", int, optional=True)  # a daemon request's number, echoed in its reply
_PEER_ADDRESSES = {"valid": _peer_addresses, "means": "a map of peer numbers to channel addresses"}

WORKER_REQUESTS = Table("worker request", [
    Op(SETUP,
       Field("session", int),
       # per peer this one sends to / receives from: the channel's address
       # (`spike.comm.channels`: ``shm://path``, ``tcp://host:port``)
       Field("sends", dict, **_PEER_ADDRESSES),
       Field("recvs", dict, **_PEER_ADDRESSES),
       blobs=1),  # the pickled `PeerPlan`
    Op(RESET,
       Field("session", int),
       # ``[position, pos, has_gauss, gauss]`` per operator; the keys are arrays
       Field("states", list),
       arrays=True),
    Op(RUN, Field("steps", int, valid=lambda n: n >= 0, means="a step count")),
    Op(PROBES),
    Op(SIGNALS),
    Op(SET_STATE,
       Field("positions", list, valid=_all_int, means="a list of signal positions"),
       Field("n_steps", int),
       arrays=True),
    Op(RELEASE),
    Op(PING),
    Op(ABORT),
    Op(EXIT),
])

WORKER_REPLIES = Table("worker reply", [
    Op(HELLO,
       Field("id", str), Field("pid", int), Field("host", str),
       Field("data", str)),  # the worker's data (PULL) socket address
    Op(READY, Field("peer", int)),
    Op(RESET_DONE),
    Op(PROGRESS, Field("steps", int)),
    Op(DONE,
       Field("n_steps", int),
       Field("timing", dict, optional=True)),  # values checked by the session
    Op(PROBES, Field("keys", list), arrays=True),
    Op(SIGNALS,
       Field("positions", list, valid=_all_int, means="a list of signal positions"),
       arrays=True),
    Op(STATE_SET),
    Op(RELEASED),
    Op(PONG),
    Op(ABORTED),
    Op(ERROR,
       Field("type", str), Field("module", str), Field("message", str),
       Field("traceback", str)),
    Op(WARNINGS, Field("warnings", list)),  # ``[module, category, text]`` each
])

DAEMON_REQUESTS = Table("daemon request", [
    Op(STATUS, _REQ),
    Op(HEARTBEAT, _REQ),  # also tells the daemon the client of a job is alive
    Op(SPAWN, _REQ,
       Field("job", str, valid=is_name, means="a short name"),
       Field("ids", list, valid=_worker_ids,
             means=f"a list of 1 to {MAX_WORKERS_PER_REQUEST} worker ids (short names)"),
       Field("control", str, valid=is_tcp_address, means="tcp://HOST:PORT"),
       Field("keys", dict, fields=JOB_KEYS),
       Field("log_level", str, optional=True, valid=LOG_LEVELS.__contains__,
             means=" or ".join(LOG_LEVELS))),
    Op(KILL, _REQ, Field("job", str, valid=is_name, means="a short name")),
    Op(SHUTDOWN, _REQ),
])

DAEMON_REPLIES = Table("daemon reply", [
    Op(STATUS, _REQ,
       Field("host", str), Field("pid", int), Field("version", str),
       Field("address", str), Field("advertise", str),
       Field("slots", int), Field("free", int), Field("cpus", int),
       Field("cpu", (int, float)),  # percent of all CPUs busy
       Field("load", list, valid=_all_numbers, means="a list of numbers"),
       Field("mem_total", int), Field("mem_available", int),  # bytes
       Field("jobs", list),  # ``{"job", "workers": [worker status]}`` each
       Field("bad_messages", int), Field("refused", int)),
    Op(SPAWNED, _REQ,
       Field("job", str), Field("host", str),
       Field("workers", list, valid=_spawned_workers, means="a list of {id, pid} maps"),
       Field("shm", str, optional=True)),  # the job's ring directory, if any
    Op(KILLED, _REQ, Field("job", str), Field("workers", list)),
    Op(BYE, _REQ, Field("host", str)),
    Op(WORKER_EXIT,
       Field("job", str), Field("id", str), Field("pid", int), Field("status", str)),
    Op(ERROR, _REQ, Field("message", str), Field("busy", bool, optional=True)),
])


def error_fields(exc):
    """The fields of a worker's ``error`` reply describing ``exc``."""
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
