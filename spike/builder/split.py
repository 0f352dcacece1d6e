"""Splitting large ensembles into sub-ensembles, exactly, after nengo's build.

nengo_mpi could not divide an ensemble, so one large ensemble bounded its speed-up.
Spike divides one after nengo has built it: the operators that touch the ensemble's
neurons are rewritten into one copy per *part* (a range of neurons), each on signals
of its own, so that each part is an actor that may run on any worker:

* **neuron-indexed signals** (input current, output, voltage and other neuron
  state, bias, rows of the scaled encoders, columns of decoders and of learning
  deltas, synapse states of filtered activities) are cut along their neuron axis;
  every value comes from the whole ensemble's build (gains, biases, encoders, and
  decoders solved once on all neurons), nothing is built or solved again;
* operators that are elementwise over neurons (neuron updates, copies, filters of
  activities, ``SimPES``) run on each part's slice;
* **inputs fan out**: the encoders' product reads the ensemble's input, so each part
  gets its own copy of the input signal, summed from the same incoming values (the
  filtered outputs of upstream synapses, which cross to every part's worker);
* **outputs are summed**: a product of decoders with activities becomes one partial
  product per part; each part filters its partial with its own copy of the (linear)
  synapse and adds the result into the target, so the target receives the sum of the
  parts' filtered outputs. A probe of such a sum records each part and the client
  adds them up; a probe of neurons records each part and the client joins them.

The sums are the same numbers added in another order, so results equal the unsplit
run to about 1e-15 relative (spikes are identical unless a neuron sits exactly on its
threshold). An ensemble whose neurons are used in a way this cannot divide (a
stochastic neuron type, a nonlinear or stateful process on its output, a Node reading
its neurons without synapse, a recurrent connection on its neurons) is left whole,
and the reason is logged and reported (`SplitReport.skipped`).
"""

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from nengo.builder.learning_rules import SimPES
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import Copy, DotInc, ElementwiseInc, Reset
from nengo.builder.probe import SimProbe
from nengo.builder.processes import SimProcess
from nengo.builder.signal import Signal
from nengo.ensemble import Ensemble
from nengo.exceptions import ValidationError
from nengo.synapses import LinearFilter

from spike.builder.operators import SplitSimPES
from spike.builder.signals import derived_name, is_whole_base, ops_by_base, part_bounds, rebind

logger = logging.getLogger(__name__)


class CannotSplit(Exception):
    """Raised inside this module when an ensemble cannot be divided exactly."""


@dataclass
class EnsembleSplit:
    """How one ensemble was divided.

    Attributes
    ----------
    ensemble : nengo.Ensemble
    bounds : list of (int, int)
        The neuron range ``[start, stop)`` of each part.
    bases : dict
        ``{original base signal: (axis, [one base per part])}`` for the
        neuron-indexed signals (to reassemble ``sim.signals``).
    """

    ensemble: object
    bounds: list
    bases: dict = field(default_factory=dict)

    @property
    def n_parts(self):
        return len(self.bounds)


@dataclass
class ProbeParts:
    """A probe recorded in parts: ``combine`` is ``"sum"`` or ``"concat"``."""

    combine: str
    axis: int
    signals: list


@dataclass
class SplitReport:
    """What `split_ensembles` did.

    Attributes
    ----------
    splits : dict
        ``{ensemble: EnsembleSplit}`` for every divided ensemble.
    skipped : dict
        ``{ensemble: reason}`` for ensembles above the size that stay whole.
    probes : dict
        ``{probe: ProbeParts}`` for probes recorded in parts.
    part_of_op : dict
        ``{operator: (ensemble, part index)}`` for every operator made for a part.
    divisions : list of ActorDivision
        Actors held together by passthrough Nodes that were divided into groups
        (`spike.builder.passthrough`).
    undivided : dict
        ``{actor label: reason}`` for such actors left whole.
    group_of_op : dict
        ``{operator: (group, number of groups)}`` for the operators of divided actors.
    before_division : tuple or None
        What `redivide` needs to undo the division, kept by ``split_model(...,
        undoable=True)`` until the caller has chosen the number of workers.
    """

    splits: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    probes: dict = field(default_factory=dict)
    part_of_op: dict = field(default_factory=dict)
    divisions: list = field(default_factory=list)
    undivided: dict = field(default_factory=dict)
    group_of_op: dict = field(default_factory=dict)
    before_division: tuple = None

    def most_groups(self):
        """The most groups an actor was divided into (1 if none was)."""
        return max((division.n_groups for division in self.divisions), default=1)


