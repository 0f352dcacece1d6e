"""Which operators are joined into one actor (`spike.builder.partition`), in this process.

The rule: operators touching one signal within a step are joined; a signal that is
only ever updated (a synapse's output) does not join its readers to its updater, and
is what crosses between actors. Checked on small networks built with
`spike.builder.pipeline.prepare`, and on hand-made models for the corner cases.
"""

import nengo
import numpy as np
from nengo.builder.operator import Copy, SimPyFunc, TimeUpdate
from nengo.builder.processes import SimProcess
from nengo.builder.signal import Signal

from spike.builder.partition import (
    Actor,
    describe_object,
    filters_a_constant,
    partition_model,
)
from spike.builder.pipeline import prepare


def actor_of(partition, obj):
    """The one actor holding ``obj``'s operators."""
    (index,) = partition.object_actors[obj]
    return index


def crossing_names(partition):
    return {base.name: route for base, route in partition.crossing.items()}


def chain():
    """stim (a constant) -> a -> b -(no synapse)-> c, probes on a's neurons and on c."""
    with nengo.Network(seed=0) as net:
        stim = nengo.Node([0.3], label="stim")
        a = nengo.Ensemble(10, 1, label="a")
        b = nengo.Ensemble(12, 1, label="b")
        c = nengo.Ensemble(14, 1, label="c")
        nengo.Connection(stim, a)
        ab = nengo.Connection(a, b)
        bc = nengo.Connection(b, c, synapse=None)
        spikes = nengo.Probe(a.neurons)
        filtered = nengo.Probe(c, synapse=0.01)
    return net, (stim, a, b, c, ab, bc, spikes, filtered)


def test_a_synapse_separates_its_ends_and_a_connection_without_one_joins_them():
    net, (_, a, b, c, ab, bc, _, _) = chain()
    partition = prepare(net).partition
    assert actor_of(partition, b) == actor_of(partition, c) == actor_of(partition, bc)
    assert actor_of(partition, a) != actor_of(partition, b)
    # a->b: its synapse runs with a (the sending side), its output is read by b's actor
    assert partition.object_actors[ab] == {actor_of(partition, a), actor_of(partition, b)}
    assert partition.object_home[ab] == actor_of(partition, a)
    sender, receiver = actor_of(partition, a), actor_of(partition, b)
    crossing = {
        base: route for base, route in partition.crossing.items()
        if route == (sender, {receiver})
    }
    (base,) = crossing
    assert "Lowpass(tau=0.005)" in base.name and base.nbytes == 8
    actors = partition.actors
    assert actors[sender].n_neurons == 10 and actors[receiver].n_neurons == 12 + 14
    assert all(op in actors[i].ops for op, i in partition.actor_of_op.items())
    assert sorted(id(op) for a in actors for op in a.ops) == sorted(
        id(op) for op in partition.actor_of_op
    )


def test_a_synapse_filtering_a_constant_runs_with_its_reader():
    """stim is a fixed Node: its connection's synapse needs nothing from anyone and
    goes with a, so nothing crosses for it."""
    net, (stim, a, *_) = chain()
    partition = prepare(net).partition
    (connection,) = [c for c in net.all_connections if c.pre is stim]
    assert partition.object_actors[connection] == {actor_of(partition, a)}
    assert not any(actor_of(partition, a) in targets
                   for _, targets in partition.crossing.values())


def test_probes_go_with_the_signal_they_read():
    net, (_, a, _, c, _, _, spikes, filtered) = chain()
    partition = prepare(net).partition
    # without a synapse a probe reads a's neurons within the step: it is with them
    assert partition.probe_actor[spikes] == actor_of(partition, a)
    assert partition.object_home[spikes] == actor_of(partition, a)
    # with one, the probe's synapse runs with c and its output crosses to the probe
    probe_actor = partition.probe_actor[filtered]
    assert probe_actor not in (actor_of(partition, a), actor_of(partition, c))
    assert partition.object_home[filtered] == probe_actor
    assert {"Lowpass(tau=0.01)" in base.name for base, route in partition.crossing.items()
            if route == (actor_of(partition, c), {probe_actor})} == {True}


def test_a_probe_of_a_constant_has_no_actor():
    with nengo.Network() as net:
        const = nengo.Node([1.0, 2.0], label="const")
        probe = nengo.Probe(const)
    partition = prepare(net).partition
    # no actor writes the Node's fixed output; the probe's own operator is placed
    assert partition.probe_actor == {probe: None}
    (actor,) = partition.actors
    assert partition.object_home == {probe: actor.index} and actor.objects == [probe]
    assert not partition.crossing and not partition.links


