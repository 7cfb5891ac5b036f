"""preprocessing_fn run with tensorflow-transform's Beam implementation."""
import math

import pytest

from tfx_mtl import naming

pytestmark = pytest.mark.e2e  # the real Transform (TFT on Beam): tests/models/conftest.py


def test_labels_and_masks(transformed):
    rows, _ = transformed
    # big: tips > 0.2 * fare -> 3 > 2 yes, 0 > 4 no, tips missing -> no label
    assert [r["big__label"] for r in rows] == [1, 0, 0]
    assert [r["big__mask"] for r in rows] == [1.0, 1.0, 0.0]
    # kind: pay2 missing in the third row
    assert [r["kind__mask"] for r in rows] == [1.0, 1.0, 0.0]


def test_regression_label_statistics_cover_labelled_rows(transformed):
    rows, _ = transformed
    assert [r["fare__label"] for r in rows] == [10.0, 20.0, 30.0]
    assert rows[0]["fare__label_mean"] == pytest.approx(20.0)
    assert rows[0]["fare__label_std"] == pytest.approx(math.sqrt(200 / 3))  # population std


def test_missing_numeric_is_the_mean_of_the_present_values_after_scaling(transformed):
    rows, _ = transformed
    # miles present: 1 and 3 -> mean 2, population std 1 -> z-scores -1, 1; the missing
    # row is the mean, z 0 (imputing before scaling gave std 0.8165: -1.2247, 0, 1.2247)
    assert [round(float(r["miles_xf"]), 4) for r in rows] == [-1.0, 0.0, 1.0]


def test_vocabularies_are_named_for_the_model(transformed):
    rows, tft_output = transformed
    assert sorted(tft_output.vocabulary_by_name(naming.feature_vocab_name("pay"))) == [b"card", b"cash"]
    assert sorted(tft_output.vocabulary_by_name(naming.label_vocab_name("kind"))) == [b"a", b"b"]
    assert all(0 <= r["pay_xf"] < 3 for r in rows)  # 2 words + 1 OOV bucket


def test_columns_of_any_header_name_are_read_by_name_and_output_by_safe_key(tmp_path):
    """Inputs keyed by the header's names (a hyphen, a space), outputs and vocabulary files
    by their keys, and a backtick-quoted label column; the model's input layer takes the
    Transform's output keys."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from tfx_mtl import task_spec
    from tfx_mtl.models import features, preprocessing

    spec = task_spec.parse({
        "features": ["hours-per-week", {"name": "marital status", "kind": "categorical"}],
        "tasks": [{"name": "rich", "type": "binary", "label": "`income class` == '>50K'"}]})
    feature_spec = {"hours-per-week": tf.float32, "marital status": tf.string,
                    "income class": tf.string}
    rows = [{"hours-per-week": [40.0], "marital status": [b"Divorced"], "income class": [b">50K"]},
            {"hours-per-week": [20.0], "marital status": [b"Never-married"],
             "income class": [b"<=50K"]}]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {k: tf.io.VarLenFeature(t) for k, t in feature_spec.items()}))
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        (out, _), transform_fn = ((rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.transform(inputs, spec)))
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "tft"))
    assert [row["hours_per_week_xf"] for row in out] == [1.0, -1.0]
    assert [row[naming.label_key("rich")] for row in out] == [1, 0]
    output = tft.TFTransformOutput(str(tmp_path / "tft"))
    assert output.vocabulary_size_by_name("marital_status_vocab") == 2
    inputs, _ = features.input_layer(spec, features.input_cardinalities(
        spec, output.vocabulary_size_by_name))
    assert list(inputs) == list(spec.feature_keys) == ["hours_per_week_xf", "marital_status_xf"]
