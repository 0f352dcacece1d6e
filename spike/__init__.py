"""Spike: run Nengo models across worker processes and hosts.

``spike.Simulator`` has the interface of ``nengo.Simulator``; see its docstring.
"""

from .exceptions import (
    AllocationError,
    HostError,
    PlacementError,
    ProtocolError,
    SpikeError,
    UnsupportedError,
    WorkerDied,
    WorkerError,
)
from .pool import shutdown_pool as shutdown
from .simulator import Simulator
from .version import __version__

__all__ = [
    "Simulator",
    "SpikeError",
    "UnsupportedError",
    "PlacementError",
    "AllocationError",
    "WorkerError",
    "WorkerDied",
    "ProtocolError",
    "HostError",
    "shutdown",
    "__version__",
]
