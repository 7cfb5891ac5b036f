"""End to end: the real DAG on a slice of the taxi data, through the `tfx-mtl` command.

Checks what a user relies on: every component ran and registered its artifacts
in the MLMD store; every task's Evaluator compared the multi-task model with
that task's own single-task baseline; the gate blessed or refused by the spec's
policy and the push followed it; the report's numbers are the test split's
(recomputed here); the pushed model answers every signature; a second run
reuses TFX's cache; baselines can be reused instead of retrained.
"""
import csv
import glob
import json
import os
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf
from taxi_support import run_tfx_mtl, taxi_spec, write_taxi_slice

from tfx_mtl import data, naming, task_spec
from tfx_mtl.components import streaming_write
from tfx_mtl.results import metadata

pytestmark = [pytest.mark.e2e, pytest.mark.subprocess]  # the installed tfx-mtl, the real DAG

PIPELINE = "tfx-mtl-chicago-taxi"
TASKS = ("big_tipper", "fare", "trip_seconds")
FIXED_NODES = {"CsvExampleGen", "StatisticsGen", "CuratedSchemaGen", "ExampleValidator",
               "SchemaGate", "Transform", "Trainer", "ModelComparison", "BlessingGate", "Pusher"}


def _nodes(tasks):
    return FIXED_NODES | {f"{kind}_{t}" for t in tasks for kind in ("baseline", "evaluate")}


def _latest_executions(output_dir, pipeline=PIPELINE):
    """{node id: execution} of the latest run, and the store."""
    store = metadata.open_store(str(output_dir / "metadata.sqlite"))
    _, executions = metadata.latest_run(store, pipeline)
    nodes = {}
    for execution in executions:
        for ctx in store.get_contexts_by_execution(execution.id):
            if ctx.name.startswith(pipeline + "."):
                nodes[ctx.name.split(".", 1)[1]] = execution
    return store, nodes


def _artifacts(store, execution, kind):
    """{event path key: [artifact]} of an execution's INPUT or OUTPUT events."""
    from ml_metadata.proto import metadata_store_pb2

    wanted = getattr(metadata_store_pb2.Event, kind)
    result = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        if event.type == wanted:
            key = event.path.steps[0].key
            result.setdefault(key, []).extend(store.get_artifacts_by_id([event.artifact_id]))
    return result


def test_terminal_shows_components_and_the_transfer_table(taxi_run):
    for node in _nodes(TASKS):
        assert f"  {node} " in taxi_run.stdout, node
    assert "baselines: train (single-task, per task); policy 'all'" in taxi_run.stdout
    assert "multi-task  baseline" in taxi_run.stdout
    for task in TASKS:
        assert f"\n{task} " in taxi_run.stdout
    assert "gate: blessed under policy 'all'" in taxi_run.stdout
    assert "model pushed to" in taxi_run.stdout


