"""The DAG benchmark: the whole pipeline on synthetic data at growing sizes (issue 18, item 5).

For each format and each number of rows it generates data with ``tfx-mtl synth``
(cached in ``work_dir`` by its parameters) and runs ``tfx-mtl run`` on it in a
subprocess, as a user would, so it needs no hooks in the pipeline's code.

While the run goes, :class:`TreeSampler` samples the run's process tree (the run
and every descendant, e.g. Beam worker processes) every ``interval`` seconds:
cumulative CPU-seconds (user + system) and the RSS summed over the tree. The
run's progress lines (``  <node> started`` / ``finished in`` / ``cached``,
:class:`tfx_mtl.runners.local.ComponentProgress`) give when each component ran;
:func:`attribute` charges each component the CPU the tree spent between its start
and finish (the cumulative curve interpolated at those instants) and the highest
RSS sampled meanwhile. CPU-seconds move less with the shared machine's load than
wall time, so the slopes and verdicts are read on them; wall time is recorded too.

Across sizes, :func:`slopes` gives the log-log slope of each component group
between consecutive sizes, and :func:`verdicts` judges item 5's targets.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from tfx_mtl import naming
from tfx_mtl.bench.errors import BenchError

FORMATS = ("csv", "tfrecord")
# Component groups, in table order (the table); WHOLE is the whole run.
EXAMPLE_GEN, STATISTICS, TRANSFORM, TRAINERS, EVALUATORS, REST = (
    "ExampleGen", "StatisticsGen", "Transform", "Trainer + baselines", "Evaluators", "the rest")
GROUPS = (EXAMPLE_GEN, STATISTICS, TRANSFORM, TRAINERS, EVALUATORS, REST)
WHOLE = "whole run"
# The groups whose work grows with the data (item 5: slope <= 1.0 each).
DATA_GROUPS = (EXAMPLE_GEN, STATISTICS, TRANSFORM, EVALUATORS)
SLOPE_TARGET = 1.0
WALL_TARGET_ROWS, WALL_TARGET_SECONDS = 1_000_000, 30 * 60
RSS_REFERENCE_ROWS, RSS_TARGET_RATIO = 100_000, 1.2
CORRELATION = 0.5  # synth's task correlation (any valid value; the cost does not depend on it)

_STARTED = re.compile(r"^  (\S+)\s+started$")
_FINISHED = re.compile(r"^  (\S+)\s+(finished|cached \(.*\)) in\s+([0-9.]+)s$")


@dataclasses.dataclass(frozen=True)
class Settings:
    rows: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    features: int = 100
    tasks: int = 3
    formats: tuple[str, ...] = ("csv",)
    files: int = 1
    train_steps: int = 1000
    run_args: tuple[str, ...] = ()  # passed through to `tfx-mtl run`
    work_dir: str = "bench_dag_work"
    interval: float = 0.5  # seconds between samples of the process tree
    keep_runs: bool = False  # keep each run's output directory

    def __post_init__(self):
        for name in ("rows", "formats", "run_args"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("features", "tasks", "files", "train_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchError(name, f"must be an integer >= 1, got {value!r}")
        if not self.rows or any(isinstance(r, bool) or not isinstance(r, int) or r < 1
                                for r in self.rows):
            raise BenchError("rows", f"must be positive integers, got {list(self.rows)}")
        if len(set(self.rows)) != len(self.rows):
            raise BenchError("rows", f"must not repeat a size, got {list(self.rows)}")
        object.__setattr__(self, "rows", tuple(sorted(self.rows)))
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise BenchError("formats", f"expected some of {', '.join(FORMATS)}, "
                                        f"got {list(self.formats)}")
        if self.features < self.tasks:
            raise BenchError("features", f"must be at least --tasks ({self.tasks}), "
                                         f"got {self.features}")
        if not self.interval > 0:
            raise BenchError("interval", f"must be > 0, got {self.interval!r}")


# --- sampling the process tree -------------------------------------------------------


class TreeSampler:
    """Cumulative CPU-seconds and summed RSS of a process and all its descendants.

    A process's ``cpu_times().children_*`` hold the CPU of the children it has
    reaped (and of theirs), so the tree's total is, over the live processes, their
    own CPU plus their reaped children's. Reading parents before children, a child
    reaped between the two reads is missed for one sample (never counted twice);
    the total reported is the running maximum, which removes that dip. CPU of a
    process whose parent exits before it (an orphan, reaped outside the tree) is
    lost; the exact total of the run comes from ``wait4``'s rusage at the end
    (:func:`run_measured`).
    """

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.cpu = 0.0  # running max of the tree's cumulative CPU-seconds
        self.max_one = 0  # bytes: the largest peak RSS (VmHWM) of one process seen

    def _tree(self) -> list:
        """The root and its live descendants, parents first (breadth first)."""
        psutil = self._psutil
        out, queue = [], [self.root]
        while queue:
            p = queue.pop(0)
            out.append(p)
            try:
                queue.extend(p.children())
            except psutil.Error:
                pass
        return out

    def sample(self) -> tuple[float, int]:
        """``(cumulative CPU-seconds, RSS bytes summed over the live tree)``."""
        psutil = self._psutil
        cpu, rss = 0.0, 0
        for p in self._tree():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    mem = p.memory_info().rss
            except psutil.Error:
                continue
            cpu += t.user + t.system + t.children_user + t.children_system
            rss += mem
            self.max_one = max(self.max_one, _peak_rss(p.pid, mem))
        self.cpu = max(self.cpu, cpu)
        return self.cpu, rss


@dataclasses.dataclass
class Sample:
    t: float  # seconds since the run started
    cpu: float  # cumulative CPU-seconds of the tree
    rss: int  # bytes, summed over the tree


@dataclasses.dataclass
class Event:
    t: float
    node: str
    kind: str  # "started" | "finished" | "cached"


def parse_progress(line: str) -> tuple[str, str] | None:
    """``(node, "started" | "finished" | "cached")`` for a progress line of ``tfx-mtl
    run``, else None."""
    line = line.rstrip("\n")
    m = _STARTED.match(line)
    if m:
        return m.group(1), "started"
    m = _FINISHED.match(line)
    if m:
        return m.group(1), "finished" if m.group(2) == "finished" else "cached"
    return None


def _peak_rss(pid: int, current: int) -> int:
    """A live process's peak RSS since its exec (``VmHWM``); ``current`` if unreadable.
    Not ``wait4``'s ``ru_maxrss``: that also holds the launching process's peak, which a
    child started by vfork carries through exec (a child of a 1 GiB pytest reports 1 GiB)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return max(current, int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return current


@dataclasses.dataclass
class Measured:
    returncode: int
    seconds: float
    cpu_exact: float  # the run's CPU-seconds from wait4's rusage (every reaped descendant)
    max_rss_one_process: int  # bytes: the largest peak RSS of one process (sampled VmHWM)
    samples: list[Sample]
    events: list[Event]
    output: list[str]  # the run's stdout + stderr lines


def run_measured(command: Sequence[str], *, interval: float = 0.5,
                 env: Mapping[str, str] | None = None,
                 on_line: Callable[[str], None] | None = None) -> Measured:
    """Runs ``command``, sampling its process tree every ``interval`` seconds and
    timestamping its progress lines (see :class:`TreeSampler`, :func:`parse_progress`)."""
    start = time.monotonic()
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=None if env is None else dict(env), bufsize=1)
    sampler = TreeSampler(proc.pid)
    samples = [Sample(0.0, 0.0, 0)]
    events: list[Event] = []
    output: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            now = time.monotonic() - start
            output.append(line.rstrip("\n"))
            parsed = parse_progress(line)
            if parsed:
                events.append(Event(now, *parsed))
            if on_line:
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rusage = None
    while rusage is None:
        cpu, rss = sampler.sample()
        samples.append(Sample(time.monotonic() - start, cpu, rss))
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rusage = usage
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(min(0.05, interval))
    seconds = time.monotonic() - start
    reader.join(timeout=30)  # a leftover grandchild may hold stdout open
    cpu_exact = rusage.ru_utime + rusage.ru_stime
    samples.append(Sample(seconds, max(cpu_exact, samples[-1].cpu), 0))
    return Measured(proc.returncode, seconds, cpu_exact, sampler.max_one,
                    samples, events, output)


