"""Messages on the wire: a msgpack header followed by raw frames.

Every Spike message is a ZeroMQ multipart message ``[header, frame, frame, ...]``.
The header is a msgpack map with a string ``"op"`` naming the message and a list
``"frames"`` describing each following frame: ``["array", dtype, shape]`` for a numpy
array sent as its raw bytes, or ``["bytes"]`` for an opaque blob. Decoding checks all
of it (types, sizes, allowed dtypes) before any array is made, and raises
`ProtocolError` on anything else: random bytes, a header that is not a map, a frame
count or size that disagrees with the header, object dtypes, absurd shapes.

Nothing here unpickles. The only pickled payload Spike sends, a worker's share of the
model, travels as a ``bytes`` frame on the control channel from the client that
started the worker, and only the worker decides to load it.
"""

import msgpack
import numpy as np

from spike.exceptions import ProtocolError

MAX_HEADER_BYTES = 1 << 20
MAX_DIMS = 8
ALLOWED_DTYPE_KINDS = "biuf"  # bool, signed and unsigned ints, floats


class Message:
    """A decoded message.

    Attributes
    ----------
    op : str
        What the message is (``"run"``, ``"done"``, ...).
    fields : dict
        The header's other keys.
    arrays : list of numpy.ndarray
        The ``array`` frames, in order (read-only views on the received bytes).
    blobs : list of bytes
        The ``bytes`` frames, in order.
    """

    __slots__ = ("op", "fields", "arrays", "blobs")

    def __init__(self, op, fields, arrays, blobs):
        self.op = op
        self.fields = fields
        self.arrays = arrays
        self.blobs = blobs

    def __repr__(self):
        return f"Message({self.op!r}, {self.fields!r})"


def encode(op, fields=None, arrays=(), blobs=()):
    """Encode a message as a list of frames for ``socket.send_multipart``.

    Parameters
    ----------
    op : str
        The message name.
    fields : dict, optional
        msgpack-serializable header fields (must not use ``op`` or ``frames``).
    arrays : sequence of numpy.ndarray
        Sent as raw bytes (made C-contiguous if needed).
    blobs : sequence of bytes
        Opaque byte strings.
    """
    header = dict(fields or {})
    descriptors = []
    frames = []
    for array in arrays:
        array = np.asarray(array, order="C")  # 0-d stays 0-d (ascontiguousarray: 1-d)
        if array.dtype.kind not in ALLOWED_DTYPE_KINDS:
            raise TypeError(f"cannot send arrays of dtype {array.dtype}")
        descriptors.append(["array", array.dtype.str, list(array.shape)])
        frames.append(memoryview(array).cast("B") if array.size else b"")
    for blob in blobs:
        descriptors.append(["bytes"])
        frames.append(blob)
    header["op"] = op
    header["frames"] = descriptors
    return [msgpack.packb(header, use_bin_type=True)] + frames


def _check_shape(shape):
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise ProtocolError(f"bad array shape {shape!r}")
    size = 1
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ProtocolError(f"bad array shape {shape!r}")
        size *= dim
    return size


def decode(parts):
    """Decode and validate frames received with ``socket.recv_multipart``.

    Raises
    ------
    ProtocolError
        If the message is malformed in any way.
    """
    if not parts:
        raise ProtocolError("empty message")
    head = parts[0]
    head = head.bytes if hasattr(head, "bytes") else head
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(head)} bytes is too large")
    try:
        header = msgpack.unpackb(head, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types
        raise ProtocolError(f"header is not msgpack: {type(e).__name__}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a map")
    op = header.pop("op", None)
    descriptors = header.pop("frames", None)
    if not isinstance(op, str) or not isinstance(descriptors, list):
        raise ProtocolError("header lacks 'op' or 'frames'")
    if len(descriptors) != len(parts) - 1:
        raise ProtocolError(
            f"header announces {len(descriptors)} frames, got {len(parts) - 1}"
        )
    arrays, blobs = [], []
    for descriptor, part in zip(descriptors, parts[1:]):
        data = part.buffer if hasattr(part, "buffer") else part
        if not isinstance(descriptor, list) or not descriptor:
            raise ProtocolError(f"bad frame descriptor {descriptor!r}")
        if descriptor[0] == "bytes" and len(descriptor) == 1:
            blobs.append(bytes(data))
        elif descriptor[0] == "array" and len(descriptor) == 3:
            _, dtype, shape = descriptor
            try:
                dtype = np.dtype(dtype) if isinstance(dtype, str) else None
            except TypeError:
                dtype = None
            if dtype is None or dtype.kind not in ALLOWED_DTYPE_KINDS:
                raise ProtocolError(f"dtype {descriptor[1]!r} not allowed")
            size = _check_shape(shape)
            if size * dtype.itemsize != len(data):
                raise ProtocolError(
                    f"array frame holds {len(data)} bytes, header says "
                    f"{size * dtype.itemsize}"
                )
            arrays.append(np.frombuffer(data, dtype=dtype).reshape(shape))
        else:
            raise ProtocolError(f"bad frame descriptor {descriptor!r}")
    return Message(op, header, arrays, blobs)