def test_summary_json_contract(taxi_run):
    summary = taxi_run.summary
    assert summary["output_dir"] == str(taxi_run.output_dir)
    assert set(summary["tasks"]) == set(TASKS)
    spec = task_spec.load(taxi_run.spec_path)
    for name, info in summary["tasks"].items():
        assert {"type", "role", "metrics", "baseline_metrics", "changes", "blessed",
                "failures"} <= set(info)
        metric_names = {m.name for m in spec.task(name).metrics}
        # The baseline is measured with the same metric names as the multi-task model.
        assert metric_names <= set(info["metrics"]) and metric_names <= set(info["baseline_metrics"])
        assert set(info["changes"]) == metric_names
        for metric in metric_names:
            assert info["changes"][metric] == pytest.approx(
                info["metrics"][metric] - info["baseline_metrics"][metric], abs=1e-6)
        assert info["blessed"] is True and info["failures"] == []
    assert summary["tasks"]["big_tipper"]["type"] == "binary"
    assert (summary["policy"], summary["model_blessed"]) == ("all", True)
    assert summary["decision"] == "blessed under policy 'all'"
    assert summary["pushed"] and os.path.isdir(summary["pushed"])
    assert json.load(open(summary["transfer_report"]))["tasks"] == summary["tasks"]
    # SchemaGate's count of the label values: the slice blanks fares, no NaN or inf.
    labels = summary["labels"]
    assert sum(labels["examples"].values()) == 3000 and labels["max_non_finite_labels"] == 0.01
    assert list(labels["tasks"]) == list(TASKS)
    fare = labels["tasks"]["fare"]["columns"]["fare"]
    assert (fare["values"], fare["nan"], fare["inf"]) == (3000 - 3000 // 25, 0, 0)
    assert "labels: no NaN or infinite label value in 3000 examples" in taxi_run.stdout


def _column(csv_path, name):
    with open(csv_path, newline="") as f:
        return np.array([float(r[name]) for r in csv.DictReader(f) if r[name] != ""])


def test_heads_and_baselines_beat_a_trivial_predictor(taxi_run, taxi_slice):
    tasks = taxi_run.summary["tasks"]
    for values in ("metrics", "baseline_metrics"):
        assert tasks["big_tipper"][values]["auc"] > 0.6  # 0.5 is a coin
        # Regression: clearly better than always predicting the mean, whose RMSE is the std.
        for task in ("fare", "trip_seconds"):
            assert tasks[task][values]["rmse"] < 0.8 * _column(taxi_slice, task).std(), task


def test_missing_labels_are_masked_not_dropped(taxi_run):
    for task in ("fare", "big_tipper"):  # both read the fare column
        for values in ("metrics", "baseline_metrics"):
            metrics = taxi_run.summary["tasks"][task][values]
            missing = metrics["example_count"] - metrics["labelled_count"]
            # About 1 in 25 test examples has no fare; they still count as examples.
            assert 0 < missing < 0.1 * metrics["example_count"], (task, metrics)


def test_every_evaluator_compared_the_model_with_its_own_baseline(taxi_run):
    """MLMD lineage: evaluate_<task> read the Trainer's model and baseline_<task>'s model,
    and the gate read every Evaluator's outputs."""
    store, nodes = _latest_executions(taxi_run.output_dir)
    assert set(nodes) == _nodes(TASKS)
    (model,) = _artifacts(store, nodes["Trainer"], "OUTPUT")["model"]
    gate_inputs = _artifacts(store, nodes["BlessingGate"], "INPUT")
    for task in TASKS:
        (baseline,) = _artifacts(store, nodes[f"baseline_{task}"], "OUTPUT")["model"]
        inputs = _artifacts(store, nodes[f"evaluate_{task}"], "INPUT")
        assert [a.id for a in inputs["model"]] == [model.id]
        assert [a.id for a in inputs["baseline_model"]] == [baseline.id]
        outputs = _artifacts(store, nodes[f"evaluate_{task}"], "OUTPUT")
        assert [a.id for a in gate_inputs[f"{task}_evaluation"]] == [
            a.id for a in outputs["evaluation"]]
        assert [a.id for a in gate_inputs[f"{task}_blessing"]] == [a.id for a in outputs["blessing"]]
        assert taxi_run.summary["tasks"][task]["baseline_model"]["id"] == baseline.id
    (pushed,) = _artifacts(store, nodes["Pusher"], "INPUT")["model_blessing"]
    (gate_blessing,) = _artifacts(store, nodes["BlessingGate"], "OUTPUT")["blessing"]
    assert pushed.id == gate_blessing.id


def _test_split(output_dir):
    store, nodes = _latest_executions(output_dir)
    (examples,) = _artifacts(store, nodes["CsvExampleGen"], "OUTPUT")["examples"]
    files = glob.glob(os.path.join(examples.uri, "Split-test", "*"))
    return tf.constant([r.numpy() for r in tf.data.TFRecordDataset(files, "GZIP")]), store, nodes


def _weighted_rmse(model_dir, task, serialized):
    model = tf.saved_model.load(model_dir)
    prediction = model.signatures[naming.evaluation_signature(task)](examples=serialized)[task]
    features = model.signatures["transform_features"](examples=serialized)
    label = features[naming.label_key(task)].numpy().reshape(-1)
    mask = features[naming.mask_key(task)].numpy().reshape(-1)
    error = prediction.numpy().reshape(-1) - label
    return float(np.sqrt(np.sum(mask * error ** 2) / np.sum(mask)))


def test_the_report_numbers_are_recomputed_from_the_test_split(taxi_run):
    serialized, store, nodes = _test_split(taxi_run.output_dir)
    fare = taxi_run.summary["tasks"]["fare"]
    assert _weighted_rmse(taxi_run.summary["pushed"], "fare", serialized) == pytest.approx(
        fare["metrics"]["rmse"], rel=1e-4)
    (baseline,) = _artifacts(store, nodes["baseline_fare"], "OUTPUT")["model"]
    assert _weighted_rmse(os.path.join(baseline.uri, "Format-Serving"), "fare",
                          serialized) == pytest.approx(fare["baseline_metrics"]["rmse"], rel=1e-4)
    assert fare["metrics"]["example_count"] == serialized.shape[0]


def test_every_component_registered_its_artifacts_in_mlmd(taxi_run):
    store, nodes = _latest_executions(taxi_run.output_dir)
    expected = {"CsvExampleGen": "Examples", "StatisticsGen": "ExampleStatistics",
                "CuratedSchemaGen": "Schema", "ExampleValidator": "ExampleAnomalies",
                "SchemaGate": "Schema", "Transform": "TransformGraph", "Trainer": "Model",
                "BlessingGate": "tfx_mtl.TransferReport", "Pusher": "PushedModel",
                "ModelComparison": "tfx_mtl.ModelComparison",
                **{f"baseline_{t}": "Model" for t in TASKS},
                **{f"evaluate_{t}": "ModelEvaluation" for t in TASKS}}
    for node, type_name in expected.items():
        produced = [a for _, a in metadata.outputs(store, nodes[node])]
        types = {t.id: t.name for t in store.get_artifact_types_by_id(
            list({a.type_id for a in produced}))}
        artifacts = [a for a in produced if types[a.type_id] == type_name]
        assert artifacts, f"{node} registered no {type_name}"
        assert all(os.path.exists(a.uri) for a in artifacts)


def _serialized_rows(csv_path, n=16):
    """CSV rows as serialized tf.Examples typed by the curated schema (all columns)."""
    from tfx_mtl.serving.examples import RowEncoder

    encoder = RowEncoder.from_schema_file(
        os.path.join(os.path.dirname(data.bundled_spec()), "schema.pbtxt"))
    with open(csv_path, newline="") as f:
        rows = [row for _, row in zip(range(n), csv.DictReader(f))]
    return tf.constant(encoder.encode_rows(rows))


def _signatures(tasks):
    return {"serving_default", "transform_features", *tasks,
            *(naming.evaluation_signature(t) for t in tasks),
            *(naming.labelled_evaluation_signature(t) for t in tasks)}


def test_pushed_model_answers_every_signature(taxi_run, taxi_slice):
    spec = task_spec.load(data.bundled_spec())
    model = tf.saved_model.load(taxi_run.summary["pushed"])
    assert set(model.signatures) == _signatures(spec.task_names)
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


def _copy_of(taxi_run, tmp_path):
    """A copy of the run's output directory (its MLMD store points at the original's
    artifacts; the curated schema is staged anew, so nothing is cached in the copy)."""
    copy = tmp_path / "runs"
    shutil.copytree(taxi_run.output_dir, copy)
    return copy


def test_second_run_with_nothing_changed_reuses_the_cache(taxi_run_in_place, taxi_slice, tmp_path):
    """In place: the run's latest MLMD run becomes this cached one, with the same artifacts."""
    taxi_run = taxi_run_in_place
    output_dir = taxi_run.output_dir
    summary_path = tmp_path / "summary2.json"
    run_tfx_mtl("run", "--data", str(taxi_slice), "--spec", str(taxi_run.spec_path),
                "--output-dir", str(output_dir), "--train-steps", "300", "--eval-steps", "5",
                "--summary-json", str(summary_path))
    second = json.loads(summary_path.read_text())
    states = {c["id"]: c["state"] for c in second["components"]}
    for node in ("Transform", "Trainer", *(f"baseline_{t}" for t in TASKS)):
        assert states[node] == "CACHED", states
    assert second["tasks"] == taxi_run.summary["tasks"]


def test_reused_baselines_are_the_previous_runs_not_retrained(taxi_run, tmp_path):
    """New data retrains the multi-task model, but --reuse-baselines compares it with the
    baselines already in the store."""
    output_dir = _copy_of(taxi_run, tmp_path)
    fewer = write_taxi_slice(tmp_path / "fewer.csv", rows=2500)
    summary_path = tmp_path / "reused.json"
    result = run_tfx_mtl("run", "--data", str(fewer), "--spec", str(taxi_run.spec_path),
                         "--output-dir", str(output_dir), "--train-steps", "300",
                         "--eval-steps", "5", "--reuse-baselines",
                         "--summary-json", str(summary_path))
    assert "baselines: reuse the latest" in result.stdout
    reused = json.loads(summary_path.read_text())
    states = {c["id"]: c["state"] for c in reused["components"]}
    assert states["Trainer"] == "COMPLETE"
    assert not any(node.startswith("baseline_") for node in states)
    for task in TASKS:
        assert states[f"latest_baseline_{task}"] == "COMPLETE"
        assert (reused["tasks"][task]["baseline_model"]
                == taxi_run.summary["tasks"][task]["baseline_model"])
        assert reused["tasks"][task]["baseline_metrics"]["example_count"] != (
            taxi_run.summary["tasks"][task]["baseline_metrics"]["example_count"])  # new test split


def test_reusing_baselines_that_were_never_trained_is_refused_before_the_run(taxi_slice, tmp_path):
    result = run_tfx_mtl("run", "--data", str(taxi_slice), "--output-dir", str(tmp_path / "runs"),
                         "--reuse-baselines", expect=2)
    assert "no trained single-task baseline for task(s) big_tipper, fare, trip_seconds" in (
        result.stderr)
    assert "started" not in result.stdout


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory):
    """The taxi slice plus a task of pure noise (a fair coin), auxiliary, under policy all."""
    out = tmp_path_factory.mktemp("noise")
    coin = random.Random(0)
    csv_path = write_taxi_slice(out / "taxi_noise.csv",
                                lambda i, row: {**row, "coin": str(coin.randint(0, 1))})

    def add_noise_task(raw, policy):
        raw.pop("schema")  # the curated schema has no coin column: infer one
        raw["tasks"].append({"name": "coin", "type": "binary", "label": "coin",
                             "role": "auxiliary",
                             "metrics": [{"name": "auc", "lower_bound": 0.6}]})
        raw["evaluation"]["policy"] = policy
        return raw

    def run(policy):
        spec = taxi_spec(out / f"{policy}.yaml", lambda raw: add_noise_task(raw, policy))
        summary_path = out / f"{policy}.json"
        result = run_tfx_mtl("run", "--data", str(csv_path), "--spec", str(spec),
                             "--output-dir", str(out / "runs"), "--train-steps", "300",
                             "--eval-steps", "5", "--summary-json", str(summary_path))
        return result.stdout, json.loads(summary_path.read_text())
    return out / "runs", run


