"""Merging a peer's operators with nengo's own op-merging optimizer.

`nengo.Simulator(optimize=True)` merges operators of the same type (all LIF neuron
updates, all encoder products, ...) into a few large ones, which is most of its speed
in Python. It cannot run on the whole model before placement (merged operators would
span actors), so each peer runs it on its own share, after placement and in
parallel. The signals the peer shares with others (its routes), records (probes) or
reports (``bases``) may be moved into larger merged signals: they are tracked
through the optimizer and replaced by the views it leaves in their place.

nengo's optimizer visits operators in the order of Python sets of operators, that is
by memory address, so which operators it merges, and in which order their signals are
concatenated, change from run to run; the results do not, but compiled code, whose
cache key is the step's structure, would be recompiled on every run. `merge_plan`
therefore runs it with its grouping made deterministic: operators are visited in the
order the builder made them (see `_builder_order`).

nengo never merges ``SimProcess`` operators, so the operators that draw random
numbers keep their identity and their random state (see `spike.runtime.rng`). Neither does
Spike let it merge neuron operators that carry their own ``RandomState`` (stochastic
neuron types): nengo would make the merged operator draw from the first one's state
(it warns that this changes results), and which ensembles share a worker would then
change the spikes.
"""

import contextlib
import copy
import dataclasses

import nengo.builder.optimizer as nengo_optimizer
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import DotInc
from nengo.builder.optimizer import OpMerger, optimize
from nengo.utils.simulator import operator_dependency_graph

from spike.builder.order import stable_toposort
from spike.plan.peers import Route


class OwnRngSimNeurons(SimNeurons):
    """A ``SimNeurons`` with its own ``RandomState``; nengo's optimizer skips it
    (it looks mergers up by exact type)."""


class LargeDotInc(DotInc):
    """A ``DotInc`` with a large matrix; left unmerged. Merging saves the Python
    overhead of many small operators, but turns large products into block-sparse
    ones, which are slower (measured on the two-20k-ensemble benchmark)."""


LARGE_MATRIX_ELEMENTS = 1 << 16
"""Matrices with at least this many elements are not merged (512 KiB of float64)."""


class _PeerModel:
    """The part of a nengo Model the optimizer uses: operators and signal dicts."""

    def __init__(self, operators, tracked):
        self.operators = list(operators)
        self.sig = {"tracked": tracked}

    def add_op(self, op):
        self.operators.append(op)


@contextlib.contextmanager
def _builder_order(rank):
    """Make nengo's optimizer visit operators by ``rank`` instead of set order.

    The optimizer groups the operators it might merge with its module's ``groupby``,
    whose input is a set; here each group lists its operators by ``rank`` (the
    builder's order), and an operator the optimizer makes gets the lowest rank of
    those it replaces (ranks stay unique: an operator is merged at most once at a
    time). Nothing else in the optimizer depends on set order. nengo is pinned to
    4.1.*, whose optimizer this follows.
    """
    groupby, merge = nengo_optimizer.groupby, OpMerger.merge
    merge_attribute = OpMerger.__dict__["merge"]

    def ranked_groupby(items, keyfunc=lambda item: item):
        return groupby(sorted(items, key=rank.__getitem__), keyfunc)

    def ranked_merge(ops):
        merged_op, replacements = merge(ops)
        rank[merged_op] = min(rank[op] for op in ops)
        return merged_op, replacements

    nengo_optimizer.groupby = ranked_groupby
    OpMerger.merge = staticmethod(ranked_merge)
    try:
        yield rank
    finally:
        nengo_optimizer.groupby = groupby
        OpMerger.merge = merge_attribute


def merge_plan(plan):
    """Merge ``plan``'s operators; return the number of operators removed.

    ``plan``'s lists are replaced, never changed in place (a shallow copy of a plan
    may be merged while the original is kept). Routes, probes and ``plan.bases`` then
    name the signals the optimizer leaves in place of the originals (views of merged
    signals).
    """
    # the optimizer rebinds the signal lists of the operators it touches: work on
    # shallow copies, so the model's operators (in the client) stay as built, while
    # processes, neuron types and Node functions stay the user's own objects
    plan.ops = [copy.copy(op) for op in plan.ops]
    positions = dict(zip(plan.ops, plan.order))
    tracked = {}
    for kind, routes in (("send", plan.sends), ("recv", plan.recvs)):
        for peer, route in routes.items():
            for b, base in enumerate(route.bases):
                tracked[(kind, peer, b)] = base
    for p, probe in enumerate(plan.probes):
        tracked[("probe", p)] = probe.signal
    for i, base in enumerate(plan.bases):
        tracked[("base", i)] = base

    for op in plan.ops:
        if type(op) is SimNeurons and op.state_extra:
            op.__class__ = OwnRngSimNeurons
        elif type(op) is DotInc and op.A.size >= LARGE_MATRIX_ELEMENTS:
            op.__class__ = LargeDotInc
    model = _PeerModel(plan.ops, tracked)
    dg = operator_dependency_graph(model.operators)
    before = len(model.operators)
    with _builder_order({op: i for i, op in enumerate(model.operators)}) as rank:
        optimize(model, dg)
    tracked = model.sig["tracked"]

    def moved(kind, peer, route):
        return Route([tracked[(kind, peer, b)] for b in range(len(route.bases))])

    plan.sends = {peer: moved("send", peer, r) for peer, r in plan.sends.items()}
    plan.recvs = {peer: moved("recv", peer, r) for peer, r in plan.recvs.items()}
    plan.probes = [
        dataclasses.replace(probe, signal=tracked[("probe", p)])
        for p, probe in enumerate(plan.probes)
    ]
    plan.bases = [tracked[("base", i)] for i in range(len(plan.bases))]

    ops = stable_toposort(model.operators, rank)
    plan.ops = ops
    plan.order = [positions.get(op, -1) for op in ops]
    return before - len(ops)
