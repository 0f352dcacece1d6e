"""`make bench`: time Spike against nengo.Simulator on the same models, in one run.

For each model, nengo.Simulator and Spike (1 and 2 workers) are built and run in
fresh processes of their own (so peak memory is each one's own; nengo's decoder cache
is off, so every build solves its decoders). Results go to ``bench/results/``:
``results.json`` and ``results.md`` (ratios first, then absolute times, then the
machine). Also measured: the exchange alone (two workers passing a 16-D value each way
every step) and the machine's streaming memory bandwidth, which with the bytes of
matrices each step reads gives each model's roofline (the fastest a step could be).

Usage::

    python -m bench.run [--tiny] [--time 0.5] [--models stream,chain] [--out DIR]
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = [
    ("nengo", None),
    ("spike", 1),
    ("spike", 2),
]
"""(backend, workers) run for every model. Compiled workers are not built yet."""


# -- measurements done inside one child process ----------------------------------


def peak_rss_mb(pid="self"):
    """Peak resident memory (VmHWM) of a process, in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def matrix_bytes_per_step(model):
    """Bytes of weight/encoder matrices the model's operators read every step."""
    from nengo.builder.operator import DotInc, ElementwiseInc

    return sum(
        op.A.nbytes for op in model.operators if isinstance(op, (DotInc, ElementwiseInc))
    )


def run_one(name, backend, workers, sim_time, tiny, repeats=3):
    """Build and run one model on one backend; return the figures as a dict."""
    import nengo

    from bench import models

    nengo.rc["decoder_cache"]["enabled"] = "False"
    net, _ = (models.TINY if tiny else models.FULL)[name]()
    start = time.perf_counter()
    if backend == "nengo":
        sim = nengo.Simulator(net, progress_bar=False)
    else:
        import spike

        sim = spike.Simulator(net, workers=workers, progress_bar=False)
    build = time.perf_counter() - start
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
        "backend": backend,
        "workers": workers,
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
        handles = list(sim._session.handles.values())
        result["rss_workers_mb"] = [peak_rss_mb(h.pid) for h in handles]
        result["actors"] = len(sim.partition.actors)
    sim.close()
    return result


def exchange_cost(steps=2000):
    """Per-step time of two workers passing a 16-D value each way, minus one worker's."""
    import nengo

    import spike

    with nengo.Network(seed=0) as net:
        a = nengo.Node(size_in=16)
        b = nengo.Node(size_in=16)
        nengo.Connection(a, b, synapse=0.005)
        nengo.Connection(b, a, synapse=0.005)
    per_step = {}
    for label, assignments in (("same", {a: 0, b: 0}), ("split", {a: 0, b: 1})):
        workers = 2 if label == "split" else 1
        with spike.Simulator(
            net, workers=workers, assignments=assignments, progress_bar=False
        ) as sim:
            sim.run_steps(100)
            start = time.perf_counter()
            sim.run_steps(steps)
            per_step[label] = (time.perf_counter() - start) / steps
    return {
        "one_worker_us_per_step": per_step["same"] * 1e6,
        "two_workers_us_per_step": per_step["split"] * 1e6,
        "exchange_us_per_step": (per_step["split"] - per_step["same"]) * 1e6,
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


def child(args):
    env = dict(os.environ)
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except OSError:
        mem_gib = float("nan")
    import nengo

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nengo": nengo.__version__,
        "date": datetime.date.today().isoformat(),
    }


def summarize(results, bandwidth):
    """Ratios and rooflines per model."""
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
            "spike": {},
        }
        for r in mine:
            if r["backend"] != "spike":
                continue
            per_step = r["run_s"] / r["steps"]
            # n workers on n cores can stream n times the bytes of one
            own_floor = floor / min(r["workers"], os.cpu_count() or 1)
            row["spike"][r["workers"]] = {
                "run_speedup": ref["run_s_per_sim_s"] / r["run_s_per_sim_s"],
                "build_ratio": r["build_s"] / ref["build_s"],
                "vs_roofline": per_step / own_floor if own_floor else None,
            }
        rows.append(row)
    return rows


def markdown(summary, results, exchange, bandwidth, info):
    from bench import models

    lines = [
        f"# Spike benchmarks ({info['date']})",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}, numpy {info['numpy']}, nengo {info['nengo']}. "
        f"Streaming read bandwidth measured: {bandwidth / 1e9:.1f} GB/s.",
        "",
        "## Ratios",
        "",
        "Run speed-up = nengo run time / Spike run time (best of 3 runs each, same "
        "invocation); build ratio = Spike build (with worker start-up) / nengo build; "
        "vs roofline = time per step / (bytes of matrices read per step / streaming "
        "bandwidth of the cores in use).",
        "",
        "| model | Spike 1 worker run speed-up | Spike 2 workers run speed-up | build ratio "
        "(2 workers) | Spike 2 workers vs roofline | nengo vs roofline |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary:
        s1, s2 = row["spike"].get(1, {}), row["spike"].get(2, {})

        def fmt(x, unit="×"):
            return "—" if x is None else f"{x:.2f}{unit}"

        lines.append(
            f"| {models.DESCRIPTIONS.get(row['model'], row['model'])} "
            f"| {fmt(s1.get('run_speedup'))} | {fmt(s2.get('run_speedup'))} "
            f"| {fmt(s2.get('build_ratio'))} | {fmt(s2.get('vs_roofline'))} "
            f"| {fmt(row['ref_vs_roofline'])} |"
        )
    lines += [
        "",
        "Compiled workers (PyTensor) are not built yet, so there is no compiled column.",
        "",
        "## Absolute figures",
        "",
        "| model | backend | workers | neurons | build s | run s per simulated s | "
        "client peak RSS MiB | worker peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        workers = r.get("rss_workers_mb")
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['workers'] or '-'} | {r['n_neurons']} "
            f"| {r['build_s']:.2f} | {r['run_s_per_sim_s']:.3f} "
            f"| {r['rss_client_mb']:.0f} | "
            f"{', '.join(f'{m:.0f}' for m in workers) if workers else '-'} |"
        )
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
    parser.add_argument("--models", default="stream,chain,circconv,two_big")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--exchange", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one, args.backend, args.workers, args.time, args.tiny)))
        return 0
    if args.exchange:
        print(json.dumps(exchange_cost(steps=200 if args.tiny else 3000)))
        return 0

    results = []
    for name in args.models.split(","):
        for backend, workers in CONFIGS:
            extra = ["--tiny"] if args.tiny else []
            cmd = ["--one", name, "--backend", backend, "--time", str(args.time)] + extra
            if workers:
                cmd += ["--workers", str(workers)]
            print(f"bench: {name} on {backend} {workers or ''}...", file=sys.stderr, flush=True)
            results.append(child(cmd))
    exchange = child(["--exchange"] + (["--tiny"] if args.tiny else []))
    bandwidth = memory_bandwidth(nbytes=(16 if args.tiny else 256) * 2**20)
    info = machine()
    summary = summarize(results, bandwidth)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {
                "machine": info,
                "memory_bandwidth_bytes_per_s": bandwidth,
                "summary": summary,
                "results": results,
                "exchange": exchange,
            },
            f,
            indent=2,
        )
    text = markdown(summary, results, exchange, bandwidth, info)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
