"""Transform's cost alone, on the bundled taxi data and on ``synth`` data, side by side.

Question: what does the pipeline's own Transform node cost, per dataset? Method: for each
dataset, a fresh child process builds the real pipeline (``create_pipeline``) and runs it
with LocalDagRunner up to SchemaGate (ExampleGen, StatisticsGen, the schema, the gate),
then runs the Transform node alone (``from_nodes=to_nodes=[Transform]``) and records the
CPU-seconds of that process (every thread; the local Beam runner is in-process) and its
wall time over that second run only, and the peak RSS sampled during it. The datasets
run one after the other in one invocation; ``uptime``'s load is recorded before each.

    .venv/bin/python -m tfx_mtl.bench.transform_bench --rows 10000 --features 100 --tasks 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Sequence

TRANSFORM = "Transform"  # TFX's node id of the Transform component
GATE = "SchemaGate"  # the last node Transform waits for


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class _PeakRss:
    """Samples this process's RSS every ``interval`` s in a thread (psutil)."""

    def __init__(self, interval: float = 0.2):
        import psutil
        self._process, self._interval = psutil.Process(), interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def measure_transform(data_path: str, spec_path: str, workdir: str) -> dict[str, Any]:
    """Runs the pipeline up to the schema gate, then Transform alone; its cost."""
    from tfx import v1 as tfx
    from tfx.orchestration import pipeline as tfx_pipeline

    from tfx_mtl import task_spec
    from tfx_mtl.pipeline import pipeline as pipeline_lib

    pipeline = pipeline_lib.create_pipeline(
        pipeline_name="transform_bench", pipeline_root=os.path.join(workdir, "root"),
        data=pipeline_lib.DataSource.from_path(data_path), spec=task_spec.load(spec_path),
        serving_model_dir=os.path.join(workdir, "serving"), train_steps=1,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(workdir, "metadata.sqlite")))
    runner = tfx.orchestration.LocalDagRunner()
    runner.run(pipeline, run_options=tfx_pipeline.RunOptions(to_nodes=[GATE]))
    load = _load()
    cpu, wall = time.process_time(), time.perf_counter()
    with _PeakRss() as rss:
        runner.run(pipeline, run_options=tfx_pipeline.RunOptions(
            from_nodes=[TRANSFORM], to_nodes=[TRANSFORM]))
    return {"cpu_s": round(time.process_time() - cpu, 2),
            "wall_s": round(time.perf_counter() - wall, 2),
            "peak_rss_mib": round(rss.peak / 2**20), "load_before": load}


def _child(argv: Sequence[str]) -> int:
    data_path, spec_path, workdir = argv
    print(json.dumps(measure_transform(data_path, spec_path, workdir)))
    return 0


def _taxi(rows: int | None, workdir: str) -> str:
    """The bundled taxi CSV, or a copy of its header and first ``rows`` rows."""
    from tfx_mtl import data

    if rows is None:
        return data.bundled_taxi_csv()
    path = os.path.join(workdir, "taxi", "data.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(data.bundled_taxi_csv()) as source, open(path, "w") as out:
        out.writelines(line for _, line in zip(range(rows + 1), source))
    return path


def datasets(rows: int, features: int, tasks: int, workdir: str, taxi_rows: int | None = None
             ) -> dict[str, tuple[str, str]]:
    """{name: (data, spec)}: the bundled taxi data and synth data of the given size."""
    from tfx_mtl import data, synth

    written = synth.write(synth.SynthConfig(rows=rows, features=features, tasks=tasks),
                          os.path.join(workdir, "synth"))
    return {"taxi": (_taxi(taxi_rows, workdir), data.bundled_spec()),
            f"synth_{rows}x{features}": (written["data"], written["spec"])}


def run(rows: int, features: int, tasks: int, workdir: str, taxi_rows: int | None = None
        ) -> dict[str, Any]:
    """Each dataset's Transform measured in its own child process, one after the other;
    ``ratio_cpu``: synth's CPU-seconds over taxi's."""
    results: dict[str, Any] = {}
    for name, (data_path, spec_path) in datasets(
            rows, features, tasks, workdir, taxi_rows).items():
        out = subprocess.run(
            [sys.executable, "-m", __spec__.name if __spec__ else "tfx_mtl.bench.transform_bench",
             "--child", data_path, spec_path, os.path.join(workdir, name)],
            capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{name}: the Transform run failed:\n{out.stderr[-4000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    names = list(results)
    results["ratio_cpu"] = round(results[names[1]]["cpu_s"] / results[names[0]]["cpu_s"], 2)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--taxi-rows", type=int, help="the taxi data's first rows only "
                        "(default: all 15,002)")
    parser.add_argument("--workdir", help="kept if given; a temporary one otherwise")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="transform-bench-")
    try:
        report = {"command": " ".join(["python -m tfx_mtl.bench.transform_bench", *argv]),
                  "cores": os.cpu_count(), "beam": "in-process DirectRunner, 1 worker",
                  **run(args.rows, args.features, args.tasks, workdir, args.taxi_rows)}
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