def split_ensembles(model, max_neurons=None, n_parts=None):
    """Divide the large ensembles of a built ``model`` (changes ``model.operators``).

    Parameters
    ----------
    model : nengo.builder.Model
        Built, not yet optimized.
    max_neurons : int, optional
        Ensembles with more neurons become ``ceil(n / max_neurons)`` parts.
    n_parts : dict, optional
        ``{ensemble: number of parts}``, overriding ``max_neurons`` for those.

    Returns
    -------
    SplitReport
    """
    report = SplitReport()
    if max_neurons is not None and (int(max_neurons) != max_neurons or max_neurons < 1):
        raise ValidationError(
            f"must be a positive integer (got {max_neurons!r})", attr="max_neurons"
        )
    wanted = {}
    for ens in _ensembles(model):
        if n_parts and ens in n_parts:
            k = int(n_parts[ens])
        elif max_neurons is not None:
            k = math.ceil(ens.n_neurons / max_neurons)
        else:
            k = 1
        if k > 1:
            wanted[ens] = min(k, ens.n_neurons)
    owners = getattr(model, "spike_op_owner", {})
    for ens, k in wanted.items():
        try:
            split = _Splitter(model, ens, k, owners).run(report)
        except CannotSplit as reason:
            report.skipped[ens] = str(reason)
            logger.warning("%s is not split: %s", ens, reason)
            continue
        report.splits[ens] = split
        logger.info("%s split into %d parts of %s neurons", ens, k,
                    "/".join(str(b - a) for a, b in split.bounds))
    return report


def _ensembles(model):
    seen = []
    for key in model.sig:
        if isinstance(key, Ensemble) and key not in seen:
            seen.append(key)
    return seen


_PURE_WRITERS = (Reset, Copy, DotInc, ElementwiseInc)
"""Operator types with no side effects: safe to run once per part."""


