"""The ``spike`` command line.

``spike run model.py`` runs a Nengo model script on local workers (or, with
``--hosts``, on the spike-daemons of a hostfile's hosts): the script must
define ``model``, a `nengo.Network` (it is run with ``__name__ == "__spike__"``, so a
``if __name__ == "__main__":`` block in it is skipped). Probe data are saved to an
``.npz`` file, a summary is printed, and ``--plot`` draws the probes.
"""

import argparse
import logging
import os
import runpy
import sys
import time

import numpy as np

from spike.version import __version__

logger = logging.getLogger("spike")


def load_model(path):
    """Run a model script and return its ``model`` (a nengo.Network)."""
    import nengo

    if not os.path.exists(path):
        raise SystemExit(f"spike: no such model script: {path}")
    namespace = runpy.run_path(path, run_name="__spike__")
    model = namespace.get("model")
    if not isinstance(model, nengo.Network):
        found = type(model).__name__ if "model" in namespace else "nothing"
        raise SystemExit(
            f"spike: {path} must define `model`, a nengo.Network (found {found})"
        )
    return model


def probe_key(index, probe):
    """A readable, unique npz key for a probe."""
    label = probe.label or f"{probe.target.label or type(probe.target).__name__}.{probe.attr}"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
    return f"p{index}_{safe}"


COMPILE_NAMES = {True: "yes", False: "no", "auto": "auto"}


def summarize(sim, probes, workers, timings, build_seconds, run_seconds, out):
    n_neurons = sum(a.n_neurons for a in sim.partition.actors)
    steps = sim.n_steps
    out.write(
        f"model: {len(sim.partition.actors)} actors, {n_neurons} neurons, "
        f"{len(probes)} probes, dt = {sim.dt:g} s\n"
        f"workers: {sim.n_workers} ({', '.join(workers) or 'none needed'}); "
        f"compile: {COMPILE_NAMES[sim.compile]}\n"
        f"build + start-up: {build_seconds:.2f} s; run: {run_seconds:.2f} s for "
        f"{steps} steps ({steps / max(run_seconds, 1e-9):.0f} steps/s, "
        f"{run_seconds / max(steps * sim.dt, 1e-9):.2f} s per simulated s)\n"
    )
    if any(t.steps for t in timings.values()):
        out.write("time per step (µs): compute / waiting for other workers / sending, probes\n")
        for name, timing in timings.items():
            compute, wait, send = timing.per_step_us()
            out.write(f"  {name}: {compute:.0f} / {wait:.0f} / {send:.0f}\n")
    split = sim.split
    if split.splits or split.divisions or split.skipped or split.undivided:
        out.write(
            f"split: {len(split.splits)} ensembles into parts"
            + (f" ({len(split.skipped)} kept whole)" if split.skipped else "")
            + f"; {len(split.divisions)} actors held together by passthrough Nodes "
            "divided into groups"
            + (f" ({len(split.undivided)} kept whole: see the log)" if split.undivided else "")
            + "\n"
        )
    out.write(f"{'probe':<50} {'shape':>14} {'final value (first 4)':>28}\n")
    for index, probe in enumerate(probes):
        data = sim.data[probe]
        last = np.array2string(
            np.asarray(data[-1]).ravel()[:4], precision=3, suppress_small=True
        ) if len(data) else "-"
        out.write(f"{probe_key(index, probe):<50} {str(data.shape):>14} {last:>28}\n")


