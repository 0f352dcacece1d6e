"""Dividing actors that passthrough Nodes hold together, exactly, after nengo's build.

A passthrough Node (``nengo.Node(size_in=...)``) connected without a synapse joins
everything it touches into one actor (`spike.builder.partition`): its value is needed in the
same step it is computed. Networks built from ensemble arrays are made that way: in
``nengo.networks.CircularConvolution`` of 32 dimensions all 136 ensembles hang between
two input Nodes and one output Node, so the whole network is one actor, run by one
worker.

Such an actor is divided into *groups* of whole ensembles, each an actor of its own,
without changing what is computed:

* the actor's **cores** are found first: the ensembles with the operators that only
  they use (bias, encoders, neurons, decoders), joined as in `spike.builder.partition` except
  through *sums*, signals that operators only reset and add into (a passthrough Node's
  input, a connection's weighted output, an ensemble's input);
* the cores are dealt into groups of about equal numbers of neurons, in model order;
* **inputs are repeated**: a sum that does not depend on any neuron of the step (the
  input Nodes, their transforms) is computed by every group that reads it, from the
  same values in the same order, so each group's ensembles get bit-identical input;
* **outputs are summed**: a sum that the cores add their decoded outputs into is kept
  once per group, holding that group's share; each group carries its shares through
  its own copy of the linear operators after them, up to the first linear synapse
  (which each group also runs on its own copy: the synapse's output is what crosses
  between workers). After the synapse, an operator that adds the synapse's output into
  another signal adds each group's output instead (into every group's copy, when the
  output is fed back into the actor's own inputs, as in a memory), and a probe records
  each group's share and the client adds them up (as for a split ensemble, see
  `spike.builder.split`);
* a synapse that filters a constant (a Node with a fixed output) into the inputs is
  run by every group that reads it, so nothing crosses between workers for it.

The sums are the same numbers added in another order, so results equal the undivided
run to about 1e-15 relative. An actor whose sums are used in any other way (a Node
function or a nonlinear operator reading the output sum within the step, a sum fed
both from inputs and from neurons, a non-linear synapse on the output) is left whole,
and the reason is logged and reported (`SplitReport.undivided`).
"""

import logging
from dataclasses import dataclass, field

import numpy as np
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import Copy, DotInc, ElementwiseInc, Reset
from nengo.builder.probe import SimProbe
from nengo.builder.signal import Signal

from spike.builder.model import describe_op
from spike.builder.operators import is_linear_filter
from spike.builder.partition import filters_a_constant, partition_model
from spike.builder.signals import clock_bases, derived_name, ops_by_base, rebind, view_on
from spike.builder.split import ProbeParts

logger = logging.getLogger(__name__)

_LINEAR_INC = (Copy, DotInc, ElementwiseInc)
"""Operators adding a constant linear map of one signal (their summand) to another."""


class CannotDivide(Exception):
    """Raised inside this module when an actor cannot be divided exactly."""


@dataclass
class ActorDivision:
    """How one actor was divided into groups.

    Attributes
    ----------
    label : str
        The objects the actor held, for logs.
    n_groups : int
    repeated : dict
        ``{original base: [base per group that reads it]}`` for inputs computed by
        several groups (equal values).
    partial : dict
        ``{original base: [base per contributing group]}`` for sums kept in shares.
    """

    label: str
    n_groups: int
    repeated: dict = field(default_factory=dict)
    partial: dict = field(default_factory=dict)


def _summand(op):
    """The signal a linear operator maps into its target, or None if it is not one
    with a constant map (a learned or computed matrix)."""
    if isinstance(op, Copy):
        return op.src
    if isinstance(op, (DotInc, ElementwiseInc)) and op.A.readonly:
        return op.X
    return None


def _group_copies(base, groups, mapping, shares=False):
    """``[copy of base per group]`` for the sorted ``groups``, each entered in its
    group's ``mapping[g]``. With ``shares``, the copies start as shares of base's
    initial value (the first holds it, the others zeros), so that they sum to it."""
    copies = []
    for k, g in enumerate(sorted(groups)):
        value = np.zeros_like(base.initial_value) if shares and k > 0 else base.initial_value
        mapping[g][base] = Signal(
            np.ascontiguousarray(np.array(value, copy=True)),
            name=derived_name(base, f" (group {g})"), readonly=base.readonly,
        )
        copies.append(mapping[g][base])
    return copies


