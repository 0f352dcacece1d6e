"""The orders operators run in: nengo's step order, and a stable one for a subset."""

from nengo.utils.graphs import toposort
from nengo.utils.simulator import operator_dependency_graph


def stable_toposort(ops, rank):
    """``ops`` in dependency order, ties broken by ``rank[op]``.

    nengo's toposort visits sets, so its order changes from run to run; this one is
    the same whenever ``rank`` is (an operator's index in the list the builder made),
    which keeps compiled code's cache keys stable.
    """
    import heapq

    edges = operator_dependency_graph(ops)
    waiting = {op: 0 for op in edges}
    for successors in edges.values():
        for op in successors:
            waiting[op] += 1
    ready = [(rank[op], op) for op, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, op = heapq.heappop(ready)
        ordered.append(op)
        for successor in edges[op]:
            waiting[successor] -= 1
            if waiting[successor] == 0:
                heapq.heappush(ready, (rank[successor], successor))
    return [op for op in ordered if hasattr(op, "make_step")]


def step_order(model):
    """The reference simulator's operator order for ``model``."""
    dg = operator_dependency_graph(model.operators)
    return [op for op in toposort(dg) if hasattr(op, "make_step")]


def model_step_order(model):
    """The step order of a model `split_model` has seen (no second sort if nothing
    was split or divided)."""
    report = model.spike_split
    if not report.splits and not report.divisions:
        return model.spike_rng_order
    return step_order(model)