# --- attribution -----------------------------------------------------------------------


def group(node: str) -> str:
    """The table's group of a component id."""
    if node in naming.EXAMPLE_GEN.values():
        return EXAMPLE_GEN
    if node == naming.STATISTICS_GEN:
        return STATISTICS
    if node == "Transform":
        return TRANSFORM
    if (node.startswith(naming.TRAINER) or naming.baseline_task(node) is not None
            or node.startswith("latest_" + naming.baseline_node(""))):
        return TRAINERS
    if node.startswith(naming.evaluator_node("")):
        return EVALUATORS
    return REST


def cpu_at(samples: Sequence[Sample], t: float) -> float:
    """The cumulative CPU at ``t``, linearly interpolated between the samples around it."""
    if t <= samples[0].t:
        return samples[0].cpu
    for a, b in zip(samples, samples[1:]):
        if a.t <= t <= b.t:
            return a.cpu if b.t == a.t else a.cpu + (b.cpu - a.cpu) * (t - a.t) / (b.t - a.t)
    return samples[-1].cpu


def peak_rss(samples: Sequence[Sample], start: float, end: float) -> int:
    """The highest RSS sampled in [start, end], or, if none fell in it, at the first
    sample after ``start`` (a short component between two samples)."""
    inside = [s.rss for s in samples if start <= s.t <= end]
    if inside:
        return max(inside)
    after = [s.rss for s in samples if s.t >= start]
    return after[0] if after else 0