def test_a_task_of_noise_is_refused_and_under_policy_all_nothing_is_pushed(noise_run):
    output_dir, run = noise_run
    stdout, summary = run("all")
    coin = summary["tasks"]["coin"]
    assert not coin["blessed"] and coin["role"] == "auxiliary"
    (failure,) = coin["failures"]
    assert failure.startswith("auc = ") and failure.endswith("fails the bound >= 0.6")
    assert abs(coin["metrics"]["auc"] - 0.5) < 0.1  # a coin is a coin
    assert all(summary["tasks"][t]["blessed"] for t in TASKS)
    assert (summary["policy"], summary["model_blessed"], summary["blocking"]) == (
        "all", False, ["coin"])
    assert summary["pushed"] is None
    assert "task 'coin' not blessed: auc = " in stdout
    assert "gate: refused under policy 'all' (every task must be blessed): not blessed: coin" in stdout
    assert "model NOT pushed" in stdout
    assert not (output_dir / "serving_model").exists()


def test_policy_primary_pushes_though_the_auxiliary_noise_task_fails(noise_run):
    output_dir, run = noise_run
    run("all")  # cached when the test above ran first
    stdout, summary = run("primary")
    states = {c["id"]: c["state"] for c in summary["components"]}
    # Only the judging changed: nothing is trained or evaluated again.
    for node in ("Transform", "Trainer", "baseline_coin", "evaluate_coin"):
        assert states[node] == "CACHED", states
    assert states["BlessingGate"] == "COMPLETE"
    assert not summary["tasks"]["coin"]["blessed"] and summary["model_blessed"]
    assert "task 'coin' not blessed (auxiliary: does not block the push): auc = " in stdout
    assert "gate: blessed under policy 'primary'" in stdout
    assert summary["pushed"] and os.path.isdir(summary["pushed"])


