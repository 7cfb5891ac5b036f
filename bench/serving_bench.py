"""The serving benchmark: one multi-task model vs K single-task models, over real gRPC.

Question: what does it cost to answer all K tasks for a request

(a) ``all_in_one``   -- one ``serving_default`` Predict on the multi-task model;
(b) ``per_task``     -- K Predict calls on the multi-task model, one per task signature;
(c) ``single_task``  -- K Predict calls, one to each of K single-task models (the
    pipeline's baselines), each served by its own dev server (the dev server serves
    one model), i.e. K + 1 servers in all;

for requests of 1 row and of 64 rows? The unit timed is "all tasks answered": one call
for (a), K sequential calls for (b) and (c), from one client thread.

Method: the servers are ``tfx_mtl.serving.server`` dev servers on 127.0.0.1, started
either as subprocesses (``tfx-mtl serve``; the default: the client does not share a GIL
with them, and their RSS can be read) or in this process (``server.start``; faster to
start, used by the tests; per-server memory is then not separable). The client is a raw
``PredictionServiceStub`` per server with the requests built beforehand from the same
serialized tf.Examples, so what is timed is the RPC round trip and the model, not
Python-side encoding (which is the same for every configuration). Before timing, every
configuration is warmed up and (a)'s outputs are checked against (b)'s. Then ``rounds``
rounds go round-robin over the six (configuration, rows) cells, the starting cell
rotating, each cell timing ``units`` units per round under ``time.perf_counter``.
Per cell: p50 / p99 of the unit latencies over all rounds, and units/s = units timed /
seconds spent in them. Ratios are p50s (and units/s) of (b) and (c) relative to (a).

With ``request_checks`` (``--request-checks``) the question is instead what the dev
server's checks of each Predict input against its signature
(:mod:`tfx_mtl.serving.request_checks`) cost: the multi-task model is served twice, by
``server.start(..., check_requests=True)`` (``checks_on``) and ``check_requests=False``
(``checks_off``), both in ONE process (two processes showed a first-started-is-slower
bias), and one ``serving_default`` call per unit is timed on each, in the same rounds.
Before timing, both must answer the same. Ratios are then on / off.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

from tfx_mtl.bench.errors import BenchError

CONFIGS = ("all_in_one", "per_task", "single_task")
CHECK_CONFIGS = ("checks_on", "checks_off")  # with request_checks; ratios are to checks_off
LABELS = {"all_in_one": "(a) one serving_default call, multi-task model",
          "per_task": "(b) one call per task signature, multi-task model",
          "single_task": "(c) one call per single-task model (K servers)",
          "checks_on": "request checks on (check_requests=True)",
          "checks_off": "request checks off (check_requests=False)"}
BASELINE = {False: "all_in_one", True: "checks_off"}  # request_checks -> ratios' base
BASELINE_SHORT = {"all_in_one": "(a)", "checks_off": "off"}
SERVER_MODES = ("subprocess", "inprocess")
MODEL_NAME = "multi_task"


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    model_base: str  # a pushed multi-task model: <base>/<version>/saved_model.pb
    single_task_bases: tuple[tuple[str, str], ...]  # (task, base dir or SavedModel dir)
    rows_per_request: tuple[int, ...] = (1, 64)
    units: int = 50  # timed units per cell per round
    warmup: int = 10  # untimed units per cell before the rounds
    rounds: int = 7
    input: str | None = None  # rows: .jsonl or .csv; default the bundled taxi CSV
    schema: str | None = None  # tensorflow_metadata Schema typing the rows
    servers: str = "subprocess"
    timeout: float = 30.0  # per RPC, seconds
    run_dir: str | None = None  # where model_base / single_task_bases came from, if found
    request_checks: bool = False  # compare checks on / off instead of (a) / (b) / (c)

    def __post_init__(self):
        for name in ("single_task_bases", "rows_per_request"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        for name in ("units", "warmup", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchError(name, f"must be an integer >= 1, got {value!r}")
        if not self.rows_per_request or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1
                for n in self.rows_per_request):
            raise BenchError("rows_per_request", f"must be positive integers, "
                                                 f"got {list(self.rows_per_request)}")
        if not os.path.isdir(self.model_base):
            raise BenchError("model_base", f"no directory {self.model_base}")
        if self.request_checks:
            if self.single_task_bases:
                raise BenchError("single_task_bases", "not with --request-checks (it serves "
                                                      "only the multi-task model)")
        elif not self.single_task_bases:
            raise BenchError("single_task_bases", "give at least one TASK=DIR")
        tasks = [t for t, _ in self.single_task_bases]
        if len(set(tasks)) != len(tasks):
            raise BenchError("single_task_bases", f"a task is given twice: {tasks}")
        for task, path in self.single_task_bases:
            if not task or not os.path.isdir(path):
                raise BenchError("single_task_bases", f"{task}={path}: no such directory")
        if self.servers not in SERVER_MODES:
            raise BenchError("servers", f"one of {', '.join(SERVER_MODES)}, "
                                        f"got {self.servers!r}")
        for name in ("input", "schema"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise BenchError(name, f"no file {path}")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.single_task_bases)


# -- the arithmetic (pure) ----------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclasses.dataclass(frozen=True)
class Cell:
    config: str
    rows: int
    calls_per_unit: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    units_per_second: float
    rows_per_second: float
    units: int  # timed units in all rounds


def summarise(latencies_ms: Mapping[tuple[str, int], Sequence[float]],
              calls_per_unit: Mapping[str, int]) -> list[Cell]:
    """One :class:`Cell` per (config, rows) from every timed unit's latency."""
    cells = []
    for (config, rows), values in latencies_ms.items():
        seconds = sum(values) / 1000.0
        cells.append(Cell(config, rows, calls_per_unit[config], percentile(values, 50),
                          percentile(values, 99), statistics.fmean(values),
                          len(values) / seconds, len(values) * rows / seconds, len(values)))
    order = {c: i for i, c in enumerate(CONFIGS + CHECK_CONFIGS)}
    return sorted(cells, key=lambda c: (c.rows, order.get(c.config, len(order))))


