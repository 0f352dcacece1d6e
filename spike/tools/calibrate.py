"""Measuring this machine: the seconds per unit of work and the exchange's cost.

`calibrate` times short numpy runs of each kind of work (`spike.plan.cost`) and,
when asked, a real two-worker exchange (`measure_exchange`); ``spike dry-run`` keeps
the result as the machine's calibration (`spike.plan.calibration`).
"""

import datetime
import os
import platform
import time

import nengo
import numpy as np

from spike.plan.calibration import Calibration
from spike.simulator import Simulator


def _best_time(function, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _cpu_jiffies():
    """(busy, total) CPU seconds of the whole machine so far
    (`spike.sysinfo.cpu_busy_total`); None where they cannot be read."""
    from spike import sysinfo

    try:
        return sysinfo.cpu_busy_total()
    except OSError:  # no /proc to read
        return None


def cpu_busy_elsewhere(seconds=0.3):
    """Share of this machine's CPUs (0 to 1) that other processes used during
    ``seconds`` while this one slept (a VM's stolen time counts as used); None
    where it cannot be read."""
    before = _cpu_jiffies()
    time.sleep(seconds)
    after = _cpu_jiffies()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def calibrate(repeats=20, exchange=False):
    """Measure seconds per neuron update, multiply-add, element and operator here
    (and with ``exchange``, the per-step cost of exchanging with another worker:
    `measure_exchange`, a few seconds).

    With ``exchange`` (the calibration ``spike dry-run`` may keep for the machine),
    how busy the machine was with other work, just before and just after, is kept
    as ``machine["busy_elsewhere"]`` (the larger share of CPUs; `cpu_busy_elsewhere`,
    0.3 s each); see `Calibration.quiet`.
    """

    busy_before = cpu_busy_elsewhere() if exchange else None

    rng = np.random.default_rng(0)
    n = 20000
    lif = nengo.LIF()
    J = rng.uniform(0, 3, n)
    out = np.zeros(n)
    voltage = np.zeros(n)
    refractory = np.zeros(n)
    per_neuron = _best_time(
        lambda: lif.step(0.001, J, out, voltage, refractory), repeats
    ) / n

    A = rng.standard_normal((64, 8000))
    x = rng.standard_normal(8000)
    y = np.zeros(64)
    per_mac = _best_time(lambda: np.dot(A, x, out=y), repeats) / A.size

    a = rng.standard_normal(200000)
    b = np.zeros_like(a)
    per_element = _best_time(lambda: np.add(b, a, out=b), repeats) / a.size

    small = np.zeros(4)

    def many_small():
        for _ in range(1000):
            small[...] = 0.0

    per_operator = _best_time(many_small, max(repeats // 4, 3)) / 1000


    exchanged = {"partner_seconds": measure_exchange()["exchange_seconds"]} if exchange else {}
    busy_after = cpu_busy_elsewhere() if exchange else None
    busy = [b for b in (busy_before, busy_after) if b is not None]
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if busy:
        machine["busy_elsewhere"] = round(max(busy), 3)
    return Calibration(
        {
            "neurons": per_neuron,
            "macs": per_mac,
            "elements": per_element,
            "operators": per_operator,
        },
        machine,
        datetime.datetime.now().isoformat(timespec="seconds"),
        exchanged,
    )


def measure_exchange(steps=1000):
    """What exchanging values with one other local worker adds to a step.

    Two Nodes pass a 16-D value each way every step, first on one worker, then on
    two; the difference per step is the exchange's cost (never below 1 µs).
    ``make bench`` reports the same measurement. Each figure is the best of ten
    short windows, so a busy moment on a shared machine does not inflate it.

    Returns
    -------
    dict
        ``one_worker_seconds``, ``two_workers_seconds`` and ``exchange_seconds``
        per step.
    """


    with nengo.Network(seed=0) as net:
        a = nengo.Node(size_in=16)
        b = nengo.Node(size_in=16)
        nengo.Connection(a, b, synapse=0.005)
        nengo.Connection(b, a, synapse=0.005)
    per_step = {}
    for workers, assignments in ((1, {a: 0, b: 0}), (2, {a: 0, b: 1})):
        with Simulator(
            net, workers=workers, assignments=assignments, compile=False,
            progress_bar=False,
        ) as sim:
            sim.run_steps(100)
            window = max(steps // 10, 1)
            per_step[workers] = _best_time(lambda: sim.run_steps(window), 10) / window
    return {
        "one_worker_seconds": per_step[1],
        "two_workers_seconds": per_step[2],
        "exchange_seconds": max(per_step[2] - per_step[1], 1e-6),
    }
