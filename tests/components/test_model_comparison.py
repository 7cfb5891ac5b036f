"""ModelComparison on real exported models: the predictions it feeds to
tfx_mtl.comparison are each model's own outputs, in one example order, from the test
split only; its comparison.json is compare() of them; with one seed its point values
are TFMA's (TFX's Evaluator executor on the same models and split).

The models are the pipeline's: a real Transform (TFT on Beam) of raw rows, networks
built from the spec (untrained: their scores are what they are, the same for both
sides) and exported by models/export.py, a multi-task model per seed and a
single-task one per task and seed.
"""
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_mtl import comparison, naming, task_spec
from tfx_mtl.components import model_comparison
from tfx_mtl.pipeline import eval_config
from tfx_mtl.results import evaluation as evaluation_results

from serving_support import example_bytes

pytestmark = pytest.mark.e2e  # TFT and TFMA on Beam, SavedModel exports

N = 300
SEEDS = (42, 43)
SPEC = task_spec.parse({
    "name": "cmp",
    "features": [{"name": "miles", "kind": "numeric"},
                 {"name": "pay", "kind": "categorical", "oov_buckets": 1}],
    "tasks": [
        {"name": "tipped", "type": "binary", "label": "tips > 0.2 * fare",
         "metrics": [{"name": "auc", "max_regression": 0.01}, "log_loss", "binary_accuracy",
                     "auc_pr", "precision", "recall"]},
        {"name": "fare", "type": "regression", "label": "fare",
         "metrics": ["mae", {"name": "rmse", "max_regression": "1%"}, "mse"]},
        {"name": "kind", "type": "multiclass", "label": "pay2", "role": "auxiliary",
         "metrics": ["accuracy", "log_loss", "top_k_accuracy", "auc_micro", "auc_macro",
                     {"name": "precision", "class": "card"}, {"name": "recall", "class": "app"},
                     {"name": "recall", "class": "bike"}]},
    ],
})
FEATURE_SPEC = {"miles": tf.float32, "pay": tf.string, "tips": tf.float32, "fare": tf.float32,
                "pay2": tf.string}