def test_crossing_values_add_up_per_pair_of_actors():
    """A recurrent pair of 2-D ensembles: a 16-byte synapse output each way, and one
    link of 32 bytes keyed with the smaller index first."""
    with nengo.Network(seed=1) as net:
        a = nengo.Ensemble(20, 2, label="a")
        b = nengo.Ensemble(20, 2, label="b")
        nengo.Connection(a, b)
        nengo.Connection(b, a, synapse=0.02)
        nengo.Connection(b, a, synapse=0.03)
    partition = prepare(net).partition
    ia, ib = actor_of(partition, a), actor_of(partition, b)
    routes = sorted(
        (source, tuple(targets), base.nbytes)
        for base, (source, targets) in partition.crossing.items()
    )
    assert routes == sorted([(ia, (ib,), 16), (ib, (ia,), 16), (ib, (ia,), 16)])
    assert partition.links == {(min(ia, ib), max(ia, ib)): 48}


def test_learning_rules_join_what_they_read_and_modify():
    """BCM reads the post-synaptic activities within the step and modifies the
    weights: pre, post and the connection are one actor. Without the rule the same
    connection's synapse separates them. PES goes with the connection it modifies
    (the sending side), the error reaching it through a synapse."""

    def neuron_weights(rule):
        with nengo.Network(seed=2) as net:
            pre = nengo.Ensemble(10, 1, label="pre")
            post = nengo.Ensemble(10, 1, label="post")
            conn = nengo.Connection(
                pre.neurons, post.neurons, transform=np.zeros((10, 10)),
                learning_rule_type=rule,
            )
        return prepare(net).partition, pre, post, conn

    partition, pre, post, conn = neuron_weights(nengo.BCM())
    assert len(partition.actors) == 1 and not partition.crossing
    assert partition.actors[0].objects[:2] == [pre, post]
    partition, pre, post, conn = neuron_weights(None)
    assert actor_of(partition, pre) != actor_of(partition, post)
    assert len(partition.crossing) == 1

    with nengo.Network(seed=2) as net:
        pre = nengo.Ensemble(10, 1, label="pre")
        post = nengo.Ensemble(10, 1, label="post")
        error = nengo.Ensemble(10, 1, label="error")
        conn = nengo.Connection(pre, post, learning_rule_type=nengo.PES())
        nengo.Connection(post, error)
        to_rule = nengo.Connection(error, conn.learning_rule)
    model = prepare(net).model
    partition = partition_model(model)
    (pes,) = [op for op in model.operators if type(op).__name__ == "SimPES"]
    assert partition.actor_of_op[pes] == actor_of(partition, pre)
    assert len({actor_of(partition, e) for e in (pre, post, error)}) == 3
    assert partition.object_actors[to_rule] == {
        actor_of(partition, error), actor_of(partition, pre)
    }


def test_the_clock_is_replicated_and_joins_nothing():
    """Two processes of the time (they read the clock) feeding two ensembles: four
    actors, the clock's TimeUpdate in none of them; a Node function is a callable."""
    with nengo.Network(seed=3) as net:
        white = nengo.Node(nengo.processes.WhiteSignal(1, high=5), size_out=1, label="w")
        func = nengo.Node(lambda t: t, label="f")
        a = nengo.Ensemble(10, 1, label="a")
        b = nengo.Ensemble(10, 1, label="b", neuron_type=nengo.RegularSpiking(nengo.LIFRate()))
        nengo.Connection(white, a)
        nengo.Connection(func, b)
    model = prepare(net).model
    partition = partition_model(model)
    (clock,) = [op for op in model.operators if isinstance(op, TimeUpdate)]
    assert partition.replicated_ops == [clock]
    assert clock not in partition.actor_of_op
    assert not any(clock in actor.ops for actor in partition.actors)
    homes = [actor_of(partition, obj) for obj in (white, func, a, b)]
    assert len(set(homes)) == 4
    callables = [partition.actors[i].has_callables for i in homes]
    assert callables == [False, True, False, False]
    # RegularSpiking adds a second SimNeurons on b's neurons: counted once
    assert [partition.actors[i].n_neurons for i in homes] == [0, 0, 10, 10]


def constant_filter_model(n_readers):
    """A hand-made model: a synapse filtering a constant, its output copied by
    ``n_readers`` operators into signals of their own (nothing else joins them)."""
    model = nengo.builder.Model(dt=0.001)
    const = Signal(np.ones(2), name="const", readonly=True)
    out = Signal(np.zeros(2), name="filtered")
    synapse = SimProcess(nengo.Lowpass(0.01), const, out, model.time, mode="update")
    model.add_op(synapse)
    readers = []
    for i in range(n_readers):
        reader = Copy(out, Signal(np.zeros(2), name=f"copy {i}"))
        model.add_op(reader)
        readers.append(reader)
    return model, synapse, readers, out