def test_an_anomaly_stops_the_run_before_transform_naming_the_feature(tmp_path):
    bad = write_taxi_slice(tmp_path / "bad.csv", lambda i, row: (
        {**row, "trip_start_hour": "30"} if i % 100 == 0 else row))
    out = tmp_path / "runs"
    result = run_tfx_mtl("run", "--data", str(bad), "--output-dir", str(out),
                         "--train-steps", "5", timeout=900, expect=2)
    assert "tfx-mtl run: error: data: the data does not match the schema" in result.stderr
    assert "refused by component SchemaGate" in result.stderr
    assert "feature 'trip_start_hour'" in result.stderr
    assert "Transform" not in result.stdout  # never started
    store = metadata.open_store(str(out / "metadata.sqlite"))
    ran = {ctx.name for e in store.get_executions()
           for ctx in store.get_contexts_by_execution(e.id)}
    assert not any(name.endswith((".Transform", ".Trainer")) for name in ran)
    assert not (out / "serving_model").exists()


def test_cli_selects_architecture_weighting_combination_and_replicas(taxi_slice, tmp_path):
    """The multi-task options reach the Trainer, which trains under MirroredStrategy."""
    result = run_tfx_mtl("run", "--data", str(taxi_slice), "--output-dir", str(tmp_path / "runs"),
                         "--train-steps", "60", "--eval-steps", "2", "--model", "mmoe",
                         "--experts", "3", "--weighting", "uncertainty", "--combine", "pcgrad",
                         "--cpu-replicas", "2", "--checkpoint-every", "25", "--log-every", "20")
    assert "model mmoe, weighting uncertainty, combine pcgrad" in result.stdout
    (run_dir,) = (tmp_path / "runs" / "pipeline_root" / "Trainer" / "model_run").iterdir()
    report = json.loads((run_dir / "training_report.json").read_text())
    assert (report["strategy"], report["replicas"]) == ("MirroredStrategy", 2)
    assert report["keras_version"].startswith("3.")  # not Keras 2, whatever imported TFT first
    assert (report["weighting"], report["combine"], report["steps"]) == ("uncertainty", "pcgrad", 60)
    assert report["measured_steps"] == 60 and 0 <= report["conflict_fraction"] <= 1
    assert set(report["eval_metrics"]) == set(TASKS)
    # Checkpoints keyed by the training, under the Trainer node; removed once it completed.
    assert report["resumed_from"] == 0 and report["checkpoint_dir"] == str(
        tmp_path / "runs" / "pipeline_root" / "Trainer" / "checkpoints" / report["checkpoint_key"])
    assert not os.path.exists(report["checkpoint_dir"])
    assert list(run_dir.glob("events.out.tfevents.*"))
    # The gates of the last step's global batch (both replicas' rows; gate_diagnostics).
    gates = report["gates"]
    assert (gates["step"], set(gates["gates"])) == (60, set(TASKS)) and gates["rows"] > 0
    assert set(gates["load"]) == {"expert_0", "expert_1", "expert_2"}
    # The baselines are single-task MMoEs with the same experts.
    (baseline_dir,) = (tmp_path / "runs" / "pipeline_root" / "baseline_fare" / "model_run").iterdir()
    baseline = json.loads((baseline_dir / "training_report.json").read_text())
    assert (baseline["weighting"], baseline["combine"]) == ("uniform", "sum")
    arch = baseline["architecture"]
    assert (arch["name"], baseline["tasks"], arch["experts"]) == ("mmoe", ["fare"], 3)
    assert set(baseline["eval_metrics"]) == {"fare"}
    assert set(baseline["gates"]["gates"]) == {"fare"}


