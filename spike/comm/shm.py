"""A shared-memory ring for per-step values between two peers on one host.

Over loopback TCP every ZeroMQ message wakes two I/O threads and two processes, a
cost paid at every step by every pair of peers. Peers on the same host instead share
a ring of slots in a file under ``/dev/shm`` (one ring per ordered pair of peers;
`spike.comm.channels` opens it for the address ``shm://PATH``):

- slot ``step % slots`` holds ``[session, step]`` (two int64) and the route's bytes;
- the sender packs the bytes into the slot first (`claim`) and the step last
  (`publish`); the receiver waits until the
  slot shows the step it needs, copies the bytes out and records the step as consumed;
- the sender never overwrites a slot the receiver has not consumed (it waits while it
  is ``slots`` steps ahead). A ring has `MAX_SLOTS` slots if they fit in
  `RING_BYTES`, fewer for bigger payloads, never fewer than `MIN_SLOTS`: the more
  steps a sender may run ahead, the less either peer waits when their speeds wander
  apart for a while.

x86-64 keeps stores in program order (and so does the single interpreter thread
writing them), so a receiver that sees the step also sees the bytes. On other
architectures Spike does not use this channel (see `available`).

Waiting spins briefly, then yields the processor, then sleeps in short naps, calling
``wait_hook`` every `HOOK_SECONDS` so that a dead peer is still noticed.
"""

import mmap
import os
import platform
import shutil
import time

import numpy as np

from spike import sysinfo

MIN_SLOTS = 64
MAX_SLOTS = 1024
RING_BYTES = 2**18  # a ring's pages all get written: P(P-1) rings per host
HEADER_BYTES = 16  # session, step
CONSUMED_OFFSET = 0  # int64 at the start of the file: last step consumed
RING_OFFSET = 64  # slots start on their own cache line
SPIN_SECONDS = 50e-6
YIELD_SECONDS = 2e-3
NAP_SECONDS = 50e-6
HOOK_SECONDS = 0.1


def available():
    """True where the store-ordering argument above holds."""
    return platform.machine() in ("x86_64", "AMD64") and os.path.isdir(ROOT)


ROOT = "/dev/shm"


def client_directory(pid):
    """The directory holding the rings of the client process ``pid``."""
    return os.path.join(ROOT, f"spike-{pid}")


def make_client_directory(pid):
    """Create ``pid``'s directory; remove those of clients that no longer run
    (killed before they could clean up)."""
    path = client_directory(pid)
    if not os.path.isdir(path):
        for name in os.listdir(ROOT):
            if name.startswith("spike-") and name[6:].isdigit():
                other = int(name[6:])
                if other != pid and not sysinfo.process_running(other):
                    shutil.rmtree(os.path.join(ROOT, name), ignore_errors=True)
        os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def remove_client_directory(pid):
    shutil.rmtree(client_directory(pid), ignore_errors=True)


def _slot_bytes(nbytes):
    return HEADER_BYTES + (nbytes + 63) // 64 * 64


def ring_slots(nbytes):
    """How many slots a ring of ``nbytes`` payloads has (both ends compute it)."""
    return min(MAX_SLOTS, max(MIN_SLOTS, RING_BYTES // _slot_bytes(nbytes)))


class ShmChannel:
    """One end of a one-way ring. Both ends open the same ``path``.

    Parameters
    ----------
    path : str
        The file backing the ring (created by whichever end comes first).
    nbytes : int
        Payload size (the route's bytes).
    """

    def __init__(self, path, nbytes):
        self.path = path
        self.nbytes = nbytes
        self.slot = _slot_bytes(nbytes)
        self.n_slots = ring_slots(nbytes)
        size = RING_OFFSET + self.n_slots * self.slot
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.consumed = np.ndarray((1,), dtype=np.int64, buffer=self.map, offset=CONSUMED_OFFSET)
        self.headers = [
            np.ndarray((2,), dtype=np.int64, buffer=self.map, offset=RING_OFFSET + i * self.slot)
            for i in range(self.n_slots)
        ]
        # what `claim` and `wait_for` return: the payloads as float64 words where
        # they are whole words (a route's usual case), so nobody views them anew
        # every step; as bytes otherwise
        dtype = np.dtype(np.float64 if nbytes % 8 == 0 else np.uint8)
        self.slots = [
            np.ndarray(
                (nbytes // dtype.itemsize,), dtype=dtype, buffer=self.map,
                offset=RING_OFFSET + i * self.slot + HEADER_BYTES,
            )
            for i in range(self.n_slots)
        ]

    def reset(self, consumed=0):
        """Receiver side, at a new session: nothing of it consumed yet."""
        self.consumed[0] = consumed

    @staticmethod
    def _wait(ready, wait_hook):
        """Return once ``ready()``: spin, then yield, then nap; call the hook now and
        then. (Callers test first, so that a step whose slot is ready makes no
        closure.)"""
        start = time.perf_counter()
        next_hook = start + HOOK_SECONDS
        while not ready():
            now = time.perf_counter()
            if now - start < SPIN_SECONDS:
                continue
            if now - start < YIELD_SECONDS:
                os.sched_yield()
            else:
                time.sleep(NAP_SECONDS)
            if now > next_hook:
                next_hook = now + HOOK_SECONDS
                if wait_hook is not None:
                    wait_hook()

    def claim(self, step, wait_hook=None):
        """Sender side: the slot for the values after ``step``, to write into
        (float64 words, or bytes; see ``slots``).

        Waits while the receiver is ``n_slots`` steps behind. Call `publish` after
        writing.
        """
        consumed = self.consumed
        n_slots = self.n_slots
        if step - consumed[0] > n_slots:
            self._wait(lambda: step - consumed[0] <= n_slots, wait_hook)
        i = step % n_slots
        self.headers[i][1] = -1  # invalid while being written
        return self.slots[i]

    def publish(self, session, step):
        """Sender side: the slot claimed for ``step`` is written."""
        header = self.headers[step % self.n_slots]
        header[0] = session
        header[1] = step  # last: publishes the slot

    def wait_for(self, session, step, wait_hook=None):
        """Receiver side: the values sent after ``step`` (a view of the slot, as in
        `claim`; `release` when read)."""
        i = step % self.n_slots
        header = self.headers[i]
        if not (header[1] == step and header[0] == session):
            self._wait(lambda: header[1] == step and header[0] == session, wait_hook)
        return self.slots[i]

    def release(self, step):
        """Receiver side: the slot of ``step`` may be reused."""
        self.consumed[0] = step

    def close(self):
        """Unmap the ring (the client that named the file removes it)."""
        self.consumed = self.headers = self.slots = None
        try:
            self.map.close()
        except BufferError:  # a view is still alive somewhere; the GC will unmap it
            pass
