"""Placing actors on peers: the client (peer 0) and the workers (peers 1..n).

This module is pure logic (no I/O). The default placer balances neuron counts with a
largest-first greedy (LPT); actors that call user Python functions stay in the client
so their side effects happen where the user is. ``assignments`` override both.
"""

import heapq

from nengo.network import Network

from .exceptions import PlacementError
from .partition import describe_object

CLIENT = 0
"""Peer index of the client process."""

CLIENT_NAME = "client"
"""The value to use in ``assignments`` to keep an object in the client."""


def _peer_of_assignment(obj, value, n_workers):
    if isinstance(value, str):
        if value != CLIENT_NAME:
            raise PlacementError(
                f"Assignment of {describe_object(obj)} to {value!r}: use a worker "
                f"index (0..{n_workers - 1}) or {CLIENT_NAME!r}"
            )
        return CLIENT
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise PlacementError(
            f"Assignment of {describe_object(obj)} to {value!r}: not a worker index"
        ) from None
    if index != value or not 0 <= index < n_workers:
        raise PlacementError(
            f"{describe_object(obj)} is assigned to worker {value!r}, but there are "
            f"only {n_workers} workers (0..{n_workers - 1})"
        )
    return index + 1


def _expand_assignments(assignments):
    """Objects of assigned Networks inherit the network's value; explicit wins."""
    expanded = {}
    networks = [(o, v) for o, v in assignments.items() if isinstance(o, Network)]
    for network, value in networks:
        for obj in network.all_objects:
            if not isinstance(obj, Network):
                expanded.setdefault(obj, value)
    for obj, value in assignments.items():
        if not isinstance(obj, Network):
            expanded[obj] = value
    return expanded


def actor_cost(actor):
    """Relative compute cost used by the default placer (neurons, at least 1)."""
    return max(actor.n_neurons, 1)


def place(partition, n_workers, assignments=None):
    """Choose a peer for every actor.

    Parameters
    ----------
    partition : Partition
        The model's actors.
    n_workers : int
        Number of worker processes (peers ``1..n_workers``).
    assignments : dict, optional
        ``{nengo_object: worker_index or "client"}``. A Network assigns all of its
        objects; each object places its home actor (see `Partition.object_home`). Objects joined within one step must share a worker; asking otherwise
        raises `PlacementError` naming them.

    Returns
    -------
    list of int
        The peer of each actor, indexed like ``partition.actors``.
    """
    actors = partition.actors
    fixed = {}  # actor index -> (peer, object that fixed it)
    for obj, value in _expand_assignments(assignments or {}).items():
        index = partition.object_home.get(obj)
        if index is None:
            if obj in partition.probe_actor:
                continue  # a probe of a constant: nothing to place
            raise PlacementError(
                f"{describe_object(obj)} is in `assignments` but is not part of the "
                "simulated model"
            )
        peer = _peer_of_assignment(obj, value, n_workers)
        if index in fixed and fixed[index][0] != peer:
            other = fixed[index][1]
            raise PlacementError(
                f"{describe_object(obj)} and {describe_object(other)} must run "
                "on the same worker: they exchange values within a time step "
                "(a connection without synapse, a learning rule or a probe joins "
                "them), but they are assigned to different workers"
            )
        fixed.setdefault(index, (peer, obj))

    peer_of_actor = [None] * len(actors)
    for index, (peer, _) in fixed.items():
        peer_of_actor[index] = peer
    for actor in actors:
        if peer_of_actor[actor.index] is None and actor.has_callables:
            peer_of_actor[actor.index] = CLIENT

    load = [0] * (n_workers + 1)
    for actor in actors:
        if peer_of_actor[actor.index] is not None:
            load[peer_of_actor[actor.index]] += actor_cost(actor)

    # actors with neurons: largest first onto the least loaded worker
    heap = [(load[peer], peer) for peer in range(1, n_workers + 1)]
    heapq.heapify(heap)
    free = [a for a in actors if peer_of_actor[a.index] is None and a.n_neurons > 0]
    for actor in sorted(free, key=lambda a: (-actor_cost(a), a.index)):
        cost, peer = heapq.heappop(heap)
        peer_of_actor[actor.index] = peer
        load[peer] = cost + actor_cost(actor)
        heapq.heappush(heap, (load[peer], peer))

    # the rest (probes, passthrough Nodes, processes) go where their traffic goes
    _place_followers(partition, peer_of_actor, load, n_workers)
    return peer_of_actor


def _place_followers(partition, peer_of_actor, load, n_workers):
    neighbours = {}
    for (a, b), nbytes in partition.links.items():
        neighbours.setdefault(a, []).append((b, nbytes))
        neighbours.setdefault(b, []).append((a, nbytes))
    pending = [a.index for a in partition.actors if peer_of_actor[a.index] is None]
    while pending:
        still = []
        for index in pending:
            traffic = {}
            for other, nbytes in neighbours.get(index, ()):
                peer = peer_of_actor[other]
                if peer is not None:
                    traffic[peer] = traffic.get(peer, 0) + nbytes
            workers = {p: t for p, t in traffic.items() if p != CLIENT}
            if workers:
                peer = max(workers, key=lambda p: (workers[p], -load[p], -p))
            elif neighbours.get(index) and len(still) < len(pending) - 1:
                still.append(index)  # wait until a neighbour is placed
                continue
            else:
                peer = min(range(1, n_workers + 1), key=lambda p: (load[p], p))
            peer_of_actor[index] = peer
            load[peer] += actor_cost(partition.actors[index])
        if len(still) == len(pending):
            index = still.pop(0)
            peer = min(range(1, n_workers + 1), key=lambda p: (load[p], p))
            peer_of_actor[index] = peer
            load[peer] += actor_cost(partition.actors[index])
        pending = still
