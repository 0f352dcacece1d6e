"""Placing actors on peers: the client (peer 0) and the workers (peers 1..n).

This module is pure logic (no I/O). `balance` is the one placing routine: `place` and
`spike.plan.allocation` both use it with calibrated costs (`actor_entry`). It has two
methods and, by default, keeps the better by the `step_estimate` cost model:

- ``"greedy"``: largest first on the least loaded worker (LPT, with a heap); actors
  without neurons follow the actor they exchange the most bytes with;
- ``"graph"``: a multilevel graph partition (METIS, through pymetis) of the actors
  weighted by compute and memory, cutting as few bytes per step as it can; over
  several machines it first divides the machines, then each machine's workers, so
  the least traffic crosses hosts.

Actors that call user Python functions stay in the client so their side effects
happen where the user is. ``assignments`` override both.
"""

import heapq
import warnings

from nengo.network import Network

from spike.builder.partition import describe_object
from spike.exceptions import PlacementError
from spike.plan.calibration import DEFAULT_CALIBRATION, EXCHANGE
from spike.plan.cost import actor_work

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


def actor_entry(actor, calibration):
    """An actor as `balance` sees it: estimated seconds per step and bytes held
    (`spike.plan.cost.actor_work`)."""
    work, memory = actor_work(actor)
    return {
        "index": actor.index,
        "seconds_per_step": calibration.seconds(work),
        "memory_bytes": memory,
        "neurons": actor.n_neurons,
    }


