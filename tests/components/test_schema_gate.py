"""SchemaGate refuses data its statistics show cannot be trained on, naming the data,
split, task and column; it counts each task's NaN and infinite label values.

The statistics are TFDV's own, computed in memory from tf.Examples shaped as
CsvExampleGen writes them (an empty cell is a feature without a value); the gate is
the real component executor.
"""
import json
import math

import pytest
import tensorflow as tf
from tensorflow_data_validation.statistics import stats_impl, stats_options
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.coders import example_coder

from tfx_mtl import naming, task_spec
from tfx_mtl.components import data_checks, schema_gate

NAN, INF = math.nan, math.inf
# TFDV takes the mean of columns with NaN (numpy warns); that is the data under test.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
DATA_ROOT, PATTERN = "/data/taxi", "taxi.csv"
SPEC = task_spec.parse({
    "features": ["trip_miles"],
    "tasks": [{"name": "fare", "type": "regression", "label": "fare"},
              {"name": "big_tipper", "type": "binary", "label": "tips > 0.2 * fare"}]})


def _example(row):
    features = {}
    for name, value in row.items():
        if isinstance(value, str):
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        else:  # None: an empty CSV cell, a feature without a value
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(
                value=[] if value is None else [value]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _statistics(rows):
    if not rows:  # what StatisticsGen writes for a split without examples
        from tensorflow_metadata.proto.v0 import statistics_pb2
        empty = statistics_pb2.DatasetFeatureStatisticsList()
        empty.datasets.add()
        return empty
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch([_example(r) for r in rows])
    return stats_impl.generate_statistics_in_memory(batch, stats_options.StatsOptions())


def _rows(fares, tips=1.0):
    return [{"trip_miles": 1.0 + i, "fare": fare, "tips": tips, "company": "a"}
            for i, fare in enumerate(fares)]


def _artifact(kind, uri, splits=None):
    artifact = kind()
    artifact.uri = str(uri)
    if splits is not None:
        artifact.split_names = artifact_utils.encode_split_names(list(splits))
    return artifact


def _splits(train, validation=None, test=None):
    """split -> rows: validation and test get one labelled row each unless given."""
    return {"train": train, "validation": _rows([4.0]) if validation is None else validation,
            "test": _rows([5.0]) if test is None else test}


def _gate(tmp_path, splits, spec=SPEC, limit=0.01, split_dirs=()):
    """Runs the SchemaGate executor on the statistics of ``splits`` (split -> rows)."""
    statistics = _artifact(standard_artifacts.ExampleStatistics, tmp_path / "stats", splits)
    anomalies = _artifact(standard_artifacts.ExampleAnomalies, tmp_path / "anomalies", splits)
    for split, rows in splits.items():
        for artifact, proto, name in ((statistics, _statistics(rows), "FeatureStats.pb"),
                                      (anomalies, anomalies_pb2.Anomalies(), "SchemaDiff.pb")):
            path = f"{artifact.uri}/Split-{split}/{name}"
            tf.io.gfile.makedirs(path.rpartition("/")[0])
            tf.io.gfile.GFile(path, "wb").write(proto.SerializeToString())
    schema = _artifact(standard_artifacts.Schema, tmp_path / "schema")
    tf.io.gfile.makedirs(schema.uri)
    tf.io.gfile.GFile(f"{schema.uri}/schema.pbtxt", "w").write('feature { name: "fare" }\n')
    validated = _artifact(standard_artifacts.Schema, tmp_path / "validated")
    report = _artifact(schema_gate.LabelReport, tmp_path / "report")
    for output in (validated, report):  # as TFX's launcher makes them
        tf.io.gfile.makedirs(output.uri)
    schema_gate.SchemaGate.EXECUTOR_SPEC.executor_class().Do(
        {"anomalies": [anomalies], "schema": [schema], "statistics": [statistics]},
        {"validated_schema": [validated], "label_report": [report]},
        {"data_root": DATA_ROOT,
         "checks": schema_gate.checks_parameter(PATTERN, spec.tasks, limit, split_dirs)})
    assert (tmp_path / "validated" / "schema.pbtxt").read_text() == 'feature { name: "fare" }\n'
    return json.loads((tmp_path / "report" / naming.LABEL_REPORT_FILE).read_text())


def _refusal(tmp_path, error, splits, field=f"{DATA_ROOT}/{PATTERN}", **kwargs):
    with pytest.raises(error) as raised:
        _gate(tmp_path, splits, **kwargs)
    assert raised.value.field == field
    return raised.value.message


def test_clean_data_passes_with_its_label_counts(tmp_path):
    report = _gate(tmp_path, _splits(_rows([1.0, None, 3.0])))
    assert report["examples"] == {"test": 1, "train": 3, "validation": 1}
    fare = report["tasks"]["fare"]
    assert fare["columns"]["fare"] == {"values": 4, "nan": 0, "inf": 0, "-inf": 0,
                                       "max_abs": 5.0}
    assert (fare["non_finite"], fare["label"]) == (0, "fare")
    assert set(report["tasks"]["big_tipper"]["columns"]) == {"tips", "fare"}


def test_an_empty_split_is_refused_naming_the_data_and_the_split(tmp_path):
    """Few rows: ExampleGen hashes none into validation (and a header-only CSV that
    reached the gate would leave every split empty)."""
    message = _refusal(tmp_path, schema_gate.EmptySplitError, _splits(_rows([1.0]), []))
    assert message == ("split(s) 'validation' of the data have no example (examples per "
                       "split: test 1, train 1, validation 0); ExampleGen hashes each row into "
                       "a split (the spec's data.splits), and every split needs at least one row")


def test_an_empty_split_of_data_split_by_directory_names_its_directory(tmp_path):
    message = _refusal(tmp_path, schema_gate.EmptySplitError, _splits(_rows([1.0]), test=[]),
                       field=f"{DATA_ROOT}/test", split_dirs=naming.SPLITS)
    assert message == ("split(s) 'test' of the data have no example (examples per split: "
                       "test 0, train 1, validation 1); the data is split by directory, and "
                       "each split's directory needs at least one row")


def test_a_task_without_a_labelled_example_in_train_is_refused_naming_task_and_column(tmp_path):
    """Labels only in validation and test: the Trainer would have nothing to learn from.
    The expression reading the same column is refused too (sound for an expression)."""
    message = _refusal(tmp_path, schema_gate.LabelDataError,
                       _splits(_rows([None, NAN, None])), limit=1.0)
    assert ("task 'fare': no labelled example in split 'train' (3 examples): column 'fare' "
            "has no value there that is not empty, NaN or infinite; nothing to train on"
            ) in message
    assert "task 'big_tipper': no labelled example in split 'train'" in message
    assert "split 'validation'" not in message and "split 'test'" not in message


@pytest.mark.parametrize("split, why", [("validation", "nothing to select the model on"),
                                        ("test", "nothing to judge it on")])
def test_a_task_without_a_labelled_example_in_validation_or_test_is_refused(tmp_path, split,
                                                                            why):
    """No validation label: the Trainers' selection criterion would be 0/0; no test label:
    TFMA would fail only at the end, after all the training."""
    splits = {**_splits(_rows([1.0, 2.0])), split: _rows([None, None])}
    message = _refusal(tmp_path, schema_gate.LabelDataError, splits, limit=1.0)
    assert message == (
        "the labels cannot be trained on:\n"
        f"  task 'fare': no labelled example in split {split!r} (2 examples): column 'fare' "
        f"has no value there that is not empty, NaN or infinite; {why}\n"
        f"  task 'big_tipper': no labelled example in split {split!r} (2 examples): column "
        f"'fare' has no value there that is not empty, NaN or infinite; {why}")
    _refusal(tmp_path / "split", schema_gate.LabelDataError, splits, limit=1.0,
             field=DATA_ROOT, split_dirs=naming.SPLITS)


def test_a_label_column_with_no_value_at_all_is_refused(tmp_path):
    rows = [{"trip_miles": 1.0, "tips": 1.0}] * 3  # no fare feature in any example
    message = _refusal(tmp_path, schema_gate.LabelDataError, _splits(rows, rows, rows))
    for split in naming.SPLITS:
        assert f"task 'fare': no labelled example in split {split!r}" in message


def test_nan_and_infinite_labels_are_counted_per_task_and_refused_above_the_limit(tmp_path):
    splits = _splits(_rows([1.0, NAN, INF, 2.0, -INF, None, 3.0, NAN]), _rows([NAN, 5.0]),
                     _rows([6.0]))
    report = _gate(tmp_path / "tolerant", splits, limit=0.5)
    fare = report["tasks"]["fare"]
    assert fare["columns"]["fare"] == {"values": 10, "nan": 3, "inf": 1, "-inf": 1,
                                       "max_abs": 6.0}
    assert fare["non_finite"] == 5 and fare["fraction"] == pytest.approx(5 / 11)
    assert report["tasks"]["big_tipper"]["non_finite"] == 5  # it reads fare too

    message = _refusal(tmp_path / "strict", schema_gate.LabelDataError, splits, limit=0.1)
    assert ("task 'fare': 5 NaN or infinite label values in 11 examples (45.45%; "
            "column 'fare': 3 NaN, 1 inf, 1 -inf), above evaluation.max_non_finite_labels "
            "= 10.00%") in message


def test_a_regression_label_whose_square_overflows_float32_is_refused(tmp_path):
    """1e30 trains to rmse = inf; a binary task reading the column is left alone."""
    message = _refusal(tmp_path, schema_gate.LabelDataError,
                       _splits(_rows([1.0, 1e30, 2.0])))
    assert message == ("the labels cannot be trained on:\n  task 'fare': column 'fare' has a "
                       "value of magnitude 1e+30; above 1.84e+19 its square overflows "
                       "float32, so the loss and the RMSE would be inf")


def test_the_counts_match_what_tfdv_records_for_a_column(tmp_path):
    """tot_num_values counts values (not examples), the standard histogram NaNs and the
    infinities exactly, whatever the other buckets hold."""
    stats = _statistics(_rows([INF, INF, -INF, NAN, None, 7.5, -2.0]))
    counts = data_checks.column_counts(stats, "fare")
    assert counts == data_checks.ColumnCounts(values=6, nan=1, pos_inf=2, neg_inf=1,
                                              max_abs=7.5)
    assert data_checks.column_counts(stats, "company").values == 7  # a string column
    assert data_checks.column_counts(stats, "nope") == data_checks.ColumnCounts()


def test_the_run_prints_the_counts_the_gate_reports(tmp_path):
    from tfx_mtl.results import summary

    report = _gate(tmp_path / "a", _splits(_rows([1.0, NAN, INF, 2.0])), limit=0.5)
    assert summary.label_lines(report) == [
        f"labels: task {task!r}: 2 NaN or infinite label values in 6 examples (33.33%; "
        "fare 1 NaN, 1 inf, 0 -inf), masked as missing (refused above 50.00%)"
        for task in ("fare", "big_tipper")]
    clean = _gate(tmp_path / "b", _splits(_rows([1.0, 2.0])))
    assert summary.label_lines(clean) == ["labels: no NaN or infinite label value in 4 examples"]
