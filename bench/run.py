"""`make bench`: time Spike against nengo.Simulator on the same models, in one run.

For each model, nengo.Simulator, nengo-ocl (where an OpenCL device and the package
are there; otherwise the results say why not) and Spike (1 and 2 workers,
interpreted and compiled, float64 and float32; see `CONFIGS`) are built and run in
fresh processes of
their own (so peak memory is each one's own; nengo's decoder cache
is off, so every build solves its decoders). Results go to ``bench/results/``:
``results.json`` and ``results.md`` (ratios first, then absolute times, then the
machine). Also measured: the exchange alone (two workers passing a 16-D value each way
every step) and the machine's streaming memory bandwidth, which with the bytes of
matrices each step reads gives each model's roofline (the fastest a step could be).

Usage::

    python -m bench.run [--tiny] [--time 0.5] [--models stream,chain] [--out DIR]
    python -m bench.run --memory-only [--tiny]    # the share memory check alone
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = [
    {"backend": "nengo"},
    {"backend": "nengo_ocl", "dtype": "float32"},
    {"backend": "spike", "workers": 1, "compile": False},
    {"backend": "spike", "workers": 2, "compile": False},
    {"backend": "spike", "workers": 1, "compile": True},
    {"backend": "spike", "workers": 2, "compile": True},
    {"backend": "spike", "workers": 2, "compile": True, "dtype": "float32"},
    {"backend": "spike", "workers": 2, "compile": True, "cold": True},
]
EXTRA_CONFIGS = {
    "two_big": [
        {"backend": "spike", "workers": 2, "compile": False, "max_neurons": 5000},
        {"backend": "spike", "workers": 2, "compile": True, "max_neurons": 5000},
    ],
}
"""Run for some models only: splitting each 20k-neuron ensemble into 4 parts.

``CONFIGS``: run for every model. ``cold`` builds with an empty compile cache (the first run of a
model on a machine); the others find the code compiled by the runs before them."""


def config_label(config):
    """A short name for a configuration ("spike 2w compiled float32")."""
    if config["backend"] in ("nengo", "nengo_ocl"):
        return config["backend"].replace("_", "-")
    words = [f"spike {config['workers']}w"]
    if config.get("compile"):
        words.append("compiled")
    if config.get("dtype", "float64") != "float64":
        words.append(config["dtype"])
    if config.get("cold"):
        words.append("cold cache")
    if config.get("max_neurons"):
        words.append(f"split {config['max_neurons']}")
    return " ".join(words)


# -- measurements done inside one child process ----------------------------------


def peak_rss_mb(pid=None):
    """Peak resident memory (VmHWM) of a process (default: this one), in MiB
    (`spike.sysinfo.peak_rss_bytes`)."""
    from spike.sysinfo import peak_rss_bytes

    return peak_rss_bytes(pid) / 2**20 or float("nan")


def matrix_bytes_per_step(model):
    """Bytes of weight/encoder matrices the model's operators read every step."""
    from nengo.builder.operator import DotInc, ElementwiseInc

    return sum(
        op.A.nbytes for op in model.operators if isinstance(op, (DotInc, ElementwiseInc))
    )


