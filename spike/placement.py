"""Placing actors on peers: the client (peer 0) and the workers (peers 1..n).

This module is pure logic (no I/O). `balance` places actors largest first (LPT, with a
heap) and lets actors without neurons follow their traffic; `place` uses it with neuron
counts as the cost, `spike.allocation` with calibrated costs. Actors that call user
Python functions stay in the client so their side effects happen where the user is.
``assignments`` override both.
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

    # everything else through the one balancing routine (also used for allocation
    # files), with neurons as the cost: workers are 0-based there, peers 1-based
    entries = [
        {
            "index": actor.index,
            "seconds_per_step": actor_cost(actor),
            "memory_bytes": 0,
            "neurons": actor.n_neurons,
            "client": peer_of_actor[actor.index] == CLIENT,
            "worker": None if not peer_of_actor[actor.index] else peer_of_actor[actor.index] - 1,
        }
        for actor in actors
    ]
    links = [(a, b, nbytes) for (a, b), nbytes in partition.links.items()]
    worker_of = balance(entries, links, n_workers)
    return [CLIENT if worker_of[a.index] is None else worker_of[a.index] + 1 for a in actors]


def balance(actors, links, n_workers):
    """Assign a worker to every actor that is not kept in the client.

    Parameters
    ----------
    actors : list of dict
        With ``index``, ``seconds_per_step``, ``memory_bytes``, ``neurons``,
        ``client`` (True: stays in the client) and optionally ``worker`` (fixed).
    links : list of (int, int, int)
        Bytes per step between two actors.
    n_workers : int

    Returns
    -------
    dict
        ``{actor index: worker (0-based) or None for the client}``.

    Actors with neurons are placed largest first on the worker with the least
    compute so far, ties going to the one with the least memory (LPT with a heap);
    the others (probes, passthrough nodes, filters) follow the actor they exchange
    the most bytes with, so they add no traffic.
    """
    worker_of = {}
    compute = [0.0] * n_workers
    memory = [0] * n_workers
    for a in actors:
        if a.get("client"):
            worker_of[a["index"]] = None
        elif a.get("worker") is not None:
            worker_of[a["index"]] = int(a["worker"])
            compute[a["worker"]] += a["seconds_per_step"]
            memory[a["worker"]] += a["memory_bytes"]
    heap = [(compute[w], memory[w], w) for w in range(n_workers)]
    heapq.heapify(heap)
    big = [a for a in actors if a["index"] not in worker_of and a.get("neurons", 0) > 0]
    for a in sorted(big, key=lambda a: (-a["seconds_per_step"], -a["memory_bytes"], a["index"])):
        c, m, w = heapq.heappop(heap)
        worker_of[a["index"]] = w
        compute[w] = c + a["seconds_per_step"]
        memory[w] = m + a["memory_bytes"]
        heapq.heappush(heap, (compute[w], memory[w], w))

    neighbours = {}
    for a, b, nbytes in links:
        neighbours.setdefault(a, []).append((b, nbytes))
        neighbours.setdefault(b, []).append((a, nbytes))
    by_index = {a["index"]: a for a in actors}
    pending = [a["index"] for a in actors if a["index"] not in worker_of]
    while pending:
        waiting = []
        for index in pending:
            traffic = {}
            for other, nbytes in neighbours.get(index, ()):
                if other in worker_of and worker_of[other] is not None:
                    w = worker_of[other]
                    traffic[w] = traffic.get(w, 0) + nbytes
            if not traffic and neighbours.get(index) and len(waiting) < len(pending) - 1:
                waiting.append(index)  # wait until a neighbour is placed
                continue
            if traffic:
                w = max(traffic, key=lambda w: (traffic[w], -compute[w], -w))
            else:
                w = min(range(n_workers), key=lambda w: (compute[w], w))
            worker_of[index] = w
            compute[w] += by_index[index]["seconds_per_step"]
            memory[w] += by_index[index]["memory_bytes"]
        if len(waiting) == len(pending):  # a cycle of followers: break it
            index = waiting.pop(0)
            w = min(range(n_workers), key=lambda w: (compute[w], w))
            worker_of[index] = w
            compute[w] += by_index[index]["seconds_per_step"]
            memory[w] += by_index[index]["memory_bytes"]
        pending = waiting
    return worker_of
