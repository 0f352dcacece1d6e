"""The probe recorder of a peer: rows of samples, per sampling period."""

import numpy as np
from nengo.builder.signal import Signal, SignalDict

from spike.plan.peers import ProbePlan
from spike.runtime import recording
from spike.runtime.recording import ProbeRecorder


def test_samples_match_copies_taken_every_step(monkeypatch):
    """Samples are what a copy of each signal after each sampled step would be:
    across blocks of rows, for views, for other dtypes than float64 (recorded as
    bytes), at whole and fractional periods (nengo's ``n % period < 1``)."""
    monkeypatch.setattr(recording, "BLOCK_ROWS", 4)
    a = Signal(np.zeros(3), name="a")
    b = Signal(np.zeros((2, 2)), name="b")
    counts = Signal(np.zeros(2, dtype=np.int64), name="counts")
    scalar = Signal(np.zeros(()), name="scalar")
    signals = SignalDict()
    for sig in (a, b, counts, scalar):
        signals.init(sig)
    probes = [
        ProbePlan(0, a, 1.0),
        ProbePlan(1, a[1:], 1.0),
        ProbePlan(2, b, 2.5),
        ProbePlan(3, counts, 3.0),
        ProbePlan(4, scalar, 3.0),
    ]
    recorder = ProbeRecorder(probes)
    expected = {p.key: [] for p in probes}
    rng = np.random.RandomState(0)
    for n in range(1, 23):
        signals[a][...] = rng.rand(3)
        signals[b][...] = rng.rand(2, 2)
        signals[counts][...] = rng.randint(-5, 5, 2)
        signals[scalar][...] = rng.rand()
        recorder.record(signals, n)
        for p in probes:
            if n % p.period < 1:
                expected[p.key].append(signals[p.signal].copy())
    taken = recorder.take()
    for p in probes:
        np.testing.assert_array_equal(taken[p.key], np.stack(expected[p.key]), err_msg=p.signal.name)
        assert taken[p.key].dtype == p.signal.dtype
    assert [len(expected[p.key]) for p in probes] == [22, 22, 8, 7, 7]
    # taken rows are gone; nothing recorded gives empty arrays of the right shape
    again = recorder.take()
    assert again[2].shape == (0, 2, 2) and again[3].dtype == np.int64

