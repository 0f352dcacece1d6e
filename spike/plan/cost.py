"""What each actor costs per step (compute) and holds (memory), from the built model.

Compute is counted in four kinds of work, each with a calibrated time per unit:

==============  ===========================================================
``neurons``     neuron updates (one per neuron per ``SimNeurons``)
``macs``        multiply-adds of encoders, decoders, transforms, learning
``elements``    elements copied, reset, filtered or added elementwise
``operators``   operators run (Python overhead per operator when interpreted)
==============  ===========================================================

`calibrate` measures the four times on this machine with short numpy runs of the
same kinds of work (a few hundred milliseconds: the *dry run*'s measurement, as
neurodamus measures memory per cell type before placing); the constants are kept
with the results (`Calibration.to_dict`) so an allocation says what it assumed.

Memory is the bytes of every signal an actor holds (matrices, state, inputs), each
counted once, plus its probes' buffers for a given simulated time. A worker also
holds a copy of each mutable signal's initial value (to reset), and a fixed baseline
(Python, numpy, nengo, and the compiler when compiled: measured by `spike dry-run`
from fresh workers); `estimated_peak_rss` adds them up.
"""

import os
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from nengo.builder.learning_rules import SimBCM, SimOja, SimPES, SimVoja
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import (
    BsrDotInc,
    Copy,
    DotInc,
    ElementwiseInc,
    Reset,
    SparseDotInc,
)
from nengo.builder.processes import SimProcess

WORK_KINDS = ("neurons", "macs", "elements", "operators")


def op_work(op):
    """``{kind: units}`` of work one operator does per step."""
    work = dict.fromkeys(WORK_KINDS, 0)
    work["operators"] = 1
    if isinstance(op, SimNeurons):
        work["neurons"] = op.J.size
    elif isinstance(op, (SparseDotInc, BsrDotInc)):
        data = op.A.initial_value
        work["macs"] = int(getattr(data, "nnz", data.size))
    elif isinstance(op, DotInc):
        work["macs"] = op.A.size
    elif isinstance(op, ElementwiseInc):
        work["elements"] = max(op.Y.size, op.A.size, op.X.size)
    elif isinstance(op, (Copy, Reset)):
        work["elements"] = op.dst.size
    elif isinstance(op, SimProcess):
        state = sum(s.size for s in op.state.values())
        work["elements"] = op.output.size + state
    elif isinstance(op, (SimPES, SimBCM, SimOja, SimVoja)):
        work["macs"] = op.delta.size
    return work


@dataclass
class ActorCost:
    """Work per step and bytes held by one actor."""

    work: dict
    memory_bytes: int
    probe_bytes_per_s: int
    seconds_per_step: float = 0.0

    def to_dict(self):
        return asdict(self)


def actor_work(actor):
    """An actor's work per step (``{kind: units}``) and the bytes it holds (each
    base signal once, `held_bytes`)."""
    work = dict.fromkeys(WORK_KINDS, 0)
    bases = {}
    for op in actor.ops:
        for kind, units in op_work(op).items():
            work[kind] += units
        for sig in op.all_signals:
            bases[id(sig.base)] = sig.base
    return work, sum(held_bytes(base) for base in bases.values())


def actor_costs(model, partition, calibration, dt=None):
    """An `ActorCost` for each actor of ``partition`` (same order)."""
    dt = model.dt if dt is None else dt
    probes_of = {}
    for probe, actor in partition.probe_actor.items():
        if actor is not None:
            probes_of.setdefault(actor, []).append(probe)
    costs = []
    for actor in partition.actors:
        work, memory = actor_work(actor)
        probe_bytes = 0
        for probe in probes_of.get(actor.index, ()):
            sig = model.sig[probe]["in"]
            period = 1 if probe.sample_every is None else probe.sample_every / dt
            probe_bytes += int(sig.size * 8 / (dt * period))
        cost = ActorCost(work, memory, probe_bytes)
        cost.seconds_per_step = calibration.seconds(work)
        costs.append(cost)
    return costs


PEAK_DATA_FACTOR = 1.8
"""A worker's peak memory grows by about this many times the bytes its actors hold:
the values themselves, and the pickled share as received, which the worker drops
as soon as it has read it (`spike.runtime.worker.Worker.on_setup`)."""

