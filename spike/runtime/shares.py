"""Reusing a worker's prepared share: its merged operators and compiled step.

Preparing a share takes seconds even when Numba finds the machine code in its cache:
nengo's optimizer merges the operators again (`spike.runtime.merge`) and PyTensor builds
and rewrites the step's graphs again (`spike.runtime.compiler`). Both are deterministic
functions of the share the client sends: the same model, seed and placement pickle
to the same bytes, except for the memory addresses in the names of objects
(``<Node (unlabeled) at 0x7f...>``), which are blanked before hashing.

So a worker keeps what it prepared in ``<cache dir>/shares/<key>.pkl`` (see
`spike.runtime.compiler.cache_dir`; ``spike cache --clear`` removes it too), under a key
made of those bytes, Spike's own source and the versions of the libraries that
shape the result, and the next worker given the same share loads it instead:
the merged `PeerPlan` and, if compiled, the layout of its `Program` with its
PyTensor functions (pickled with their rewritten graphs, so nothing is rewritten
again; Numba loads their machine code from its own cache).

A damaged or unreadable entry counts as absent. ``SPIKE_SHARE_CACHE=0`` turns the
cache off.
"""

import hashlib
import logging
import os
import pickle
import re
import sys
import tempfile
from pathlib import Path

import cloudpickle

from spike import config
from spike.runtime.compiler import cache_dir

logger = logging.getLogger("spike.runtime.shares")

MAX_ENTRIES = 64
"""Entries kept; the least recently used beyond this are deleted."""

_ADDRESS = re.compile(rb" at 0x[0-9a-fA-F]+")
_LIBRARIES = ("numpy", "scipy", "nengo", "pytensor", "numba", "cloudpickle")
_environment = None


def enabled():
    return config.get("SPIKE_SHARE_CACHE")


def shares_dir():
    return cache_dir() / "shares"


def environment_digest():
    """Digest of Spike's source and of the versions of the libraries it builds on
    (any change makes every entry a miss)."""
    global _environment
    if _environment is None:
        digest = hashlib.sha256(sys.version.encode())
        for name in _LIBRARIES:
            module = sys.modules.get(name)
            version = getattr(module, "__version__", None)
            if version is None:
                try:
                    from importlib.metadata import version as installed

                    version = installed(name)
                except Exception:
                    version = "?"
            digest.update(f"{name}={version};".encode())
        root = Path(__file__).resolve().parent.parent  # all of Spike's source
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
        _environment = digest.digest()
    return _environment


def share_key(blob):
    """The cache key of a pickled `PeerPlan` (as the client sends it)."""
    digest = hashlib.sha256(environment_digest())
    view = memoryview(blob)
    start = 0
    for match in _ADDRESS.finditer(blob):  # addresses left out, without a copy of it
        digest.update(view[start:match.start()])
        digest.update(b" at 0x")
        start = match.end()
    digest.update(view[start:])
    return digest.hexdigest()


def _path(key):
    return shares_dir() / f"{key}.pkl"


def load(key):
    """``(plan, layout)`` stored under ``key``, or None.

    ``layout`` is None for a share that was not compiled (see `Program.layout`).
    """
    if key is None or not enabled():
        return None
    path = _path(key)
    try:
        with open(path, "rb") as f:  # read as it is unpickled: no copy of the bytes
            compiled = pickle.load(f)
            if compiled is not True and compiled is not False:
                raise ValueError("not a prepared share")
            if compiled:  # PyTensor configured before its objects are unpickled
                from spike.runtime.compiler import load_pytensor

                load_pytensor()
            plan, layout = pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception as e:  # a damaged entry, or one from incompatible libraries
        logger.warning("ignoring prepared share %s: %s", path, e)
        return None
    try:
        os.utime(path)  # recently used: pruned last
    except OSError:
        pass
    return plan, layout


def store(key, plan, layout):
    """Keep ``plan`` (merged) and ``layout`` (a compiled program's, or None)."""
    if key is None or not enabled():
        return
    if layout is not None:
        for item in layout:  # the functions' last inputs are not part of them
            if not isinstance(item, int):
                for container in item[1].input_storage:
                    container.data = None
    temporary = None
    try:
        directory = shares_dir()
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as f:
            temporary = f.name
            # two pickles in one file: whether PyTensor must be set up first, then
            # the share, written as it is pickled (no copy of it in memory)
            pickle.dump(layout is not None, f, protocol=pickle.HIGHEST_PROTOCOL)
            cloudpickle.dump((plan, layout), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, _path(key))
    except Exception as e:  # the cache is an optimisation: never fail a run for it
        logger.warning("could not keep the prepared share: %s", e)
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        return
    _prune(directory)


def _prune(directory, keep=MAX_ENTRIES):
    entries = []
    for path in directory.glob("*.pkl"):
        try:
            entries.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            pass
    entries.sort(reverse=True)
    for _, path in entries[keep:]:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
