"""Allocation files: which worker runs each actor, with the costs that decided it.

An allocation is written by ``spike dry-run``, redistributed by ``spike rebalance``,
summarized by ``spike stats`` and used by ``spike.Simulator(net, allocation=...)``.
It is JSON (human-inspectable, never pickled)::

    {"format": "spike-allocation", "version": 1,
     "model": {"fingerprint": "...", "n_actors": 12, "n_neurons": 40000,
               "max_neurons": 5000},
     "calibration": {...},                  # seconds per unit of work (spike.plan.cost)
     "machines": 1, "workers_per_machine": 2,
     "worker_baseline_bytes": {"interpreted": 66e6, "compiled": 230e6},
                                            # a fresh worker's peak, per mode
     "actors": [{"index": 0, "label": "...", "signature": "...", "neurons": 5000,
                 "work": {...}, "seconds_per_step": 1e-4, "memory_bytes": 123,
                 "client": false, "worker": 0}, ...],
     "links": [[0, 3, 256], ...]}           # actor, actor, bytes per step

Workers are numbered ``machine * workers_per_machine + k``. An allocation carries a
fingerprint of the model's actors: a file made for another model, or for this one
before an object changed, is refused with a message naming the first difference.
"""

import hashlib
import json

from spike.exceptions import AllocationError
from spike.plan.calibration import ExchangeCosts
from spike.plan.cost import estimated_peak_rss
from spike.plan.placement import balance

FORMAT = "spike-allocation"
VERSION = 1


def actor_signature(actor):
    """What an actor is made of: its operator types and signal shapes, hashed."""
    parts = []
    for op in actor.ops:
        shapes = ",".join("x".join(map(str, s.shape)) for s in op.all_signals)
        parts.append(f"{type(op).__name__}({shapes})")
    return hashlib.sha256(";".join(parts).encode()).hexdigest()[:16]


def fingerprint(signatures):
    return hashlib.sha256("|".join(signatures).encode()).hexdigest()[:24]


# -- figures ---------------------------------------------------------------------------


def worker_totals(data):
    """Per worker and per machine compute (s/step) and memory of an allocation.

    ``memory_bytes`` is what the worker's actors hold;
    ``estimated_peak_rss_bytes`` (``{"interpreted": ..., "compiled": ...}``, for the
    modes whose baseline the file has) is `spike.plan.cost.estimated_peak_rss`: the
    figure to compare with a worker's measured peak resident memory.
    """
    k = data["workers_per_machine"]
    n_workers = data["machines"] * k
    baselines = recorded_baselines(data)
    workers = [
        {"worker": w, "machine": w // k, "seconds_per_step": 0.0,
         "memory_bytes": 0, "actors": 0, "neurons": 0, "operators": 0}
        for w in range(n_workers)
    ]
    for a in data["actors"]:
        w = a.get("worker")
        if w is None:
            continue
        workers[w]["seconds_per_step"] += a["seconds_per_step"]
        workers[w]["memory_bytes"] += a["memory_bytes"]
        workers[w]["actors"] += 1
        workers[w]["neurons"] += a.get("neurons", 0)
        workers[w]["operators"] += a.get("work", {}).get("operators", 0)
    for w in workers:
        w["estimated_peak_rss_bytes"] = {
            mode: estimated_peak_rss(w["memory_bytes"], w["operators"], baseline)
            for mode, baseline in baselines.items()
        }
    machines = []
    for m in range(data["machines"]):
        mine = [w for w in workers if w["machine"] == m]
        machines.append({
            "machine": m,
            "seconds_per_step": sum(w["seconds_per_step"] for w in mine),
            "memory_bytes": sum(w["memory_bytes"] for w in mine),
            "workers": len(mine),
        })
    return workers, machines


def recorded_baselines(data):
    """``{mode: bytes}`` of a fresh worker's peak memory recorded in ``data`` (an
    allocation); a single number (older files) is the interpreted one."""
    baseline = data.get("worker_baseline_bytes") or {}
    if isinstance(baseline, (int, float)):
        return {"interpreted": int(baseline)}
    return {str(mode): int(value) for mode, value in baseline.items()}


