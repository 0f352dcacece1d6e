"""The dry run: build, split, measure, estimate, and allocate, without simulating.

As neurodamus does before a large run, ``spike dry-run`` builds the model, measures
this machine (`spike.tools.calibrate.calibrate`, and an idle worker's memory), estimates every
actor's compute and memory, and writes ``memory_usage.json`` (per object and per
actor) and an allocation file (`spike.plan.allocation`) that ``spike.Simulator(net,
allocation=...)`` follows.
"""

import os
import subprocess
import sys
from dataclasses import dataclass

import nengo

from spike.builder.pipeline import prepare
from spike.client.pool import peak_rss_bytes
from spike.plan import allocation as alloc
from spike.plan.calibration import save_machine_calibration
from spike.plan.cost import WORK_KINDS, actor_costs, held_bytes, op_work
from spike.plan.placement import suggest_workers
from spike.simulator import Simulator
from spike.tools.calibrate import calibrate


@dataclass
class DryRun:
    """What a dry run found (see `dry_run`)."""

    model: object
    partition: object
    split: object
    calibration: object
    costs: list
    allocation: dict
    memory_usage: dict
    suggested_workers: int
    calibration_path: object = None


def actor_entries(partition, costs):
    """The ``actors`` list of an allocation file."""
    entries = []
    for actor, cost in zip(partition.actors, costs):
        entries.append({
            "index": actor.index,
            "label": actor.label,
            "signature": alloc.actor_signature(actor),
            "neurons": actor.n_neurons,
            "work": cost.work,
            "seconds_per_step": cost.seconds_per_step,
            "memory_bytes": cost.memory_bytes,
            "probe_bytes_per_s": cost.probe_bytes_per_s,
            "client": bool(actor.has_callables),
        })
    return entries


def partition_links(partition):
    return [[a, b, int(n)] for (a, b), n in sorted(partition.links.items())]


def memory_usage(model, partition, costs, calibration, baseline_bytes):
    """Per-object and per-actor memory and compute (``memory_usage.json``)."""
    owners = getattr(model, "spike_op_owner", {})
    objects = {}
    counted = set()

    def entry(owner):
        key = id(owner)
        if key not in objects:
            objects[key] = {
                "object": str(owner) if owner is not None else "model (clock)",
                "type": type(owner).__name__ if owner is not None else "Model",
                "work": dict.fromkeys(WORK_KINDS, 0),
                "memory_bytes": 0,
            }
        return objects[key]

    for op in model.operators:
        e = entry(owners.get(op))
        for kind, units in op_work(op).items():
            e["work"][kind] += units
        for sig in op.all_signals:
            if id(sig.base) not in counted:
                counted.add(id(sig.base))
                e["memory_bytes"] += held_bytes(sig.base)
    for e in objects.values():
        e["seconds_per_step"] = calibration.seconds(e["work"])
    return {
        "format": "spike-memory-usage",
        "version": 1,
        "calibration": calibration.to_dict(),
        "worker_baseline_bytes": baseline_bytes,
        "total_memory_bytes": sum(c.memory_bytes for c in costs),
        "total_seconds_per_step": sum(c.seconds_per_step for c in costs),
        "n_neurons": sum(a.n_neurons for a in partition.actors),
        "objects": sorted(objects.values(), key=lambda e: -e["memory_bytes"]),
        "actors": [
            dict(index=a.index, label=a.label, **c.to_dict())
            for a, c in zip(partition.actors, costs)
        ],
    }


def worker_baselines(compiled=True):
    """Peak resident memory of a fresh worker that ran a tiny model, on this machine.

    Returns
    -------
    dict
        ``{"interpreted": bytes, "compiled": bytes}`` (``compiled`` only if asked;
        compiling the tiny model the first time on a machine takes a few seconds).
        ``compiled`` is a worker's peak with the compile cache warm.
        Each is measured in a new process with its own worker, so no earlier job
        has raised the worker's peak.
    """
    modes = ["interpreted"] + (["compiled"] if compiled else [])
    result = {}
    for mode in modes:
        # compiled: once to fill the compile cache (a worker compiling for the first
        # time on a machine peaks much higher), then to measure
        for _ in range(2 if mode == "compiled" else 1):
            out = subprocess.run(
                [sys.executable, "-c",
                 f"from spike.tools.dryrun import _baseline_child; "
                 f"_baseline_child({mode == 'compiled'})"],
                capture_output=True, text=True, timeout=600,
            )
            if out.returncode != 0:
                raise RuntimeError(f"measuring a {mode} worker failed:\n{out.stderr[-2000:]}")
        result[mode] = int(out.stdout.strip().splitlines()[-1])
    return result


def _baseline_child(compiled):
    with nengo.Network(seed=0) as net:
        stim = nengo.Node([0.5])
        ens = nengo.Ensemble(50, 1)
        nengo.Connection(stim, ens)
        nengo.Probe(ens, synapse=0.01)
    with Simulator(net, workers=1, compile=compiled, progress_bar=False) as sim:
        sim.run_steps(10)
        (handle,) = sim._session.handles.values()
        print(peak_rss_bytes(handle.pid))


def dry_run(network, dt=0.001, max_neurons=None, n_workers=None, max_workers=None,
            measure_baseline=True, method="auto"):
    """Build ``network``, measure this machine, estimate and allocate.

    Parameters
    ----------
    n_workers : int, optional
        Workers to allocate for (default: the suggested number).
    max_workers : int, optional
        Largest worker count considered for the suggestion (default: the cores).
    measure_baseline : bool, optional
        Measure a fresh worker's memory (interpreted and compiled,
        `worker_baselines`) and the exchange's cost per step, and keep the
        calibration for later Simulators on this machine
        (`spike.plan.calibration.save_machine_calibration`) unless other processes kept the
        machine busy meanwhile (`spike.plan.calibration.Calibration.quiet`). False: compute
        only (tests).
    method : {"auto", "greedy", "graph"}, optional
        How to place (see `spike.plan.placement.balance`).
    """
    max_workers = max_workers or os.cpu_count() or 1
    n_groups = n_workers or max_workers
    prepared = prepare(network, dt, max_neurons=max_neurons, n_groups=n_groups)
    model, split, partition = prepared.model, prepared.split, prepared.partition
    calibration = calibrate(exchange=measure_baseline)
    calibration_path = None
    if measure_baseline and calibration.quiet:  # a busy machine's figures describe the load
        calibration_path = save_machine_calibration(calibration)
    costs = actor_costs(model, partition, calibration)
    baseline = worker_baselines() if measure_baseline else {}
    entries = actor_entries(partition, costs)
    links = partition_links(partition)
    suggested, _ = suggest_workers(
        entries, links, max_workers, costs=calibration.exchange_costs(),
    )
    n = n_workers or suggested
    info = {
        "fingerprint": alloc.fingerprint([e["signature"] for e in entries]),
        "n_actors": len(entries),
        "n_neurons": sum(e["neurons"] for e in entries),
        "max_neurons": max_neurons,
        "dt": dt,
        "split": {str(ens): s.n_parts for ens, s in split.splits.items()},
        "groups": n_groups,
    }
    allocation = alloc.make_allocation(
        entries, links, 1, n, info, calibration.to_dict(), baseline, method
    )
    usage = memory_usage(model, partition, costs, calibration, baseline)
    return DryRun(
        model, partition, split, calibration, costs, allocation, usage, suggested,
        calibration_path,
    )
