"""Where compiled code is kept, and loading PyTensor configured to keep it there.

PyTensor (and Numba, which it uses to compile) cache compiled code on disk. Spike
points both at a directory it owns, so compiling a model pays once per machine and
is reused by later runs, Simulators and workers, and so ``~/.pytensor`` is never
filled by accident:

* ``$SPIKE_CACHE_DIR`` if set, else
* ``$XDG_CACHE_HOME/spike`` (``~/.cache/spike``).

``spike cache`` shows its size; ``spike cache --clear`` (or deleting the directory)
clears it.
"""

import logging
import os
import shutil
import sys

from spike.config import cache_dir


def pytensor_dir():
    return cache_dir() / "pytensor"


_pytensor = None


def load_pytensor():
    """Import PyTensor configured to compile with Numba into Spike's cache.

    Returns the ``pytensor`` module, or raises ``ImportError`` if it is not
    installed. Numba's ``fastmath`` is turned off: it lets LLVM fuse and reorder
    floating-point arithmetic, which would change results against nengo.
    """
    global _pytensor
    if _pytensor is not None:
        return _pytensor
    # PyTensor logs each config option it cannot use (no C compiler setup) at INFO
    logging.getLogger("pytensor.configparser").setLevel(logging.WARNING)
    flags = [
        f"base_compiledir={pytensor_dir()}",
        "numba__fastmath=False",
        "linker=numba",
    ]
    if "pytensor" in sys.modules:  # imported by the user first: adjust what we can
        import pytensor

        pytensor.config.numba__fastmath = False
    else:
        previous = os.environ.get("PYTENSOR_FLAGS")
        os.environ["PYTENSOR_FLAGS"] = ",".join(flags + ([previous] if previous else []))
        pytensor_dir().mkdir(parents=True, exist_ok=True)
        try:
            import pytensor
        finally:
            if previous is None:
                del os.environ["PYTENSOR_FLAGS"]
            else:
                os.environ["PYTENSOR_FLAGS"] = previous
    try:  # Numba's performance hints concern our generated code, not the user's model
        import warnings

        from numba.core.errors import NumbaPerformanceWarning

        warnings.filterwarnings("ignore", category=NumbaPerformanceWarning)
    except ImportError:
        pass
    _pytensor = pytensor
    return pytensor


def available():
    """True if PyTensor (and Numba) can be imported."""
    try:
        load_pytensor()
    except ImportError:
        return False
    return True


def cache_size():
    """Bytes used by the cache directory (0 if it does not exist)."""
    root = cache_dir()
    total = 0
    if root.exists():
        for path in root.rglob("*"):
            if path.is_file():
                total += path.stat().st_size
    return total


def clear_cache():
    """Delete the cache directory; return the bytes it held."""
    size = cache_size()
    shutil.rmtree(cache_dir(), ignore_errors=True)
    return size
