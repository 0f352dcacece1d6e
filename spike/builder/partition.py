"""Dividing a built model into actors: the pieces that may run on different workers.

Nengo orders the operators of one step by the signals they touch: within a step a
signal is first *set*, then *incremented*, then *read*, and finally *updated*. An
update is seen by readers only at the next step. That one-step delay is the only place
where a model may be cut between processes without changing its results (nengo_mpi
cuts at the same place: a connection's synapse).

So an actor is a connected component of the operators under the relation "touch the
same signal within one step", where a signal that is only ever *updated* (never set or
incremented) does not join its readers to its updaters. In a Nengo model such a
signal is the output of a synapse (a ``SimProcess`` in update mode): the synapse stays
with the sending side and its filtered output is what travels. Everything that must
stay together falls out of this rule without special cases: objects joined by a
connection without synapse, learning rules with the connections they modify and the
signals of their error, probes with what they read.

``TimeUpdate`` (the step counter and clock) is deterministic and cheap, so every
worker runs its own copy rather than receiving the time.
"""

from dataclasses import dataclass, field

from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import SimPyFunc, TimeUpdate
from nengo.builder.processes import SimProcess
from nengo.ensemble import Ensemble, Neurons
from nengo.node import Node

from spike.builder.signals import clock_bases


class _UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, items):
        items = iter(items)
        first = next(items, None)
        if first is None:
            return
        root = self.find(first)
        for item in items:
            other = self.find(item)
            if other != root:
                self.parent[other] = root


@dataclass
class Actor:
    """A group of operators that must run in one process.

    Attributes
    ----------
    index : int
        Position in `Partition.actors`.
    ops : list of Operator
        The actor's operators, in the model's order.
    objects : list of NengoObject
        The Nengo objects whose build created these operators.
    n_neurons : int
        Neurons simulated by the actor (sum over its ``SimNeurons``).
    has_callables : bool
        True if the actor calls Python functions given by the user (Nodes, or
        functions on connections from Nodes or Direct-mode ensembles). Such actors
        run in the client unless the user places them on a worker.
    """

    index: int
    ops: list = field(default_factory=list)
    objects: list = field(default_factory=list)
    n_neurons: int = 0
    has_callables: bool = False
    part: str = ""  # "part 2/4 (neurons 100:200)" of a split ensemble, "group 1/2" of a divided actor

    @property
    def label(self):
        """A short human-readable description, naming the main objects."""
        main = [o for o in self.objects if isinstance(o, Ensemble)]
        main += [o for o in self.objects if isinstance(o, Node)]
        shown = main or self.objects
        names = ", ".join(str(o) for o in shown[:3])
        more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
        part = f"; {self.part}" if self.part else ""
        return f"actor {self.index} ({names}{more}{part})" if names else f"actor {self.index}"


@dataclass
class Partition:
    """The actors of a model and the signals that cross between them.

    Attributes
    ----------
    actors : list of Actor
    actor_of_op : dict
        ``{operator: actor index}``; replicated operators (``TimeUpdate``) are absent.
    replicated_ops : list of Operator
        Operators every peer runs for itself.
    crossing : dict
        ``{base signal: (updating actor, set of reading actors)}`` for every base
        signal that is read by an actor other than the one updating it.
    links : dict
        ``{(actor, actor): bytes per step}`` of crossing values between actors
        (keyed with the smaller index first).
    probe_actor : dict
        ``{probe: actor index or None}``: the actor holding the signal the probe
        records; None where the signal is a constant no operator writes. For a probe
        recorded in parts (a split ensemble's, see `spike.builder.split`), its first part.
    probe_part_actors : dict
        ``{probe: [actor index or None per part]}`` for probes recorded in parts.
    object_actors : dict
        ``{NengoObject: set of actor indices}`` for every object that owns operators.
    object_home : dict
        ``{NengoObject: actor index}``: where an object is placed when it is named in
        ``assignments``. For a Probe, the actor that records it; for an Ensemble (and
        its Neurons), the actor of its neurons; otherwise the actor of the object's
        first operator (a Connection's sending side, a Node's output).
    """

    actors: list
    actor_of_op: dict
    replicated_ops: list
    crossing: dict
    links: dict
    probe_actor: dict
    object_actors: dict
    object_home: dict
    probe_part_actors: dict = field(default_factory=dict)


def filters_a_constant(op, clock, is_written):
    """True for a process (a synapse) that sets and adds into nothing and reads only
    constants: the ``clock`` bases, and bases no operator writes or updates
    (``is_written(base)`` False), such as a Node's fixed output. It needs nothing from
    any other operator, so it can run wherever its readers are (here and in
    `spike.builder.passthrough`)."""
    return (
        isinstance(op, SimProcess) and not op.sets and not op.incs
        and all(sig.base in clock or not is_written(sig.base) for sig in op.reads)
    )


def _is_user_callable(op):
    return isinstance(op, SimPyFunc) and op.fn is not None


