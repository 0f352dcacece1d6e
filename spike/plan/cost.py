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

from dataclasses import asdict, dataclass

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
were fitted on the worker peaks ``make bench`` measures, both ways; the
documentation's benchmarks page shows how the estimates compare with the latest
measurements."""


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


# -- this machine's calibration, kept between runs -------------------------------------


