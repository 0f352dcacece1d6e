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

from spike.builder.model import describe_op
from spike.builder.operators import SplitSimPES, is_linear_filter
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
    return [key for key in model.sig if isinstance(key, Ensemble)]


_PURE_WRITERS = (Reset, Copy, DotInc, ElementwiseInc)
"""Operator types with no side effects: safe to run once per part (matched exactly)."""


# -- the split rules ----------------------------------------------------------------


class _Rules:
    """Split rules by operator type, as nengo's ``Builder`` holds build functions.

    A rule ``rule(splitter, op)`` says how ``op`` is divided into parts: it marks the
    signals ``op`` cuts along their neurons (`_Splitter.mark`) or sums over them
    (`_Splitter.mark_partial`), and raises `CannotSplit` where it cannot. An operator
    takes the rule of the first class of its MRO that has one, so a subclass (nengo's
    ``SparseDotInc`` of ``DotInc``) is divided as its base is unless it has a rule of
    its own; one without any rule leaves the ensemble whole, the reason ending with
    ``refusal``.
    """

    def __init__(self, refusal):
        self.rules = {}
        self.refusal = refusal

    def register(self, *op_types):
        """Decorator: the rule for operators of ``op_types``."""

        def register(rule):
            for op_type in op_types:
                self.rules[op_type] = rule
            return rule

        return register

    def rule_for(self, op_type):
        """The rule operators of ``op_type`` are divided by, or None."""
        return next((self.rules[cls] for cls in op_type.__mro__ if cls in self.rules), None)

    def apply(self, splitter, op):
        rule = self.rule_for(type(op))
        if rule is None:
            self.refuse(splitter, op)
        rule(splitter, op)

    def refuse(self, splitter, op):
        """Raise `CannotSplit`: ``op`` is used in a way no rule divides."""
        raise CannotSplit(f"{describe_op(op, splitter.owners)} {self.refusal}")


NEURON_RULES = _Rules("uses its neurons in a way Spike cannot divide")
"""Rules for operators on the ensemble's neuron-indexed signals."""

SUM_RULES = _Rules("reads a sum over its neurons")
"""Rules for operators that touch a partial sum (see the module docstring)."""

split_rule = NEURON_RULES.register
sum_rule = SUM_RULES.register


@split_rule(SimNeurons)
@sum_rule(SimNeurons)  # so that `_Splitter.mark` names the mix, not the sum
def _neurons(splitter, op):
    """The neuron update is elementwise over neurons: each part updates its own."""
    if op.state_extra:
        raise CannotSplit(f"its neuron type {op.neurons} draws random numbers")
    for sig in [op.J, op.output] + list(op.state.values()):
        splitter.mark(sig, 0, op)


@split_rule(Reset, SimProbe)
@sum_rule(Reset, SimProbe)
def _on_each_part(splitter, op):
    """Resets and probes act on each part's signals as they are."""


@split_rule(Copy)
def _copy(splitter, op):
    if op.src_slice is not None or op.dst_slice is not None:
        raise CannotSplit(f"{describe_op(op, splitter.owners)} takes a slice of its neurons")
    neuron_axis = splitter.use.neuron_axis
    axis = neuron_axis.get(op.src.base, neuron_axis.get(op.dst.base))
    splitter.mark(op.src, axis, op)
    splitter.mark(op.dst, axis, op)


@split_rule(DotInc)
def _product(splitter, op):
    neuron_axis = splitter.use.neuron_axis
    if op.Y.base in neuron_axis or neuron_axis.get(op.A.base) == 0:
        # into the neurons (the encoders): a part takes its rows of A; X is shared
        if op.X.base in neuron_axis:
            raise CannotSplit(f"{describe_op(op, splitter.owners)} mixes its neurons")
        splitter.mark(op.A, 0, op)
        splitter.mark(op.Y, 0, op)
        return
    # of the neurons (the decoders): a part's columns of A give its partial sum
    splitter.mark(op.X, 0, op)
    splitter.mark(op.A, 1, op)
    splitter.mark_partial(op.Y, op)


@split_rule(ElementwiseInc)
def _elementwise(splitter, op):
    for sig in (op.A, op.X, op.Y):
        if sig.size != 1:  # a scalar is broadcast to every part as it is
            splitter.mark(sig, 0, op)


@split_rule(SimProcess)
def _filter(splitter, op):
    """A linear synapse on the neurons (a filtered probe of spikes, say) filters each
    part's slice; any other process on them may mix neurons or draw numbers."""
    if not is_linear_filter(op):
        NEURON_RULES.refuse(splitter, op)
    if op.input is None:
        raise CannotSplit(f"{describe_op(op, splitter.owners)} writes into its neurons")
    splitter.mark(op.input, 0, op)
    splitter.mark(op.output, 0, op)
    for sig in op.state.values():  # one row per filter state, one column per neuron
        splitter.mark(sig, sig.ndim - 1, op)


@split_rule(SimPES)
def _pes(splitter, op):
    """PES learns decoders: a part's delta is its columns, from its activities."""
    splitter.mark(op.pre_filtered, 0, op)
    splitter.mark(op.delta, 1, op)


