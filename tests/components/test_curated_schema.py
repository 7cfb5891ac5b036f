"""CuratedSchemaGen: the schema by value, written as TFX's Schema artifact; bad files named."""
import pytest
from tfx.types import standard_artifacts
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from tfx_mtl.components.curated_schema import (CuratedSchemaGen, SchemaFileError,
                                               read_schema_text)

TEXT = 'feature { name: "fare" type: FLOAT }\nfeature { name: "company" type: BYTES }\n'


def test_the_executor_writes_the_text_as_the_schema_artifact(tmp_path):
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "out")
    executor = CuratedSchemaGen.EXECUTOR_SPEC.executor_class()
    executor.Do({}, {"schema": [schema]}, {"schema_text": TEXT})
    written = io_utils.SchemaReader().read(str(tmp_path / "out" / "schema.pbtxt"))
    assert [f.name for f in written.feature] == ["fare", "company"]
    assert written.feature[0].type == schema_pb2.FLOAT


def test_a_bad_schema_file_is_named(tmp_path):
    bad = tmp_path / "schema.pbtxt"
    bad.write_text("feature { nme: 'x' }\n")
    with pytest.raises(SchemaFileError, match=f"{bad}: not a tensorflow_metadata Schema"):
        read_schema_text(str(bad))
    with pytest.raises(SchemaFileError, match="cannot read it"):
        read_schema_text(str(tmp_path / "missing.pbtxt"))
    assert read_schema_text(str(_good(tmp_path))) == TEXT


def _good(tmp_path):
    path = tmp_path / "good.pbtxt"
    path.write_text(TEXT)
    return path


def _bundled_schema():
    import os

    from tfx_mtl import data
    return io_utils.SchemaReader().read(
        os.path.join(os.path.dirname(data.bundled_spec()), "schema.pbtxt"))


def test_the_bundled_regression_labels_have_a_sanity_range_the_bundled_data_keeps():
    import csv

    from tfx_mtl import data, task_spec
    features = {f.name: f for f in _bundled_schema().feature}
    spec = task_spec.load(data.bundled_spec())
    columns = [t.label for t in spec.tasks if t.type == "regression"]
    assert columns  # bare columns, each with a domain that has a max
    with open(data.bundled_taxi_csv(), newline="") as f:
        rows = list(csv.DictReader(f))
    for column in columns:
        feature = features[column]
        domain = getattr(feature, feature.WhichOneof("domain_info"))
        assert domain.HasField("max"), column
        values = [float(r[column]) for r in rows if r[column] != ""]
        assert domain.min <= min(values) and max(values) <= domain.max, column


@pytest.mark.parametrize("fare, anomaly", [(5.0, None), (1e30, "1e+30>1000"),
                                           (float("inf"), "inf>1000")])
def test_an_extreme_or_infinite_fare_is_an_anomaly_under_the_bundled_schema(fare, anomaly):
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl, stats_options
    from tfx_bsl.coders import example_coder

    examples = [tf.train.Example(features=tf.train.Features(feature={"fare": tf.train.Feature(
        float_list=tf.train.FloatList(value=[v]))})).SerializeToString() for v in (1.0, fare)]
    stats = stats_impl.generate_statistics_in_memory(
        example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(examples),
        stats_options.StatsOptions())
    found = tfdv.validate_statistics(stats, _bundled_schema()).anomaly_info.get("fare")
    assert (found.description if found else None) == (
        anomaly and f"Unexpectedly high value: {anomaly}(upto six significant digits)")
