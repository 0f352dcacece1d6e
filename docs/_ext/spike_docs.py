"""Pages of Spike's documentation that are made from the code and the results.

Three directives, each read again whenever the sources it reads change:

``.. spike-config-table::``
    The table of every ``SPIKE_*`` environment variable, from `spike.config.VARIABLES`.
``.. spike-cli-help:: spike`` (or ``spike-daemon``)
    The ``--help`` of a command and of each of its subcommands, from their parsers.
``.. spike-benchmarks::``
    Every ``bench/results/*.json`` written by ``make bench``, newest first: the
    machine it ran on and its tables.
"""

import argparse
import json
import os
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
HELP_COLUMNS = "88"


def escape(text):
    """``text`` as literal reStructuredText inline text (markup characters escaped)."""
    text = str(text)
    for char in "\\*`_|[]<>":
        text = text.replace(char, "\\" + char)
    return text


def heading(text, char):
    """reStructuredText lines of a section title underlined with ``char``."""
    return [text, char * len(text), ""]


def list_table(header, rows, widths=None, title=None):
    """reStructuredText lines of a ``list-table`` (cells are given as markup)."""
    lines = [f".. list-table::{(' ' + title) if title else ''}", "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(str(w) for w in widths))
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            lead = "   * - " if i == 0 else "     - "
            lines.append(lead + (str(cell) if str(cell) != "" else "\\ "))
    lines.append("")
    return lines


class GeneratedDirective(Directive):
    """A directive whose body is reStructuredText made by `lines`."""

    def depends_on(self):
        return []

    def lines(self):
        raise NotImplementedError

    def run(self):
        env = self.state.document.settings.env
        for path in self.depends_on():
            env.note_dependency(str(path))
        container = nodes.container()
        source = self.state_machine.input_lines.source(
            self.lineno - self.state_machine.input_offset - 1
        )
        content = StringList(self.lines(), source=source)
        nested_parse_with_titles(self.state, content, container)
        return container.children


# -- configuration --------------------------------------------------------------------


def shown_default(variable):
    """A variable's default as the table shows it."""
    value = variable.default
    if value is None:
        return "(unset)"
    if value is True or value is False:
        return "``1``" if value else "``0``"
    if value == "":
        return "(empty)"
    return f"``{value}``"


class ConfigTable(GeneratedDirective):
    """Every setting of `spike.config.VARIABLES`: name, default, meaning, readers."""

    def depends_on(self):
        return [ROOT / "spike" / "config.py"]

    def lines(self):
        from spike import config

        rows = [
            [f"``{v.name}``", shown_default(v), v.doc, escape(v.used_by)]
            for v in config.VARIABLES.values()
        ]
        return list_table(["variable", "default", "meaning", "read by"], rows,
                          widths=[22, 12, 50, 16])


# -- command line ---------------------------------------------------------------------


def parser_of(command):
    if command == "spike":
        from spike.tools.cli import build_parser
    elif command == "spike-daemon":
        from spike.cluster.daemon import build_parser
    else:
        raise ValueError(f"no parser known for {command!r}")
    return build_parser()


def formatted_help(parser):
    """``parser.format_help()`` at a fixed width, whatever the terminal."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        return parser.format_help()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def literal(text):
    body = ["   " + line if line else "" for line in text.rstrip().splitlines()]
    return [".. code-block:: text", ""] + body + [""]


class CliHelp(GeneratedDirective):
    """The help of a command and, one section each, of its subcommands."""

    required_arguments = 1
    option_spec: ClassVar[dict] = {"level": directives.unchanged}

    def depends_on(self):
        if self.arguments[0] == "spike":
            return [ROOT / "spike" / "tools" / "cli.py"]
        return [ROOT / "spike" / "cluster" / "daemon.py"]

    def lines(self):
        parser = parser_of(self.arguments[0])
        underline = self.options.get("level", "-")
        out = literal(formatted_help(parser))
        subparsers = [
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        ]
        for action in subparsers:
            for name, sub in action.choices.items():
                title = f"``{parser.prog} {name}``"
                out += [title, underline * len(title), ""]
                out += literal(formatted_help(sub))
        return out


# -- benchmarks -----------------------------------------------------------------------

MACHINE_LABELS = {
    "cpu": "CPU",
    "cores": "cores",
    "memory_gib": "memory (GiB)",
    "python": "Python",
    "numpy": "numpy",
    "nengo": "nengo",
    "date": "date",
}

SIMD_KEYS = ("simd", "simd_level", "cpu_simd")
"""Keys of a result's ``machine`` that may name the CPU's SIMD level."""

NUMPY_SIMD_KEYS = ("numpy_simd", "numpy_math_simd", "numpy_simd_math")
"""... and whether numpy's math functions use their own SIMD versions."""

RUN_COLUMNS = [
    "spike 1w", "spike 2w", "spike 1w compiled", "spike 2w compiled",
    "spike 2w compiled float32", "spike 2w split 5000", "spike 2w compiled split 5000",
]


def ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def descriptions():
    try:
        from bench.models import DESCRIPTIONS
    except ImportError:  # the tables then name models by their keys
        return {}
    return DESCRIPTIONS


def result_files():
    """``(path, data)`` of every result file, newest run first."""
    found = []
    for path in sorted(RESULTS.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "machine" in data and "results" in data:
            found.append((path, data))
    found.sort(key=lambda item: str(item[1]["machine"].get("date", "")), reverse=True)
    return found


def first_of(machine, keys):
    for key in keys:
        if machine.get(key) not in (None, ""):
            return machine[key]
    return None


def machine_lines(data):
    machine = data["machine"]
    lines = []
    for key, label in MACHINE_LABELS.items():
        if key in machine:
            lines.append(f":{label}: {escape(machine[key])}")
    simd = first_of(machine, SIMD_KEYS)
    lines.append(f":SIMD level: {escape(simd) if simd is not None else 'not recorded'}")
    numpy_simd = first_of(machine, NUMPY_SIMD_KEYS)
    if numpy_simd is None:
        shown = "not recorded"
    elif numpy_simd is True or numpy_simd is False:
        shown = (
            "yes: its own SIMD ``expm1`` and ``log1p``, so compiled workers left LIF "
            "neurons to nengo's code" if numpy_simd
            else "no: the C library's ``expm1`` and ``log1p``"
        )
    else:
        shown = escape(numpy_simd)
    lines.append(f":numpy's math in SIMD: {shown}")
    for key, value in machine.items():
        if key not in MACHINE_LABELS and key not in SIMD_KEYS + NUMPY_SIMD_KEYS:
            lines.append(f":{escape(key)}: {escape(value)}")
    bandwidth = data.get("memory_bandwidth_bytes_per_s")
    if bandwidth:
        lines.append(f":streaming read bandwidth: {bandwidth / 1e9:.1f} GB/s (measured)")
    return lines + [""]


def run_lines(path, data, underline):
    named = descriptions()
    machine = data["machine"]
    title = f"{machine.get('date', 'undated')}: {machine.get('cpu', 'unknown CPU')}"
    title += f", {machine.get('cores', '?')} cores"
    lines = heading(escape(title), underline[0])
    lines += [f"From ``bench/results/{path.name}``.", ""]
    lines += machine_lines(data)

    summary = data.get("summary", [])
    sub = underline[1]
    if summary:
        lines += heading("Best configuration", sub)
        rows = []
        for row in summary:
            best = row.get("best", {})
            target = row.get("target_speedup")
            rows.append([
                escape(named.get(row["model"], row["model"])),
                escape(best.get("config", "—")),
                f"{ratio(best.get('run_speedup'))} ({ratio(target) if target else '—'})",
                ratio(best.get("build_ratio")),
                ratio(row.get("cold_build_ratio")),
                ratio(best.get("vs_roofline")),
                ratio(row.get("ref_vs_roofline")),
            ])
        lines += list_table(
            ["model", "best configuration", "run speed-up (target)", "build ratio warm",
             "build ratio cold", "vs roofline", "nengo vs roofline"], rows)
        columns = [c for c in RUN_COLUMNS if any(c in r.get("spike", {}) for r in summary)]
        lines += heading("Run speed-up of every configuration", sub)
        lines += list_table(
            ["model"] + [escape(c) for c in columns],
            [[escape(r["model"])]
             + [ratio(r.get("spike", {}).get(c, {}).get("run_speedup")) for c in columns]
             for r in summary])
        peers = [(r["model"], r["peer"]["nengo-ocl"]) for r in summary
                 if "nengo-ocl" in r.get("peer", {})]
        if peers:
            lines += heading("Against nengo-ocl", sub)
            lines += [(
                "nengo-ocl (OpenCL, float32) on this machine's OpenCL device, in the same "
                "invocation; Spike's best is its fastest warm configuration (target: 2×)."
            ), ""]
            lines += list_table(
                ["model", "nengo-ocl run s per simulated s", "nengo-ocl vs nengo",
                 "Spike's best vs nengo-ocl"],
                [[escape(model), escape(f"did not run: {p['unavailable']}"), "—", "—"]
                 if "unavailable" in p else
                 [escape(model), f"{p['run_s_per_sim_s']:.3f}", ratio(p["speedup_vs_nengo"]),
                  ratio(p["spike_best_vs_peer"])]
                 for model, p in peers])

    results = data.get("results", [])
    if results:
        lines += heading("Absolute figures", sub)
        rows = []
        for r in results:
            workers = r.get("rss_workers_mb")
            rows.append([
                escape(r["model"]), escape(r["config"]), r.get("n_neurons", ""),
                f"{r['build_s']:.2f}", f"{r['run_s_per_sim_s']:.3f}",
                f"{r['rss_client_mb']:.0f}" if "rss_client_mb" in r else "—",
                ", ".join(f"{m:.0f}" for m in workers) if workers else "—",
            ])
        lines += list_table(
            ["model", "configuration", "neurons", "build s", "run s per simulated s",
             "client peak RSS MiB", "worker peak RSS MiB"], rows)

        timed = [r for r in results if r.get("worker_us_per_step") and not r.get("cold_cache")]
        if timed:
            lines += heading("Where a step's time goes, per worker", sub)
            lines += [(
                "Each worker's own account, in µs per step: computing its operators, "
                "waiting for the values of other workers, and sending its own (with "
                "recording probes); the step as the client measured it."
            ), ""]
            rows = []
            for r in timed:
                timings = r["worker_us_per_step"].values()
                rows.append([
                    escape(r["model"]), escape(r["config"]),
                    ", ".join(f"{t['compute']:.0f}" for t in timings),
                    ", ".join(f"{t['wait']:.0f}" for t in timings),
                    ", ".join(f"{t['send']:.0f}" for t in timings),
                    f"{r['run_s'] / r['steps'] * 1e6:.0f}",
                ])
            lines += list_table(
                ["model", "configuration", "compute", "waiting", "sending",
                 "step (client)"], rows)

        placed = [r for r in results if r.get("backend") == "spike"
                  and (r.get("workers") or 0) >= 2 and not r.get("cold_cache")
                  and "compute_imbalance" in r]
        if placed:
            lines += heading("Placement: estimated load per worker", sub)
            lines += [(
                "Estimated by `spike.plan.cost` for the placement used; imbalance is "
                "max/mean over workers; bytes crossing are the values exchanged between "
                "peers per step."
            ), ""]
            rows = [[
                escape(r["model"]), escape(r["config"]), r.get("actors", ""),
                f"{r['compute_imbalance']:.3f}", f"{r['memory_imbalance']:.3f}",
                r.get("crossing_bytes_per_step", ""),
                ", ".join(f"{x:.3f}" for x in r.get("estimated_worker_ms_per_step", [])),
            ] for r in placed]
            lines += list_table(
                ["model", "configuration", "actors", "compute imbalance",
                 "memory imbalance", "bytes crossing per step",
                 "estimated ms/step per worker"], rows)

    memory = data.get("memory_check", [])
    if memory:
        inside = sum(bool(m.get("within_tolerance")) for m in memory)
        lines += heading("Memory: estimated and measured peak per worker", sub)
        baselines = data.get("worker_baselines_bytes", {})
        lines += [(
            "Estimate: `spike.plan.cost.estimated_peak_rss` (what ``spike stats`` shows), "
            "from a fresh worker's measured peak ("
            + ", ".join(f"{v / 2**20:.0f} MiB {k}" for k, v in baselines.items())
            + f"). Measured: the worker's peak resident memory. **{inside} of "
            f"{len(memory)} workers** within the tolerance ``make bench`` checks."
        ), ""]
        rows = [[
            escape(m["model"]), escape(m["config"]), m["worker"], f"{m['data_mb']:.1f}",
            m["operators"], f"{m['estimated_mb']:.0f}", f"{m['measured_mb']:.0f}",
            f"{m['ratio']:.2f}" + ("" if m.get("within_tolerance") else " ✗"),
        ] for m in memory]
        lines += list_table(
            ["model", "configuration", "worker", "data MiB", "operators",
             "estimated MiB", "measured MiB", "measured / estimated"], rows)

    exchange = data.get("exchange")
    if exchange:
        lines += heading("Exchange alone", sub)
        lines += [(
            "Two actors passing a 16-D value each way every step: "
            f"{exchange['one_worker_us_per_step']:.1f} µs per step on one worker, "
            f"{exchange['two_workers_us_per_step']:.1f} on two: the exchange costs "
            f"**{exchange['exchange_us_per_step']:.1f} µs per step**."
        ), ""]
    return lines


class Benchmarks(GeneratedDirective):
    """A section per result file of ``bench/results``, newest first."""

    option_spec: ClassVar[dict] = {"levels": directives.unchanged}

    def depends_on(self):
        return [path for path, _ in result_files()]

    def lines(self):
        underline = self.options.get("levels", "-~")
        found = result_files()
        if not found:
            return ["No results in ``bench/results/`` yet: run ``make bench``.", ""]
        lines = []
        for path, data in found:
            lines += run_lines(path, data, underline)
        return lines


def setup(app):
    app.add_directive("spike-config-table", ConfigTable)
    app.add_directive("spike-cli-help", CliHelp)
    app.add_directive("spike-benchmarks", Benchmarks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