def intervals(events: Iterable[Event]) -> list[tuple[str, float, float, bool]]:
    """``(node, start, end, cached)`` per component that finished, in run order."""
    started: dict[str, float] = {}
    out = []
    for e in events:
        if e.kind == "started":
            started[e.node] = e.t
        elif e.node in started:
            out.append((e.node, started.pop(e.node), e.t, e.kind == "cached"))
    return out


def attribute(samples: Sequence[Sample], events: Iterable[Event], rows: int,
              total_seconds: float, total_cpu: float) -> dict[str, Any]:
    """Per component and per group: wall seconds, CPU-seconds, rows/s (rows / wall) and
    peak RSS; the time and CPU outside every component (start-up, validation, the
    summary) go to the group ``the rest``, and ``whole run`` has the totals."""
    spans = intervals(events)
    components = {}
    for node, start, end, cached in spans:
        wall = end - start
        components[node] = {"group": group(node), "seconds": wall,
                            "cpu_seconds": cpu_at(samples, end) - cpu_at(samples, start),
                            "peak_rss": peak_rss(samples, start, end), "cached": cached}
    groups: dict[str, dict[str, float]] = {
        g: {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss": 0} for g in GROUPS}
    for c in components.values():
        g = groups[c["group"]]
        g["seconds"] += c["seconds"]
        g["cpu_seconds"] += c["cpu_seconds"]
        g["peak_rss"] = max(g["peak_rss"], c["peak_rss"])
    rest = groups[REST]
    rest["seconds"] += max(0.0, total_seconds - sum(c["seconds"] for c in components.values()))
    rest["cpu_seconds"] += max(0.0, total_cpu - sum(c["cpu_seconds"]
                                                    for c in components.values()))
    outside = [s.rss for s in samples
               if not any(start <= s.t <= end for _, start, end, _ in spans)]
    rest["peak_rss"] = max([rest["peak_rss"], *outside])
    groups[WHOLE] = {"seconds": total_seconds, "cpu_seconds": total_cpu,
                     "peak_rss": max((s.rss for s in samples), default=0)}
    for table in (components, groups):
        for v in table.values():
            v["rows_per_second"] = rows / v["seconds"] if v["seconds"] > 0 else None
    return {"components": components, "groups": groups}


# --- across sizes ----------------------------------------------------------------------


def slope(x1: float, y1: float, x2: float, y2: float) -> float | None:
    """The log-log slope between (x1, y1) and (x2, y2); None if a value is not positive."""
    if min(x1, y1, x2, y2) <= 0 or x1 == x2:
        return None
    return math.log(y2 / y1) / math.log(x2 / x1)


def slopes(sizes: Mapping[int, Mapping[str, Mapping[str, float]]],
           key: str = "cpu_seconds") -> dict[str, list[dict[str, Any]]]:
    """Per group (and the whole run), the slope of ``key`` between consecutive sizes:
    ``{group: [{"from": rows, "to": rows, "slope": s}, ...]}``. ``sizes`` maps rows to
    that size's groups."""
    rows = sorted(sizes)
    out = {}
    for g in (*GROUPS, WHOLE):
        out[g] = [{"from": a, "to": b, "slope": slope(a, sizes[a][g][key], b, sizes[b][g][key])}
                  for a, b in zip(rows, rows[1:])]
    return out


def verdicts(sizes: Mapping[int, Mapping[str, Mapping[str, float]]],
             features: int) -> dict[str, dict[str, Any]]:
    """Item 5's targets, each ``{"met": True | False | None, "detail": str}`` (None: the
    sizes run cannot judge it): 1M rows x 100 features end to end under 30 minutes;
    every data component's CPU slope <= 1.0 between consecutive sizes; peak RSS of the
    largest size within 1.2x of that at 100k rows."""
    out = {}
    big = sizes.get(WALL_TARGET_ROWS)
    if big is None or features != 100:
        out["wall"] = {"met": None, "detail": f"needs {WALL_TARGET_ROWS} rows x 100 features"}
    else:
        seconds = big[WHOLE]["seconds"]
        out["wall"] = {"met": seconds < WALL_TARGET_SECONDS,
                       "detail": f"{seconds / 60:.1f} min (target < "
                                 f"{WALL_TARGET_SECONDS / 60:.0f} min)"}
    per_group = slopes(sizes)
    worst = [(s["slope"], g, s["from"], s["to"]) for g in DATA_GROUPS for s in per_group[g]
             if s["slope"] is not None]
    if not worst:
        out["slopes"] = {"met": None, "detail": "needs two sizes"}
    else:
        value, g, a, b = max(worst, key=lambda w: w[0])  # ties: the first in table order
        out["slopes"] = {"met": value <= SLOPE_TARGET,
                         "detail": f"largest: {g} {value:.2f} ({a} -> {b} rows; "
                                   f"target <= {SLOPE_TARGET:g})"}
    largest = max(sizes) if sizes else None
    if RSS_REFERENCE_ROWS not in sizes or largest is None or largest <= RSS_REFERENCE_ROWS:
        out["rss"] = {"met": None,
                      "detail": f"needs {RSS_REFERENCE_ROWS} rows and a larger size"}
    else:
        ratio = sizes[largest][WHOLE]["peak_rss"] / sizes[RSS_REFERENCE_ROWS][WHOLE]["peak_rss"]
        out["rss"] = {"met": ratio <= RSS_TARGET_RATIO,
                      "detail": f"{largest} rows / {RSS_REFERENCE_ROWS} rows: {ratio:.2f}x "
                                f"(target <= {RSS_TARGET_RATIO:g}x)"}
    return out


# --- driving the CLI -------------------------------------------------------------------


def cli(*args: str) -> list[str]:
    """The ``tfx-mtl`` command line, run by this Python."""
    return [sys.executable, "-c", "import sys; from tfx_mtl.cli import main; sys.exit(main())",
            *args]


def synth_data(settings: Settings, rows: int, fmt: str,
               progress: Callable[[str], None]) -> dict[str, str]:
    """``{"data": path, "spec": path}`` of synth data for these parameters, generated by
    ``tfx-mtl synth`` once and reused from ``work_dir/data/<key>`` on later runs."""
    key = (f"rows{rows}_features{settings.features}_tasks{settings.tasks}_{fmt}"
           f"_files{settings.files}")
    directory = os.path.join(settings.work_dir, "data", key)
    done = os.path.join(directory, "synth.json")
    if os.path.exists(done):
        with open(done) as f:
            progress(f"reusing {directory}")
            return json.load(f)
    shutil.rmtree(directory, ignore_errors=True)
    args = ["synth", "--rows", str(rows), "--tasks", str(settings.tasks), "--correlation",
            str(CORRELATION), "--features", str(settings.features), "--format", fmt,
            "--files", str(settings.files), "--out", directory]
    progress(f"generating: tfx-mtl {shlex.join(args)}")
    done_run = subprocess.run(cli(*args), capture_output=True, text=True)
    if done_run.returncode:
        raise BenchError("rows", f"tfx-mtl synth failed ({done_run.returncode}): "
                                 f"{done_run.stderr.strip() or done_run.stdout.strip()}")
    run_line = [line for line in done_run.stdout.splitlines() if line.startswith("run it: ")]
    words = shlex.split(run_line[-1][len("run it: "):])
    found = {"data": words[words.index("--data") + 1], "spec": words[words.index("--spec") + 1]}
    with open(done, "w") as f:
        json.dump(found, f)
    return found


def run_one(settings: Settings, rows: int, fmt: str,
            progress: Callable[[str], None]) -> dict[str, Any]:
    """Synth data (cached), then one measured ``tfx-mtl run`` on it in a fresh output
    directory; its temporary files (TFX's build dirs) go to a TMPDIR removed afterwards."""
    data = synth_data(settings, rows, fmt, progress)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = os.path.join(settings.work_dir, "runs", f"{fmt}-{rows}-{stamp}")
    tmp = os.path.join(settings.work_dir, "tmp", f"{fmt}-{rows}-{stamp}")
    os.makedirs(tmp, exist_ok=True)
    args = ["run", "--data", data["data"], "--spec", data["spec"], "--train-steps",
            str(settings.train_steps), "--output-dir", out_dir, *settings.run_args]
    progress(f"{fmt} {rows} rows: tfx-mtl {shlex.join(args)}")
    load_before = list(os.getloadavg())
    try:
        m = run_measured(cli(*args), interval=settings.interval,
                         env={**os.environ, "TMPDIR": tmp},
                         on_line=lambda line: parse_progress(line) and progress(line.strip()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not settings.keep_runs:
            shutil.rmtree(out_dir, ignore_errors=True)
    if m.returncode:
        tail = "\n".join(m.output[-20:])
        raise BenchError("run_args", f"tfx-mtl run failed ({m.returncode}) on {fmt} {rows} "
                                     f"rows:\n{tail}")
    result = attribute(m.samples, m.events, rows, m.seconds, m.cpu_exact)
    result.update({"rows": rows, "format": fmt, "command": "tfx-mtl " + shlex.join(args),
                   "load_before": load_before, "load_after": list(os.getloadavg()),
                   "cpu_seconds_sampled": m.samples[-2].cpu if len(m.samples) > 1 else 0.0,
                   "max_rss_one_process": m.max_rss_one_process,
                   "samples": len(m.samples)})
    return result


def arguments(s: Settings) -> list[str]:
    args = ["--rows", *map(str, s.rows), "--features", str(s.features), "--tasks",
            str(s.tasks), "--format", s.formats[0] if len(s.formats) == 1 else "both",
            "--files", str(s.files), "--train-steps", str(s.train_steps)]
    return args + [f"--run-arg={a}" for a in s.run_args]


def command_line(s: Settings) -> str:
    """The ``tfx-mtl bench dag`` command that repeats this benchmark (``--json`` aside)."""
    return "tfx-mtl bench dag " + shlex.join(arguments(s))


def run(settings: Settings, progress: Callable[[str], None],
        on_report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every format x size, then slopes and verdicts per format; the JSON report.
    ``on_report`` gets the report so far after every run (a long benchmark stopped
    midway keeps what it measured)."""
    started = time.monotonic()
    load_before = list(os.getloadavg())
    report: dict[str, Any] = {"command": command_line(settings),
                              "settings": dataclasses.asdict(settings), "formats": {}}
    for fmt in settings.formats:
        runs: list[dict[str, Any]] = []
        for rows in settings.rows:
            runs.append(run_one(settings, rows, fmt, progress))
            sizes = {r["rows"]: r["groups"] for r in runs}
            report["formats"][fmt] = {
                "runs": runs, "slopes_cpu": slopes(sizes, "cpu_seconds"),
                "slopes_wall": slopes(sizes, "seconds"),
                "verdicts": verdicts(sizes, settings.features)}
            report["machine"] = {"nproc": len(os.sched_getaffinity(0)),
                                 "load_before": load_before,
                                 "load_after": list(os.getloadavg()),
                                 "seconds": time.monotonic() - started}
            if on_report:
                on_report(report)
    return report


# --- the table -------------------------------------------------------------------------


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f}"


def _slope_text(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown(report: Mapping[str, Any]) -> str:
    """Per format: a row per group and size (wall s, CPU-s, rows/s, peak RSS GiB, the CPU
    and wall slopes from the previous size); then the verdicts."""
    lines = []
    for fmt, r in report["formats"].items():
        lines += [f"**{fmt}**", "",
                  "| component | rows | wall s | CPU-s | rows/s | peak RSS GiB "
                  "| slope CPU | slope wall |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for g in (*GROUPS, WHOLE):
            for i, run_ in enumerate(r["runs"]):
                v = run_["groups"][g]
                cpu_slope = r["slopes_cpu"][g][i - 1]["slope"] if i else None
                wall_slope = r["slopes_wall"][g][i - 1]["slope"] if i else None
                rate = v["rows_per_second"]
                name = f"**{g}**" if g == WHOLE else g
                lines.append(f"| {name if i == 0 else ''} | {run_['rows']} "
                             f"| {v['seconds']:.1f} | {v['cpu_seconds']:.1f} "
                             f"| {'' if rate is None else f'{rate:.0f}'} | {_gib(v['peak_rss'])} "
                             f"| {_slope_text(cpu_slope)} | {_slope_text(wall_slope)} |")
        lines.append("")
        labels = {"wall": "1M rows x 100 features end to end < 30 min",
                  "slopes": "every data component's CPU slope <= 1.0",
                  "rss": "peak RSS flat in rows (largest within 1.2x of 100k)"}
        for name in labels:  # the JSON's keys come back sorted
            v = r["verdicts"][name]
            state = {True: "met", False: "**not met**", None: "not measured"}[v["met"]]
            lines.append(f"- {labels[name]}: {state} ({v['detail']})")
        loads = ", ".join(f"{x['rows']} rows: {x['load_before'][0]:.1f} -> "
                          f"{x['load_after'][0]:.1f}" for x in r["runs"])
        lines += [f"- load (1 min) before -> after each run: {loads}", ""]
    return "\n".join(lines).rstrip() + "\n"