def run_one(name, config, sim_time, tiny, repeats=3, build_only=False):
    """Build and run one model in one configuration; return the figures as a dict.

    With ``build_only``, just build (to fill the compile and share caches) and
    return ``{}``.
    """
    import nengo

    from bench import models

    nengo.rc["decoder_cache"]["enabled"] = "False"
    net, _ = (models.TINY if tiny else models.FULL)[name]()
    backend = config["backend"]
    start = time.perf_counter()
    if backend == "nengo":
        sim = nengo.Simulator(net, progress_bar=False)
    elif backend == "nengo_ocl":
        sim = ocl_simulator(net)
        if isinstance(sim, str):  # why nengo-ocl cannot run here
            return {"model": name, "config": config_label(config), "backend": backend,
                    "unavailable": sim}
    else:
        import spike

        sim = spike.Simulator(
            net,
            workers=config["workers"],
            compile=config.get("compile", False),
            dtype=config.get("dtype", "float64"),
            # tiny models (tests) still split, into parts of 25 neurons
            max_neurons=config.get("max_neurons") and (25 if tiny else config["max_neurons"]),
            progress_bar=False,
        )
    build = time.perf_counter() - start
    if build_only:
        sim.close()
        return {}
    sim.run_steps(10)  # warm-up: first-step allocations
    steps = max(int(round(sim_time / sim.dt)), 1)
    runs = []
    for _ in range(repeats):  # the best of a few: the machine is shared and noisy
        start = time.perf_counter()
        sim.run_steps(steps)
        runs.append(time.perf_counter() - start)
    run = min(runs)
    result = {
        "model": name,
        "config": config_label(config),
        "backend": backend,
        "workers": config.get("workers"),
        "compile": config.get("compile", False),
        "dtype": config.get("dtype", "float64"),
        "cold_cache": config.get("cold", False),
        "build_s": build,
        "run_s": run,
        "run_s_all": runs,
        "steps": steps,
        "run_s_per_sim_s": run / (steps * sim.dt),
        "n_neurons": sum(e.n_neurons for e in net.all_ensembles),
        "matrix_bytes_per_step": matrix_bytes_per_step(sim.model),
        "rss_client_mb": peak_rss_mb(),
    }
    if backend == "spike":
        handles = sim._session.handles  # {peer: handle}; worker w is peer w + 1
        result["rss_workers_mb"] = [
            peak_rss_mb(handles[peer].pid) for peer in sorted(handles) if peer
        ]
        result["actors"] = len(sim.partition.actors)
        # each worker's own account of its steps (warm-up and every run)
        result["worker_us_per_step"] = {
            name: dict(zip(("compute", "wait", "send"), timing.per_step_us()))
            for name, timing in sim.step_timings.items()
        }
        result.update(placement_figures(sim))
    sim.close()
    return result


