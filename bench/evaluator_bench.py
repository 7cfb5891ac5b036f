"""One task's TFX Evaluator alone, on real exported models: its CPU-seconds and peak RSS.

Issue 18 measured the K Evaluators of a whole DAG; this isolates one so its cost per eval
example (and its memory per eval example) can be read from two sizes::

    .venv/bin/python -m tfx_mtl.bench.evaluator_bench --rows 5000,20000 --features 100 --tasks 3

``prepare`` builds what the DAG would hand an Evaluator, without running the DAG: a real
Transform (TFT on Beam, over a small sample of ``tfx_mtl.synth`` rows), the multi-task
model and the task's single-task baseline exported by ``models.export`` (untrained: the
cost of scoring does not depend on the weights), and the test split of ``rows`` synth rows
as gzipped ``tf.Example`` TFRecords. ``evaluate`` runs TFX's Evaluator executor on them
with the pipeline's EvalConfig, module and Beam args. Each size is evaluated in a process
of its own so its CPU-seconds (user + system) and peak RSS are that run's alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Sequence

TRANSFORM_ROWS = 512  # rows the bench's Transform analyses (its graph scores any number)


def _synth_config(rows: int, features: int, tasks: int, seed: int = 0):
    from tfx_mtl import synth
    return synth.SynthConfig(rows=rows, tasks=tasks, features=features, seed=seed,
                             task_types=("binary",) + ("regression",) * (tasks - 1))


def _spec(features: int, tasks: int):
    from tfx_mtl import synth, task_spec
    return task_spec.parse(__import__("yaml").safe_load(
        synth.spec_yaml(_synth_config(1, features, tasks))))


def _examples(rows: int, features: int, tasks: int):
    """The synth rows as serialized tf.Examples (features float, binary labels int64)."""
    import tensorflow as tf

    from tfx_mtl import synth
    config = _synth_config(rows, features, tasks)
    names, types = synth.task_names(config), config.types
    for chunk in synth.chunks(config, chunk_rows=min(rows, 10_000)):
        columns = {k: v.tolist() for k, v in chunk.items()}
        for i in range(len(next(iter(columns.values())))):
            feature = {}
            for name, values in columns.items():
                if name in names and types[names.index(name)] == "binary":
                    feature[name] = tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[int(values[i])]))
                else:
                    feature[name] = tf.train.Feature(
                        float_list=tf.train.FloatList(value=[values[i]]))
            yield tf.train.Example(features=tf.train.Features(
                feature=feature)).SerializeToString(deterministic=True)


_KINDS = {"float_list": "float32", "int64_list": "int64", "bytes_list": "string"}


def _raw_spec(spec, examples: list[bytes]) -> dict:
    """Every column the spec reads, VarLen (a value may be missing), typed as the first
    example holding it stores it."""
    import tensorflow as tf
    columns = list(spec.feature_names) + [c for c in spec.label_columns
                                          if c not in spec.feature_names]
    kinds = {}
    for example in examples:
        for name, feature in tf.train.Example.FromString(example).features.feature.items():
            kind = feature.WhichOneof("kind")
            if kind:
                kinds.setdefault(name, _KINDS[kind])
    return {c: tf.io.VarLenFeature(tf.as_dtype(kinds.get(c, "float32"))) for c in columns}


def _transform(spec, examples: list[bytes], out_dir: str):
    """A real Transform output for ``spec`` analysed on ``examples``."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from tfx_mtl.models import preprocessing

    raw_spec = _raw_spec(spec, examples)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    parsed = tf.io.parse_example(tf.constant(examples), raw_spec)
    columns = {k: tf.RaggedTensor.from_sparse(v).to_list() for k, v in parsed.items()}
    rows = [{k: np.asarray(v[i]) for k, v in columns.items()} for i in range(len(examples))]
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(dir=os.path.dirname(out_dir))):
        _ = ((rows, metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing.transform(inputs, spec))
             | tft_beam.WriteTransformFn(out_dir))
    metadata_io.write_metadata(metadata, f"{out_dir}/{tft.TFTransformOutput.RAW_METADATA_DIR}")
    return tft.TFTransformOutput(out_dir)


def _export(spec, tft_output, export_dir: str, seed: int) -> None:
    import tensorflow as tf

    from tfx_mtl import naming
    from tfx_mtl.models import architecture, export, families, features

    tf.keras.utils.set_random_seed(seed)
    classes = {t.name: tft_output.vocabulary_size_by_name(naming.label_vocab_name(t.name))
               for t in spec.tasks if t.type == "multiclass"}
    network = families.build(
        spec, features.input_cardinalities(spec, tft_output.vocabulary_size_by_name), classes,
        architecture.ArchitectureConfig(hidden_units=(32,), tower_units=(16,)))
    stats = {t.name: (1.0, 2.0) for t in spec.tasks if t.type == "regression"}
    export.export(network.model, spec, tft_output, stats, export_dir)