def divide_actors(model, n_groups, report):
    """Divide every actor of ``model`` held together by passthrough Nodes.

    Parameters
    ----------
    model : nengo.builder.Model
        Built (and possibly split, `spike.builder.split`); its operators are rewritten.
    n_groups : int
        Most groups per actor (the number of workers it may be spread over).
    report : SplitReport
        Receives the divisions, the actors left whole and the probes in parts.
    """
    if n_groups is None or n_groups < 2:
        return
    owners = getattr(model, "spike_op_owner", {})
    candidates = [
        actor for actor in partition_model(model).actors
        if sum(isinstance(op, SimNeurons) for op in actor.ops) >= 2
    ]
    replaced = {}  # operator -> its copies, for actors divided before
    for actor in candidates:
        ops = [new for op in actor.ops for new in replaced.get(op, [op])]
        try:
            divided = _Divider(model, ops, n_groups, owners, report).run(actor.label)
        except CannotDivide as reason:
            report.undivided[actor.label] = str(reason)
            logger.info("%s is not divided: %s", actor.label, reason)
            continue
        if divided is None:
            continue
        replaced.update(divided.copies)
        report.divisions.append(divided.division)
        logger.info("%s divided into %d groups", actor.label, divided.division.n_groups)


# -- what each phase of `_Divider.plan` finds ------------------------------------------


@dataclass
class _Cores:
    """The actor's cores (`_Divider.find_cores`).

    Attributes
    ----------
    cores : list of list
        Each core's operators, in model order.
    sums : set
        The bases only reset and added into (`_Divider.is_sum`): they join no core.
    """

    cores: list
    sums: set


@dataclass
class _Deal:
    """The cores dealt into groups (`_Divider.deal`).

    Attributes
    ----------
    group_of : dict
        ``{core's operator: group}``, groups numbered from 0.
    n_groups : int
    """

    group_of: dict
    n_groups: int


@dataclass
class _Outputs:
    """The sums the cores add their outputs into (`_Divider.output_groups`).

    Attributes
    ----------
    sums : set
        The sums the cores add into, and the sums fed from those.
    contributors : dict
        ``{sum: groups adding into it}``: the groups it is kept in shares for.
    op_groups : dict
        ``{operator after the cores: groups it runs in}``.
    """

    sums: set
    contributors: dict
    op_groups: dict


@dataclass
class _Synapses:
    """What reads the synapses of the output sums (`_Divider.follow_synapses`).

    Attributes
    ----------
    followers : dict
        ``{reader: groups}``: operators past a synapse (in other actors, and probes),
        each run once per group of ``groups`` on that group's share.
    feedback : dict
        ``{reader: _Feedback}`` for the operators of the actor that add a synapse's
        output into one of its inputs.
    shares : dict
        ``{base: groups}``: the synapses' outputs and states, and signals that are
        only probed copies of an output, kept once per group.
    """

    followers: dict = field(default_factory=dict)
    feedback: dict = field(default_factory=dict)
    shares: dict = field(default_factory=dict)


@dataclass
class _Feedback:
    """A synapse's output added into an input of its own actor (as in a memory): each
    group computing the input adds every group's share of the output.

    Attributes
    ----------
    output : Signal
        The synapse's output base.
    groups : set
        The groups it is kept in shares for.
    """

    output: Signal
    groups: set


@dataclass
class _ConstantSynapse:
    """A linear synapse filtering a constant into the actor's inputs
    (`_Divider.find_constant_synapses`).

    Attributes
    ----------
    groups : set
        The groups that read it: each runs a copy of its own.
    keep : bool
        The original still serves readers in other actors.
    """

    groups: set
    keep: bool


@dataclass
class _Plan:
    """How an actor is divided, found before anything is rewritten (`_Divider.plan`).

    Attributes
    ----------
    n_groups : int
    op_groups : dict
        ``{operator of the actor: groups it runs in}``.
    outputs : _Outputs
    groups_needing : dict
        ``{input: groups whose operators read it}`` for the actor's inputs, the
        signals written by its operators neither of the cores nor after them
        (`_Divider.find_inputs`).
    synapses : _Synapses
    constant_synapses : dict
        ``{synapse: _ConstantSynapse}``.
    """

    n_groups: int
    op_groups: dict
    outputs: _Outputs
    groups_needing: dict
    synapses: _Synapses
    constant_synapses: dict


