"""Spike's exception hierarchy.

Every error Spike raises on its own account derives from `SpikeError`.
Errors raised by the model itself (for example a `nengo.exceptions.SimulationError`
from a Node, or a ``FloatingPointError`` from a neuron model) are re-raised in the
client with their original type, with a note naming the worker they came from.
"""

from nengo.exceptions import NengoException


class SpikeError(NengoException):
    """Base class for all errors raised by Spike itself."""


class ConfigError(SpikeError, ValueError):
    """A ``SPIKE_*`` environment variable set to a value Spike cannot use; the
    message names the variable (see `spike.config`)."""


class UnsupportedError(SpikeError):
    """A Nengo feature that Spike cannot run; the message names the object."""


class PlacementError(SpikeError):
    """The requested placement of objects on workers is impossible."""


class WorkerError(SpikeError):
    """A worker process failed or could not be reached.

    Attributes
    ----------
    worker : str
        A human-readable name of the worker (id, host and process id).
    """

    def __init__(self, message, worker=None):
        super().__init__(message)
        self.worker = worker


class WorkerDied(WorkerError):
    """A worker process exited while the client still needed it."""


class ProtocolError(SpikeError):
    """A message received from the network is malformed or unexpected."""


class AllocationError(SpikeError):
    """An allocation file that cannot be used: malformed, or made for another model."""


class HostError(SpikeError):
    """A host of a hostfile cannot serve a job: down, unreachable, busy, or refusing us.

    Attributes
    ----------
    host : str
        The host as the hostfile names it (``name:port``).
    """

    def __init__(self, message, host=None):
        super().__init__(message)
        self.host = host


class HostfileError(SpikeError):
    """A hostfile that cannot be read; the message names the file and line."""


class KeyFileError(SpikeError):
    """A CURVE key file is missing, malformed, or readable by others."""