def plot(sim, probes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(probes), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True, squeeze=False)
    for ax, (index, probe) in zip(axes[:, 0], enumerate(probes)):
        data = sim.data[probe]
        t = sim.trange(sample_every=probe.sample_every)
        if probe.attr in ("spikes",) or (
            probe.attr == "output" and type(probe.target).__name__ == "Neurons"
        ):
            spikes = np.asarray(data)[:, :50]
            rows, cols = np.nonzero(spikes)
            ax.plot(t[rows], cols, "|", markersize=3)
            ax.set_ylabel("neuron")
        else:
            ax.plot(t, data.reshape(len(data), -1))
        ax.set_title(probe_key(index, probe), fontsize=9)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_run(args):
    from spike.simulator import Simulator
    from spike.tools.progress import run_progress_bar

    model = load_model(args.model)
    probes = list(model.all_probes)
    start = time.perf_counter()
    sim = Simulator(
        model,
        dt=args.dt,
        seed=args.seed,
        workers=args.workers,
        progress_bar=False if args.no_progress else run_progress_bar(args.dt),
        compile={None: None, "auto": "auto", "yes": True, "no": False}[args.compile],
        dtype=args.dtype,
        max_neurons=args.max_neurons,
        allocation=args.allocation,
        **host_options(args),
    )
    with sim:
        build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        sim.run(args.time)
        run_seconds = time.perf_counter() - start
        workers = sim.workers
        timings = sim.step_timings
    summarize(sim, probes, workers, timings, build_seconds, run_seconds, sys.stdout)
    if args.placement:
        print(sim.describe_placement())
    out = args.out or os.path.splitext(os.path.basename(args.model))[0] + ".npz"
    arrays = {"t": sim.trange()}
    for index, probe in enumerate(probes):
        key = probe_key(index, probe)
        arrays[key] = sim.data[probe]
        arrays["t_" + key] = sim.trange(sample_every=probe.sample_every)
    np.savez(out, **arrays)
    print(f"probe data: {out}")
    if args.plot:
        plot(sim, probes, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _mib(nbytes):
    return f"{nbytes / 2**20:.1f} MiB"


def cmd_dry_run(args):
    from spike.plan import allocation
    from spike.tools.dryrun import dry_run

    network = load_model(args.model)
    result = dry_run(
        network, dt=args.dt, max_neurons=args.max_neurons,
        n_workers=args.num_target_workers, method=args.method,
    )
    os.makedirs(args.out_dir, exist_ok=True)
    usage_path = os.path.join(args.out_dir, "memory_usage.json")
    alloc_path = os.path.join(args.out_dir, args.allocation)
    allocation.save(result.memory_usage, usage_path)
    allocation.save(result.allocation, alloc_path)
    figures = allocation.stats(result.allocation)
    cal = result.calibration.seconds_per_unit
    print(
        f"model: {len(result.partition.actors)} actors, "
        f"{result.memory_usage['n_neurons']} neurons, "
        f"{len(result.split.splits)} ensembles split"
        + (f", {len(result.split.skipped)} could not be split" if result.split.skipped else "")
    )
    for ens, reason in result.split.skipped.items():
        print(f"  not split: {ens}: {reason}")
    for division in result.split.divisions:
        print(f"  divided into {division.n_groups} groups: {division.label}")
    for label, reason in result.split.undivided.items():
        print(f"  not divided: {label}: {reason}")
    print(
        "calibration (this machine): "
        f"{cal['neurons'] * 1e9:.1f} ns/neuron, {cal['macs'] * 1e9:.2f} ns/multiply-add, "
        f"{cal['elements'] * 1e9:.2f} ns/element, {cal['operators'] * 1e6:.2f} µs/operator, "
        f"{result.calibration.exchange_costs().partner_seconds * 1e6:.1f} µs/step per "
        "exchange partner"
    )
    if result.calibration_path:
        print(f"kept this machine's calibration in {result.calibration_path}")
    elif not result.calibration.quiet:
        busy = result.calibration.machine["busy_elsewhere"]
        print(
            f"warning: other processes used {busy:.0%} of the CPUs while this was "
            "measured, so these figures (and the suggested worker count) describe the "
            "load more than the machine; they are kept in the allocation file but not "
            "as this machine's calibration. Run `spike dry-run` again when it is quiet.",
            file=sys.stderr,
        )
    print(
        f"estimated: {result.memory_usage['total_seconds_per_step'] * 1e3:.3f} ms of "
        f"compute per step in all, {_mib(result.memory_usage['total_memory_bytes'])} "
        "of signals; a fresh worker's peak: "
        + ", ".join(f"{_mib(v)} {mode}" for mode, v in
                    result.memory_usage["worker_baseline_bytes"].items())
    )
    print(f"suggested workers: {result.suggested_workers}")
    print(
        f"allocation for {figures['n_workers']} workers: compute imbalance "
        f"{figures['compute_imbalance']:.3f}, memory imbalance "
        f"{figures['memory_imbalance']:.3f} (max/mean)"
    )
    print(f"wrote {usage_path} and {alloc_path}")
    return 0


def add_method_argument(parser):
    parser.add_argument(
        "--method", choices=("auto", "greedy", "graph"), default="auto",
        help="placement: 'greedy' is largest first onto the least loaded worker "
        "(probes and filters follow their traffic); 'graph' is a METIS partition "
        "of the actors' traffic graph weighted by compute and memory (machines "
        "first, then each machine's workers); 'auto' (default) computes both and "
        "keeps the one with the shorter estimated step",
    )


def cmd_rebalance(args):
    from spike.plan import allocation

    data = allocation.load(args.allocation)
    new = allocation.rebalance(data, args.machines, args.workers_per_machine, args.method)
    allocation.save(new, args.output)
    figures = allocation.stats(new)
    print(
        f"{len(new['actors'])} actors on {args.machines} machine(s) x "
        f"{args.workers_per_machine} worker(s): compute imbalance "
        f"{figures['compute_imbalance']:.3f}, memory imbalance "
        f"{figures['memory_imbalance']:.3f}; wrote {args.output}"
    )
    return 0


def host_options(args):
    """Simulator keywords for ``--hosts``, ``--ssh``, ``--skip-unreachable``, ``--keys``."""
    if not getattr(args, "hosts", None):
        return {}
    return {
        "hosts": args.hosts,
        "ssh": args.ssh,
        "on_unreachable": "skip" if args.skip_unreachable else "error",
        "keys": args.keys,
    }


def add_host_arguments(parser, run=False):
    parser.add_argument(
        "--hosts", metavar="HOSTFILE", required=not run,
        help="hostfile: one `host[:port] [slots=N]` a line, '#' comments"
        + (" (run the workers on these hosts' spike-daemons)" if run else ""),
    )
    parser.add_argument(
        "--keys", metavar="DIR", default=None,
        help="key directory (default $SPIKE_KEYS_DIR or ~/.config/spike/keys)",
    )
    if run:
        parser.add_argument(
            "--ssh", action="store_true",
            help="start the daemons over SSH for this run and stop them after",
        )
        parser.add_argument(
            "--skip-unreachable", action="store_true",
            help="leave out hosts that are down, unreachable or busy (default: error)",
        )


def cmd_keys(args):
    from spike.cluster import keys

    directory = args.dir or keys.default_keys_dir()
    if args.show:
        for name in (keys.CLIENT, keys.DAEMON):
            path = os.path.join(directory, f"{name}.key")
            if os.path.exists(path):
                print(f"{name}: {keys.load_public(path).decode()}")
        for key in sorted(keys.authorized_clients(directory)):
            print(f"authorized client: {key.decode()}")
        return 0
    made = keys.make_cluster_keys(directory, force=args.force)
    print(f"keys in {directory}:")
    print(f"  client.key / client.key_secret   client {made['client'].decode()}")
    print(f"  daemon.key / daemon.key_secret   daemon {made['daemon'].decode()}")
    print("  authorized/client.key            lets this client use the daemons")
    print(
        "Copy the directory to each host (daemon.key_secret and authorized/ are what a "
        "daemon needs; `spike cluster start --ssh` and `spike run --ssh` copy them for "
        "you), and keep client.key_secret to yourself."
    )
    return 0


def cmd_stats(args):
    import json

    from spike.plan import allocation

    data = allocation.load(args.allocation)
    figures = allocation.stats(data)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print(f"{args.allocation}: {figures['n_actors']} actors, {figures['n_workers']} "
              f"workers on {len(figures['machines'])} machine(s)")
        modes = list(figures["workers"][0]["estimated_peak_rss_bytes"]) if figures["workers"] else []
        print(f"{'worker':>6} {'machine':>7} {'actors':>6} {'neurons':>8} "
              f"{'ms/step':>9} {'data':>11}"
              + "".join(f" {'peak ' + m[:6]:>12}" for m in modes) + "  compute")
        peak = max(w["seconds_per_step"] for w in figures["workers"]) or 1
        for w in figures["workers"]:
            bar = "#" * int(round(30 * w["seconds_per_step"] / peak))
            print(f"{w['worker']:>6} {w['machine']:>7} {w['actors']:>6} {w['neurons']:>8} "
                  f"{w['seconds_per_step'] * 1e3:>9.3f} {_mib(w['memory_bytes']):>11}"
                  + "".join(f" {_mib(w['estimated_peak_rss_bytes'][m]):>12}" for m in modes)
                  + f"  {bar}")
        if modes:
            from spike.plan.cost import PEAK_BYTES_PER_OPERATOR, PEAK_DATA_FACTOR

            print("peak = estimated peak resident memory of the worker (interpreted or "
                  f"compiled): a fresh worker's measured peak + {PEAK_DATA_FACTOR} x its "
                  f"data + {PEAK_BYTES_PER_OPERATOR / 1000:g} kB per operator")
        for m in figures["machines"]:
            print(f"machine {m['machine']}: {m['workers']} workers, "
                  f"{m['seconds_per_step'] * 1e3:.3f} ms/step, {_mib(m['memory_bytes'])}")
        print(f"compute imbalance (max/mean): {figures['compute_imbalance']:.3f}")
        print(f"memory imbalance (max/mean): {figures['memory_imbalance']:.3f}")
    if args.plot:
        plot_allocation(figures, args.plot, title=os.path.basename(args.allocation))
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def plot_allocation(figures, path, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workers = figures["workers"]
    index = [w["worker"] for w in workers]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, scale, label, imb in (
        (axes[0], "seconds_per_step", 1e3, "compute (ms/step)", figures["compute_imbalance"]),
        (axes[1], "memory_bytes", 1 / 2**20, "memory (MiB)", figures["memory_imbalance"]),
    ):
        values = [w[key] * scale for w in workers]
        ax.bar(index, values, color=[f"C{w['machine']}" for w in workers])
        ax.axhline(sum(values) / len(values), color="k", ls="--", lw=1, label="mean")
        ax.set_xlabel("worker (colour: machine)")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' ')[0]}: max/mean {imb:.3f}")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_cluster(args):
    import json

    from spike.cluster import control as clusterctl

    if args.action == "start":
        failures = clusterctl.start(
            args.hosts, keys_dir=args.keys, ssh=args.ssh, state_dir=args.state_dir
        )
    elif args.action == "stop":
        failures = clusterctl.stop(args.hosts, keys_dir=args.keys)
    else:
        with clusterctl.Query(args.hosts, args.keys) as query:
            statuses = query.ask()
        if args.json:
            print(json.dumps(statuses, indent=1))
        else:
            print(clusterctl.render(statuses))
        failures = {h: s["error"] for h, s in statuses.items() if "error" in s}
    for host, reason in failures.items():
        print(f"spike: {reason}", file=sys.stderr)
    return 1 if failures else 0