def ratios(cells: Sequence[Cell], baseline: str = "all_in_one"
           ) -> dict[int, dict[str, dict[str, float]]]:
    """rows -> config -> {"p50": its p50 / the baseline's, "p99": ..., "throughput": the
    baseline's units/s / its}: above 1 means slower than the baseline (one serving_default
    call; with request checks, the server without them)."""
    result: dict[int, dict[str, dict[str, float]]] = {}
    for rows in sorted({c.rows for c in cells}):
        by = {c.config: c for c in cells if c.rows == rows}
        base = by[baseline]
        result[rows] = {name: {"p50": c.p50_ms / base.p50_ms, "p99": c.p99_ms / base.p99_ms,
                               "throughput": base.units_per_second / c.units_per_second}
                        for name, c in by.items()}
    return result


@dataclasses.dataclass
class Report:
    settings: BenchSettings
    cells: list[Cell]
    latencies_ms: dict[tuple[str, int], list[float]]
    memory: dict[str, Any]
    machine: dict[str, Any]
    seconds: float = 0.0

    @property
    def baseline(self) -> str:
        return BASELINE[self.settings.request_checks]

    def ratios(self):
        return ratios(self.cells, self.baseline)


def format_table(report: Report) -> str:
    short = BASELINE_SHORT[report.baseline]
    header = ("configuration", "rows", "calls/unit", "p50 ms", "p99 ms", "units/s",
              f"p50 vs {short}", f"units/s vs {short}")
    r = report.ratios()
    lines = [list(header)]
    for c in report.cells:
        ratio = r[c.rows][c.config]
        lines.append([LABELS[c.config], str(c.rows), str(c.calls_per_unit), f"{c.p50_ms:.2f}",
                      f"{c.p99_ms:.2f}", f"{c.units_per_second:,.1f}", f"{ratio['p50']:.2f}",
                      f"{1 / ratio['throughput']:.2f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    if report.settings.request_checks:
        text.append("unit = one serving_default call; p50/p99 over every timed unit; "
                    "'vs off' = ratio on / off with the same rows (both servers in one "
                    "process).")
    else:
        text.append("unit = all tasks answered for one request; p50/p99 over every timed "
                    "unit; 'vs (a)' = ratio to one serving_default call with the same rows.")
    mem = report.memory
    if "rss_mib" in mem:
        text.append("server RSS (MiB): " + "; ".join(
            f"{name} {mib:.0f}" for name, mib in mem["rss_mib"].items())
            + f"; multi-task model {mem['multi_task_mib']:.0f} vs {len(report.settings.tasks)} "
              f"single-task servers {mem['single_task_total_mib']:.0f}")
    else:
        text.append(f"memory: {mem.get('note', 'not measured')}")
    return "\n".join(text)


def command_line(settings: BenchSettings) -> str:
    s = settings
    args: list[str] = []
    if s.run_dir:
        args += ["--run-dir", s.run_dir]
    else:
        args += ["--model-base", s.model_base]
        for task, path in s.single_task_bases:
            args += ["--single-task-base", f"{task}={path}"]
    if s.request_checks:
        args += ["--request-checks"]
    args += ["--rows", *map(str, s.rows_per_request), "--units", str(s.units),
             "--warmup", str(s.warmup), "--rounds", str(s.rounds), "--servers", s.servers,
             "--timeout", repr(s.timeout)]
    if s.input:
        args += ["--input", s.input]
    if s.schema:
        args += ["--schema", s.schema]
    return "tfx-mtl bench serving " + shlex.join(args)


def to_json(report: Report) -> dict[str, Any]:
    """``{"rows=1": {"all_in_one": {...}, ...}, ..., "ratios": ..., "memory": ..., ...}``."""
    result: dict[str, Any] = {}
    for c in report.cells:
        result.setdefault(f"rows={c.rows}", {})[c.config] = {
            "calls_per_unit": c.calls_per_unit, "p50_ms": c.p50_ms, "p99_ms": c.p99_ms,
            "mean_ms": c.mean_ms, "units_per_second": c.units_per_second,
            "rows_per_second": c.rows_per_second, "units": c.units}
    result["ratios"] = {f"rows={rows}": v for rows, v in report.ratios().items()}
    result["baseline"] = report.baseline
    result["latencies_ms"] = {f"{config} rows={rows}": list(v)
                              for (config, rows), v in sorted(report.latencies_ms.items())}
    result["memory"] = report.memory
    result["tasks"] = list(report.settings.tasks)
    result["settings"] = dataclasses.asdict(report.settings)
    result["machine"] = report.machine
    result["command"] = command_line(report.settings)
    result["seconds"] = report.seconds
    return result


# -- finding the models of a run --------------------------------------------------

def models_from_run(run_dir: str, baselines: bool = True
                    ) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(multi-task model base, ((task, baseline SavedModel dir), ...)) of the latest run in
    ``run_dir`` (a ``tfx-mtl run --output-dir``): the pushed version's base directory, or
    the Trainer's Format-Serving when nothing was pushed, and each baseline Trainer's
    Format-Serving, as its MLMD store records them (none if not ``baselines``)."""
    from tfx_mtl import naming
    from tfx_mtl.results import metadata

    run = metadata.find_run(run_dir)
    if run.pushed and os.path.isdir(run.pushed):
        model_base = os.path.dirname(os.path.normpath(run.pushed))
    else:
        model_base = os.path.join(run.output(naming.TRAINER, "model"), "Format-Serving")
    if not baselines:
        return model_base, ()
    singles = tuple((task, os.path.join(uri, "Format-Serving"))
                    for task, uri in run.trained_baselines().items()
                    if os.path.isdir(os.path.join(uri, "Format-Serving")))
    if not singles:
        raise LookupError(f"the latest run in {run_dir} trained no single-task baseline "
                          f"(its spec's evaluation.baselines is not 'train'?)")
    return model_base, singles


def as_model_base(path: str, workdir: str, name: str) -> str:
    """``path`` if it holds a numbered version directory with a SavedModel; a SavedModel
    directory itself (a Trainer's Format-Serving) is linked into ``workdir/name/1``.
    Refused here, before a server process starts, rather than as that process's traceback."""
    if any(e.isdigit() and os.path.isfile(os.path.join(path, e, "saved_model.pb"))
           for e in os.listdir(path)):
        return path
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise BenchError("model", f"{path}: neither a model base (<version>/saved_model.pb) "
                                  f"nor a SavedModel directory")
    base = os.path.join(workdir, name)
    os.makedirs(base, exist_ok=True)
    os.symlink(os.path.abspath(path), os.path.join(base, "1"))
    return base


# -- rows -------------------------------------------------------------------------

def load_rows(settings: BenchSettings, count: int) -> list[bytes]:
    """``count`` serialized tf.Examples from the input rows (cycled if fewer)."""
    from tfx_mtl import data as data_lib
    from tfx_mtl.serving import examples

    path, schema = settings.input, settings.schema
    if path is None:
        path = data_lib.bundled_taxi_csv()
        if schema is None:
            import tfx_mtl.schemas
            schema = os.path.join(os.path.dirname(tfx_mtl.schemas.__file__), "chicago_taxi",
                                  "schema.pbtxt")
    rows: list[dict] = []
    with open(path, newline="") as f:
        if path.endswith(".csv"):
            for row in csv.DictReader(f):
                rows.append(row)
                if len(rows) >= count:
                    break
        else:
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
                if len(rows) >= count:
                    break
    if not rows:
        raise BenchError("input", f"{path}: no rows")
    encoder = (examples.RowEncoder.from_schema_file(schema, extra="ignore") if schema
               else examples.RowEncoder())
    encoded = encoder.encode_rows(rows)
    return [encoded[i % len(encoded)] for i in range(count)]


# -- servers ----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A dev server serving ``base`` as ``name``: in this process or as ``tfx-mtl serve``."""

    def __init__(self, base: str, name: str, mode: str):
        self.name, self.mode, self.process, self.server = name, mode, None, None
        if mode == "inprocess":
            from tfx_mtl.serving import server
            self.server = server.start(base, name)
            self.address = self.server.address
        else:
            port = _free_port()
            self.address = f"127.0.0.1:{port}"
            self.process = subprocess.Popen(
                [sys.executable, "-c", "import sys; from tfx_mtl.cli import main; "
                                       "sys.exit(main())",
                 "serve", "--model-base", base, "--model-name", name, "--port", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    def wait_ready(self, timeout: float = 180.0) -> None:
        _wait_ready(self.address, self.name, self.process,
                    lambda: self.process.stderr.read().decode(), timeout)

    def rss_mib(self) -> float | None:
        if self.process is None:
            return None
        import psutil
        return psutil.Process(self.process.pid).memory_info().rss / 2 ** 20

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(0)
        _stop_process(self.process)


def _wait_ready(address: str, name: str, process: subprocess.Popen | None,
                stderr: Callable[[], str], timeout: float = 180.0) -> None:
    """Until GetModelStatus at ``address`` reports a version of ``name`` AVAILABLE (the
    server process may still be importing TensorFlow); fails if ``process`` exits."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the dev server process for {name} exited with "
                                   f"{process.returncode}: {stderr()[-2000:]}")
            try:
                status = stub.GetModelStatus(request, timeout=5)
                if any(v.state == v.AVAILABLE for v in status.model_version_status):
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server for {name} at {address} not ready "
                                   f"after {timeout:.0f} s")
            time.sleep(0.5)


def _stop_process(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_checks_pair(base: str, name: str, ports: Sequence[int] = (0, 0)) -> dict[str, Any]:
    """Two dev servers of ``base`` in this process: ``checks_on`` and ``checks_off``
    (``check_requests`` True / False), as {config: DevServer}."""
    from tfx_mtl.serving import server

    return {config: server.start(base, name, port=port, check_requests=config == "checks_on")
            for config, port in zip(CHECK_CONFIGS, ports)}


def serve_checks_pair(base: str, name: str, port_on: str, port_off: str) -> None:
    """The body of the benchmark's server process: the pair on the given ports, until killed."""
    servers = start_checks_pair(base, name, (int(port_on), int(port_off)))
    servers["checks_on"].wait()


class _ChecksPair:
    """The checks-on and checks-off servers of one model, in this process or together in
    one subprocess (:func:`serve_checks_pair`); ``addresses``: {config: host:port}."""

    def __init__(self, base: str, name: str, mode: str, workdir: str):
        self.name, self.process, self.servers = name, None, {}
        self.log = os.path.join(workdir, "checks_pair.log")
        if mode == "inprocess":
            self.servers = start_checks_pair(base, name)
            self.addresses = {c: s.address for c, s in self.servers.items()}
        else:
            ports = [_free_port() for _ in CHECK_CONFIGS]
            self.addresses = {c: f"127.0.0.1:{p}" for c, p in zip(CHECK_CONFIGS, ports)}
            with open(self.log, "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", "import sys; from tfx_mtl.bench import "
                     "serving_bench; serving_bench.serve_checks_pair(*sys.argv[1:])",
                     base, name, *map(str, ports)],
                    stdout=subprocess.DEVNULL, stderr=log,
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    def wait_ready(self) -> None:
        for address in self.addresses.values():
            _wait_ready(address, self.name, self.process, self._stderr)

    def _stderr(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop(0)
        _stop_process(self.process)


class Caller:
    """Pre-built PredictRequests for one configuration; ``unit(rows)`` answers all tasks."""

    def __init__(self, calls: Sequence[tuple[Any, str, str]], examples: Sequence[bytes],
                 rows_per_request: Sequence[int], timeout: float):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        self.timeout = timeout
        self.requests: dict[int, list[tuple[Any, Any]]] = {}
        for n in rows_per_request:
            tensor = tf.make_tensor_proto(list(examples[:n]), dtype=tf.string, shape=[n])
            built = []
            for stub, model, signature in calls:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = model
                request.model_spec.signature_name = signature
                request.inputs["examples"].CopyFrom(tensor)
                built.append((stub, request))
            self.requests[n] = built
        self.calls = len(calls)

    def unit(self, rows: int) -> list:
        return [stub.Predict(request, timeout=self.timeout)
                for stub, request in self.requests[rows]]


def _outputs(responses) -> dict[str, Any]:
    import tensorflow as tf
    return {key: tf.make_ndarray(value) for r in responses for key, value in r.outputs.items()}


def _same(expected, value) -> bool:
    import numpy as np
    return expected is not None and (
        np.array_equal(expected, value) if value.dtype == object
        else np.allclose(expected, value, rtol=1e-5, atol=1e-6))


def check_same_answers(all_in_one: Caller, per_task: Caller, tasks: Sequence[str],
                       rows: int) -> None:
    """(a) and (b) on the multi-task model must give the same numbers."""
    combined = _outputs(all_in_one.unit(rows))
    for task, response in zip(tasks, per_task.unit(rows)):
        for key, value in _outputs([response]).items():
            if not _same(combined.get(f"{task}_{key}"), value):
                raise RuntimeError(f"serving_default's {task}_{key} differs from signature "
                                   f"{task!r}'s {key}")


def check_same_outputs(callers: Mapping[str, Caller], rows: int) -> None:
    """Every configuration must give the first one's outputs (names and numbers)."""
    answers = {config: _outputs(caller.unit(rows)) for config, caller in callers.items()}
    (first, expected), *others = answers.items()
    for config, outputs in others:
        if set(outputs) != set(expected):
            raise RuntimeError(f"{config} answers with outputs {sorted(outputs)}, {first} "
                               f"with {sorted(expected)}")
        for key, value in outputs.items():
            if not _same(expected[key], value):
                raise RuntimeError(f"{config}'s {key} differs from {first}'s ({rows} rows)")


def interleaved(callers: Mapping[str, Caller], rows_per_request: Sequence[int], units: int,
                rounds: int, progress: Callable[[str], None] = lambda _: None
                ) -> dict[tuple[str, int], list[float]]:
    """Latency (ms) of every timed unit of every (config, rows) cell, in rotating rounds."""
    cells = [(config, rows) for rows in rows_per_request for config in callers]
    latencies: dict[tuple[str, int], list[float]] = {cell: [] for cell in cells}
    for r in range(rounds):
        started = time.perf_counter()
        shift = r % len(cells)
        for config, rows in cells[shift:] + cells[:shift]:
            caller, out = callers[config], latencies[(config, rows)]
            for _ in range(units):
                t0 = time.perf_counter()
                caller.unit(rows)
                out.append((time.perf_counter() - t0) * 1000.0)
        progress(f"round {r + 1}/{rounds}: {time.perf_counter() - started:.1f} s")
    return latencies


def run(settings: BenchSettings, progress: Callable[[str], None] = lambda _: None) -> Report:
    """Starts the K + 1 servers, warms up, checks (a) == (b), times the rounds; with
    ``settings.request_checks``, :func:`run_request_checks`."""
    if settings.request_checks:
        return run_request_checks(settings, progress)
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tfx_mtl.bench.train_bench import machine

    started = time.perf_counter()
    tasks = settings.tasks
    examples = load_rows(settings, max(settings.rows_per_request))
    servers: list[_Server] = []
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as workdir, \
            contextlib.ExitStack() as stack:
        stack.callback(lambda: [s.stop() for s in reversed(servers)])
        bases = [(MODEL_NAME, as_model_base(settings.model_base, workdir, MODEL_NAME))]
        bases += [(f"single_{task}", as_model_base(path, workdir, f"single_{task}"))
                  for task, path in settings.single_task_bases]
        for name, base in bases:
            progress(f"starting a {settings.servers} dev server for {name} ({base})")
            servers.append(_Server(base, name, settings.servers))
        for server in servers:
            server.wait_ready()
        stubs = {}
        for server in servers:
            channel = stack.enter_context(grpc.insecure_channel(server.address))
            stubs[server.name] = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        multi = stubs[MODEL_NAME]
        callers = {
            "all_in_one": Caller([(multi, MODEL_NAME, "serving_default")], examples,
                                  settings.rows_per_request, settings.timeout),
            "per_task": Caller([(multi, MODEL_NAME, task) for task in tasks], examples,
                                settings.rows_per_request, settings.timeout),
            "single_task": Caller([(stubs[f"single_{task}"], f"single_{task}", task)
                                    for task in tasks], examples, settings.rows_per_request,
                                   settings.timeout)}
        for rows in settings.rows_per_request:
            check_same_answers(callers["all_in_one"], callers["per_task"], tasks, rows)
        latencies = _warm_up_and_time(callers, settings, progress)
        memory = _memory(servers, settings)
    cells = summarise(latencies, {name: c.calls for name, c in callers.items()})
    return Report(settings, cells, latencies, memory, machine(), time.perf_counter() - started)


def run_request_checks(settings: BenchSettings,
                       progress: Callable[[str], None] = lambda _: None) -> Report:
    """Starts the checks-on / checks-off pair, checks they answer the same, warms up,
    times one serving_default call per unit on each in the same rounds."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tfx_mtl.bench.train_bench import machine

    started = time.perf_counter()
    examples = load_rows(settings, max(settings.rows_per_request))
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as workdir, \
            contextlib.ExitStack() as stack:
        base = as_model_base(settings.model_base, workdir, MODEL_NAME)
        progress(f"starting the checks on / off dev servers ({settings.servers}) for {base}")
        pair = _ChecksPair(base, MODEL_NAME, settings.servers, workdir)
        stack.callback(pair.stop)
        pair.wait_ready()
        callers = {}
        for config, address in pair.addresses.items():
            channel = stack.enter_context(grpc.insecure_channel(address))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            callers[config] = Caller([(stub, MODEL_NAME, "serving_default")], examples,
                                      settings.rows_per_request, settings.timeout)
        for rows in settings.rows_per_request:
            check_same_outputs(callers, rows)
        latencies = _warm_up_and_time(callers, settings, progress)
    memory = {"servers": settings.servers,
              "note": "not compared: the checks on and off servers share one process"}
    cells = summarise(latencies, {name: c.calls for name, c in callers.items()})
    return Report(settings, cells, latencies, memory, machine(), time.perf_counter() - started)


def _warm_up_and_time(callers: Mapping[str, Caller], settings: BenchSettings,
                      progress: Callable[[str], None]) -> dict[tuple[str, int], list[float]]:
    for rows in settings.rows_per_request:
        for config, caller in callers.items():
            progress(f"warming up {config}, {rows} rows")
            for _ in range(settings.warmup):
                caller.unit(rows)
    return interleaved(callers, settings.rows_per_request, settings.units, settings.rounds,
                       progress)


def _memory(servers: Sequence[_Server], settings: BenchSettings) -> dict[str, Any]:
    if settings.servers != "subprocess":
        import psutil
        return {"servers": "inprocess",
                "process_rss_mib": psutil.Process().memory_info().rss / 2 ** 20,
                "note": "servers ran in the benchmark's process: per-server RSS is not "
                        "separable (run with --servers subprocess)"}
    rss = {s.name: s.rss_mib() for s in servers}
    return {"servers": "subprocess", "rss_mib": rss, "multi_task_mib": rss[MODEL_NAME],
            "single_task_total_mib": sum(v for k, v in rss.items() if k != MODEL_NAME),
            "note": "RSS of each `tfx-mtl serve` process after the timed rounds; each "
                    "includes the Python + TensorFlow runtime (~the same for every server)"}
