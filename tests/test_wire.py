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


def assert_same_message(message, op, fields, arrays, blobs):
    assert message.op == op and message.fields == fields and message.blobs == list(blobs)
    assert len(message.arrays) == len(arrays)
    for got, sent in zip(message.arrays, arrays):
        assert got.dtype == sent.dtype and got.shape == sent.shape
        np.testing.assert_array_equal(got, sent)


def random_message(rng):
    """A well-formed message of random fields, arrays (every allowed kind, 1 to 3
    dimensions, empty ones too) and blobs."""
    dtypes = ["<f8", "<f4", ">f8", "<i8", "<i4", "|i1", "<u2", "|u1", "|b1"]
    arrays = []
    for _ in range(rng.randint(4)):
        shape = tuple(rng.randint(0, 5, size=rng.randint(1, 4)))
        values = rng.uniform(-1e6, 1e6, size=shape)
        arrays.append(values.astype(dtypes[rng.randint(len(dtypes))]))
    fields = {f"k{i}": [int(rng.randint(-9, 9)), float(rng.randn()), "text"]
              for i in range(rng.randint(3))}
    blobs = [rng.bytes(rng.randint(20)) for _ in range(rng.randint(3))]
    return f"op{rng.randint(100)}", fields, arrays, blobs


def test_well_formed_messages_round_trip():
    rng = np.random.RandomState(2)
    for _ in range(300):
        op, fields, arrays, blobs = random_message(rng)
        parts = [bytes(p) for p in wire.encode(op, fields, arrays, blobs)]
        assert_same_message(wire.decode(parts), op, fields, arrays, blobs)


def test_zero_dimensional_arrays_round_trip():
    """A 0-d signal (a scalar's value, gathered or restored) keeps its shape."""
    value = np.array(2.5)
    (array,) = wire.decode([bytes(p) for p in wire.encode("x", arrays=[value])]).arrays
    assert array.shape == () and array == 2.5
    transposed = np.arange(6.0).reshape(2, 3).T  # not contiguous: sent as a C copy
    (array,) = wire.decode([bytes(p) for p in wire.encode("x", arrays=[transposed])]).arrays
    np.testing.assert_array_equal(array, transposed)


def mangle(data, rng):
    """``data`` with one to three bytes overwritten or its end cut off."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if data and rng.rand() < 0.7:
            data[rng.randint(len(data))] = rng.randint(256)
        else:
            data = data[: rng.randint(len(data) + 1)]
    return bytes(data)


def test_fuzzed_messages_raise_protocol_error_or_decode_to_what_they_say():
    """A header mangled at random is either rejected with ProtocolError (never
    another exception) or still well-formed; then its message is exactly what its
    header and frames say: it encodes back to the same frames."""
    rng = np.random.RandomState(1)
    fields, arrays, blobs = {"k": 1}, [np.ones(3), np.arange(4, dtype=np.int32)], [b"b"]
    good = [bytes(p) for p in wire.encode("x", fields, arrays, blobs)]
    outcomes = {"rejected": 0, "decoded": 0}
    for _ in range(2000):
        parts = [mangle(good[0], rng)] + good[1:]
        try:
            message = wire.decode(parts)
        except ProtocolError:
            outcomes["rejected"] += 1
            continue
        outcomes["decoded"] += 1
        again = wire.encode(message.op, message.fields, message.arrays, message.blobs)
        assert [bytes(p) for p in again[1:]] == parts[1:]
        assert_same_message(wire.decode(again), message.op, message.fields,
                            message.arrays, message.blobs)
    # both outcomes were exercised: most mangled headers are refused
    assert outcomes["rejected"] > 1000 and outcomes["decoded"] > 10, outcomes


def test_mangled_frames_are_refused_where_their_size_no_longer_fits():
    """An array frame cut short or made longer never decodes; bytes overwritten in it decode as
    the values they now are; a blob is whatever bytes arrive."""
    rng = np.random.RandomState(3)
    array = np.arange(6.0)
    good = [bytes(p) for p in wire.encode("x", {}, [array], [b"blob"])]
    for _ in range(300):
        cut = good[1][: rng.randint(len(good[1]))]
        longer = good[1] + rng.bytes(rng.randint(1, 9))
        for frame in (cut, longer):
            with pytest.raises(ProtocolError, match="array frame holds"):
                wire.decode([good[0], frame, good[2]])
        changed = bytearray(good[1])
        changed[rng.randint(len(changed))] = rng.randint(256)
        message = wire.decode([good[0], bytes(changed), good[2]])
        np.testing.assert_array_equal(message.arrays[0], np.frombuffer(bytes(changed)))
        blob = mangle(good[2], rng)
        assert wire.decode([good[0], good[1], blob]).blobs == [blob]


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