def write_test_split(workdir: str, examples: Iterable[bytes]) -> list[bytes]:
    """``examples`` as the test split of ``workdir/examples`` (gzipped TFRecords, as
    ExampleGen writes them); returns the first TRANSFORM_ROWS of them."""
    import tensorflow as tf

    from tfx_mtl import naming
    split_dir = os.path.join(workdir, "examples", f"Split-{naming.TEST}")
    os.makedirs(split_dir)
    sample = []
    with tf.io.TFRecordWriter(os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz"),
                              options="GZIP") as writer:
        for example in examples:
            writer.write(example)
            if len(sample) < TRANSFORM_ROWS:
                sample.append(example)
    return sample


def write_models(workdir: str, spec, sample: list[bytes], tasks: Sequence[str]) -> None:
    """A Transform analysed on ``sample``, the multi-task model (``candidate/``) and each
    of ``tasks``' single-task baseline (``baseline_<task>/``), as Trainer artifacts
    (``<uri>/Format-Serving``), and ``spec.json``."""
    tft_output = _transform(spec.transform_view(), sample, os.path.join(workdir, "transform"))
    _export(spec.training_view(), tft_output,
            os.path.join(workdir, "candidate", "Format-Serving"), seed=0)
    for i, task in enumerate(tasks):
        _export(spec.restricted_to(task).training_view(), tft_output,
                os.path.join(workdir, f"baseline_{task}", "Format-Serving"), seed=1 + i)
    with open(os.path.join(workdir, "spec.json"), "w") as f:
        json.dump(spec.to_dict(), f)


def prepare(workdir: str, rows: int, features: int = 100, tasks: int = 3) -> dict:
    """``rows`` synth rows as ``workdir``'s test split, and the models of its first task."""
    spec = _spec(features, tasks)
    os.makedirs(workdir, exist_ok=True)
    sample = write_test_split(workdir, _examples(rows, features, tasks))
    write_models(workdir, spec, sample, spec.task_names[:1])
    return {"workdir": workdir, "task": spec.task_names[0], "rows": rows}


def evaluate(workdir: str, out_dir: str, task: str | None = None, one_pass: bool = True
             ) -> str:
    """Runs TFX's Evaluator executor as the pipeline builds it (EvalConfig, module, Beam
    args) for ``task`` (default: the spec's first) on ``workdir``'s models and test split;
    ``one_pass=False`` runs it without the project's extractors (TFMA's defaults: each
    model's ``transform_features`` first). Returns the evaluation's uri."""
    from tfx.components.evaluator import executor
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import proto_utils

    from tfx_mtl import naming
    from tfx_mtl.pipeline import eval_config, pipeline
    from tfx_mtl.task_spec import TaskSpec

    with open(os.path.join(workdir, "spec.json")) as f:
        spec = TaskSpec.from_dict(json.load(f))
    task = task or spec.task_names[0]

    def artifact(cls, uri):
        result = cls()
        result.uri = uri
        os.makedirs(uri, exist_ok=True)
        return result

    examples = artifact(standard_artifacts.Examples, os.path.join(workdir, "examples"))
    examples.split_names = artifact_utils.encode_split_names([naming.TEST])
    evaluation = artifact(standard_artifacts.ModelEvaluation, os.path.join(out_dir, "evaluation"))
    properties = {
        "eval_config": proto_utils.proto_to_json(eval_config.for_task(spec, task)),
        "example_splits": json.dumps([naming.TEST])}
    if one_pass:
        properties["module_path"] = eval_config.EXTRACTORS_MODULE
    context = executor.Executor.Context(beam_pipeline_args=list(pipeline.DIRECT_BEAM_ARGS),
                                        tmp_dir=os.path.join(out_dir, "tmp"), unique_id="bench")
    executor.Executor(context).Do(
        {"examples": [examples],
         "model": [artifact(standard_artifacts.Model, os.path.join(workdir, "candidate"))],
         "baseline_model": [artifact(standard_artifacts.Model,
                                     os.path.join(workdir, f"baseline_{task}"))]},
        {"evaluation": [evaluation],
         "blessing": [artifact(standard_artifacts.ModelBlessing,
                               os.path.join(out_dir, "blessing"))]},
        properties)
    return evaluation.uri


def results(evaluation_uri: str) -> dict:
    """An evaluation's metric and plot values and its validation verdict, comparable with
    ``==`` up to float tolerance: {"metrics": {(slice, key): value}, "plots": {...},
    "validation_ok": bool}."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    def flat(records, field):
        out = {}
        for record in records:
            slice_key = str(tfma.slicer.deserialize_slice_key(record.slice_key))
            for kv in getattr(record, field):
                key = json_format.MessageToJson(kv.key, sort_keys=True, indent=None)
                value = json_format.MessageToDict(kv.value)
                out[(slice_key, key)] = value
        return out

    return {"metrics": flat(tfma.load_metrics(evaluation_uri), "metric_keys_and_values"),
            "plots": flat(tfma.load_plots(evaluation_uri), "plot_keys_and_values"),
            "validation_ok": tfma.load_validation_result(evaluation_uri).validation_ok}


def peak_rss_mib() -> float:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: Linux keeps that across
    ``exec``, so a child started from a big process reports its parent's peak."""
    with open("/proc/self/status") as f:
        (kib,) = [line.split()[1] for line in f if line.startswith("VmHWM:")]
    return round(int(kib) / 1024, 1)