def place(partition, n_workers, assignments=None, calibration=None):
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
    calibration : Calibration, optional
        Seconds per unit of work and exchange costs (default:
        `spike.plan.calibration.DEFAULT_CALIBRATION`; a Simulator passes this
        machine's, `spike.plan.calibration.machine_calibration`).

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
    # files): workers are 0-based there, peers 1-based
    entries, links, costs = placement_inputs(partition, peer_of_actor, calibration)
    worker_of = balance(entries, links, n_workers, costs=costs)
    return [CLIENT if worker_of[a.index] is None else worker_of[a.index] + 1 for a in actors]


def placement_inputs(partition, peer_of_actor=None, calibration=None):
    """`balance`'s inputs for ``partition``: (actor entries, links, exchange costs).

    ``peer_of_actor`` fixes actors (None: free; actors with Python callables stay
    in the client either way).
    """
    if calibration is None:
        calibration = DEFAULT_CALIBRATION
    peer_of_actor = peer_of_actor or [None] * len(partition.actors)
    entries = []
    for actor in partition.actors:
        peer = peer_of_actor[actor.index]
        entry = actor_entry(actor, calibration)
        entry["client"] = peer == CLIENT or (peer is None and actor.has_callables)
        entry["worker"] = None if not peer else peer - 1
        entries.append(entry)
    links = [(a, b, nbytes) for (a, b), nbytes in sorted(partition.links.items())]
    return entries, links, calibration.exchange_costs()


def balance(actors, links, n_workers, workers_per_machine=None, method="auto",
            costs=None):
    """Assign a worker to every actor that is not kept in the client.

    Parameters
    ----------
    actors : list of dict
        With ``index``, ``seconds_per_step``, ``memory_bytes``, ``neurons``,
        ``client`` (True: stays in the client) and optionally ``worker`` (fixed).
    links : list of (int, int, int)
        Bytes per step between two actors.
    n_workers : int
    workers_per_machine : int, optional
        Workers ``m * k .. m * k + k - 1`` share machine ``m`` (default: all on one).
    method : {"auto", "greedy", "graph"}
        ``"auto"`` computes both and keeps the one with the shorter `step_estimate`
        (the greedy one on a tie, or when an actor has a fixed worker, which METIS
        cannot respect).
    costs : ExchangeCosts, optional
        Per-step exchange costs used to compare placements (default: `EXCHANGE`).

    Returns
    -------
    dict
        ``{actor index: worker (0-based) or None for the client}``.
    """
    if method not in ("auto", "greedy", "graph"):
        raise ValueError(f"method must be 'auto', 'greedy' or 'graph' (got {method!r})")
    k = workers_per_machine or n_workers
    if method == "greedy" or any(a.get("worker") is not None for a in actors):
        return balance_greedy(actors, links, n_workers)
    graph = balance_graph(actors, links, n_workers, k)
    if graph is None:
        return balance_greedy(actors, links, n_workers)
    if method == "graph":
        return graph
    greedy = balance_greedy(actors, links, n_workers)
    costs = costs or EXCHANGE
    if step_estimate(actors, links, graph, n_workers, k, costs) < step_estimate(
        actors, links, greedy, n_workers, k, costs
    ):
        return graph
    return greedy


def balance_greedy(actors, links, n_workers):
    """Largest first (LPT with a heap), then actors without neurons follow traffic.

    Actors with neurons are placed largest first on the worker with the least
    compute so far, ties going to the one with the least memory; the others
    (probes, passthrough nodes, filters) follow the actor they exchange the most
    bytes with, so they add no traffic.
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


GRAPH_IMBALANCE = 1.03
"""METIS's allowed imbalance per constraint (its ``ufactor`` is 1000 * (x - 1))."""


def balance_graph(actors, links, n_workers, workers_per_machine=None):
    """A METIS partition of the actors, or None when there is nothing to partition.

    Vertices are the actors not kept in the client, with two weights (compute and
    memory, each scaled to integers); edges carry the bytes per step between
    actors. With several machines, the actors are first divided among machines and
    then each machine's share among its workers.
    """
    free = [a for a in actors if not a.get("client")]
    if n_workers == 1 or len(free) <= n_workers:
        return None
    k = workers_per_machine or n_workers
    n_machines = -(-n_workers // k)
    worker_of = {a["index"]: None for a in actors if a.get("client")}
    if n_machines > 1 and k > 1:
        machine_of = _metis_parts(free, links, n_machines)
        for m in range(n_machines):
            mine = [a for a in free if machine_of[a["index"]] == m]
            if len(mine) <= k:
                parts = {a["index"]: i for i, a in enumerate(mine)}
            else:
                parts = _metis_parts(mine, links, k)
            for index, part in parts.items():
                worker_of[index] = m * k + part
    else:
        worker_of.update(_metis_parts(free, links, n_workers))
    return worker_of


def _metis_parts(actors, links, n_parts):
    """``{actor index: part}`` from METIS for ``actors`` (links to others ignored)."""
    import pymetis

    position = {a["index"]: i for i, a in enumerate(actors)}
    adjacent = [dict() for _ in actors]
    for a, b, nbytes in links:
        i, j = position.get(a), position.get(b)
        if i is None or j is None or i == j:
            continue
        weight = max(int(nbytes), 1)
        adjacent[i][j] = adjacent[i].get(j, 0) + weight
        adjacent[j][i] = adjacent[j].get(i, 0) + weight
    starts, targets, edge_weights = [0], [], []
    for neighbours in adjacent:
        for j in sorted(neighbours):
            targets.append(j)
            edge_weights.append(neighbours[j])
        starts.append(len(targets))

    def scaled(values):
        top = max(values) or 1
        return [max(1, round(1e6 * v / top)) for v in values]

    compute = scaled([a["seconds_per_step"] for a in actors])
    memory = scaled([a["memory_bytes"] for a in actors])
    vertex_weights = [w for pair in zip(compute, memory) for w in pair]
    options = pymetis.Options(seed=1, ufactor=int(round(1000 * (GRAPH_IMBALANCE - 1))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _, parts = pymetis.part_graph(
            n_parts,
            adjacency=pymetis.CSRAdjacency(starts, targets),
            vweights=vertex_weights,
            eweights=edge_weights or None,
            options=options,
        )
    part_of = {a["index"]: int(p) for a, p in zip(actors, parts)}
    _refine(actors, links, part_of, n_parts)
    return part_of


REFINED_IMBALANCE = 1.01
"""`balance_graph` moves actors off the busiest part until compute max/mean is below."""


def _refine(actors, links, part_of, n_parts):
    """Even out compute after METIS (in place): move one actor at a time from the
    busiest part to the least busy, the one whose move adds the fewest bytes to the
    cut among those that lower the maximum, until max/mean <= `REFINED_IMBALANCE`."""
    weight = {a["index"]: a["seconds_per_step"] for a in actors}
    load = [0.0] * n_parts
    for index, part in part_of.items():
        load[part] += weight[index]
    mean = sum(load) / n_parts
    neighbours = {}
    for a, b, nbytes in links:
        if a in part_of and b in part_of and a != b:
            neighbours.setdefault(a, []).append((b, nbytes))
            neighbours.setdefault(b, []).append((a, nbytes))
    for _ in range(len(actors)):
        heavy = max(range(n_parts), key=lambda p: (load[p], -p))
        light = min(range(n_parts), key=lambda p: (load[p], p))
        gap = load[heavy] - load[light]
        if mean <= 0 or load[heavy] <= REFINED_IMBALANCE * mean:
            return
        best = None
        for index, part in part_of.items():
            if part != heavy or not 0 < weight[index] < gap:
                continue
            added = sum(
                nbytes if part_of[other] == heavy else -nbytes if part_of[other] == light else 0
                for other, nbytes in neighbours.get(index, ())
            )
            key = (added, abs(gap / 2 - weight[index]), index)
            if best is None or key < best[0]:
                best = (key, index)
        if best is None:
            return
        index = best[1]
        part_of[index] = light
        load[heavy] -= weight[index]
        load[light] += weight[index]


# -- comparing placements ----------------------------------------------------------------


def step_estimate(actors, links, worker_of, n_workers, workers_per_machine=None,
                  costs=None):
    """Estimated seconds per step: the slowest worker's compute plus its exchange."""
    costs = costs or EXCHANGE
    k = workers_per_machine or n_workers
    seconds = [0.0] * n_workers
    for a in actors:
        w = worker_of.get(a["index"])
        if w is not None:
            seconds[w] += a["seconds_per_step"]
    partners = [set() for _ in range(n_workers)]
    for a, b, nbytes in links:
        wa, wb = worker_of.get(a), worker_of.get(b)
        if wa is None or wb is None or wa == wb:
            continue
        remote = wa // k != wb // k
        rate = costs.remote_bytes_per_second if remote else costs.local_bytes_per_second
        for w, other in ((wa, wb), (wb, wa)):
            partners[w].add(other)
            seconds[w] += nbytes / rate
    for w in range(n_workers):
        for other in partners[w]:
            remote = w // k != other // k
            seconds[w] += costs.remote_partner_seconds if remote else costs.partner_seconds
    return max(seconds) if seconds else 0.0


def suggest_workers(actors, links, max_workers, costs=None):
    """The worker count (1..max_workers) with the shortest `step_estimate`.

    Another worker must shorten the estimated step by at least 3%: a model is not
    spread so thin that exchanging values costs more than the compute it shares.

    Returns
    -------
    (int, float)
        The count and its estimated seconds per step.
    """
    best, best_time = 1, None
    for n in range(1, max(1, max_workers) + 1):
        worker_of = balance(actors, links, n, costs=costs)
        step = step_estimate(actors, links, worker_of, n, costs=costs)
        if best_time is None or step < best_time * 0.97:
            best, best_time = n, step
    return best, best_time
