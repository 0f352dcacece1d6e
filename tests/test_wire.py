"""Messages: msgpack header + raw frames; anything malformed is rejected, never unpickled."""

import pickle

import msgpack
import numpy as np
import pytest

from spike.comm import wire
from spike.exceptions import ProtocolError


def test_round_trip_arrays_blobs_and_fields():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    b = np.array([1, -2], dtype=np.int32)
    parts = wire.encode("probes", {"keys": [0, 3]}, [a, b[::1]], [b"blob"])
    message = wire.decode([bytes(p) for p in parts])
    assert message.op == "probes" and message.fields == {"keys": [0, 3]}
    np.testing.assert_array_equal(message.arrays[0], a)
    np.testing.assert_array_equal(message.arrays[1], b)
    assert message.arrays[0].dtype == np.float64 and message.blobs == [b"blob"]


def test_non_contiguous_and_empty_arrays():
    a = np.arange(20.0).reshape(4, 5)[:, ::2]
    e = np.zeros((0, 3))
    message = wire.decode([bytes(p) for p in wire.encode("x", arrays=[a, e])])
    np.testing.assert_array_equal(message.arrays[0], a)
    assert message.arrays[1].shape == (0, 3)


def test_object_arrays_are_refused_when_sending():
    with pytest.raises(TypeError):
        wire.encode("x", arrays=[np.array([object()])])


def header(**fields):
    return msgpack.packb(fields)


BAD_MESSAGES = {
    "empty": [],
    "random bytes": [np.random.RandomState(0).bytes(64)],
    "not a map": [msgpack.packb([1, 2, 3])],
    "no op": [header(frames=[])],
    "op not a string": [header(op=5, frames=[])],
    "frames not a list": [header(op="x", frames="no")],
    "missing frame": [header(op="x", frames=[["bytes"]])],
    "extra frame": [header(op="x", frames=[]), b"surplus"],
    "truncated array": [header(op="x", frames=[["array", "<f8", [4]]]), b"\0" * 31],
    "object dtype": [header(op="x", frames=[["array", "|O", [1]]]), b"\0" * 8],
    "unknown dtype": [header(op="x", frames=[["array", "nonsense", [1]]]), b"\0" * 8],
    "huge shape": [header(op="x", frames=[["array", "<f8", [2**40, 2**40]]]), b""],
    "negative dim": [header(op="x", frames=[["array", "<f8", [-1]]]), b""],
    "bool dim": [header(op="x", frames=[["array", "<f8", [True]]]), b"\0" * 8],
    "too many dims": [header(op="x", frames=[["array", "<f8", [1] * 9]]), b"\0" * 8],
    "bad descriptor": [header(op="x", frames=[["pickle"]]), b"\x80\x04."],
    "descriptor not a list": [header(op="x", frames=[7]), b""],
    "huge header": [b"\xdb" + (2**21).to_bytes(4, "big") + b"a" * 2**21],
}


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_malformed_messages_raise_protocol_error(name):
    with pytest.raises(ProtocolError):
        wire.decode(BAD_MESSAGES[name])


def test_fuzzed_messages_never_escape_as_other_errors():
    rng = np.random.RandomState(1)
    good = [bytes(p) for p in wire.encode("x", {"k": 1}, [np.ones(3)], [b"b"])]
    for _ in range(2000):
        parts = list(good)
        i = rng.randint(len(parts))
        data = bytearray(parts[i])
        for _ in range(rng.randint(1, 4)):
            if data and rng.rand() < 0.7:
                data[rng.randint(len(data))] = rng.randint(256)
            else:
                data = data[: rng.randint(len(data) + 1)]
        parts[i] = bytes(data)
        try:
            wire.decode(parts)
        except ProtocolError:
            pass


def test_route_packs_views_of_shared_memory_in_one_copy():
    """A route's signals viewing one array (merged signals, a compiled peer's arena)
    are packed with one indexed copy, and land where a copy per signal puts them."""
    from nengo.builder.signal import Signal, SignalDict

    from spike.plan.peers import Route

    merged = Signal(np.zeros(12), name="merged")
    other = Signal(np.zeros(3), name="other")
    views = [merged[8:12], merged[0:3], other, merged[4:6]]
    route = Route(views)
    sender, receiver = SignalDict(), SignalDict()
    for signals in (sender, receiver):
        signals.init(merged)
        signals.init(other)
    sender[merged][...] = np.arange(12.0)
    sender[other][...] = [-1.0, -2.0, -3.0]
    packed = route.pack(sender, np.empty(route.nbytes, dtype=np.uint8))
    expected = np.concatenate([sender[v] for v in views])
    np.testing.assert_array_equal(packed.view(np.float64), expected)
    assert len(route._copies(sender)) == 2  # the merged array and the other one

    route.unpack(receiver, packed.tobytes())
    for view in views:
        np.testing.assert_array_equal(receiver[view], sender[view])
    np.testing.assert_array_equal(receiver[merged][[3, 6, 7]], 0.0)  # untouched

    clone = pickle.loads(pickle.dumps(route))  # as sent to a worker
    assert clone._bound is None
    signals = SignalDict()
    for base in {view.base for view in clone.bases}:
        signals.init(base)
        signals[base][...] = sender[merged if base.name == "merged" else other]
    np.testing.assert_array_equal(
        clone.pack(signals, np.empty(route.nbytes, dtype=np.uint8)), packed
    )
