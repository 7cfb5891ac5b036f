"""End to end: the real DAG on a slice of the taxi data, through the `tfx-mtl` command.

Checks what a user relies on: every component ran and registered its artifacts
in the MLMD store, the pushed model loads and every signature answers real rows
with finite values of the right shape, the heads beat a trivial baseline, the
summary JSON has its contract shape, and a second run reuses TFX's cache.
"""
import csv
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl import data, naming, task_spec
from tfx_mtl.pipeline import summary as summary_lib

pytestmark = pytest.mark.slow

BIN = os.path.join(os.path.dirname(sys.executable), "tfx-mtl")
ROWS = 3000
EXPECTED_NODES = {"CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                  "SchemaGate", "Transform", "Trainer", "Evaluator", "Pusher"}


def _tfx_mtl(*args, timeout=1500):
    result = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"tfx-mtl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


MISSING_FARE_EVERY = 25  # rows whose fare (a label column) is blanked


def _write_slice(path, edit=lambda i, row: row):
    with open(data.bundled_taxi_csv(), newline="") as src, open(path, "w", newline="") as dst:
        reader, writer = csv.DictReader(src), None
        for i, row in enumerate(itertools.islice(reader, ROWS)):
            if writer is None:
                writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
                writer.writeheader()
            writer.writerow(edit(i, row))
    return path


@pytest.fixture(scope="module")
def taxi_slice(tmp_path_factory):
    """The first ROWS taxi trips, with the fare missing on every 25th (labels go missing)."""
    def blank_fare(i, row):
        return {**row, "fare": ""} if i % MISSING_FARE_EVERY == 0 else row
    return _write_slice(tmp_path_factory.mktemp("data") / "taxi.csv", blank_fare)


@pytest.fixture(scope="module")
def first_run(taxi_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary_path = out / "summary.json"
    stdout = _tfx_mtl("run", "--data", str(taxi_slice), "--output-dir", str(out / "runs"),
                      "--train-steps", "300", "--eval-steps", "5",
                      "--summary-json", str(summary_path))
    return out / "runs", stdout, json.loads(summary_path.read_text())


def test_terminal_shows_components_and_the_per_task_table(first_run):
    _, stdout, _ = first_run
    for node in EXPECTED_NODES:
        assert f"{node}" in stdout and "finished in" in stdout
    for task in ("big_tipper", "fare", "trip_seconds"):
        assert task in stdout
    assert "model pushed to" in stdout


def test_summary_json_contract(first_run):
    output_dir, _, summary = first_run
    assert summary["output_dir"] == str(output_dir)
    assert set(summary["tasks"]) == {"big_tipper", "fare", "trip_seconds"}
    for info in summary["tasks"].values():
        assert {"type", "metrics", "blessed"} <= set(info)
        assert isinstance(info["blessed"], bool)
    assert summary["tasks"]["big_tipper"]["type"] == "binary"
    assert summary["pushed"] and os.path.isdir(summary["pushed"])


def _column(csv_path, name):
    with open(csv_path, newline="") as f:
        return np.array([float(r[name]) for r in csv.DictReader(f) if r[name] != ""])


def test_heads_beat_a_trivial_baseline(first_run, taxi_slice):
    _, _, summary = first_run
    tasks = summary["tasks"]
    assert tasks["big_tipper"]["metrics"]["auc"] > 0.6  # 0.5 is a coin
    # Regression: clearly better than always predicting the mean, whose RMSE is the std.
    for task in ("fare", "trip_seconds"):
        assert tasks[task]["metrics"]["rmse"] < 0.8 * _column(taxi_slice, task).std(), task
    assert tasks["big_tipper"]["blessed"] and tasks["fare"]["blessed"]


def test_missing_labels_are_masked_not_dropped(first_run):
    _, _, summary = first_run
    for task in ("fare", "big_tipper"):  # both read the fare column
        metrics = summary["tasks"][task]["metrics"]
        missing = metrics["example_count"] - metrics["labelled_count"]
        # About 1 in 25 eval examples has no fare; they still count as examples.
        assert 0 < missing < 0.1 * metrics["example_count"], (task, metrics)


def test_every_component_registered_its_artifacts_in_mlmd(first_run):
    output_dir, _, _ = first_run
    store = summary_lib.open_store(str(output_dir / "metadata.sqlite"))
    _, executions = summary_lib.latest_run(store, "tfx-mtl-chicago-taxi")
    nodes = {}
    for execution in executions:
        for ctx in store.get_contexts_by_execution(execution.id):
            if ctx.name.startswith("tfx-mtl-chicago-taxi."):
                nodes[ctx.name.split(".", 1)[1]] = execution
    assert set(nodes) == EXPECTED_NODES
    expected_outputs = {"CsvExampleGen": "Examples", "StatisticsGen": "ExampleStatistics",
                        "ImportSchemaGen": "Schema", "ExampleValidator": "ExampleAnomalies",
                        "SchemaGate": "Schema", "Transform": "TransformGraph", "Trainer": "Model",
                        "Evaluator": "ModelEvaluation", "Pusher": "PushedModel"}
    for node, type_name in expected_outputs.items():
        artifacts = summary_lib._output_artifacts(store, nodes[node], type_name)
        assert artifacts, f"{node} registered no {type_name}"
        assert all(os.path.exists(a.uri) for a in artifacts)


def _serialized_rows(csv_path, n=16):
    """CSV rows as serialized tf.Examples typed by the curated schema (all columns)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = text_format.Parse(
        open(os.path.join(os.path.dirname(data.bundled_spec()), "schema.pbtxt")).read(),
        schema_pb2.Schema())
    types = {f.name: f.type for f in schema.feature}
    with open(csv_path, newline="") as f:
        rows = list(itertools.islice(csv.DictReader(f), n))
    examples = []
    for row in rows:
        feature = {}
        for name, text in row.items():
            if text == "":
                continue
            if types[name] == schema_pb2.INT:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(text)]))
            elif types[name] == schema_pb2.FLOAT:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(text)]))
            else:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)))
    return tf.constant([e.SerializeToString() for e in examples])


def test_pushed_model_answers_every_signature(first_run, taxi_slice):
    _, _, summary = first_run
    spec = task_spec.load(data.bundled_spec())
    model = tf.saved_model.load(summary["pushed"])
    assert set(model.signatures) == {"serving_default", "transform_features", "evaluation",
                                     *spec.task_names}
    examples = _serialized_rows(taxi_slice)
    n = int(examples.shape[0])
    everything = model.signatures["serving_default"](examples=examples)
    for task in spec.tasks:
        outputs = model.signatures[task.name](examples=examples)
        assert set(outputs) == set(naming.OUTPUTS[task.type])
        for name, value in outputs.items():
            assert value.shape[0] == n and np.all(np.isfinite(value.numpy().astype(float)))
            np.testing.assert_allclose(value.numpy(),
                                       everything[naming.output_key(task.name, name)].numpy())
    probability = model.signatures["big_tipper"](examples=examples)["probability"].numpy()
    assert np.all((probability >= 0) & (probability <= 1))


def test_second_run_with_nothing_changed_reuses_the_cache(first_run, taxi_slice):
    output_dir, _, first = first_run
    summary_path = output_dir.parent / "summary2.json"
    _tfx_mtl("run", "--data", str(taxi_slice), "--output-dir", str(output_dir),
             "--train-steps", "300", "--eval-steps", "5", "--summary-json", str(summary_path))
    second = json.loads(summary_path.read_text())
    states = {c["id"]: c["state"] for c in second["components"]}
    assert states["Trainer"] == "CACHED" and states["Transform"] == "CACHED", states
    assert second["tasks"]["big_tipper"]["metrics"] == first["tasks"]["big_tipper"]["metrics"]


def test_an_anomaly_stops_the_run_before_transform_naming_the_feature(tmp_path):
    bad = _write_slice(tmp_path / "bad.csv", lambda i, row: (
        {**row, "trip_start_hour": "30"} if i % 100 == 0 else row))
    out = tmp_path / "runs"
    result = subprocess.run([BIN, "run", "--data", str(bad), "--output-dir", str(out),
                             "--train-steps", "5"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "component SchemaGate failed" in result.stderr
    assert "feature 'trip_start_hour'" in result.stderr
    assert "Transform" not in result.stdout  # never started
    store = summary_lib.open_store(str(out / "metadata.sqlite"))
    ran = {ctx.name for e in store.get_executions()
           for ctx in store.get_contexts_by_execution(e.id)}
    assert not any(name.endswith((".Transform", ".Trainer")) for name in ran)
    assert not (out / "serving_model").exists()


def test_a_bound_the_model_cannot_meet_blocks_the_push(taxi_slice, tmp_path):
    import yaml

    raw = yaml.safe_load(open(data.bundled_spec()))
    raw["schema"] = os.path.join(os.path.dirname(data.bundled_spec()), raw["schema"])
    big_tipper = next(t for t in raw["tasks"] if t["name"] == "big_tipper")
    big_tipper["metrics"][0] = {"name": "auc", "lower_bound": 0.999}
    spec_path = tmp_path / "strict.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    summary_path = tmp_path / "summary.json"
    stdout = _tfx_mtl("run", "--data", str(taxi_slice), "--spec", str(spec_path),
                      "--output-dir", str(tmp_path / "runs"), "--train-steps", "50",
                      "--eval-steps", "2", "--summary-json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    assert summary["pushed"] is None and not summary["model_blessed"]
    task = summary["tasks"]["big_tipper"]
    assert not task["blessed"]
    assert len(task["failures"]) == 1 and task["failures"][0].startswith("auc = ")
    assert task["failures"][0].endswith("fails >= 0.999")
    assert summary["tasks"]["fare"]["blessed"]
    assert "task 'big_tipper' not blessed: auc = " in stdout
    assert "model NOT pushed" in stdout
    assert not (tmp_path / "runs" / "serving_model").exists()


def test_cli_selects_architecture_weighting_combination_and_replicas(taxi_slice, tmp_path):
    """The multi-task options reach the Trainer, which trains under MirroredStrategy."""
    stdout = _tfx_mtl("run", "--data", str(taxi_slice), "--output-dir", str(tmp_path / "runs"),
                      "--train-steps", "60", "--eval-steps", "2", "--model", "mmoe",
                      "--experts", "3", "--weighting", "uncertainty", "--combine", "pcgrad",
                      "--cpu-replicas", "2", "--checkpoint-every", "25", "--log-every", "20")
    assert "model mmoe, weighting uncertainty, combine pcgrad" in stdout
    (run_dir,) = (tmp_path / "runs" / "pipeline_root" / "Trainer" / "model_run").iterdir()
    report = json.loads((run_dir / "training_report.json").read_text())
    assert (report["strategy"], report["replicas"]) == ("MirroredStrategy", 2)
    assert report["keras_version"].startswith("3.")  # not Keras 2, whatever imported TFT first
    assert (report["weighting"], report["combine"], report["steps"]) == ("uncertainty", "pcgrad", 60)
    assert report["measured_steps"] == 60 and 0 <= report["conflict_fraction"] <= 1
    assert set(report["eval_metrics"]) == {"big_tipper", "fare", "trip_seconds"}
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-50.index", "ckpt-60.index"]
    assert list(run_dir.glob("events.out.tfevents.*"))
    (version,) = (tmp_path / "runs" / "serving_model").glob("*/*")
    loaded = tf.saved_model.load(str(version))
    assert set(loaded.signatures) == {"serving_default", "transform_features", "evaluation",
                                      "big_tipper", "fare", "trip_seconds"}
