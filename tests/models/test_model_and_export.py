"""The Keras model built from a spec, a few training steps, and the exported signatures."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl import naming
from tfx_mtl.models import architecture, eval_metrics, export, families, features, trainer
from tfx_mtl.models.loop import TrainingLoop
from tfx_mtl.models.trainer_config import TrainerConfig

from .conftest import ROWS, SPEC  # noqa: F401  (importlib mode: relative import of the fixture module)

pytestmark = pytest.mark.e2e  # on the real Transform output (TFT on Beam)

SIGNATURES = {"serving_default", "transform_features", "big", "fare", "kind",
              *(f"{t}__evaluation{s}" for t in ("big", "fare", "kind") for s in ("", "_labelled"))}


def _batch(rows):
    return {k: tf.constant([r[k] for r in rows]) for k in rows[0]}


def _example(row):
    feature = {}
    for key, values in row.items():
        if not values:
            continue
        if isinstance(values[0], bytes):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _network(tft_output, **arch):
    cardinalities = features.input_cardinalities(SPEC, tft_output.vocabulary_size_by_name)
    return families.build(SPEC, cardinalities, {"kind": 2}, architecture.ArchitectureConfig(
        hidden_units=(8,), tower_units=(4,), experts=2, **arch))


@pytest.fixture(scope="module")
def model_and_stats(transformed):
    rows, tft_output = transformed
    batch = _batch(rows)
    return _network(tft_output).model, trainer.read_label_stats(SPEC, batch), batch


def test_heads_have_the_shape_of_their_task(model_and_stats):
    model, _, batch = model_and_stats
    raw = model({naming.feature_key(f): batch[naming.feature_key(f)] for f in SPEC.feature_names})
    assert raw["big"].shape == (3, 1) and raw["fare"].shape == (3, 1) and raw["kind"].shape == (3, 2)


@pytest.mark.parametrize("arch,weighting,combine", [
    ("shared_bottom", "uniform", "sum"), ("mmoe", "uncertainty", "pcgrad"),
    ("ple", "gradnorm", "mgda_ub")])
def test_training_on_transformed_rows_reduces_every_task_loss(transformed, arch, weighting,
                                                             combine):
    # Real Transform output: embeddings of vocabulary ids, a multiclass label, missing labels.
    rows, tft_output = transformed
    batch = _batch(rows)
    stats = trainer.read_label_stats(SPEC, batch)
    tf.keras.utils.set_random_seed(0)
    network = _network(tft_output, name=arch)
    config = TrainerConfig(learning_rate=0.01, log_every=1000, weighting=weighting,
                           combine=combine)
    loop = TrainingLoop(network, SPEC, stats, config)

    def losses():
        return {t: m[eval_metrics.LOSS] for t, m in loop.evaluator([batch]).items()}

    first = losses()
    loop.fit(tf.data.Dataset.from_tensors(batch).repeat(), 50)
    last = losses()
    assert all(last[t] < first[t] for t in SPEC.task_names), (first, last)


@pytest.mark.parametrize("arch", ["mmoe", "ple", "cross_stitch"])
def test_every_architecture_exports_the_same_signatures(transformed, arch, tmp_path):
    rows, tft_output = transformed
    model = _network(tft_output, name=arch).model
    export.export(model, SPEC, tft_output, trainer.read_label_stats(SPEC, _batch(rows)),
                  str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    assert set(loaded.signatures) == SIGNATURES
    everything = loaded.signatures["serving_default"](
        examples=tf.constant([_example(r) for r in ROWS]))
    assert set(everything) == {"big_probability", "big_class_id", "fare_value",
                               "kind_probabilities", "kind_class_id", "kind_class"}
    assert all(np.all(np.isfinite(v.numpy())) for k, v in everything.items() if k != "kind_class")


def test_signatures_of_the_exported_model(model_and_stats, transformed, tmp_path):
    model, stats, _ = model_and_stats
    _, tft_output = transformed
    export.export(model, SPEC, tft_output, stats, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    assert set(loaded.signatures) == SIGNATURES
    examples = tf.constant([_example(r) for r in ROWS])
    # Label columns in the examples are ignored by the prediction signatures.
    everything = loaded.signatures["serving_default"](examples=examples)
    assert set(everything) == {"big_probability", "big_class_id", "fare_value",
                               "kind_probabilities", "kind_class_id", "kind_class"}
    fare = loaded.signatures["fare"](examples=examples)
    assert set(fare) == {"value"}
    np.testing.assert_allclose(fare["value"].numpy(), everything["fare_value"].numpy())
    assert np.all(np.isfinite(fare["value"].numpy())) and fare["value"].shape == (3,)
    big = loaded.signatures["big"](examples=examples)
    assert np.all((big["probability"].numpy() >= 0) & (big["probability"].numpy() <= 1))
    kind = loaded.signatures["kind"](examples=examples)
    assert kind["probabilities"].shape == (3, 2) and set(kind["class"].numpy()) <= {b"a", b"b"}
    features_only = tf.constant([_example({k: v for k, v in r.items() if k in SPEC.feature_names})
                                 for r in ROWS])
    np.testing.assert_allclose(loaded.signatures["fare"](examples=features_only)["value"].numpy(),
                               fare["value"].numpy())
    # What TFMA scores: each task's scored output, alone, under the task's name.
    scored = {task: loaded.signatures[f"{task}__evaluation"](examples=examples)
              for task in ("big", "fare", "kind")}
    assert all(set(outputs) == {task} for task, outputs in scored.items())
    np.testing.assert_allclose(scored["big"]["big"].numpy(), everything["big_probability"].numpy())
    np.testing.assert_allclose(scored["fare"]["fare"].numpy(), everything["fare_value"].numpy())
    assert scored["kind"]["kind"].shape == (3, 2)
    transformed_out = loaded.signatures["transform_features"](examples=examples)
    # What the Evaluators read in one pass: the same score, label and mask.
    for task in ("big", "fare", "kind"):
        labelled = loaded.signatures[f"{task}__evaluation_labelled"](examples=examples)
        assert set(labelled) == {task, f"{task}__label", f"{task}__mask"}
        np.testing.assert_array_equal(labelled[task].numpy(), scored[task][task].numpy())
        for key in (f"{task}__label", f"{task}__mask"):
            np.testing.assert_array_equal(labelled[key].numpy(), transformed_out[key].numpy())
    assert transformed_out["big__label"].numpy().tolist() == [1, 0, 0]