def cmd_monitor(args):
    from spike.cluster import control as clusterctl

    try:
        clusterctl.monitor(
            args.hosts, keys_dir=args.keys, interval=args.interval, once=args.once,
            as_json=args.json,
        )
    except KeyboardInterrupt:
        pass
    return 0


def cmd_config(args):
    from spike import config

    print(config.describe())
    return 0


def cmd_cache(args):
    from spike.runtime.compiler import cache

    root = cache.cache_dir()
    if args.clear:
        freed = cache.clear_cache()
        print(f"cleared {root} ({freed / 2**20:.1f} MiB)")
    else:
        print(f"{root}: {cache.cache_size() / 2**20:.1f} MiB")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spike",
        description="Spike: run Nengo models across worker processes, with the same "
        "results as nengo.Simulator.",
    )
    parser.add_argument("--version", action="version", version=f"spike {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a model script on local workers, or on hosts (--hosts)",
        description="Run a Nengo model script on local worker processes, or with "
        "--hosts on the spike-daemons of a hostfile's hosts (--ssh starts them). The "
        "script must define `model`, a nengo.Network. Probe data are written to an "
        ".npz file (keys p<N>_<label> and t_p<N>_<label>), and a summary is printed. "
        "Long runs show a progress bar with the simulated time, steps per second "
        "and an ETA.",
    )
    run.add_argument("model", help="Python script defining `model` (a nengo.Network)")
    run.add_argument(
        "-w", "--workers", type=int, default=None,
        help="number of worker processes (default: chosen for the model, from 1 to "
        "one per core, by estimated step time including the exchange; with --hosts, "
        "every slot of the hosts)",
    )
    run.add_argument(
        "-t", "--time", type=float, default=1.0,
        help="simulated time in seconds (default: 1.0)",
    )
    run.add_argument("--dt", type=float, default=0.001, help="time step (default: 0.001)")
    run.add_argument("--seed", type=int, default=None, help="simulator seed")
    run.add_argument("-o", "--out", help="output .npz (default: <script name>.npz)")
    run.add_argument("--plot", metavar="PNG", help="draw every probe into this PNG")
    run.add_argument(
        "--placement", action="store_true", help="print which actor runs where"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--compile", choices=["auto", "yes", "no"], default=None,
        help="compile workers' steps with PyTensor/Numba (default: $SPIKE_COMPILE, "
        "else auto: where a worker's share is large enough to pay)",
    )
    run.add_argument(
        "--dtype", choices=["float64", "float32"], default="float64",
        help="dtype of compiled products' matrices (float32 halves their traffic; "
        "results then differ from nengo's by float32 rounding)",
    )
    run.add_argument(
        "--max-neurons", type=int, default=None, metavar="N",
        help="split ensembles above N neurons into sub-ensembles (same results)",
    )
    run.add_argument(
        "--allocation", metavar="JSON",
        help="place actors as this file says (from `spike dry-run` / `spike rebalance`)",
    )
    add_host_arguments(run, run=True)
    run.set_defaults(func=cmd_run)

    dry = commands.add_parser(
        "dry-run",
        help="build, measure and allocate a model without running it",
        description="Build the model, split large ensembles, measure this machine "
        "(time per neuron update, multiply-add, element and operator; an idle "
        "worker's memory), estimate every actor's compute and memory, and write "
        "memory_usage.json (per object and per actor) and an allocation file for N "
        "workers. Prints the suggested number of workers.",
    )
    dry.add_argument("model", help="Python script defining `model` (a nengo.Network)")
    dry.add_argument(
        "-n", "--num-target-workers", type=int, default=None, metavar="N",
        help="workers to allocate for (default: the suggested number)",
    )
    dry.add_argument(
        "--max-neurons", type=int, default=None, metavar="N",
        help="split ensembles above N neurons into sub-ensembles",
    )
    dry.add_argument("--dt", type=float, default=0.001, help="time step (default: 0.001)")
    add_method_argument(dry)
    dry.add_argument("-d", "--out-dir", default=".", help="where to write (default: .)")
    dry.add_argument(
        "--allocation", default="allocation.json",
        help="allocation file name (default: allocation.json)",
    )
    dry.set_defaults(func=cmd_dry_run)

    reb = commands.add_parser(
        "rebalance",
        help="redistribute an allocation over machines and workers",
        description="Read an allocation file and place its actors again on "
        "N_MACHINES machines of K workers each, balancing compute and memory and "
        "keeping the bytes that cross workers (and machines) low; see --method.",
    )
    reb.add_argument("allocation", help="allocation file (from `spike dry-run`)")
    reb.add_argument("machines", type=int, metavar="N_MACHINES")
    reb.add_argument(
        "-k", "--workers-per-machine", type=int, default=1, metavar="K",
        help="workers per machine (default: 1)",
    )
    reb.add_argument("-o", "--output", required=True, help="rebalanced allocation file")
    add_method_argument(reb)
    reb.set_defaults(func=cmd_rebalance)

    st = commands.add_parser(
        "stats",
        help="compute and memory per worker and machine of an allocation",
        description="Per-worker and per-machine compute (estimated ms per step) and "
        "memory, their max/mean imbalance, and a histogram.",
    )
    st.add_argument("allocation", help="allocation file")
    st.add_argument("--plot", metavar="PNG", help="draw the same figures into a PNG")
    st.add_argument("--json", action="store_true", help="print the figures as JSON")
    st.set_defaults(func=cmd_stats)

    keys = commands.add_parser(
        "keys",
        help="create the CURVE keys that secure traffic between hosts",
        description="Create a client keypair and a daemon keypair (ZeroMQ CURVE) in a "
        "key directory, and authorize the client to use the daemons. Secret files "
        "are mode 0600. Existing keys are kept unless --force.",
    )
    keys.add_argument(
        "--dir", default=None,
        help="key directory (default $SPIKE_KEYS_DIR or ~/.config/spike/keys)",
    )
    keys.add_argument("--force", action="store_true", help="replace existing keys")
    keys.add_argument("--show", action="store_true", help="print the public keys only")
    keys.set_defaults(func=cmd_keys)

    cluster = commands.add_parser(
        "cluster",
        help="start, stop or query the spike-daemons of a hostfile",
        description="Manage long-lived spike-daemons. `start` starts a daemon for "
        "each host not already answering: over SSH with --ssh, else as a detached "
        "process for hosts that are addresses of this machine (log in --state-dir). "
        "`stop` asks each daemon to stop, with its workers. `status` prints each "
        "host's CPU, memory, workers and steps per second (--json for scripts). Exit "
        "status 1 if any host failed.",
    )
    cluster.add_argument("action", choices=["start", "stop", "status"])
    add_host_arguments(cluster)
    cluster.add_argument(
        "--ssh", action="store_true",
        help="start: start remote daemons over SSH (paramiko, ~/.ssh/config, "
        "known_hosts checked)",
    )
    cluster.add_argument(
        "--state-dir", default=None,
        help="start: logs and pid files of local daemons (default ~/.local/state/spike)",
    )
    cluster.add_argument("--json", action="store_true", help="status: print JSON")
    cluster.set_defaults(func=cmd_cluster)

    monitor = commands.add_parser(
        "monitor",
        help="live view of the hosts: CPU, memory, workers, steps per second",
        description="A live terminal view of every host of a hostfile: CPU and memory "
        "use, load, workers, steps per second, and the share of time workers wait for "
        "their peers (time off the CPU while stepping). Ctrl-C quits.",
    )
    add_host_arguments(monitor)
    monitor.add_argument("--once", action="store_true", help="print one view and exit")
    monitor.add_argument(
        "--json", action="store_true",
        help="print JSON lines ({time, hosts: {host: status}}) instead of a table",
    )
    monitor.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    monitor.set_defaults(func=cmd_monitor)

    cache = commands.add_parser(
        "cache",
        help="show or clear the compiled-code cache",
        description="Compiled worker steps are cached on disk so a model compiles "
        "once per machine. The directory is $SPIKE_CACHE_DIR, else "
        "$XDG_CACHE_HOME/spike (~/.cache/spike).",
    )
    cache.add_argument("--clear", action="store_true", help="delete the cache")
    cache.set_defaults(func=cmd_cache)

    settings = commands.add_parser(
        "config",
        help="show Spike's settings (SPIKE_* environment variables)",
        description="Every SPIKE_* environment variable Spike reads: its current "
        "value, its default and what it does.",
    )
    settings.set_defaults(func=cmd_config)
    return parser


def main(argv=None):
    from spike.exceptions import ConfigError, HostError, HostfileError, KeyFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ConfigError, HostError, HostfileError, KeyFileError) as e:
        print(f"spike: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