def trace_rss(interval_s: float = 0.5) -> None:
    """Logs the RSS every ``interval_s`` next to Beam's "Running <stage>" lines (stderr),
    to see which stage of the in-memory runner the memory grows in."""
    import logging
    import threading

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner.run_bundle"
                      ).setLevel(logging.DEBUG)  # "Running bundle for stage <name>"

    def sample():
        while True:
            with open("/proc/self/status") as f:
                (kib,) = [line.split()[1] for line in f if line.startswith("VmRSS:")]
            logging.info("rss_mib %.0f", int(kib) / 1024)
            time.sleep(interval_s)

    threading.Thread(target=sample, daemon=True).start()


def _run_child(command: list[str]) -> dict:
    """Runs ``command``, an ``evaluate`` whose last stdout line is its CPU-seconds and peak
    RSS, which it reports itself (its own and its children's)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = child.communicate()
    if child.returncode:
        raise RuntimeError(f"{command} failed ({child.returncode}): {stderr.decode()[-3000:]}")
    return {**json.loads(stdout.decode().strip().splitlines()[-1]),
            "wall_s": round(time.perf_counter() - started, 2)}


def _workdir(root: str, rows: int, features: int, tasks: int, models: str | None) -> str:
    """``root/rows<rows>``: prepared once (kept if it exists); the models of ``models``
    (a prepared workdir) are linked, not rebuilt, so each size scores the same models."""
    workdir = os.path.join(root, f"rows{rows}")
    if os.path.exists(os.path.join(workdir, "spec.json")):
        return workdir
    shutil.rmtree(workdir, ignore_errors=True)  # an interrupted one
    if models is None:
        prepare(workdir, rows, features, tasks)
        return workdir
    os.makedirs(workdir, exist_ok=True)
    write_test_split(workdir, _examples(rows, features, tasks))
    for name in os.listdir(models):
        if name != "examples" and not name.startswith("tmp"):
            os.symlink(os.path.join(models, name), os.path.join(workdir, name))
    return workdir


def run(sizes: list[int], features: int, tasks: int, root: str, modes=("two-pass", "one-pass")
        ) -> list[dict]:
    """Each size's test split written once (the models of the first size shared), then
    each mode evaluated on it in a child process."""
    results, models = [], None
    for rows in sizes:
        workdir = _workdir(root, rows, features, tasks, models)
        models = models or workdir
        for mode in modes:
            out_dir = os.path.join(root, f"out{rows}-{mode}")
            shutil.rmtree(out_dir, ignore_errors=True)
            command = [sys.executable, "-m", "tfx_mtl.bench.evaluator_bench", "evaluate",
                       workdir, out_dir]
            if mode == "two-pass":
                command.append("--two-pass")
            results.append({"rows": rows, "mode": mode, **_run_child(command)})
            print(json.dumps(results[-1]), flush=True)
    return results


def per_example(results: list[dict]) -> dict:
    """Per mode: CPU ms and peak-RSS KB per eval example, from the smallest and largest size."""
    out = {}
    for mode in {r["mode"] for r in results}:
        rs = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["rows"])
        small, large = rs[0], rs[-1]
        rows = large["rows"] - small["rows"]
        if rows > 0:
            out[mode] = {
                "cpu_ms_per_example": round(1000 * (large["cpu_s"] - small["cpu_s"]) / rows, 4),
                "rss_kb_per_example": round(
                    1024 * (large["peak_rss_mib"] - small["peak_rss_mib"]) / rows, 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    ev = sub.add_parser("evaluate", help="run one Evaluator on a prepared workdir")
    ev.add_argument("workdir")
    ev.add_argument("out_dir")
    ev.add_argument("--two-pass", action="store_true",
                    help="TFMA's default extractors (transform_features, then the model)")
    ev.add_argument("--trace-rss", action="store_true",
                    help="log the RSS every 0.5 s beside Beam's stage names (stderr)")
    parser.add_argument("--rows", default="5000,20000", help="comma-separated sizes")
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--root", default=None, help="work directory (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        if args.trace_rss:
            trace_rss()
        evaluate(args.workdir, args.out_dir, one_pass=not args.two_pass)
        times = os.times()
        cpu = times.user + times.system + times.children_user + times.children_system
        print(json.dumps({"cpu_s": round(cpu, 2), "peak_rss_mib": peak_rss_mib()}))
        return 0
    root = args.root or tempfile.mkdtemp(prefix="evaluator-bench-")
    results = run([int(r) for r in args.rows.split(",")], args.features, args.tasks, root)
    print(json.dumps({"command": " ".join(sys.argv), "threads": os.cpu_count(),
                      "load": os.getloadavg(), "runs": results,
                      "per_example": per_example(results)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