@split_rule(SplitSimPES)
def _pes_of_a_part(splitter, op):
    """A part of another ensemble's learning rule is not divided again."""
    NEURON_RULES.refuse(splitter, op)


@sum_rule(SimProcess)
def _filter_of_sum(splitter, op):
    """A linear synapse of a partial sum filters each part's share on its own copy,
    giving a partial sum again."""
    if not is_linear_filter(op):
        SUM_RULES.refuse(splitter, op)
    if op.input is None or op.input.base not in splitter.use.partial_sums:
        raise CannotSplit(f"{describe_op(op, splitter.owners)} writes into a sum over its neurons")
    output = op.output.base
    others = [o for o in splitter.touching[output] if o is not op]
    if any(s.base is output for o in others for s in o.sets + o.incs + o.updates):
        raise CannotSplit(f"{describe_op(op, splitter.owners)} filters into a shared signal")
    splitter.mark_partial(op.output, op)
    for sig in op.state.values():
        splitter.mark_partial(sig, op)


@sum_rule(DotInc)
def _product_of_sum(splitter, op):
    use = splitter.use
    if op.Y.base in use.partial_sums and op.X.base in use.neuron_axis:
        return  # a part's product of its activities
    _add_share(splitter, op)


@sum_rule(Copy, ElementwiseInc)
def _add_share(splitter, op):
    """A constant linear map of a partial sum (its *summand*) added into a target:
    each part adds its share, so the target gets the sum. A target only probed
    becomes a partial sum itself (the client adds the parts up)."""
    use = splitter.use
    summand = op.src if isinstance(op, Copy) else op.X
    others = [s for s in op.reads if s is not summand]
    if (
        not op.incs
        or summand.base not in use.partial_sums
        or any(s.base in use.partial_sums or s.base in use.neuron_axis for s in others)
    ):
        SUM_RULES.refuse(splitter, op)
    target = op.incs[0]
    if target.base not in use.partial_sums and splitter.only_probed(target):
        splitter.mark_partial(target, op)


# -- one ensemble ---------------------------------------------------------------------


@dataclass
class _NeuronUse:
    """What the operators around one ensemble's neurons do with them (`_Splitter.walk`).

    Attributes
    ----------
    neuron_axis : dict
        ``{base: axis}`` for the neuron-indexed signals, cut into parts along ``axis``.
    partial_sums : set
        Bases that become one partial sum per part.
    ops : set
        The operators that run once per part.
    """

    neuron_axis: dict = field(default_factory=dict)
    partial_sums: set = field(default_factory=set)
    ops: set = field(default_factory=set)


@dataclass
class _Fanout:
    """Shared inputs of the parts, copied once per part (`_Splitter.find_fanout`).

    Attributes
    ----------
    bases : set
        The inputs.
    writers : set
        The operators that compute them, run once per part on its copy.
    """

    bases: set = field(default_factory=set)
    writers: set = field(default_factory=set)