def partition_model(model, split=None):
    """Divide ``model`` (a built `nengo.builder.Model`) into actors.

    Parameters
    ----------
    model : nengo.builder.Model
        A model whose network has been built.
    split : SplitReport, optional
        The ensembles `spike.builder.split.split_ensembles` divided: their probes are
        recorded in parts, and their parts' actors say which part they hold.

    Returns
    -------
    Partition
    """
    owners = getattr(model, "spike_op_owner", {})
    ops = [op for op in model.operators if not isinstance(op, TimeUpdate)]
    replicated = [op for op in model.operators if isinstance(op, TimeUpdate)]
    clock = clock_bases(replicated)

    touched = {}  # base -> [writers (set/inc), updaters, readers] as op indices
    for i, op in enumerate(ops):
        for kind, sigs in enumerate(
            (list(op.sets) + list(op.incs), op.updates, op.reads)
        ):
            for sig in sigs:
                base = sig.base
                if base in clock:
                    continue
                touched.setdefault(base, ([], [], []))[kind].append(i)

    uf = _UnionFind(len(ops))
    for writers, updaters, readers in touched.values():
        if writers:
            uf.union(writers + updaters + readers)
        elif updaters:
            uf.union(updaters)
    # a synapse filtering a constant (a Node's fixed output) needs nothing from anyone:
    # it goes with its readers when they are one actor, so nothing crosses for it
    def is_written(base):
        writers, updaters, _ = touched.get(base, ((), (), ()))
        return bool(writers or updaters)

    for base, (writers, updaters, readers) in touched.items():
        if writers or not updaters or not readers:
            continue
        if len({uf.find(r) for r in readers}) == 1 and all(
            filters_a_constant(ops[u], clock, is_written) for u in updaters
        ):
            uf.union(updaters + readers[:1])

    # a RatesToSpikes neuron type adds two SimNeurons (rates, then spikes) on the same
    # neurons; the second reads the first's output, so count neurons only once
    neuron_inputs = {op.J.base for op in ops if isinstance(op, SimNeurons)}
    roots = {}
    actor_of_op = {}
    actors = []
    for i, op in enumerate(ops):
        root = uf.find(i)
        if root not in roots:
            roots[root] = len(actors)
            actors.append(Actor(index=len(actors)))
        actor = actors[roots[root]]
        actor.ops.append(op)
        actor_of_op[op] = actor.index
        if isinstance(op, SimNeurons) and op.output.base not in neuron_inputs:
            actor.n_neurons += op.output.size
        if _is_user_callable(op):
            actor.has_callables = True
        if split is not None and isinstance(op, SimNeurons) and op in split.part_of_op:
            ens, k = split.part_of_op[op]
            start, stop = split.splits[ens].bounds[k]
            actor.part = f"part {k + 1}/{split.splits[ens].n_parts} (neurons {start}:{stop})"
        if (split is not None and isinstance(op, SimNeurons) and op in split.group_of_op
                and "group" not in actor.part):
            g, n_groups = split.group_of_op[op]
            actor.part = (actor.part + " " if actor.part else "") + f"group {g + 1}/{n_groups}"

    object_actors = {}
    object_home = {}
    for op in ops:  # model order, so an object's first operator comes first
        owner = owners.get(op)
        if owner is not None:
            object_actors.setdefault(owner, set()).add(actor_of_op[op])
            object_home.setdefault(owner, actor_of_op[op])
            if isinstance(op, SimNeurons) and isinstance(owner, Ensemble):
                object_home[owner] = object_home[owner.neurons] = actor_of_op[op]
    for obj, indices in object_actors.items():
        for index in indices:
            if obj not in actors[index].objects:
                actors[index].objects.append(obj)
    # an Ensemble's neurons are reachable through the ensemble's actor
    for obj in list(object_actors):
        if isinstance(obj, Ensemble):
            object_actors.setdefault(obj.neurons, set()).update(object_actors[obj])

    crossing = {}
    for base, (writers, updaters, readers) in touched.items():
        if writers or not updaters:
            continue
        source = actor_of_op[ops[updaters[0]]]
        targets = {actor_of_op[ops[r]] for r in readers} - {source}
        if targets:
            crossing[base] = (source, targets)

    links = {}
    for base, (source, targets) in crossing.items():
        for target in targets:
            key = (min(source, target), max(source, target))
            links[key] = links.get(key, 0) + base.nbytes

    def actor_writing(signal):
        writers, updaters, _ = touched.get(signal.base, ((), (), ()))
        writing = list(writers) + list(updaters)
        return actor_of_op[ops[writing[0]]] if writing else None

    probe_actor = {}
    probe_part_actors = {}
    for probe in model.probes:
        if split is not None and probe in split.probes:
            signals = split.probes[probe].signals
            probe_part_actors[probe] = [actor_writing(s) for s in signals]
            probe_actor[probe] = probe_part_actors[probe][0]
        else:
            probe_actor[probe] = actor_writing(model.sig[probe]["in"])
        if probe_actor[probe] is not None:
            object_home[probe] = probe_actor[probe]

    return Partition(
        actors=actors,
        actor_of_op=actor_of_op,
        replicated_ops=replicated,
        crossing=crossing,
        links=links,
        probe_actor=probe_actor,
        object_actors=object_actors,
        object_home=object_home,
        probe_part_actors=probe_part_actors,
    )


def describe_object(obj):
    """How an object is named in error messages."""
    if isinstance(obj, Neurons):
        return f"{obj} of {obj.ensemble}"
    return str(obj)