def test_a_constant_filter_joins_its_readers_only_when_they_are_one_actor():
    model, synapse, (reader,), out = constant_filter_model(1)
    partition = partition_model(model)
    assert partition.actor_of_op[synapse] == partition.actor_of_op[reader]
    assert len(partition.actors) == 1 and not partition.crossing

    model, synapse, readers, out = constant_filter_model(2)
    partition = partition_model(model)
    sides = [partition.actor_of_op[op] for op in [synapse] + readers]
    assert len(set(sides)) == 3  # the synapse stays alone, sending to both
    assert partition.crossing == {out: (sides[0], set(sides[1:]))}
    assert partition.links == {(sides[0], sides[1]): 16, (sides[0], sides[2]): 16}


def test_filters_a_constant():
    const = Signal(np.ones(1), name="const")
    varying = Signal(np.ones(1), name="varying")
    out = Signal(np.zeros(1), name="out")
    t = Signal(np.zeros(()), name="t")
    clock = {t}
    written = {varying, out}

    def is_written(base):
        return base in written

    def lowpass(input, mode="update"):
        return SimProcess(nengo.Lowpass(0.01), input, out, t, mode=mode)

    assert filters_a_constant(lowpass(const), clock, is_written)
    assert not filters_a_constant(lowpass(varying), clock, is_written)  # reads a variable
    assert not filters_a_constant(lowpass(const, mode="inc"), clock, is_written)  # adds
    assert not filters_a_constant(lowpass(const, mode="set"), clock, is_written)  # sets
    # a process of the time alone (no input) reads only the clock
    assert filters_a_constant(lowpass(None), clock, is_written)
    assert not filters_a_constant(Copy(const, out), clock, is_written)  # not a process
    func = SimPyFunc(out, lambda t: 0.0, t, None)
    assert not filters_a_constant(func, clock, is_written)


def test_split_parts_are_named_and_record_their_probe_parts():
    with nengo.Network(seed=4) as net:
        a = nengo.Ensemble(100, 1, label="a")
        b = nengo.Ensemble(10, 1, label="b")
        nengo.Connection(a, b)
        probe = nengo.Probe(a, synapse=0.01)
    partition = prepare(net, max_neurons=40).partition
    parts = sorted(partition.object_actors[a])
    assert [partition.actors[i].part for i in parts] == [
        "part 1/3 (neurons 0:33)", "part 2/3 (neurons 33:66)", "part 3/3 (neurons 66:100)"
    ]
    assert [partition.actors[i].n_neurons for i in parts] == [33, 33, 34]
    assert partition.actors[parts[1]].label == "actor 1 (<Ensemble 'a'>; part 2/3 (neurons 33:66))"
    # each part filters its own share of the probe, recorded by an actor of its own
    recorders = partition.probe_part_actors[probe]
    assert len(recorders) == 3 and len(set(recorders) | set(parts)) == 6
    assert partition.probe_actor[probe] == recorders[0]


def test_actor_labels_name_the_main_objects():
    with nengo.Network() as net:
        ensembles = [nengo.Ensemble(5, 1, label=f"e{i}") for i in range(5)]
        node = nengo.Node(size_in=1, label="sum")
        for ens in ensembles:
            nengo.Connection(ens, node, synapse=None)
    a = ensembles[0]
    assert Actor(index=3, objects=[node, a]).label == "actor 3 (<Ensemble 'e0'>, <Node 'sum'>)"
    assert Actor(index=2, objects=ensembles).label == (
        "actor 2 (<Ensemble 'e0'>, <Ensemble 'e1'>, <Ensemble 'e2'> and 2 more)"
    )
    assert Actor(index=1).label == "actor 1"
    (actor,) = prepare(net).partition.actors  # joined through the passthrough Node
    assert actor.label.endswith("<Ensemble 'e2'> and 3 more)")


def test_describe_object_names_neurons_with_their_ensemble():
    with nengo.Network():
        ens = nengo.Ensemble(5, 1, label="motor")
        node = nengo.Node([0], label="input")
    assert describe_object(ens.neurons) == "<Neurons of <Ensemble 'motor'>> of <Ensemble 'motor'>"
    assert describe_object(ens) == "<Ensemble 'motor'>"
    assert describe_object(node) == "<Node 'input'>"