class _Splitter:
    """Divides one ensemble; `run` rewrites ``model.operators`` or raises CannotSplit."""

    def __init__(self, model, ens, n_parts, owners):
        self.model = model
        self.ens = ens
        self.n = ens.n_neurons
        self.bounds = part_bounds(self.n, n_parts)
        self.owners = owners
        self.axis = {}  # neuron-indexed base -> axis of its neurons
        self.partial = set()  # bases that become one partial sum per part
        self.fanout = set()  # shared inputs copied for each part
        self.kind = {}  # op -> how it is divided
        self.queue = []
        self.touching = ops_by_base(model.operators)

    # -- classification --------------------------------------------------------

    def describe(self, op):
        owner = self.owners.get(op)
        return f"{type(op).__name__} of {owner}" if owner is not None else str(op)

    def mark(self, sig, axis, op):
        base = sig.base
        if not is_whole_base(sig) or base.ndim <= axis or base.shape[axis] != self.n:
            raise CannotSplit(f"{self.describe(op)} uses part of a signal of its neurons")
        if base in self.partial or self.axis.get(base, axis) != axis:
            raise CannotSplit(f"{self.describe(op)} mixes its neurons")
        if base not in self.axis:
            self.axis[base] = axis
            self.queue.append(base)

    def mark_partial(self, sig, op):
        if not is_whole_base(sig):
            raise CannotSplit(f"{self.describe(op)} writes part of a sum over its neurons")
        if sig.base in self.axis:
            raise CannotSplit(f"{self.describe(op)} mixes its neurons (a recurrent product)")
        if sig.base not in self.partial:
            self.partial.add(sig.base)
            self.queue.append(sig.base)

    def classify(self, op):
        axis, partial = self.axis, self.partial
        touched = {s.base for s in op.all_signals}
        if isinstance(op, SimNeurons):
            if op.state_extra:
                raise CannotSplit(f"its neuron type {op.neurons} draws random numbers")
            for sig in [op.J, op.output] + list(op.state.values()):
                self.mark(sig, 0, op)
            return "slice"
        if touched & partial:
            return self.classify_partial(op)
        if isinstance(op, Reset):
            return "slice"
        if isinstance(op, Copy):
            if op.src_slice is not None or op.dst_slice is not None:
                raise CannotSplit(f"{self.describe(op)} takes a slice of its neurons")
            ax = axis.get(op.src.base, axis.get(op.dst.base))
            self.mark(op.src, ax, op)
            self.mark(op.dst, ax, op)
            return "slice"
        if isinstance(op, DotInc):
            if op.Y.base in axis or axis.get(op.A.base) == 0:
                if op.X.base in axis:
                    raise CannotSplit(f"{self.describe(op)} mixes its neurons")
                self.mark(op.A, 0, op)
                self.mark(op.Y, 0, op)
                return "slice"  # rows of A; the input X is shared
            self.mark(op.X, 0, op)
            self.mark(op.A, 1, op)
            self.mark_partial(op.Y, op)
            return "slice"
        if isinstance(op, ElementwiseInc):
            for sig in (op.A, op.X, op.Y):
                if sig.size != 1:
                    self.mark(sig, 0, op)
            return "slice"
        if isinstance(op, SimProcess) and isinstance(op.process, LinearFilter):
            if op.input is None:
                raise CannotSplit(f"{self.describe(op)} writes into its neurons")
            self.mark(op.input, 0, op)
            self.mark(op.output, 0, op)
            for sig in op.state.values():  # one row per filter state, one column each
                self.mark(sig, sig.ndim - 1, op)
            return "slice"
        if type(op) is SimPES:
            self.mark(op.pre_filtered, 0, op)
            self.mark(op.delta, 1, op)
            return "pes"
        if isinstance(op, SimProbe):
            return "slice"
        raise CannotSplit(f"{self.describe(op)} uses its neurons in a way Spike cannot divide")

    def classify_partial(self, op):
        """An operator reading or writing a partial sum (see the module docstring)."""
        partial = self.partial
        if isinstance(op, Reset):
            return "slice"
        if isinstance(op, DotInc) and op.Y.base in partial and op.X.base in self.axis:
            return "slice"  # a part's product, already classified
        if isinstance(op, SimProcess) and isinstance(op.process, LinearFilter):
            if op.input is None or op.input.base not in partial:
                raise CannotSplit(f"{self.describe(op)} writes into a sum over its neurons")
            writers = [o for o in self.touching[op.output.base] if o is not op]
            out = op.output.base
            if any(s.base is out for o in writers for s in o.sets + o.incs + o.updates):
                raise CannotSplit(f"{self.describe(op)} filters into a shared signal")
            self.mark_partial(op.output, op)
            for sig in op.state.values():
                self.mark_partial(sig, op)
            return "slice"
        if isinstance(op, SimProbe):
            return "slice"
        summand = op.src if isinstance(op, Copy) else getattr(op, "X", None)
        others = [s for s in op.reads if s is not summand]
        if (
            isinstance(op, (Copy, DotInc, ElementwiseInc))
            and op.incs
            and summand.base in partial
            and not any(s.base in partial or s.base in self.axis for s in others)
        ):
            target = op.incs[0]
            if target.base in partial:
                return "slice"
            if self.only_probed(target):
                self.mark_partial(target, op)
                return "slice"
            return "into-shared"  # each part adds its share into the target
        raise CannotSplit(f"{self.describe(op)} reads a sum over its neurons")

    def only_probed(self, sig):
        """True if ``sig`` is a whole base set only by a Reset, read only by probes."""
        if not is_whole_base(sig):
            return False
        for op in self.touching[sig.base]:
            if isinstance(op, (SimProbe, Reset)):
                continue
            if any(s.base is sig.base for s in op.reads + op.sets + op.updates):
                return False
            if not any(s.base in self.partial for s in op.reads):
                return False  # another contribution, not from this ensemble
        return True

    def classify_all(self):
        for op in self.model.operators:
            if isinstance(op, SimNeurons) and op.J.base is self.model.sig[self.ens.neurons]["in"].base:
                self.kind[op] = self.classify(op)
        if not self.kind:
            raise CannotSplit("it has no neurons to simulate (Direct mode)")
        while self.queue:
            base = self.queue.pop()
            for op in self.touching.get(base, ()):
                if op not in self.kind:
                    self.kind[op] = self.classify(op)

    def find_fanout(self):
        """Shared inputs of the parts that can be copied once per part."""
        split_ops = set(self.kind)
        for op in list(self.kind):
            for sig in op.reads:
                base = sig.base
                if base in self.axis or base in self.partial or base in self.fanout:
                    continue
                if not is_whole_base(sig) or base.readonly:
                    continue
                users = self.touching[base]
                writers = [o for o in users if any(s.base is base for s in o.sets + o.incs)]
                readers = [o for o in users if o not in writers]
                if (
                    writers
                    and all(o in split_ops for o in readers)
                    and all(type(o) in _PURE_WRITERS and o not in split_ops for o in writers)
                    and all(
                        not any(s.base is base for s in o.reads + o.updates) for o in writers
                    )
                ):
                    self.fanout.add(base)
                    for writer in writers:
                        self.kind[writer] = "fanout"

    # -- rewriting ------------------------------------------------------------------

    def run(self, report):
        self.classify_all()
        self.find_fanout()
        for probe in self.model.probes:
            sig = self.model.sig[probe]["in"]
            if sig.base in self.axis and not is_whole_base(sig):
                raise CannotSplit(f"{probe} records a slice of its neurons")
        parts = [dict() for _ in self.bounds]  # per part: old base -> new base
        split = EnsembleSplit(self.ens, self.bounds)
        for base, ax in self.axis.items():
            news = []
            for k, (start, stop) in enumerate(self.bounds):
                index = [slice(None)] * base.ndim
                index[ax] = slice(start, stop)
                value = np.array(base.initial_value[tuple(index)], copy=True)
                new = Signal(value, name=derived_name(base, f"[{start}:{stop}]"), readonly=base.readonly)
                parts[k][base] = new
                news.append(new)
            split.bases[base] = (ax, news)
        for base in self.partial | self.fanout:
            for k in range(len(self.bounds)):
                value = np.array(base.initial_value, copy=True)
                parts[k][base] = Signal(value, name=derived_name(base, f" (part {k})"))

        new_ops = []
        for op in self.model.operators:
            if op not in self.kind:
                new_ops.append(op)
                continue
            owner = self.owners.get(op)
            for k, mapping in enumerate(parts):
                new = self.copy_op(op, mapping, k)
                new_ops.append(new)
                report.part_of_op[new] = (self.ens, k)
                if owner is not None:
                    self.owners[new] = owner
            report.part_of_op.pop(op, None)
        self.model.operators[:] = new_ops

        for probe in self.model.probes:
            base = self.model.sig[probe]["in"].base
            if base in self.axis:
                report.probes[probe] = ProbeParts(
                    "concat", self.axis[base], [m[base] for m in parts]
                )
            elif base in self.partial:
                report.probes[probe] = ProbeParts("sum", 0, [m[base] for m in parts])
        return split

    def copy_op(self, op, mapping, k):
        """Operator ``op`` for part ``k``: each signal replaced by the part's own."""
        new = rebind(op, mapping)
        if type(op) is SimPES:
            new.__class__ = SplitSimPES
            new.n_neurons_total = self.n
        start, stop = self.bounds[k]
        new.tag = f"{op.tag or type(op).__name__} [{self.ens} neurons {start}:{stop}]"
        return new
