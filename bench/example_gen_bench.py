"""ExampleGen's peak memory and CPU per row: TFX's CsvExampleGen vs the project's
streaming executor (components/streaming_csv.py), side by side, at several sizes.

Question (issue 18): does ExampleGen's memory stay flat in rows on the local runner
(Beam's FnApiRunner, in memory, one worker)? Target: peak RSS at the largest size
within 1.2x of that at 100k rows, and CPU-s per row no more than ~10% above TFX's.

Method: ``tfx-mtl synth`` data (``--features`` numeric features, 3 tasks) of each size
is written once (as ``--files`` files); then, per size, each executor runs ExampleGen
alone (a one-node LocalDagRunner pipeline with the project's local Beam args) in a
child process, executors alternating so both see the same machine load. The child's
peak RSS is the maximum over samples (every ``interval`` s, psutil) of the summed RSS
of its process tree; its CPU-seconds are user + system time of the child tree
(``RUSAGE_CHILDREN``). The child's TMPDIR is inside the work directory, so the
sdist TFX builds per run is removed with it.

    .venv/bin/python -m tfx_mtl.bench.example_gen_bench --rows 10000,100000,300000 \\
        --out bench_example_gen.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

EXECUTORS = ("tfx", "streaming", "import", "import-streaming")
# The data format each executor reads: CSV, or TFRecord (ImportExampleGen).
FORMATS = {"tfx": "csv", "streaming": "csv", "import": "tfrecord", "import-streaming": "tfrecord"}


def example_gen(executor: str, data_dir: str):
    """The ExampleGen the pipeline builds for ``data_dir`` (``streaming``,
    ``import-streaming``), or TFX's CsvExampleGen (``tfx``) / ImportExampleGen (``import``)
    with the same input and split configuration."""
    from tfx import v1 as tfx

    from tfx_mtl.pipeline import pipeline as pipeline_lib

    ours = pipeline_lib.create_example_gen(pipeline_lib.DataSource.from_path(data_dir))
    if executor.endswith("streaming"):
        return ours
    tfx_class = tfx.components.CsvExampleGen if executor == "tfx" else tfx.components.ImportExampleGen
    return tfx_class(
        input_base=ours.exec_properties["input_base"],
        input_config=ours.exec_properties["input_config"],
        output_config=ours.exec_properties["output_config"])


def run_alone(executor: str, data_dir: str, root: str) -> None:
    """Runs the ExampleGen alone under ``root`` (the child process's job)."""
    from tfx import v1 as tfx

    from tfx_mtl.pipeline import pipeline as pipeline_lib

    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="example-gen-bench", pipeline_root=os.path.join(root, "root"),
        components=[example_gen(executor, data_dir)],
        beam_pipeline_args=list(pipeline_lib.DIRECT_BEAM_ARGS),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(root, "metadata.sqlite"))))


def _tree_rss(process) -> int:
    import psutil

    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass  # ended between listing and reading
    return total


def measure(executor: str, data_dir: str, work_dir: str, interval: float = 0.05) -> dict:
    """One child run of ``executor`` on ``data_dir``: peak RSS (bytes), CPU-s, wall s."""
    import psutil

    root = tempfile.mkdtemp(prefix=f"example_gen_{executor}_", dir=work_dir)
    env = dict(os.environ, TMPDIR=root)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = psutil.Popen([sys.executable, "-m", "tfx_mtl.bench.example_gen_bench", "--child",
                          executor, "--data", data_dir, "--root", root], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_rss(child))
        except psutil.NoSuchProcess:
            break
        time.sleep(interval)
    stderr = child.stderr.read().decode(errors="replace")
    code = child.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(root, ignore_errors=True)
    if code:
        raise RuntimeError(f"{executor} ExampleGen failed ({code}): {stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"executor": executor, "peak_rss_bytes": peak, "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2)}


def write_data(rows: int, features: int, files: int, out_dir: str, fmt: str = "csv") -> str:
    """``tfx-mtl synth`` data of ``rows`` rows in ``files`` files of ``fmt``; its directory."""
    from tfx_mtl import synth

    config = synth.SynthConfig(rows=rows, tasks=3, correlation=0.5, features=features)
    synth.write(config, out_dir, fmt=fmt, files=files)
    return out_dir


def run(sizes, features: int, files: int, executors, work_dir: str) -> list[dict]:
    """Every size x executor, executors alternating per size; one row per run."""
    results = []
    for rows in sizes:
        data_dirs = {fmt: write_data(rows, features, files,
                                     os.path.join(work_dir, f"data_{rows}_{fmt}"), fmt)
                     for fmt in sorted({FORMATS[e] for e in executors})}
        for executor in executors:
            result = measure(executor, data_dirs[FORMATS[executor]], work_dir)
            result.update(rows=rows, features=features, files=files,
                          cpu_us_per_row=round(1e6 * result["cpu_s"] / rows, 1))
            results.append(result)
            print(f"{rows:>8} rows  {executor:<16} peak {result['peak_rss_bytes'] / 2**20:7.0f} MiB"
                  f"  cpu {result['cpu_s']:7.1f} s  ({result['cpu_us_per_row']} us/row)"
                  f"  wall {result['wall_s']:6.1f} s", flush=True)
        for data_dir in data_dirs.values():
            shutil.rmtree(data_dir, ignore_errors=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,100000,300000",
                        help="comma-separated sizes (default: 10000,100000,300000)")
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--files", type=int, default=1, help="CSV files per dataset")
    parser.add_argument("--executors", default="tfx,streaming",
                        help=f"comma-separated, of {', '.join(EXECUTORS)} (default: tfx,streaming)")
    parser.add_argument("--work-dir", help="scratch directory (default: a new temporary one)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", choices=EXECUTORS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_alone(args.child, args.data, args.root)
        return 0
    executors = [e for e in args.executors.split(",") if e]
    if not executors or set(executors) - set(EXECUTORS):
        parser.error(f"--executors: choose from {', '.join(EXECUTORS)}")
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="example_gen_bench_")
    os.makedirs(work_dir, exist_ok=True)
    load = os.getloadavg()
    print(f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores", flush=True)
    results = run([int(r) for r in args.rows.split(",")], args.features, args.files,
                  executors, work_dir)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"load_at_start": load, "cores": os.cpu_count(), "runs": results}, f,
                      indent=1)
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