def imbalance(values):
    """max / mean (1.0 is perfect balance)."""
    values = list(values)
    mean = sum(values) / len(values) if values else 0
    return max(values) / mean if mean else 1.0


def stats(data):
    """The figures ``spike stats`` prints (and ``--json`` gives scripts)."""
    workers, machines = worker_totals(data)
    return {
        "workers": workers,
        "machines": machines,
        "compute_imbalance": imbalance(w["seconds_per_step"] for w in workers),
        "memory_imbalance": imbalance(w["memory_bytes"] for w in workers),
        "machine_compute_imbalance": imbalance(m["seconds_per_step"] for m in machines),
        "machine_memory_imbalance": imbalance(m["memory_bytes"] for m in machines),
        "estimated_seconds_per_step": max(w["seconds_per_step"] for w in workers),
        "n_actors": len(data["actors"]),
        "n_workers": len(workers),
    }


# -- files -------------------------------------------------------------------------------


def make_allocation(actor_entries, links, n_machines, workers_per_machine, model_info,
                    calibration, baseline_bytes=None, method="auto"):
    """A new allocation dict (see the module docstring); ``method`` is
    `spike.plan.placement.balance`'s."""
    entries = [dict(a, worker=None) for a in actor_entries]
    worker_of = balance(
        entries, links, n_machines * workers_per_machine, workers_per_machine,
        method=method, costs=ExchangeCosts.from_dict(calibration.get("exchange", {})),
    )
    for a in entries:
        a["worker"] = worker_of[a["index"]]
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model_info,
        "calibration": calibration,
        "machines": n_machines,
        "workers_per_machine": workers_per_machine,
        "worker_baseline_bytes": baseline_bytes or {},
        "placement_method": method,
        "actors": entries,
        "links": [list(link) for link in links],
    }


def rebalance(data, n_machines, workers_per_machine, method="auto"):
    """``data`` redistributed over ``n_machines`` of ``workers_per_machine`` each."""
    entries = [{k: v for k, v in a.items() if k != "worker"} for a in data["actors"]]
    return make_allocation(
        entries, data["links"], n_machines, workers_per_machine, data["model"],
        data.get("calibration", {}), recorded_baselines(data), method,
    )


def save(data, path):
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def load(path):
    """Read and check an allocation file; raise `AllocationError` saying what is wrong."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise AllocationError(f"cannot read allocation file {path}: {e}") from None
    except ValueError as e:
        raise AllocationError(f"{path} is not a JSON allocation file: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AllocationError(f"{path} is not a Spike allocation file (no format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise AllocationError(
            f"{path} is allocation format version {data.get('version')!r}; this Spike "
            f"reads version {VERSION}"
        )
    try:
        n_workers = int(data["machines"]) * int(data["workers_per_machine"])
        for a in data["actors"]:
            w = a["worker"]
            if w is not None and not (isinstance(w, int) and 0 <= w < n_workers):
                raise AllocationError(
                    f"{path}: actor {a['index']} is on worker {w!r}, but the file has "
                    f"{n_workers} workers"
                )
            float(a["seconds_per_step"])
            int(a["memory_bytes"])
        for link in data["links"]:
            a, b, nbytes = link
    except (KeyError, TypeError, ValueError) as e:
        raise AllocationError(f"{path}: malformed allocation ({e!r})") from None
    return data


def check_matches(data, signatures, labels, path="the allocation"):
    """Raise `AllocationError` unless ``data`` was made for actors with ``signatures``."""
    mine = data["actors"]
    if len(mine) != len(signatures):
        raise AllocationError(
            f"{path} was made for a model with {len(mine)} actors, but this model has "
            f"{len(signatures)}: the model (or max_neurons) changed; run "
            "`spike dry-run` again"
        )
    for entry, signature, label in zip(mine, signatures, labels):
        if entry.get("signature") != signature:
            raise AllocationError(
                f"{path} does not match this model: {label} differs from the file's "
                f"{entry.get('label', 'actor ' + str(entry.get('index')))} (an object "
                "changed); run `spike dry-run` again"
            )
