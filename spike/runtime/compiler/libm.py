"""Whether numpy's ``expm1`` and ``log1p`` are the C library's on this machine.

The compiled kernels call the C library's (as Numba does for ``math``), as nengo's
numpy code does on most machines. numpy built with Intel's SVML uses its own SIMD
versions on CPUs with AVX-512, whose last bits differ for some arguments, and a LIF
neuron's spike can hang on that bit (rate neurons only move by a few ulps, far
within the 1e-10 Spike promises).
"""

import functools
import logging
import math

import numpy as np

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def matches_numpy():
    """True if numpy's float64 ``expm1`` and ``log1p`` are, bit for bit, the C
    library's, on a fixed sample of the arguments LIF neurons pass (checked once per
    process). Where they are not, LIF neurons are not compiled."""
    rng = np.random.RandomState(0)
    x = -rng.uniform(0.0, 1.0, 2048)  # expm1(-delta_t / tau_rc)
    y = rng.uniform(-1.0, 1.0, 2048)  # log1p(-(v - 1) / (J - 1))
    same = np.array_equal(np.expm1(x), [math.expm1(v) for v in x]) and np.array_equal(
        np.log1p(y), [math.log1p(v) for v in y]
    )
    if not same:
        logger.warning(
            "numpy's expm1/log1p on this CPU are not the C library's (SIMD versions): "
            "LIF neurons run in nengo's own code, uncompiled, so that their spikes "
            "stay nengo's"
        )
    return same
