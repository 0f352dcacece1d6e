"""Dividing actors that passthrough Nodes hold together, exactly, after nengo's build.

A passthrough Node (``nengo.Node(size_in=...)``) connected without a synapse joins
everything it touches into one actor (`spike.builder.partition`): its value is needed in the
same step it is computed. Networks built from ensemble arrays are made that way: in
``nengo.networks.CircularConvolution`` all 136 ensembles hang between two input Nodes
and one output Node, so the whole network is one actor, run by one worker.

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
from nengo.builder.operator import Copy, DotInc, ElementwiseInc, Reset, TimeUpdate
from nengo.builder.probe import SimProbe
from nengo.builder.processes import SimProcess
from nengo.builder.signal import Signal
from nengo.synapses import LinearFilter

from spike.builder.partition import filters_a_constant, partition_model
from spike.builder.signals import derived_name, ops_by_base, rebind, view_on
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


def _is_linear_filter(op):
    return isinstance(op, SimProcess) and isinstance(op.process, LinearFilter)


def _group_base(base, g, value=None):
    """A signal like ``base``, for group ``g`` (initially ``value``, else base's)."""
    value = np.array(base.initial_value if value is None else value, copy=True)
    return Signal(np.ascontiguousarray(value), name=derived_name(base, f" (group {g})"),
                  readonly=base.readonly)


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
            divider = _Divider(model, ops, n_groups, owners, report)
            division = divider.run(actor.label)
        except CannotDivide as reason:
            report.undivided[actor.label] = str(reason)
            logger.info("%s is not divided: %s", actor.label, reason)
            continue
        if division is None:
            continue
        replaced.update(divider.replaced)
        report.divisions.append(division)
        logger.info("%s divided into %d groups", actor.label, division.n_groups)


class _Divider:
    """Divides one actor; `run` rewrites ``model.operators`` or raises CannotDivide."""

    def __init__(self, model, ops, n_groups, owners, report):
        self.model = model
        self.ops = ops
        self.opset = set(ops)
        self.n_groups = n_groups
        self.owners = owners
        self.report = report
        self.replaced = {}
        self.sources = {}
        self.touching = ops_by_base(model.operators)
        clock = [op for op in model.operators if isinstance(op, TimeUpdate)]
        self.clock_bases = {s.base for op in clock for s in op.all_signals}

    def describe(self, op):
        owner = self.owners.get(op)
        return f"{type(op).__name__} of {owner}" if owner is not None else str(op)

    def writers(self, base):
        return [o for o in self.touching.get(base, ()) if any(s.base is base for s in o.sets + o.incs)]

    def readers(self, base):
        return [o for o in self.touching.get(base, ()) if any(s.base is base for s in o.reads)]

    def updaters(self, base):
        return [o for o in self.touching.get(base, ()) if any(s.base is base for s in o.updates)]

    # -- the actor's cores ------------------------------------------------------------

    def is_sum(self, base):
        """True if ``base`` is only reset and added into, and read as a summand."""
        if base.readonly or base in self.clock_bases:
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
            if _is_linear_filter(op) and op.input is not None and op.input.base is base:
                continue
            summand = _summand(op)
            if summand is None or summand.base is not base:
                return False
            if any(s.base is base for s in op.reads if s is not summand):
                return False
        return True

    def find_cores(self):
        """``[set of ops]`` per core: components joined through signals other than
        sums, constants and synapse outputs, holding neurons."""
        parent = {op: op for op in self.ops}

        def find(op):
            while parent[op] is not op:
                parent[op] = parent[parent[op]]
                op = parent[op]
            return op

        self.sums = set()
        for base in {s.base for op in self.ops for s in op.all_signals}:
            if base.readonly or base in self.clock_bases:
                continue
            if not self.writers(base):
                continue  # a synapse's output, or a constant: does not join
            if self.is_sum(base):
                self.sums.add(base)
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
        return cores

    # -- classification ---------------------------------------------------------------

    def run(self, label):
        cores = self.find_cores()
        if len(cores) < 2:
            return None
        group_of = self.deal(cores, min(self.n_groups, len(cores)))
        n_groups = len(set(group_of.values()))
        if n_groups < 2:
            return None
        downstream = self.find_outputs(group_of)
        contributes, down_groups = self.output_groups(group_of, downstream)
        op_groups = dict(down_groups)
        for op, g in group_of.items():
            op_groups[op] = {g}
        upstream, needs = self.input_groups(op_groups)
        self.check_repeatable(op_groups, group_of)
        followers = self.follow_synapses(op_groups, down_groups)
        self.sources = self.find_constant_synapses(op_groups)
        return self.rewrite(label, n_groups, group_of, op_groups, downstream, contributes,
                            upstream, needs, followers)

    def deal(self, cores, n_groups):
        """``{op: group}`` for the cores' operators: contiguous runs of cores (in model
        order) with about equal numbers of neurons."""
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
        return {op: renumber[g] for op, g in group_of.items()}

    def find_outputs(self, group_of):
        """The sums the cores add their outputs into, and the sums fed from those."""
        downstream = set()
        changed = True
        while changed:
            changed = False
            for op in self.ops:
                if op not in group_of:
                    summand = _summand(op)
                    if summand is None or summand.base not in downstream:
                        continue
                for sig in op.incs:
                    if sig.base in self.sums and sig.base not in downstream:
                        downstream.add(sig.base)
                        changed = True
        for op in self.ops:
            reads_down = [s for s in op.reads if s.base in downstream]
            if not reads_down:
                continue
            if op in group_of:
                raise CannotDivide(
                    f"{self.describe(op)} reads, within the step, a sum of several "
                    "ensembles' outputs"
                )
            if isinstance(op, SimProbe):
                continue
            if _is_linear_filter(op):
                if not op.updates or op.sets or op.incs:
                    raise CannotDivide(f"{self.describe(op)} filters a sum of outputs "
                                       "into a signal it sets")
                continue
            summand = _summand(op)
            if summand is None or len(reads_down) > 1 or summand.base not in downstream:
                raise CannotDivide(
                    f"{self.describe(op)} uses a sum of several ensembles' outputs in a "
                    "way that is not linear"
                )
            for sig in op.incs + op.sets:
                if sig.base not in downstream:
                    users = [self.describe(o) for o in self.readers(sig.base)]
                    raise CannotDivide(
                        f"{self.describe(op)} passes a sum of several ensembles' outputs "
                        f"to {', '.join(users)}, which is not linear"
                    )
        for base in downstream:
            for op in self.writers(base):
                if isinstance(op, Reset) or op in group_of:
                    continue
                if _summand(op).base not in downstream:
                    raise CannotDivide(
                        f"{self.describe(op)} adds an input into a sum of ensembles' outputs"
                    )
        return downstream

    def output_groups(self, group_of, downstream):
        """``({sum: groups adding into it}, {operator after the cores: groups})``."""
        contributes = {base: set() for base in downstream}
        op_groups = {}
        changed = True
        while changed:
            changed = False
            for op in self.ops:
                if op in group_of:
                    groups = {group_of[op]}
                elif isinstance(op, Reset) and op.dst.base in downstream:
                    groups = contributes[op.dst.base]
                else:
                    read = [contributes[s.base] for s in op.reads if s.base in downstream]
                    if not read:
                        continue
                    groups = set().union(*read)
                if op not in group_of and op_groups.get(op) != groups:
                    op_groups[op] = set(groups)
                    changed = True
                for sig in op.incs:
                    if sig.base in downstream and not groups <= contributes[sig.base]:
                        contributes[sig.base] |= groups
                        changed = True
        return contributes, op_groups

    def input_groups(self, op_groups):
        """The signals the other operators write (the inputs), ``{input: groups
        reading it}``, and each of those operators' groups (set in ``op_groups``)."""
        inputs = [op for op in self.ops if op not in op_groups]
        upstream = {s.base for op in inputs for s in op.sets + op.incs}
        needs = {base: set() for base in upstream}
        writers = {base: [] for base in upstream}
        for op in inputs:
            for sig in op.sets + op.incs:
                writers[sig.base].append(op)

        def spread(op, groups):
            """``op`` runs in ``groups``: so must what computes the inputs it reads."""
            stack = [(op, groups)]
            while stack:
                op, groups = stack.pop()
                for sig in op.reads:
                    base = sig.base
                    if base not in upstream or groups <= needs[base]:
                        continue
                    needs[base] |= groups
                    for writer in writers[base]:
                        mine = op_groups.setdefault(writer, set())
                        if not groups <= mine:
                            mine |= groups
                            stack.append((writer, set(mine)))

        for op in self.ops:
            if op in op_groups and op_groups[op]:
                spread(op, op_groups[op])
        for op in inputs:  # read by no group: a probe or a synapse of the inputs
            if not op_groups.get(op):
                op_groups[op] = {0}
                spread(op, {0})
        return upstream, needs

    def check_repeatable(self, op_groups, group_of):
        """Raise CannotDivide if an operator that must run in several groups has
        effects of its own (a Node's function, a process drawing noise, a learned
        matrix): only resets, linear copies and products, synapses and probes may."""
        for op, groups in op_groups.items():
            if op in group_of or len(groups) < 2:
                continue
            if isinstance(op, SimProbe) or _is_linear_filter(op):
                continue
            if not isinstance(op, (Reset,) + _LINEAR_INC) or (
                not isinstance(op, (Reset, Copy)) and not op.A.readonly
            ):
                raise CannotDivide(
                    f"{self.describe(op)} would run once per group, and only operators "
                    "without side effects can"
                )

    def follow_synapses(self, op_groups, down_groups):
        """Past each synapse of an output sum: ``{reader: (kind, groups, output)}``
        for the operators that read the synapse's ``output``, kept once per group in
        ``groups``. A reader in another actor that adds the output into a signal adds
        each group's instead (``"add each"``; ``"probed copy"`` if the signal is only
        probed); one in this actor that adds it into an input (``"feedback"``, as in
        a memory) does so in every group that computes the input."""
        followers = {}
        self.synapse_outputs = {}  # base -> groups, for filters' outputs and states
        for op, groups in down_groups.items():
            if not _is_linear_filter(op):
                continue
            for sig in op.updates:
                self.synapse_outputs[sig.base] = groups
            output = op.output.base
            for reader in self.readers(output):
                if reader is op:
                    continue
                if isinstance(reader, SimProbe):
                    followers[reader] = ("probe", groups, output)
                    continue
                summand = _summand(reader)
                if summand is None or summand.base is not output or any(
                    s.base is output for s in reader.reads if s is not summand
                ):
                    raise CannotDivide(f"{self.describe(reader)} reads a synapse's output "
                                       "in a way that is not linear")
                target = (reader.incs + reader.sets)[0].base
                if reader in self.opset:  # fed back into the actor's inputs
                    if not reader.incs or reader in followers:
                        raise CannotDivide(f"{self.describe(reader)} sets an input from "
                                           "a synapse's output")
                    followers[reader] = ("feedback", groups, output)
                elif isinstance(reader, Copy) and not reader.inc and self.only_probed(
                    target, reader
                ):
                    followers[reader] = ("probed copy", groups, output)
                    self.synapse_outputs[target] = groups
                    for probe_op in self.readers(target):
                        followers[probe_op] = ("probe", groups, output)
                elif reader.incs:
                    followers[reader] = ("add each", groups, output)
                else:
                    raise CannotDivide(f"{self.describe(reader)} sets a signal from a "
                                       "synapse's output")
        return followers

    def find_constant_synapses(self, op_groups):
        """``{synapse: (groups, keep)}`` for the linear synapses that filter a
        constant (a Node's fixed output) into the actor's inputs: each group that
        reads one runs its own copy, so that nothing crosses between workers for it
        (``keep``: the original still serves readers in other actors)."""
        found = {}
        clock = self.clock_bases
        for op in self.ops:
            for sig in op.reads:
                base = sig.base
                if base.readonly or base in clock or self.writers(base):
                    continue
                updaters = self.updaters(base)
                if len(updaters) != 1:
                    continue
                (synapse,) = updaters
                if (
                    synapse in found
                    or not _is_linear_filter(synapse)
                    or not filters_a_constant(synapse, self.is_constant)
                    or synapse.output.base is not base
                ):
                    continue
                readers = [o for o in self.readers(base) if o is not synapse]
                groups = set().union(*(op_groups.get(o, set()) for o in readers))
                keep = any(o not in self.opset for o in readers)
                if len(groups) > 1:
                    found[synapse] = (groups, keep)
        return found

    def is_constant(self, base):
        """True for the clock and for signals no operator writes or updates."""
        return base in self.clock_bases or not (self.writers(base) or self.updaters(base))

    def only_probed(self, base, writer):
        for op in self.touching[base]:
            if op is writer or isinstance(op, SimProbe):
                continue
            return False
        return True

    # -- rewriting ------------------------------------------------------------------

    def rewrite(self, label, n_groups, group_of, op_groups, downstream, contributes,
                upstream, needs, followers):
        division = ActorDivision(label, n_groups)
        mapping = [dict() for _ in range(n_groups)]
        for base in sorted(upstream, key=lambda b: b.name):
            # every group that reads or computes an input gets a copy of its own
            groups = set(needs[base]).union(
                *(op_groups[op] for op in self.writers(base) if op in op_groups)
            )
            if len(groups) > 1:
                copies = []
                for g in sorted(groups):
                    mapping[g][base] = _group_base(base, g)
                    copies.append(mapping[g][base])
                division.repeated[base] = copies
        partial = {base: contributes[base] for base in downstream}
        partial.update(self.synapse_outputs)
        for base, groups in partial.items():
            copies = []
            for k, g in enumerate(sorted(groups)):
                value = base.initial_value if k == 0 else np.zeros_like(base.initial_value)
                mapping[g][base] = _group_base(base, g, value)
                copies.append(mapping[g][base])
            division.partial[base] = copies

        for synapse, (groups, _) in self.sources.items():
            for sig in synapse.updates:
                copies = []
                for g in sorted(groups):
                    mapping[g][sig.base] = _group_base(sig.base, g)
                    copies.append(mapping[g][sig.base])
                division.repeated[sig.base] = copies
        renamed = {base for m in mapping for base in m}
        for probe, parts in self.report.probes.items():
            if any(sig.base in renamed for sig in parts.signals):
                raise CannotDivide(f"{probe} is already recorded in parts")

        replaced = {}
        todo = dict(op_groups)
        for op, (_, groups, _) in followers.items():
            todo.setdefault(op, groups)
        for op, groups in todo.items():
            if op in self.sources:
                continue  # below
            kind, sources, output = followers.get(op, (None, None, None))
            if kind == "feedback":  # each group's input adds every group's output
                copies = [
                    self.copy_op(op, {**mapping[g], output: mapping[source][output]}, g,
                                 n_groups)
                    for g in sorted(groups) for source in sorted(sources)
                ]
            else:
                copies = [self.copy_op(op, mapping[g], g, n_groups) for g in sorted(groups)]
            if len({id(c) for c in copies}) < len(copies):
                raise CannotDivide(f"{self.describe(op)} would run twice on the same signals")
            replaced[op] = copies
        for synapse, (groups, keep) in self.sources.items():
            replaced[synapse] = [synapse] * keep + [
                self.copy_op(synapse, mapping[g], g, n_groups) for g in sorted(groups)
            ]
        for op, copies in replaced.items():
            for new in copies:
                if new is not op:
                    self.register(op, new)
        new_ops = []
        for op in self.model.operators:
            if op in replaced:
                new_ops.extend(replaced[op])
            else:
                new_ops.append(op)
        self.model.operators[:] = new_ops
        self.replaced = replaced

        for probe in self.model.probes:
            sig = self.model.sig[probe]["in"]
            if sig.base in division.partial:
                groups = sorted(partial[sig.base])
                self.report.probes[probe] = ProbeParts(
                    "sum", 0, [view_on(sig, mapping[g][sig.base]) for g in groups]
                )
            elif sig.base in division.repeated:
                g = min(needs[sig.base])
                self.report.probes[probe] = ProbeParts(
                    "sum", 0, [view_on(sig, mapping[g][sig.base])]
                )
        return division

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

