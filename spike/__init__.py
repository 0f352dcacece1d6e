"""Spike: run Nengo models across worker processes and hosts.

``spike.Simulator`` has the interface of ``nengo.Simulator``; see its docstring.
"""

from spike.client.pool import shutdown_pool as shutdown
from spike.exceptions import (
    AllocationError,
    ConfigError,
    HostError,
    PlacementError,
    ProtocolError,
    SpikeError,
    UnsupportedError,
    WorkerDied,
    WorkerError,
)
from spike.simulator import Simulator
from spike.version import __version__

__all__ = [
    "Simulator",
    "SpikeError",
    "ConfigError",
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