@dataclass
class _Divided:
    """A divided actor (`_Divider.rewrite`).

    Attributes
    ----------
    division : ActorDivision
    copies : dict
        ``{original operator: the operators standing for it in the model}``.
    """

    division: ActorDivision
    copies: dict


class _Divider:
    """Divides one actor; `run` rewrites ``model.operators`` or raises CannotDivide."""

    def __init__(self, model, ops, n_groups, owners, report):
        self.model = model
        self.ops = ops
        self.opset = set(ops)
        self.n_groups = n_groups
        self.owners = owners
        self.report = report
        self.touching = ops_by_base(model.operators)
        self.clock = clock_bases(model.operators)

    def _using(self, base, *kinds):
        """The operators with ``base`` among their signals of ``kinds`` ("sets", ...)."""
        return [
            op for op in self.touching.get(base, ())
            if any(s.base is base for kind in kinds for s in getattr(op, kind))
        ]

    def writers(self, base):
        return self._using(base, "sets", "incs")

    def readers(self, base):
        return self._using(base, "reads")

    def updaters(self, base):
        return self._using(base, "updates")

    def is_written(self, base):
        """True if an operator sets, adds into or updates ``base``."""
        return bool(self.writers(base) or self.updaters(base))

    def run(self, label):
        """Divide the actor (``label`` names it): a `_Divided`, or None if it holds
        fewer than two cores."""
        plan = self.plan()
        return None if plan is None else self.rewrite(label, plan)

    def plan(self):
        """How to divide the actor (None: not at all), from its cores outwards."""
        cores = self.find_cores()
        if len(cores.cores) < 2:
            return None
        deal = self.deal(cores.cores, min(self.n_groups, len(cores.cores)))
        if deal.n_groups < 2:
            return None
        output_sums = self.find_output_sums(deal.group_of, cores.sums)
        outputs = self.output_groups(deal.group_of, output_sums)
        op_groups = dict(outputs.op_groups)
        for op, g in deal.group_of.items():
            op_groups[op] = {g}
        groups_needing = self.find_inputs(op_groups)
        self.check_repeatable(op_groups, deal.group_of)
        return _Plan(
            n_groups=deal.n_groups,
            op_groups=op_groups,
            outputs=outputs,
            groups_needing=groups_needing,
            synapses=self.follow_synapses(outputs.op_groups),
            constant_synapses=self.find_constant_synapses(op_groups),
        )

    # -- the actor's cores ------------------------------------------------------------

    def is_sum(self, base):
        """True if ``base`` is only reset and added into, and read as a summand."""
        if base.readonly or base in self.clock:
            return False
        writers = self.writers(base)
        if not writers:
            return False
        for op in self.touching[base]:
            if any(s.base is base for s in op.updates):
                return False
        for op in writers:
            if isinstance(op, Reset):
                continue
            if not isinstance(op, _LINEAR_INC) or not op.incs or op.incs[0].base is not base:
                return False
        for op in self.readers(base):
            if isinstance(op, SimProbe):
                continue
            if is_linear_filter(op) and op.input is not None and op.input.base is base:
                continue
            summand = _summand(op)
            if summand is None or summand.base is not base:
                return False
            if any(s.base is base for s in op.reads if s is not summand):
                return False
        return True

    def find_cores(self):
        """The components of the actor joined through signals other than sums,
        constants and synapse outputs, that hold neurons."""
        parent = {op: op for op in self.ops}

        def find(op):
            while parent[op] is not op:
                parent[op] = parent[parent[op]]
                op = parent[op]
            return op

        sums = set()
        for base in {s.base for op in self.ops for s in op.all_signals}:
            if base.readonly or base in self.clock:
                continue
            if not self.writers(base):
                continue  # a synapse's output, or a constant: does not join
            if self.is_sum(base):
                sums.add(base)
                continue
            users = [o for o in self.touching[base] if o in self.opset]
            root = find(users[0])
            for other in users[1:]:
                other = find(other)
                if other is not root:
                    parent[other] = root
        components = {}
        for op in self.ops:
            components.setdefault(find(op), []).append(op)
        cores = [c for c in components.values() if any(isinstance(o, SimNeurons) for o in c)]
        return _Cores(cores, sums)

    def deal(self, cores, n_groups):
        """Deal the cores into contiguous runs (in model order) of about equal numbers
        of neurons, at most ``n_groups``."""
        neurons = [
            max(1, sum(op.output.size for op in core if isinstance(op, SimNeurons)))
            for core in cores
        ]
        total = sum(neurons)
        group_of = {}
        done = 0
        for core, n in zip(cores, neurons):
            g = min(n_groups - 1, int(n_groups * (done + n / 2) / total))
            done += n
            for op in core:
                group_of[op] = g
        used = sorted(set(group_of.values()))
        renumber = {g: k for k, g in enumerate(used)}
        return _Deal({op: renumber[g] for op, g in group_of.items()}, len(used))

    # -- outputs and inputs -----------------------------------------------------------

    def find_output_sums(self, group_of, sums):
        """The sums the cores add their outputs into, and the sums fed from those;
        raises CannotDivide where one is used in a way that is not linear."""
        output_sums = set()
        changed = True
        while changed:
            changed = False
            for op in self.ops:
                if op not in group_of:
                    summand = _summand(op)
                    if summand is None or summand.base not in output_sums:
                        continue
                for sig in op.incs:
                    if sig.base in sums and sig.base not in output_sums:
                        output_sums.add(sig.base)
                        changed = True
        for op in self.ops:
            reads_sum = [s for s in op.reads if s.base in output_sums]
            if not reads_sum:
                continue
            if op in group_of:
                raise CannotDivide(
                    f"{describe_op(op, self.owners)} reads, within the step, a sum of "
                    "several ensembles' outputs"
                )
            if isinstance(op, SimProbe):
                continue
            if is_linear_filter(op):
                if not op.updates or op.sets or op.incs:
                    raise CannotDivide(f"{describe_op(op, self.owners)} filters a sum of "
                                       "outputs into a signal it sets")
                continue
            summand = _summand(op)
            if summand is None or len(reads_sum) > 1 or summand.base not in output_sums:
                raise CannotDivide(
                    f"{describe_op(op, self.owners)} uses a sum of several ensembles' "
                    "outputs in a way that is not linear"
                )
            for sig in op.incs + op.sets:
                if sig.base not in output_sums:
                    users = [describe_op(o, self.owners) for o in self.readers(sig.base)]
                    raise CannotDivide(
                        f"{describe_op(op, self.owners)} passes a sum of several "
                        f"ensembles' outputs to {', '.join(users)}, which is not linear"
                    )
        for base in output_sums:
            for op in self.writers(base):
                if isinstance(op, Reset) or op in group_of:
                    continue
                if _summand(op).base not in output_sums:
                    raise CannotDivide(
                        f"{describe_op(op, self.owners)} adds an input into a sum of "
                        "ensembles' outputs"
                    )
        return output_sums

    def output_groups(self, group_of, output_sums):
        """Which groups add into each output sum, and run each operator after them."""
        contributors = {base: set() for base in output_sums}
        op_groups = {}
        changed = True
        while changed:
            changed = False
            for op in self.ops:
                if op in group_of:
                    groups = {group_of[op]}
                elif isinstance(op, Reset) and op.dst.base in output_sums:
                    groups = contributors[op.dst.base]
                else:
                    read = [contributors[s.base] for s in op.reads if s.base in output_sums]
                    if not read:
                        continue
                    groups = set().union(*read)
                if op not in group_of and op_groups.get(op) != groups:
                    op_groups[op] = set(groups)
                    changed = True
                for sig in op.incs:
                    if sig.base in output_sums and not groups <= contributors[sig.base]:
                        contributors[sig.base] |= groups
                        changed = True
        return _Outputs(output_sums, contributors, op_groups)

    def find_inputs(self, op_groups):
        """``{input: groups needing it}`` for the signals the operators not yet in
        ``op_groups`` write (the inputs); those operators are added to ``op_groups``:
        every group whose operators read an input computes it."""
        inputs = [op for op in self.ops if op not in op_groups]
        needing = {}
        writers = {}
        for op in inputs:
            for sig in op.sets + op.incs:
                needing.setdefault(sig.base, set())
                writers.setdefault(sig.base, []).append(op)

        def spread(op, groups):
            """``op`` runs in ``groups``: so must what computes the inputs it reads."""
            stack = [(op, groups)]
            while stack:
                op, groups = stack.pop()
                for sig in op.reads:
                    base = sig.base
                    if base not in needing or groups <= needing[base]:
                        continue
                    needing[base] |= groups
                    for writer in writers[base]:
                        mine = op_groups.setdefault(writer, set())
                        if not groups <= mine:
                            mine |= groups
                            stack.append((writer, set(mine)))

        for op in self.ops:
            if op_groups.get(op):
                spread(op, op_groups[op])
        for op in inputs:  # read by no group: a probe or a synapse of the inputs
            if not op_groups.get(op):
                op_groups[op] = {0}
                spread(op, {0})
        return needing

    def check_repeatable(self, op_groups, group_of):
        """Raise CannotDivide if an operator that must run in several groups has
        effects of its own (a Node's function, a process drawing noise, a learned
        matrix): only resets, linear copies and products, synapses and probes may."""
        for op, groups in op_groups.items():
            if op in group_of or len(groups) < 2:
                continue
            if isinstance(op, SimProbe) or is_linear_filter(op):
                continue
            if not isinstance(op, (Reset,) + _LINEAR_INC) or (
                not isinstance(op, (Reset, Copy)) and not op.A.readonly
            ):
                raise CannotDivide(
                    f"{describe_op(op, self.owners)} would run once per group, and only "
                    "operators without side effects can"
                )

    # -- past the synapses ------------------------------------------------------------

    def follow_synapses(self, output_op_groups):
        """The readers of each output sum's synapse: a reader in another actor that
        adds the synapse's output into a signal adds each group's share instead (a
        copy into a signal only probed keeps that signal in shares too); one in this
        actor that adds it into an input does so in every group that computes the
        input (as in a memory)."""
        synapses = _Synapses()
        for op, groups in output_op_groups.items():
            if not is_linear_filter(op):
                continue
            for sig in op.updates:
                synapses.shares[sig.base] = groups
            output = op.output.base
            for reader in self.readers(output):
                if reader is op:
                    continue
                if isinstance(reader, SimProbe):
                    synapses.followers[reader] = groups
                    continue
                summand = _summand(reader)
                if summand is None or summand.base is not output or any(
                    s.base is output for s in reader.reads if s is not summand
                ):
                    raise CannotDivide(f"{describe_op(reader, self.owners)} reads a "
                                       "synapse's output in a way that is not linear")
                target = (reader.incs + reader.sets)[0].base
                if reader in self.opset:
                    if not reader.incs or reader in synapses.feedback:
                        raise CannotDivide(f"{describe_op(reader, self.owners)} sets an "
                                           "input from a synapse's output")
                    synapses.feedback[reader] = _Feedback(output, groups)
                elif isinstance(reader, Copy) and not reader.inc and self.only_probed(
                    target, reader
                ):
                    synapses.followers[reader] = groups
                    synapses.shares[target] = groups
                    for probe_op in self.readers(target):
                        synapses.followers[probe_op] = groups
                elif reader.incs:
                    synapses.followers[reader] = groups
                else:
                    raise CannotDivide(f"{describe_op(reader, self.owners)} sets a signal "
                                       "from a synapse's output")
        return synapses

    def only_probed(self, base, writer):
        """True if ``writer`` and probes are all that touch ``base``."""
        return all(op is writer or isinstance(op, SimProbe) for op in self.touching[base])

    def find_constant_synapses(self, op_groups):
        """``{synapse: _ConstantSynapse}`` for the linear synapses that filter a
        constant (a Node's fixed output) into the inputs of several groups: each
        group runs its own copy, so that nothing crosses between workers for it."""
        found = {}
        for op in self.ops:
            for sig in op.reads:
                base = sig.base
                if base.readonly or base in self.clock or self.writers(base):
                    continue
                updaters = self.updaters(base)
                if len(updaters) != 1:
                    continue
                (synapse,) = updaters
                if (
                    synapse in found
                    or not is_linear_filter(synapse)
                    or not filters_a_constant(synapse, self.clock, self.is_written)
                    or synapse.output.base is not base
                ):
                    continue
                readers = [o for o in self.readers(base) if o is not synapse]
                groups = set().union(*(op_groups.get(o, set()) for o in readers))
                keep = any(o not in self.opset for o in readers)
                if len(groups) > 1:
                    found[synapse] = _ConstantSynapse(groups, keep)
        return found

    # -- rewriting ------------------------------------------------------------------

    def rewrite(self, label, plan):
        """Rewrite ``model.operators`` as ``plan`` says; record the probes in parts."""
        n_groups = plan.n_groups
        division = ActorDivision(label, n_groups)
        mapping = [{} for _ in range(n_groups)]  # per group: {base: the group's own}
        needing = plan.groups_needing
        for base in sorted(needing, key=lambda b: b.name):
            # every group that reads or computes an input gets a copy of its own
            groups = set(needing[base]).union(
                *(plan.op_groups[op] for op in self.writers(base) if op in plan.op_groups)
            )
            if len(groups) > 1:
                division.repeated[base] = _group_copies(base, groups, mapping)
        shares = {base: plan.outputs.contributors[base] for base in plan.outputs.sums}
        shares.update(plan.synapses.shares)
        for base, groups in shares.items():
            division.partial[base] = _group_copies(base, groups, mapping, shares=True)
        for synapse, constant in plan.constant_synapses.items():
            for sig in synapse.updates:
                division.repeated[sig.base] = _group_copies(sig.base, constant.groups, mapping)
        renamed = {base for m in mapping for base in m}
        for probe, parts in self.report.probes.items():
            if any(sig.base in renamed for sig in parts.signals):
                raise CannotDivide(f"{probe} is already recorded in parts")

        copies = {}
        to_copy = dict(plan.op_groups)
        for op, groups in plan.synapses.followers.items():
            to_copy.setdefault(op, groups)
        for op, groups in to_copy.items():
            if op in plan.constant_synapses:
                continue  # below
            feedback = plan.synapses.feedback.get(op)
            if feedback is not None:  # each group's input adds every group's output
                output = feedback.output
                new_ops = [
                    self.copy_op(op, {**mapping[g], output: mapping[source][output]}, g,
                                 n_groups)
                    for g in sorted(groups) for source in sorted(feedback.groups)
                ]
            else:
                new_ops = [self.copy_op(op, mapping[g], g, n_groups) for g in sorted(groups)]
            if len({id(c) for c in new_ops}) < len(new_ops):
                raise CannotDivide(f"{describe_op(op, self.owners)} would run twice on the "
                                   "same signals")
            copies[op] = new_ops
        for synapse, constant in plan.constant_synapses.items():
            copies[synapse] = [synapse] * constant.keep + [
                self.copy_op(synapse, mapping[g], g, n_groups) for g in sorted(constant.groups)
            ]
        for op, new_ops in copies.items():
            for new in new_ops:
                if new is not op:
                    self.register(op, new)
        self.model.operators[:] = [
            new for op in self.model.operators for new in copies.get(op, [op])
        ]

        for probe in self.model.probes:
            sig = self.model.sig[probe]["in"]
            if sig.base in division.partial:
                groups = sorted(shares[sig.base])
                self.report.probes[probe] = ProbeParts(
                    "sum", 0, [view_on(sig, mapping[g][sig.base]) for g in groups]
                )
            elif sig.base in division.repeated:
                # every copy holds the same values; a constant synapse's output is
                # needed by no group's inputs, only copied for its readers
                copied = [g for g, own in enumerate(mapping) if sig.base in own]
                g = min(needing.get(sig.base) or copied)
                self.report.probes[probe] = ProbeParts(
                    "sum", 0, [view_on(sig, mapping[g][sig.base])]
                )
        return _Divided(division, copies)

    def copy_op(self, op, mapping, g, n_groups):
        """Operator ``op`` for group ``g``: each signal replaced by the group's own
        (``op`` itself if none is)."""
        if not any(s.base in mapping for s in op.all_signals):
            new = op
        else:
            new = rebind(op, mapping)
            if op.tag:
                new.tag = f"{op.tag} (group {g + 1}/{n_groups})"
        if op in self.opset:
            self.report.group_of_op[new] = (g, n_groups)
        return new

    def register(self, op, new):
        """``new`` stands for ``op``: same owner, same part of a split ensemble."""
        owner = self.owners.get(op)
        if owner is not None:
            self.owners[new] = owner
        if op in self.report.part_of_op:
            self.report.part_of_op[new] = self.report.part_of_op[op]
