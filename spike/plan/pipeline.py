"""From actors to peers' plans: how many workers, which actor runs where, and each
peer's share (`spike.plan.peers.PeerPlan`).

`plan_model` is the second half of the path every caller takes, after
`spike.builder.pipeline.prepare`.
"""

import logging
import os
from dataclasses import dataclass

from spike.plan import allocation as allocation_file
from spike.plan.peers import make_plans, probe_record_keys
from spike.plan.placement import CLIENT, place, placement_inputs, suggest_workers

logger = logging.getLogger(__name__)


def max_local_workers():
    """The most local workers Spike chooses by itself: one per core."""
    return os.cpu_count() or 1


def choose_workers(partition, max_workers, assignments=None, calibration=None):
    """The number of workers for ``partition`` (`spike.plan.placement.suggest_workers`:
    the count with the shortest estimated step, compute plus exchange, using this
    machine's calibration), at least enough for the worker indices in
    ``assignments``. Returns (count, estimated seconds per step)."""
    entries, links, costs = placement_inputs(partition, calibration=calibration)
    n, step = suggest_workers(entries, links, max_workers, costs=costs)
    named = [v for v in (assignments or {}).values() if not isinstance(v, str)]
    if named:
        n = max(n, max(int(v) for v in named) + 1)
    return n, step


def allocated_peers(allocation, partition, path):
    """Peers of the actors, from an allocation file (checked against the model)."""
    actors = partition.actors
    allocation_file.check_matches(
        allocation,
        [allocation_file.actor_signature(a) for a in actors],
        [a.label for a in actors],
        path=str(path),
    )
    return [
        CLIENT if entry["worker"] is None else entry["worker"] + 1
        for entry in allocation["actors"]
    ]


@dataclass
class Layout:
    """Where a prepared model runs.

    Attributes
    ----------
    n_workers : int
    peers : list of int
        The peer of each actor (0 is the client, ``k + 1`` worker ``k``).
    plans : list of PeerPlan
        One per peer, the client's first.
    probe_records : list of list of int
        Each probe's record keys (`spike.plan.peers.probe_record_keys`).
    """

    n_workers: int
    peers: list
    plans: list
    probe_records: list


def plan_model(prepared, n_workers=None, assignments=None, allocation=None,
               allocation_path=None, optimize=True, compile=False, dtype="float64",
               calibration=None, max_workers=None):
    """Choose the workers of a `spike.builder.pipeline.Prepared` model, place its
    actors and make every peer's plan.

    Parameters
    ----------
    prepared : Prepared
        From ``prepare(..., undoable=n_workers is None)``; divided again into
        fewer groups if fewer workers are chosen than it has groups.
    n_workers : int, optional
        None: chosen (`choose_workers`, up to ``max_workers``, default one per core).
    assignments : dict, optional
        ``{object: worker index or "client"}`` (`spike.plan.placement.place`).
    allocation : dict, optional
        A loaded allocation file: its placement is followed (``allocation_path``
        names it in errors).
    optimize, compile, dtype
        See `spike.plan.peers.PeerPlan`.
    calibration : Calibration, optional
        This machine's (`spike.plan.calibration.machine_calibration`).

    Returns
    -------
    Layout
    """
    if n_workers is None:
        try:
            n_workers = _choose(prepared, assignments, calibration, max_workers)
        finally:
            prepared.forget_division()
    partition = prepared.partition
    if allocation is not None:
        peers = allocated_peers(allocation, partition, allocation_path)
    else:
        peers = place(partition, n_workers, assignments, calibration=calibration)
    model, split = prepared.model, prepared.split
    plans = make_plans(
        model, partition, peers, n_workers + 1, order=model.operators, optimize=optimize,
        compile=compile, matrix_dtype=dtype, rng_order=model.spike_rng_order,
        probe_parts=split.probes,
    )
    return Layout(n_workers, peers, plans, probe_record_keys(model.probes, split.probes))


def _choose(prepared, assignments, calibration, max_workers):
    """Choose the number of workers; divide actors again if fewer workers than
    groups were chosen."""
    n_workers, step = choose_workers(
        prepared.partition, max_workers or max_local_workers(), assignments, calibration
    )
    logger.info(
        "chose %d worker(s) for %d actors (estimated %.1f µs per step)",
        n_workers, len(prepared.partition.actors), step * 1e6,
    )
    split = prepared.split
    if split.before_division is not None and n_workers < split.most_groups():
        prepared.redivide(n_workers)
        logger.info(
            "divided again into at most %d groups: %d actors", n_workers,
            len(prepared.partition.actors),
        )
    return n_workers