class _Splitter:
    """Divides one ensemble; `run` rewrites ``model.operators`` or raises CannotSplit.

    The operators of the ensemble's neurons are found by a walk over the signals they
    touch, each classified by its rule (`NEURON_RULES`, `SUM_RULES`).
    """

    def __init__(self, model, ens, n_parts, owners):
        self.model = model
        self.ens = ens
        self.n_neurons = ens.n_neurons
        self.bounds = part_bounds(self.n_neurons, n_parts)
        self.owners = owners
        self.touching = ops_by_base(model.operators)
        self.use = _NeuronUse()
        self._unvisited = []  # marked bases whose operators the walk has yet to classify

    # -- classification --------------------------------------------------------

    def mark(self, sig, axis, op):
        """``op`` uses ``sig`` with the ensemble's neurons along ``axis``: cut it."""
        base = sig.base
        if not is_whole_base(sig) or base.ndim <= axis or base.shape[axis] != self.n_neurons:
            raise CannotSplit(
                f"{describe_op(op, self.owners)} uses part of a signal of its neurons"
            )
        neuron_axis = self.use.neuron_axis
        if base in self.use.partial_sums or neuron_axis.get(base, axis) != axis:
            raise CannotSplit(f"{describe_op(op, self.owners)} mixes its neurons")
        if base not in neuron_axis:
            neuron_axis[base] = axis
            self._unvisited.append(base)

    def mark_partial(self, sig, op):
        """``op`` writes a sum over the neurons into ``sig``: one partial sum per part."""
        if not is_whole_base(sig):
            raise CannotSplit(
                f"{describe_op(op, self.owners)} writes part of a sum over its neurons"
            )
        if sig.base in self.use.neuron_axis:
            raise CannotSplit(
                f"{describe_op(op, self.owners)} mixes its neurons (a recurrent product)"
            )
        if sig.base not in self.use.partial_sums:
            self.use.partial_sums.add(sig.base)
            self._unvisited.append(sig.base)

    def classify(self, op):
        partial_sums = self.use.partial_sums
        rules = SUM_RULES if any(s.base in partial_sums for s in op.all_signals) else NEURON_RULES
        rules.apply(self, op)
        self.use.ops.add(op)

    def only_probed(self, sig):
        """True if ``sig`` is a whole base set only by a Reset, read only by probes."""
        if not is_whole_base(sig):
            return False
        for op in self.touching[sig.base]:
            if isinstance(op, (SimProbe, Reset)):
                continue
            if any(s.base is sig.base for s in op.reads + op.sets + op.updates):
                return False
            if not any(s.base in self.use.partial_sums for s in op.reads):
                return False  # another contribution, not from this ensemble
        return True

    def walk(self):
        """Classify every operator reached from the neurons through marked signals."""
        neuron_input = self.model.sig[self.ens.neurons]["in"].base
        for op in self.model.operators:
            if isinstance(op, SimNeurons) and op.J.base is neuron_input:
                self.classify(op)
        if not self.use.ops:
            raise CannotSplit("it has no neurons to simulate (Direct mode)")
        while self._unvisited:
            base = self._unvisited.pop()
            for op in self.touching.get(base, ()):
                if op not in self.use.ops:
                    self.classify(op)
        for probe in self.model.probes:
            sig = self.model.sig[probe]["in"]
            if sig.base in self.use.neuron_axis and not is_whole_base(sig):
                raise CannotSplit(f"{probe} records a slice of its neurons")

    def find_fanout(self):
        """Shared inputs of the parts that can be copied once per part: written only
        by operators without side effects that the walk did not reach, read only by
        the parts."""
        use = self.use
        fanout = _Fanout()
        for op in use.ops:
            for sig in op.reads:
                base = sig.base
                if base in use.neuron_axis or base in use.partial_sums or base in fanout.bases:
                    continue
                if not is_whole_base(sig) or base.readonly:
                    continue
                users = self.touching[base]
                writers = [o for o in users if any(s.base is base for s in o.sets + o.incs)]
                readers = [o for o in users if o not in writers]
                if (
                    writers
                    and all(o in use.ops for o in readers)
                    and all(type(o) in _PURE_WRITERS and o not in use.ops for o in writers)
                    and all(
                        not any(s.base is base for s in o.reads + o.updates) for o in writers
                    )
                ):
                    fanout.bases.add(base)
                    fanout.writers.update(writers)
        return fanout

    # -- rewriting ------------------------------------------------------------------

    def run(self, report):
        """Split the ensemble: rewrite ``model.operators``, record in ``report`` the
        parts' operators and probes, and return the `EnsembleSplit`."""
        self.walk()
        fanout = self.find_fanout()
        parts = self.part_bases(fanout)
        split = EnsembleSplit(self.ens, self.bounds, {
            base: (axis, [part[base] for part in parts])
            for base, axis in self.use.neuron_axis.items()
        })
        divided = self.use.ops | fanout.writers
        new_ops = []
        for op in self.model.operators:
            if op not in divided:
                new_ops.append(op)
                continue
            owner = self.owners.get(op)
            for k, part in enumerate(parts):
                new = self.copy_op(op, part, k)
                new_ops.append(new)
                report.part_of_op[new] = (self.ens, k)
                if owner is not None:
                    self.owners[new] = owner
            report.part_of_op.pop(op, None)
        self.model.operators[:] = new_ops

        for probe in self.model.probes:
            base = self.model.sig[probe]["in"].base
            if base in self.use.neuron_axis:
                report.probes[probe] = ProbeParts(
                    "concat", self.use.neuron_axis[base], [part[base] for part in parts]
                )
            elif base in self.use.partial_sums:
                report.probes[probe] = ProbeParts("sum", 0, [part[base] for part in parts])
        return split

    def part_bases(self, fanout):
        """``[{original base: the part's own base}]``, one mapping per part: the
        neuron-indexed signals cut, the partial sums and fanned-out inputs copied."""
        parts = [{} for _ in self.bounds]
        for base, axis in self.use.neuron_axis.items():
            for part, (start, stop) in zip(parts, self.bounds):
                index = [slice(None)] * base.ndim
                index[axis] = slice(start, stop)
                value = np.array(base.initial_value[tuple(index)], copy=True)
                part[base] = Signal(value, name=derived_name(base, f"[{start}:{stop}]"),
                                    readonly=base.readonly)
        for base in self.use.partial_sums | fanout.bases:
            for k, part in enumerate(parts):
                value = np.array(base.initial_value, copy=True)
                part[base] = Signal(value, name=derived_name(base, f" (part {k})"))
        return parts

    def copy_op(self, op, part, k):
        """Operator ``op`` for part ``k``: each signal replaced by the part's own."""
        new = rebind(op, part)
        if type(op) is SimPES:  # nengo scales its update by the part's count of neurons
            new.__class__ = SplitSimPES
            new.n_neurons_total = self.n_neurons
        start, stop = self.bounds[k]
        new.tag = f"{op.tag or type(op).__name__} [{self.ens} neurons {start}:{stop}]"
        return new