def _rows():
    """Raw rows; some labels missing (mask 0), so the weights matter."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(N):
        miles = float(rng.gamma(2.0, 2.0))
        fare = 3.0 + 2.0 * miles + float(rng.normal(0, 2))
        pay = ["cash", "card", "app"][int(rng.integers(3))]
        rows.append({"miles": [miles], "pay": [pay.encode()],
                     "tips": [] if i % 7 == 0 else [float(rng.gamma(1.0, 1.5))],
                     "fare": [] if i % 11 == 0 else [fare],
                     "pay2": [] if i % 13 == 0 else [(pay if i % 4 else "cash").encode()]})
    return rows


def _example(row) -> bytes:
    return example_bytes({k: v for k, v in row.items() if v})  # a missing value: absent


def _transform(rows, out_dir):
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from tfx_mtl.models import preprocessing

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {k: tf.io.VarLenFeature(t) for k, t in FEATURE_SPEC.items()}))
    with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        (transformed, _), transform_fn = ((rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.transform(inputs, SPEC)))
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    metadata_io.write_metadata(metadata, f"{out_dir}/{tft.TFTransformOutput.RAW_METADATA_DIR}")
    return transformed, tft.TFTransformOutput(out_dir)


def _export(spec, seed, tft_output, first_row, export_dir):
    """The network of ``spec`` initialised with ``seed``, exported as the Trainer does."""
    from tfx_mtl.models import architecture, export, families, features, trainer

    tf.keras.utils.set_random_seed(seed)
    classes = {t.name: len(tft_output.vocabulary_by_name(naming.label_vocab_name(t.name)))
               for t in spec.tasks if t.type == "multiclass"}
    network = families.build(
        spec, features.input_cardinalities(spec, tft_output.vocabulary_size_by_name), classes,
        architecture.ArchitectureConfig(hidden_units=(8,), tower_units=(4,)))
    stats = trainer.read_label_stats(spec, {k: tf.constant([v]) for k, v in first_row.items()})
    export.export(network.model, spec, tft_output, stats, export_dir)


def _artifact(cls, uri, id_=1):
    artifact = cls()
    artifact.uri = str(uri)
    artifact.id = id_
    os.makedirs(artifact.uri, exist_ok=True)
    return artifact


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(examples artifact, candidates per seed, baselines per task and seed, raw rows)."""
    root = tmp_path_factory.mktemp("comparison")
    rows = _rows()
    transformed, tft_output = _transform(rows, str(root / "transform"))
    examples = _artifact(standard_artifacts.Examples, root / "examples")
    examples.split_names = json.dumps(["train", "test"])
    # Two files, so their order matters; the train split is not even gzip: reading it fails.
    (root / "examples" / "Split-train").mkdir()
    (root / "examples" / "Split-train" / "data.gz").write_bytes(b"not a record")
    (root / "examples" / "Split-test").mkdir()
    for part, chunk in (("b", rows[N // 2:]), ("a", rows[:N // 2])):
        path = root / "examples" / "Split-test" / f"data-{part}.gz"
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for row in chunk:
                writer.write(_example(row))
    candidates, baselines = [], {t: [] for t in SPEC.task_names}
    for i, seed in enumerate(SEEDS):
        model = _artifact(standard_artifacts.Model, root / f"Trainer{i}", 10 + i)
        _export(SPEC, seed, tft_output, transformed[0],
                os.path.join(model.uri, "Format-Serving"))
        candidates.append(model)
        for j, task in enumerate(SPEC.task_names):
            model = _artifact(standard_artifacts.Model, root / f"baseline_{task}{i}", 20 + 3 * i + j)
            _export(SPEC.restricted_to(task), seed + 100, tft_output, transformed[0],
                    os.path.join(model.uri, "Format-Serving"))
            baselines[task].append(model)
    # Files are read in name order: a's rows, then b's.
    ordered = rows[:N // 2] + rows[N // 2:]
    return root, examples, candidates, baselines, ordered


def _own_outputs(model, signature, serialized):
    loaded = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
    return loaded.signatures[signature](examples=tf.constant(serialized))


def test_predictions_are_each_models_own_outputs_in_example_order(world):
    _, examples, candidates, baselines, rows = world
    data = model_comparison.predictions(SPEC, [examples], candidates, baselines, batch_size=7)
    serialized = [_example(r) for r in rows]
    features = _own_outputs(candidates[0], naming.TRANSFORM_FEATURES, serialized)
    assert set(data) == set(SPEC.task_names)
    for task in SPEC.tasks:
        got = data[task.name]
        assert got.type == task.type
        np.testing.assert_array_equal(got.label, features[naming.label_key(task.name)].numpy())
        np.testing.assert_array_equal(got.weight, features[naming.mask_key(task.name)].numpy())
        assert 0 < got.weight.sum() < N  # some labels are missing
        assert len(got.candidate) == len(got.baseline) == len(SEEDS)
        for i in range(len(SEEDS)):
            for models, scored in ((candidates, got.candidate), (baselines[task.name], got.baseline)):
                own = _own_outputs(models[i], naming.evaluation_signature(task.name), serialized)
                # Equal up to float32 rounding: a batch of 7 sums in another order than 300.
                np.testing.assert_allclose(scored[i], own[task.name].numpy(), rtol=1e-6)
    assert data["kind"].candidate[0].shape == (N, 3)
    assert data["fare"].candidate[0].shape == (N,)
    # The seeds' models differ, so seed order is not a no-op.
    assert not np.array_equal(data["fare"].candidate[0], data["fare"].candidate[1])


def _run_executor(root, examples, candidates, baselines, seeds, name):
    inputs = {"examples": [examples]}
    for i in range(len(seeds)):
        inputs[model_comparison.candidate_key(i)] = [candidates[i]]
        for task in SPEC.task_names:
            inputs[model_comparison.baseline_key(task, i)] = [baselines[task][i]]
    out = _artifact(model_comparison.ModelComparisonResult, root / name)
    model_comparison.Executor().Do(
        inputs, {"comparison": [out]},
        {"spec": json.dumps(SPEC.judging_view().to_dict()), "seeds": json.dumps(list(seeds)),
         "confidence": 0.9, "samples": 200, "code_version": "x"})
    with open(os.path.join(out.uri, naming.MODEL_COMPARISON_FILE)) as f:
        return json.load(f, parse_constant=_not_json)


def _not_json(constant):
    raise ValueError(f"{constant} is not strict JSON")


def test_the_comparison_file_is_compare_of_those_predictions(world):
    root, examples, candidates, baselines, _ = world
    written = _run_executor(root, examples, candidates, baselines, SEEDS, "two_seeds")
    expected = comparison.compare(
        model_comparison.predictions(SPEC, [examples], candidates, baselines),
        {t.name: [m.key for m in t.metrics] for t in SPEC.tasks},
        {"tipped": "auc", "fare": "rmse", "kind": "accuracy"}, list(SEEDS),
        confidence=0.9, samples=200)
    assert written == model_comparison.strict(expected)
    # Untrained models score every tip near 0.5, so some metric is undefined in some
    # resample and its interval NaN: written as null, with its reason.
    assert written["not_finite"] and all(
        _at(written, path) is None for path in written["not_finite"])
    assert written["seeds"] == list(SEEDS) and written["examples"] == N
    assert len(written["tasks"]["fare"]["metrics"]["rmse"]["per_seed"]) == 2


def _at(record, path):
    for key in path.split("."):
        record = record[int(key)] if isinstance(record, list) else record[key]
    return record


def test_the_gated_metric_is_the_first_with_a_change_bound_else_the_first():
    assert [model_comparison.gated_metric(t) for t in SPEC.tasks] == ["auc", "rmse", "accuracy"]
    bounded = task_spec.parse({"features": ["x"], "tasks": [
        {"name": "k", "type": "multiclass", "label": "y", "metrics": [
            "accuracy", {"name": "recall", "class": "a", "max_regression": 0.1}]}]})
    assert model_comparison.gated_metric(bounded.task("k")) == "recall[a]"


def _tfma(root, examples, candidate, baseline, task):
    """TFX's Evaluator on the same test split: the task's overall candidate/baseline values."""
    evaluation = _artifact(standard_artifacts.ModelEvaluation, root / f"tfma_{task}" / "eval")
    blessing = _artifact(standard_artifacts.ModelBlessing, root / f"tfma_{task}" / "blessing")
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [candidate], "baseline_model": [baseline]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"eval_config": proto_utils.proto_to_json(eval_config.for_task(SPEC, task)),
         "example_splits": json.dumps([naming.TEST])})
    return evaluation_results.overall(evaluation_results.load(evaluation.uri, SPEC.task(task)))


def test_with_one_seed_the_point_values_are_tfmas(world):
    root, examples, candidates, baselines, _ = world
    record = _run_executor(root, examples, candidates, baselines, SEEDS[:1], "one_seed")
    checked = 0
    for task in SPEC.tasks:
        tfma = _tfma(root, examples, candidates[0], baselines[task.name][0], task.name)
        for metric in task.metrics:
            entry = {k: math.nan if v is None else v  # the file's null is a NaN
                     for k, v in record["tasks"][task.name]["metrics"][metric.key].items()}
            tolerance = 1e-4 if metric.name.startswith("auc") else 1e-6
            for side, values in (("candidate", tfma.candidate), ("baseline", tfma.baseline)):
                assert entry[side] == pytest.approx(values[metric.key], abs=tolerance,
                                                    nan_ok=True), (task.name, metric.key, side)
            if math.isfinite(entry["change"]):
                assert entry["change"] == pytest.approx(tfma.changes[metric.key],
                                                        abs=2 * tolerance)
            checked += 1
        assert record["tasks"][task.name]["labelled"] == tfma.candidate["labelled_count"]
    assert checked == 17
    # a class the label column never holds has no id, so no value on either side
    kind = record["tasks"]["kind"]["metrics"]
    assert kind["recall[bike]"]["candidate"] is None
    assert record["not_finite"]["tasks.kind.metrics.recall[bike].candidate"]
    assert all(kind[k]["candidate"] is not None for k in kind if k != "recall[bike]")


def test_examples_without_a_test_split_are_refused_naming_the_splits(tmp_path):
    examples = _artifact(standard_artifacts.Examples, tmp_path / "examples")
    examples.split_names = json.dumps(["train", "eval"])
    with pytest.raises(ValueError, match="no 'test' split \\(splits: train, eval\\)"):
        model_comparison.split_files([examples])