PEAK_BYTES_PER_OPERATOR = 4000
"""...and by about this much per operator (the operator objects, their signals and
views). A worker that prepares its share (the first run of a model on a machine)
holds the share's operators and nengo's merged ones at once, and peaks a little
higher than one that loads the share prepared (`spike.runtime.shares`), which never
unpickles the unmerged operators; this figure sits between the two. Both constants
were fitted on the 34 worker peaks of ``make bench``'s four models on a 2-core VM,
both ways (every estimate within 10%)."""


def estimated_peak_rss(data_bytes, n_operators, baseline_bytes, probe_bytes=0):
    """A worker's estimated peak resident memory.

    Parameters
    ----------
    data_bytes : int
        What its actors hold (sum of `ActorCost.memory_bytes`).
    n_operators : int
        Its operators before merging (sum of the ``"operators"`` work).
    baseline_bytes : int
        The peak of a worker that ran a tiny model in the same mode (interpreted
        or compiled; `spike.tools.dryrun.worker_baselines`): Python, numpy, nengo, and
        PyTensor, Numba and LLVM when compiled.
    probe_bytes : int, optional
        Probe data gathered during one ``run`` (kept in the worker until its end).
    """
    return int(
        baseline_bytes + PEAK_DATA_FACTOR * data_bytes
        + PEAK_BYTES_PER_OPERATOR * n_operators + probe_bytes
    )


def held_bytes(base):
    """Bytes a worker holds for a base signal: a mutable one twice (its value and
    its initial value, kept to reset), a read-only one once."""
    nbytes = signal_bytes(base)
    return nbytes if base.readonly else 2 * nbytes


def signal_bytes(sig):
    value = sig.initial_value
    if hasattr(value, "data") and hasattr(value, "indices"):  # scipy's or nengo's sparse
        parts = (getattr(value, name, None) for name in ("data", "indices", "indptr"))
        return int(sum(np.asarray(part).nbytes for part in parts if part is not None))
    return int(getattr(value, "nbytes", sig.size * 8))


@dataclass
class Calibration:
    """Seconds per unit of each kind of work, measured on one machine, and what
    exchanging values between workers costs there (`spike.plan.placement.ExchangeCosts`
    fields; empty: the defaults)."""

    seconds_per_unit: dict
    machine: dict = field(default_factory=dict)
    measured_at: str = ""
    exchange: dict = field(default_factory=dict)

    def seconds(self, work):
        return float(sum(self.seconds_per_unit[k] * work.get(k, 0) for k in WORK_KINDS))

    @property
    def quiet(self):
        """Whether other processes used at most `BUSY_LIMIT` of the CPUs while this
        was measured (True when that is unknown)."""
        return self.machine.get("busy_elsewhere", 0.0) <= BUSY_LIMIT

    def exchange_costs(self):
        from spike.plan.placement import ExchangeCosts

        return ExchangeCosts.from_dict(self.exchange)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        units = {k: float(data["seconds_per_unit"][k]) for k in WORK_KINDS}
        exchange = {k: float(v) for k, v in dict(data.get("exchange", {})).items()}
        return cls(
            units, dict(data.get("machine", {})), str(data.get("measured_at", "")), exchange
        )


DEFAULT_CALIBRATION = Calibration(
    {"neurons": 2.5e-8, "macs": 1.0e-9, "elements": 2.0e-9, "operators": 3.0e-6},
    {"note": "defaults (2-core AMD EPYC, numpy 2.3); run `spike dry-run` to measure"},
)  # exchange: spike.plan.placement.ExchangeCosts' defaults


def _best_time(function, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


BUSY_LIMIT = 0.25
"""Above this share of the CPUs used by other processes while `calibrate` measures,
the figures describe the load, not the machine (the exchange's cost, which needs two
cores, grew 250-fold on a loaded 2-core machine), and are not kept as the machine's
calibration (`spike.tools.dryrun.dry_run`)."""


def _cpu_jiffies():
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (None
    where there is no /proc)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is within user)
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


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
    import nengo

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

    import datetime

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
    import nengo

    from spike.simulator import Simulator

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


# -- this machine's calibration, kept between runs -------------------------------------


def machine_calibration_path():
    from spike.runtime.compiler.cache import cache_dir

    return cache_dir() / "calibration.json"


def save_machine_calibration(calibration):
    """Keep ``calibration`` (from ``spike dry-run``) for later Simulators here."""
    import json

    path = machine_calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def machine_calibration():
    """The calibration ``spike dry-run`` last measured here, else `DEFAULT_CALIBRATION`."""
    import json

    try:
        return Calibration.from_dict(json.loads(machine_calibration_path().read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CALIBRATION
