"""Hooks for running nengo's own test suite against Spike.

``tests/nengo-suite.ini`` points nengo's pytest plugin here::

    nengo_simloader = spike.testing.load_simulator

The suite then runs with ``spike.Simulator`` itself, whose default number of workers
is set to ``SPIKE_TEST_WORKERS`` (default 2) so that every test exercises placement,
the exchange and the client's share, not a single process.
"""

import os

from spike import config
from spike.simulator import Simulator


def load_simulator(request):
    """Return `spike.Simulator`, with more than one worker by default."""
    os.environ["SPIKE_WORKERS"] = str(config.get("SPIKE_TEST_WORKERS"))
    return Simulator