def test_synthetic_tfrecord_data_runs_through_import_example_gen(tmp_path):
    """`synth --format tfrecord` writes what `run` reads, with the spec as written:
    the streaming ImportExampleGen reads it, every component completes, every task is judged
    against its own baseline (a regression task, and a binary one of int64 labels)."""
    data_dir = tmp_path / "synth"
    run_tfx_mtl("synth", "--rows", "2000", "--tasks", "2", "--correlation", "0.5",
                "--features", "8", "--task-types", "regression,binary", "--format", "tfrecord",
                "--out", str(data_dir))
    summary_path = tmp_path / "summary.json"
    result = run_tfx_mtl("run", "--data", str(data_dir), "--spec", str(data_dir / "tasks.yaml"),
                         "--output-dir", str(tmp_path / "runs"), "--train-steps", "30",
                         "--eval-steps", "2", "--batch-size", "64",
                         "--summary-json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    tasks = ("task_1", "task_2")
    example_gen = naming.EXAMPLE_GEN["tfrecord"]
    # The synthetic spec names no curated schema: SchemaGen infers one.
    nodes = _nodes(tasks) - {"CsvExampleGen", "CuratedSchemaGen"} | {example_gen, "SchemaGen"}
    assert {c["id"]: c["state"] for c in summary["components"]} == dict.fromkeys(
        nodes, "COMPLETE")
    assert f"  {example_gen} " in result.stdout and "CsvExampleGen" not in result.stdout
    spec = task_spec.load(data_dir / "tasks.yaml")
    assert set(summary["tasks"]) == set(tasks)
    for name, info in summary["tasks"].items():
        metric_names = {m.name for m in spec.task(name).metrics}
        assert metric_names <= set(info["metrics"]) and metric_names <= set(
            info["baseline_metrics"]), name
        assert info["baseline_model"]["uri"].startswith(
            str(tmp_path / "runs" / "pipeline_root" / naming.baseline_node(name)))
        assert info["metrics"]["example_count"] == info["baseline_metrics"]["example_count"]
    assert summary["tasks"]["task_2"]["type"] == "binary"
    # The node ran the streaming ImportExampleGen (TFX's split hash, no reshuffle),
    # which split all 2,000 examples 8/1/1.
    store, executions = _latest_executions(tmp_path / "runs", "tfx-mtl-synth")
    (execution_type,) = store.get_execution_types_by_id([executions[example_gen].type_id])
    component = streaming_write.StreamingImportExampleGen
    assert execution_type.name == f"{component.__module__}.{component.__qualname__}"
    (examples,) = _artifacts(store, executions[example_gen], "OUTPUT")["examples"]
    counts = {split: sum(1 for _ in tf.data.TFRecordDataset(
        glob.glob(os.path.join(examples.uri, f"Split-{split}", "*")), "GZIP"))
        for split in naming.SPLITS}
    assert sum(counts.values()) == 2000
    assert 0 < counts["validation"] < counts["train"] and 0 < counts["test"] < counts["train"]


def test_two_seeds_train_two_of_each_model_and_the_report_shows_both(tmp_path):
    """`--seeds 2`: every model trained twice (seed 42 and 43), the comparison over both,
    each seed's values listed in the summary and printed under the table."""
    data_dir = tmp_path / "synth"
    run_tfx_mtl("synth", "--rows", "1500", "--tasks", "2", "--correlation", "0.5",
                "--features", "6", "--out", str(data_dir))
    summary_path = tmp_path / "summary.json"
    result = run_tfx_mtl("run", "--data", str(data_dir / "data.csv"),
                         "--spec", str(data_dir / "tasks.yaml"), "--seeds", "2",
                         "--output-dir", str(tmp_path / "runs"), "--train-steps", "60",
                         "--eval-every", "20", "--eval-steps", "2", "--batch-size", "64",
                         "--summary-json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    tasks = ("task_1", "task_2")
    states = {c["id"]: c["state"] for c in summary["components"]}
    trainers = {naming.trainer_node(i) for i in (0, 1)} | {
        naming.baseline_node(t, i) for t in tasks for i in (0, 1)}
    assert trainers <= set(states) and {states[n] for n in trainers} == {"COMPLETE"}
    assert set(summary["selection"]) == trainers
    assert summary["seeds"] == [42, 43]
    for task in tasks:
        info = summary["tasks"][task]
        rows = info["seeds"]
        assert [row["seed"] for row in rows] == [42, 43]
        metric = task_spec.load(data_dir / "tasks.yaml").task(task).metrics[0].name
        values = [row["metrics"][metric] for row in rows]
        assert values[0] != values[1]  # two trainings, not one twice
        assert info["metrics"][metric] == pytest.approx(sum(values) / 2, rel=1e-9)
        for seed in (42, 43):
            assert f"seed {seed}: task '{task}': {metric} " in result.stdout
    assert "trained with 2 seed(s)" in result.stdout


def _ran(out):
    store = metadata.open_store(str(out / "metadata.sqlite"))
    return {ctx.name.rpartition(".")[2] for e in store.get_executions()
            for ctx in store.get_contexts_by_execution(e.id)}


def test_data_without_rows_is_refused_naming_the_file_and_the_split(tmp_path):
    """A header-only CSV is refused before the run, naming the file; so is a CSV of one
    row, naming each task (its label has one value). Nothing runs."""
    header_only = tmp_path / "header.csv"
    with open(data.bundled_taxi_csv()) as f:
        header_only.write_text(f.readline())
    out = tmp_path / "runs"
    result = run_tfx_mtl("run", "--data", str(header_only), "--output-dir", str(out), expect=2)
    assert f"tfx-mtl run: error: {header_only}: no data rows, only a header" in result.stderr
    assert not out.exists()

    # One row: each label has one value, which no task can learn (label_checks).
    one_row = write_taxi_slice(tmp_path / "one.csv", rows=1)
    result = run_tfx_mtl("run", "--data", str(one_row), "--output-dir", str(out),
                         "--train-steps", "5", timeout=900, expect=2)
    assert "tasks.big_tipper.label: task 'big_tipper': " in result.stderr, result.stderr
    assert "tasks.fare.label: task 'fare': every one of the 1 labelled rows" in result.stderr
    assert not out.exists()


def test_a_ragged_row_past_the_checked_rows_is_named_by_file_and_line(tmp_path):
    """The check before the run reads 1,000 rows per file; CsvExampleGen fails on a later
    ragged row without naming it, and the run then names the file and line."""
    path = write_taxi_slice(tmp_path / "ragged.csv", rows=1100)
    lines = path.read_text().splitlines(keepends=True)
    lines[1049] = lines[1049].rstrip("\n") + ",extra\n"  # line 1050
    path.write_text("".join(lines))
    result = run_tfx_mtl("run", "--data", str(path), "--output-dir", str(tmp_path / "runs"),
                         "--train-steps", "5", timeout=900, expect=2)
    assert f"tfx-mtl run: error: {path}:1050: 19 cells, but the header has 18 columns" in (
        result.stderr)
    assert "CsvExampleGen failed on it" in result.stderr


def test_small_data_warns_and_an_epoch_budget_becomes_steps(tmp_path):
    """250 rows hashed 8/1/1: about 25 labelled examples per eval split, under the 30 a
    verdict needs; --train-epochs 120 is more than 100 epochs. Both warnings are printed
    and in the summary JSON; each Trainer's steps are ceil(120 * train examples / 64)."""
    data_dir = tmp_path / "synth"
    run_tfx_mtl("synth", "--rows", "250", "--tasks", "2", "--correlation", "0.5",
                "--features", "4", "--task-types", "regression,binary", "--out", str(data_dir))
    summary_path = tmp_path / "summary.json"
    result = run_tfx_mtl("run", "--data", str(data_dir / "data.csv"),
                         "--spec", str(data_dir / "tasks.yaml"), "--train-epochs", "120",
                         "--batch-size", "64", "--eval-steps", "2", "--eval-every", "0",
                         "--early-stopping", "0", "--output-dir", str(tmp_path / "runs"),
                         "--summary-json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    kinds = {(w["kind"], w["task"], w["split"]) for w in summary["warnings"]}
    assert {("small_split", t, s) for t in ("task_1", "task_2")
            for s in ("validation", "test")} | {("many_epochs", None, "train")} <= kinds
    assert ("warning: task 'task_1': the test split holds about 25 labelled examples: fewer "
            "than 30 per split, too few for a meaningful verdict") in result.stdout
    assert "is 120 epochs over a train split of about 200 examples" in result.stdout
    assert "budget: 120 epochs over the train split" in result.stdout
    store, executions = _latest_executions(tmp_path / "runs", "tfx-mtl-synth")
    (examples,) = _artifacts(store, executions["CsvExampleGen"], "OUTPUT")["examples"]
    train = sum(1 for _ in tf.data.TFRecordDataset(
        glob.glob(os.path.join(examples.uri, "Split-train", "*")), "GZIP"))
    steps = -(-120 * train // 64)
    assert summary["selection"], summary
    for node, info in summary["selection"].items():
        assert info["steps"] == steps, node
        assert info["budget"] == {"train_epochs": 120, "train_examples": train,
                                  "batch_size": 64, "train_steps": steps}, node


def test_the_run_used_the_pinned_local_runner_and_never_tried_prism(taxi_run):
    """Beam 2.77's unpinned DirectRunner logs "Running pipeline with PrismRunner." and a
    download attempt for every Beam pipeline (tfx_mtl.runners.direct_runner)."""
    log = "".join(open(f).read() for f in glob.glob(str(taxi_run.output_dir / "logs" / "*.log")))
    # The FnApiRunner ran the components' Beam pipelines (its in-process SDK worker).
    assert "apache_beam.runners.worker.statecache" in log
    assert "PrismRunner" not in log and "Downloading prism" not in log
    assert taxi_run.summary["beam"]["runner"] == "in-process"
    assert "  beam: in-process " in taxi_run.stdout