def _reason(error):
    """An exception as one short line (OpenCL build logs run to pages)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def ocl_simulator(net):
    """A `nengo_ocl.Simulator` of ``net`` on the first OpenCL device (on a CPU:
    Debian's pocl driver), or a string saying why there is none."""
    import warnings

    try:
        import nengo_ocl
        import pyopencl
    except ImportError as e:
        return f"nengo-ocl is not installed ({e}; pip install nengo-ocl pyopencl)"
    try:
        context = pyopencl.create_some_context(interactive=False)
    except Exception as e:  # no platform or device: pyopencl raises its own types
        return f"no OpenCL device ({_reason(e)}; Debian: pocl-opencl-icd)"
    try:
        with warnings.catch_warnings():  # "not tested with your nengo version"
            warnings.simplefilter("ignore")
            return nengo_ocl.Simulator(net, context=context, progress_bar=False)
    except Exception as e:
        return f"nengo-ocl cannot build this model ({_reason(e)})"


def placement_figures(sim):
    """Estimated compute and memory per worker (spike.plan.cost), and their imbalance."""
    from spike.plan import allocation
    from spike.plan.cost import actor_costs
    from spike.tools.calibrate import calibrate
    from spike.tools.dryrun import actor_entries

    costs = actor_costs(sim.model, sim.partition, calibrate(repeats=5))
    entries = actor_entries(sim.partition, costs)
    for entry in entries:
        peer = sim.placement[entry["index"]]
        entry["worker"] = peer - 1 if peer else None
    figures = allocation.stats(
        {"machines": 1, "workers_per_machine": sim.n_workers, "actors": entries}
    )
    crossing = sum(
        nbytes for (a, b), nbytes in sim.partition.links.items()
        if sim.placement[a] != sim.placement[b]
    )
    return {
        "crossing_bytes_per_step": crossing,
        "worker_data_bytes": [w["memory_bytes"] for w in figures["workers"]],
        "worker_operators": [w["operators"] for w in figures["workers"]],
        "estimated_worker_data_mb": [w["memory_bytes"] / 2**20 for w in figures["workers"]],
        "estimated_worker_ms_per_step": [
            w["seconds_per_step"] * 1e3 for w in figures["workers"]
        ],
        "compute_imbalance": figures["compute_imbalance"],
        "memory_imbalance": figures["memory_imbalance"],
        "split_ensembles": len(sim.split.splits),
    }


def exchange_cost(steps=2000):
    """Per-step time of two workers passing a 16-D value each way, minus one worker's
    (`spike.tools.calibrate.measure_exchange`, which ``spike dry-run`` also uses)."""
    from spike.tools.calibrate import measure_exchange

    seconds = measure_exchange(steps)
    return {
        "one_worker_us_per_step": seconds["one_worker_seconds"] * 1e6,
        "two_workers_us_per_step": seconds["two_workers_seconds"] * 1e6,
        "exchange_us_per_step": seconds["exchange_seconds"] * 1e6,
    }


def memory_bandwidth(nbytes=256 * 2**20, repeats=5):
    """Streaming read bandwidth in bytes/s (best of ``repeats`` sums over a big array)."""
    data = np.ones(nbytes // 8)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return nbytes / best


# -- the driver --------------------------------------------------------------------


def child(args, cache_dir=None):
    env = dict(os.environ)
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    if cache_dir is not None:
        env["SPIKE_CACHE_DIR"] = cache_dir
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    import nengo
    import psutil

    from spike.runtime.compiler.ufuncs import numpy_math_is_simd
    from spike.sysinfo import cpu_model, simd_level

    cpu = cpu_model() or platform.processor()
    mem_gib = psutil.virtual_memory().total / 2**30

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nengo": nengo.__version__,
        "date": datetime.date.today().isoformat(),
        # the best SIMD extension the CPU reports, and whether numpy's expm1/log1p are
        # SIMD versions of their own rather than the C library's (compiled kernels
        # call numpy's loops either way: spike.runtime.compiler.ufuncs)
        "simd": simd_level(),
        "numpy_simd_math": numpy_math_is_simd(),
    }


TARGETS = {"stream": 5.0, "chain": 4.0, "circconv": 3.0, "two_big": 2.5}
PEER_TARGET = 2.0
"""Spike's best against nengo-ocl's, on every model (issue target)."""
"""Run speed-ups the project aims for (best Spike configuration vs nengo)."""

RUN_COLUMNS = [
    "spike 1w", "spike 2w", "spike 1w compiled", "spike 2w compiled",
    "spike 2w compiled float32", "spike 2w split 5000", "spike 2w compiled split 5000",
]


def config_roofline(model_floor, result):
    """A configuration's roofline in seconds per step, from its model's (all the
    matrices' bytes over one core's bandwidth): n workers on n cores stream n times
    the bytes of one, and float32 matrices are half the bytes."""
    floor = model_floor / min(result["workers"], os.cpu_count() or 1)
    return floor / 2 if result["dtype"] == "float32" else floor


def summarize(results, bandwidth):
    """Ratios and rooflines per model, per configuration and for the best one."""
    rows = []
    for name in dict.fromkeys(r["model"] for r in results):
        mine = [r for r in results if r["model"] == name]
        ref = next(r for r in mine if r["backend"] == "nengo")
        floor = ref["matrix_bytes_per_step"] / bandwidth
        row = {
            "model": name,
            "ref_run_s_per_sim_s": ref["run_s_per_sim_s"],
            "ref_build_s": ref["build_s"],
            "roofline_s_per_step": floor,
            "ref_vs_roofline": ref["run_s"] / ref["steps"] / floor if floor else None,
            "target_speedup": TARGETS.get(name),
            "spike": {},
        }
        peer = next((r for r in mine if r["backend"] == "nengo_ocl"), None)
        for r in mine:
            if r["backend"] != "spike":
                continue
            per_step = r["run_s"] / r["steps"]
            own_floor = config_roofline(floor, r)
            row["spike"][r["config"]] = {
                "run_speedup": ref["run_s_per_sim_s"] / r["run_s_per_sim_s"],
                "build_ratio": r["build_s"] / ref["build_s"],
                "vs_roofline": per_step / own_floor if own_floor else None,
            }
        warm = {k: v for k, v in row["spike"].items() if "cold" not in k}
        if warm:
            best = max(warm, key=lambda k: warm[k]["run_speedup"])
            row["best"] = dict(warm[best], config=best)
        cold = [v for k, v in row["spike"].items() if "cold" in k]
        row["cold_build_ratio"] = cold[0]["build_ratio"] if cold else None
        if peer is not None:
            best_run = min(
                r["run_s_per_sim_s"] for r in mine
                if r["backend"] == "spike" and not r.get("cold_cache")
            )
            row["peer"] = {"nengo-ocl": {
                "run_s_per_sim_s": peer["run_s_per_sim_s"],
                "build_s": peer["build_s"],
                "speedup_vs_nengo": ref["run_s_per_sim_s"] / peer["run_s_per_sim_s"],
                "spike_best_vs_peer": peer["run_s_per_sim_s"] / best_run,
            }}
        rows.append(row)
    return rows


MEMORY_TOLERANCE = 0.15
"""Issue target: each worker's measured peak memory within 15% of its estimate."""


def memory_check(results, baselines):
    """Each worker's estimated peak memory (`spike.plan.cost.estimated_peak_rss`, with the
    baselines measured in this run) against its measured peak, per configuration."""
    from spike.plan.cost import estimated_peak_rss

    rows = []
    for r in results:
        if r["backend"] != "spike" or r.get("cold_cache"):
            continue
        mode = "compiled" if r["compile"] else "interpreted"
        measured = r["rss_workers_mb"]
        for w, (data, ops) in enumerate(zip(r["worker_data_bytes"], r["worker_operators"])):
            if w >= len(measured):
                break
            estimate = estimated_peak_rss(data, ops, baselines[mode]) / 2**20
            rows.append({
                "model": r["model"], "config": r["config"], "worker": w,
                "data_mb": data / 2**20, "operators": ops,
                "estimated_mb": estimate, "measured_mb": measured[w],
                "ratio": measured[w] / estimate,
                "within_tolerance": abs(measured[w] / estimate - 1) <= MEMORY_TOLERANCE,
            })
    return rows


SHARE_RUNS = ("prepared in the worker", "loaded prepared")
"""The two runs of `share_memory_check`: with an empty share cache, then with the
shares the first run kept."""


def share_memory_child(allocation_path, tiny):
    """In a child process: run `models.memory_pair` (interpreted) on the allocation;
    return each worker's peak resident memory in bytes (VmHWM)."""
    import spike
    from bench import models
    from spike.client.pool import peak_rss_bytes

    net, _ = models.memory_pair(**models.MEMORY_PAIR[tiny])
    with spike.Simulator(
        net, allocation=allocation_path, compile=False, progress_bar=False
    ) as sim:
        sim.run_steps(20)
        handles = sim._session.handles  # {peer: handle}; worker w is peer w + 1
        return [peak_rss_bytes(handles[peer].pid) for peer in sorted(handles) if peer]


def share_memory_check(tiny, baseline):
    """Each worker's measured peak memory against its estimate
    (`spike.plan.cost.estimated_peak_rss`, with ``baseline``, a fresh interpreted
    worker's peak), for one model on two workers placed by its dry run: first when
    each worker prepares (merges) its share, the share cache empty, then when it loads
    the share the first run kept. How close they come depends on the machine (its
    allocator, its libraries), so it is reported here rather than asserted by the
    tests; ``within_tolerance`` is the ±`MEMORY_TOLERANCE` target."""
    from bench import models
    from spike.plan import allocation
    from spike.plan.cost import estimated_peak_rss
    from spike.tools.dryrun import dry_run

    net, _ = models.memory_pair(**models.MEMORY_PAIR[tiny])
    result = dry_run(net, n_workers=2, measure_baseline=False)
    workers = allocation.stats(result.allocation)["workers"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="spike-bench-memory-") as tmp:
        path = os.path.join(tmp, "allocation.json")
        allocation.save(result.allocation, path)
        cache = os.path.join(tmp, "cache")  # the share cache, empty for the first run
        for share in SHARE_RUNS:
            measured = child(
                ["--share-memory-child", path] + (["--tiny"] if tiny else []), cache_dir=cache
            )
            if share == SHARE_RUNS[0] and not os.listdir(os.path.join(cache, "shares")):
                raise RuntimeError("the first run kept no share: the second cannot load one")
            for w, (worker, peak) in enumerate(zip(workers, measured)):
                estimate = estimated_peak_rss(worker["memory_bytes"], worker["operators"], baseline)
                rows.append({
                    "share": share, "worker": w,
                    "data_mb": worker["memory_bytes"] / 2**20, "operators": worker["operators"],
                    "estimated_mb": estimate / 2**20, "measured_mb": peak / 2**20,
                    "ratio": peak / estimate,
                    "within_tolerance": abs(peak / estimate - 1) <= MEMORY_TOLERANCE,
                })
    return rows


def share_memory_lines(rows):
    """One line per worker and run of `share_memory_check`, flagged outside the target."""
    return [
        f"worker {r['worker']}, share {r['share']}: measured {r['measured_mb']:.0f} MiB, "
        f"estimated {r['estimated_mb']:.0f} MiB, measured / estimated {r['ratio']:.2f}"
        + ("" if r["within_tolerance"] else f" ✗ outside ±{MEMORY_TOLERANCE:.0%}")
        for r in rows
    ]


def fmt(x, unit="×"):
    return "—" if x is None else f"{x:.2f}{unit}"


def markdown(summary, results, exchange, bandwidth, info, memory=(), baselines=None,
             share_memory=()):
    from bench import models
    from spike.plan.cost import PEAK_BYTES_PER_OPERATOR, PEAK_DATA_FACTOR

    lines = [
        f"# Spike benchmarks ({info['date']})",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}, numpy {info['numpy']}, nengo {info['nengo']}. "
        f"Streaming read bandwidth measured: {bandwidth / 1e9:.1f} GB/s. "
        f"SIMD: {info.get('simd') or 'none of AVX-512, AVX2, AVX, SSE4.2'}; numpy's "
        "expm1/log1p: "
        + ("its own SIMD versions (compiled kernels call them: same bits)"
           if info.get("numpy_simd_math") else "the C library's") + ".",
        "",
        "## Best configuration",
        "",
        "Run speed-up = nengo run time / Spike run time (best of 3 runs each, same "
        "invocation). Build ratio = Spike build (with worker start-up and compiling) / "
        "nengo build, with the compile cache filled by an earlier run (\"warm\") and "
        "empty (\"cold\", the first run of a model on a machine). Vs roofline = time "
        "per step / (bytes of matrices read per step / streaming bandwidth of the cores "
        "in use); 1.00× would be the memory limit if every matrix were read whole each "
        "step. Merged products of spikes read only the columns of the neurons that "
        "spiked, and small matrices stay in the caches, so a model can run under 1.00×.",
        "",
        "| model | best configuration | run speed-up (target) | build ratio warm | "
        "build ratio cold | vs roofline | nengo vs roofline |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        best = row.get("best", {})
        target = row["target_speedup"]
        lines.append(
            f"| {models.DESCRIPTIONS.get(row['model'], row['model'])} "
            f"| {best.get('config', '—')} "
            f"| {fmt(best.get('run_speedup'))} ({fmt(target, '×') if target else '—'}) "
            f"| {fmt(best.get('build_ratio'))} | {fmt(row['cold_build_ratio'])} "
            f"| {fmt(best.get('vs_roofline'))} | {fmt(row['ref_vs_roofline'])} |"
        )
    lines += [
        "",
        "## Against nengo-ocl",
        "",
        "nengo-ocl (OpenCL, float32 only) on this machine's OpenCL device (on a CPU: "
        "Debian's pocl), the same models in the same invocation. Spike's best = its "
        f"fastest warm configuration; target: at least {PEER_TARGET:.0f}× nengo-ocl's speed.",
        "",
        "| model | nengo-ocl run s per simulated s | nengo-ocl vs nengo | Spike's best vs "
        "nengo-ocl (target) |",
        "|---|---|---|---|",
    ]
    for row in summary:
        peer = row.get("peer", {}).get("nengo-ocl")
        if peer is None:
            continue
        if "unavailable" in peer:
            lines.append(f"| {row['model']} | did not run: {peer['unavailable']} | — | — |")
            continue
        lines.append(
            f"| {row['model']} | {peer['run_s_per_sim_s']:.3f} "
            f"| {fmt(peer['speedup_vs_nengo'])} "
            f"| {fmt(peer['spike_best_vs_peer'])} ({PEER_TARGET:.2f}×) |"
        )
    lines += [
        "",
        "## Run speed-up of every configuration",
        "",
        "| model | " + " | ".join(RUN_COLUMNS) + " |",
        "|---|" + "---|" * len(RUN_COLUMNS),
    ]
    for row in summary:
        cells = [fmt(row["spike"].get(c, {}).get("run_speedup")) for c in RUN_COLUMNS]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Absolute figures",
        "",
        "| model | configuration | neurons | build s | run s per simulated s | "
        "client peak RSS MiB | worker peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        workers = r.get("rss_workers_mb")
        lines.append(
            f"| {r['model']} | {r['config']} | {r['n_neurons']} "
            f"| {r['build_s']:.2f} | {r['run_s_per_sim_s']:.3f} "
            f"| {r['rss_client_mb']:.0f} | "
            f"{', '.join(f'{m:.0f}' for m in workers) if workers else '-'} |"
        )
    lines += [
        "",
        "## Where a step's time goes, per worker",
        "",
        "Each worker's own account over all its steps in the configuration (warm-up "
        "included), in µs per step: computing its operators, waiting for the values "
        "of other workers, and sending its own (and recording probes). The "
        "roofline column is that worker's share of the model's roofline (the bytes of "
        "matrices of the whole model per step over the bandwidth of the cores in "
        "use).",
        "",
        "| model | configuration | compute µs/step | waiting µs/step | sending µs/step "
        "| step µs (measured by the client) | roofline µs/step |",
        "|---|---|---|---|---|---|---|",
    ]
    floors = {row["model"]: row["roofline_s_per_step"] for row in summary}
    for r in results:
        timings = r.get("worker_us_per_step")
        if not timings or r.get("cold_cache"):
            continue
        floor = config_roofline(floors[r["model"]], r)

        def column(key, timings=timings):
            return ", ".join(f"{t[key]:.0f}" for t in timings.values())

        lines.append(
            f"| {r['model']} | {r['config']} | {column('compute')} | {column('wait')} "
            f"| {column('send')} | {r['run_s'] / r['steps'] * 1e6:.0f} "
            f"| {floor * 1e6:.0f} |"
        )
    lines += [
        "",
        "## Placement: estimated load per worker",
        "",
        "Estimated by `spike.plan.cost` (calibrated in the same run) for the placement used; "
        "imbalance = max/mean over workers. Bytes crossing = values exchanged between "
        "peers per step (the METIS graph partition keeps chains together). Data = bytes "
        "of the signals the worker's actors hold (see the memory table below).",
        "",
        "| model | configuration | actors | compute imbalance | memory imbalance | "
        "bytes crossing peers per step | estimated ms/step per worker | "
        "estimated data MiB per worker | measured peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["backend"] != "spike" or r["workers"] < 2 or r.get("cold_cache"):
            continue
        lines.append(
            f"| {r['model']} | {r['config']} | {r['actors']} "
            f"| {r['compute_imbalance']:.3f} | {r['memory_imbalance']:.3f} "
            f"| {r['crossing_bytes_per_step']} "
            f"| {', '.join(f'{x:.3f}' for x in r['estimated_worker_ms_per_step'])} "
            f"| {', '.join(f'{x:.1f}' for x in r['estimated_worker_data_mb'])} "
            f"| {', '.join(f'{x:.0f}' for x in r['rss_workers_mb'])} |"
        )
    if memory:
        inside = sum(m["within_tolerance"] for m in memory)
        lines += [
            "",
            "## Memory: estimated and measured peak per worker",
            "",
            "Estimate = a fresh worker's measured peak after a tiny model ("
            + ", ".join(f"{v / 2**20:.0f} MiB {k}" for k, v in (baselines or {}).items())
            + f") + {PEAK_DATA_FACTOR} × the bytes its actors hold + "
            f"{PEAK_BYTES_PER_OPERATOR / 1000:.0f} kB per operator "
            "(`spike.plan.cost.estimated_peak_rss`, what `spike stats` shows). Measured = the "
            "worker's peak resident memory (VmHWM) after the runs, compile and share "
            "caches warm. "
            f"**{inside} of {len(memory)} workers within ±{MEMORY_TOLERANCE:.0%}** of "
            "their estimate.",
            "",
            "| model | configuration | worker | data MiB | operators | estimated MiB | "
            "measured MiB | measured / estimated |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in memory:
            mark = "" if m["within_tolerance"] else " ✗"
            lines.append(
                f"| {m['model']} | {m['config']} | {m['worker']} | {m['data_mb']:.1f} "
                f"| {m['operators']} | {m['estimated_mb']:.0f} | {m['measured_mb']:.0f} "
                f"| {m['ratio']:.2f}{mark} |"
            )
    if share_memory:
        inside = sum(r["within_tolerance"] for r in share_memory)
        lines += [
            "",
            "## Memory: a share prepared in the worker, and loaded prepared",
            "",
            (
                "Two large ensembles (`bench.models.memory_pair`) on two interpreted "
                "workers, placed by a dry run: each worker's peak resident memory (VmHWM) "
                "when it prepares its share (the share cache empty), then when it loads "
                "the share kept by the first run, against the same estimate as above. "
                f"**{inside} of {len(share_memory)} within ±{MEMORY_TOLERANCE:.0%}.**"
            ),
            "",
        ] + [f"- {line}" for line in share_memory_lines(share_memory)]
    lines += [
        "",
        "## Exchange alone",
        "",
        f"Two actors passing a 16-D value each way every step: "
        f"{exchange['one_worker_us_per_step']:.1f} µs/step on one worker, "
        f"{exchange['two_workers_us_per_step']:.1f} µs/step on two workers: the exchange "
        f"costs **{exchange['exchange_us_per_step']:.1f} µs per step** (target ≤ 30 µs).",
        "",
        "Reproduce: `make bench` (writes bench/results/).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (for tests)")
    parser.add_argument("--time", type=float, default=0.5, help="simulated seconds per run")
    parser.add_argument(
        "--models", default="stream,noisy_stream,chain,circconv,two_big",
        help="comma-separated, from: stream, noisy_stream, chain, circconv, two_big",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--exchange", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--share-memory-child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-only", action="store_true",
        help="only the memory check of a share prepared in the worker and loaded "
        "prepared: a line per worker, its measured peak against its estimate",
    )
    args = parser.parse_args(argv)

    if args.share_memory_child:
        print(json.dumps(share_memory_child(args.share_memory_child, args.tiny)))
        return 0
    if args.memory_only:
        from spike.tools.dryrun import worker_baselines

        baseline = worker_baselines(compiled=False)["interpreted"]
        for line in share_memory_lines(share_memory_check(args.tiny, baseline)):
            print(line)
        return 0

    if args.one:
        config = json.loads(args.config)
        result = run_one(args.one, config, args.time, args.tiny, build_only=args.build_only)
        print(json.dumps(result))
        return 0
    if args.exchange:
        print(json.dumps(exchange_cost(steps=200 if args.tiny else 3000)))
        return 0

    results = []
    peers_unavailable = {}  # model -> why nengo-ocl did not run
    for name in args.models.split(","):
        for config in CONFIGS + EXTRA_CONFIGS.get(name, []):
            extra = ["--tiny"] if args.tiny else []
            cmd = ["--one", name, "--config", json.dumps(config), "--time", str(args.time)]
            print(f"bench: {name} on {config_label(config)}...", file=sys.stderr, flush=True)
            if config.get("cold"):
                with tempfile.TemporaryDirectory(prefix="spike-bench-cache-") as cache:
                    results.append(child(cmd + extra, cache_dir=cache))
                continue
            if config["backend"] == "spike":  # "warm" figures: compile and prepare
                child(cmd + extra + ["--build-only"])  # the shares once beforehand
            result = child(cmd + extra)
            if "unavailable" in result:
                print(f"bench: {result['unavailable']}", file=sys.stderr, flush=True)
                peers_unavailable[name] = result["unavailable"]
                continue
            results.append(result)
    exchange = child(["--exchange"] + (["--tiny"] if args.tiny else []))
    bandwidth = memory_bandwidth(nbytes=(16 if args.tiny else 256) * 2**20)
    info = machine()
    summary = summarize(results, bandwidth)
    for row in summary:
        if row["model"] in peers_unavailable:
            row["peer"] = {"nengo-ocl": {"unavailable": peers_unavailable[row["model"]]}}
    from spike.tools.dryrun import worker_baselines

    print("bench: measuring fresh workers' memory...", file=sys.stderr, flush=True)
    baselines = worker_baselines()
    memory = memory_check(results, baselines)
    print("bench: a share prepared in the worker, and loaded prepared...", file=sys.stderr,
          flush=True)
    share_memory = share_memory_check(args.tiny, baselines["interpreted"])
    for line in share_memory_lines(share_memory):
        print(f"bench: {line}", file=sys.stderr, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {
                "machine": info,
                "memory_bandwidth_bytes_per_s": bandwidth,
                "summary": summary,
                "results": results,
                "exchange": exchange,
                "worker_baselines_bytes": baselines,
                "memory_check": memory,
                "share_memory_check": share_memory,
                "peers_unavailable": peers_unavailable,
            },
            f,
            indent=2,
        )
    text = markdown(summary, results, exchange, bandwidth, info, memory, baselines,
                    share_memory)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
