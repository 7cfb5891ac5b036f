"""RowEncoder: raw feature rows -> serialized tf.Examples, typed by a schema or by Python."""
import math

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow_metadata.proto.v0 import schema_pb2

from tfx_mtl import data
from tfx_mtl.serving.examples import RowEncoder, RowError

SCHEMA = """
feature { name: "hour" type: INT }
feature { name: "miles" type: FLOAT }
feature { name: "company" type: BYTES }
feature { name: "untyped" }
"""


def _schema():
    return text_format.Parse(SCHEMA, schema_pb2.Schema())


def _decode(serialized):
    """{feature: (kind, values)} of a serialized tf.Example."""
    example = example_pb2.Example.FromString(serialized)
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = (kind, list(getattr(feature, kind).value))
    return out


def test_without_a_schema_values_are_typed_by_python():
    row = {"i": 3, "b": True, "f": 2.5, "s": "Flash Cab", "raw": b"\x00\x01",
           "ints": [1, 2], "mixed": [1, 2.5], "strs": ["a", "b"], "np": np.float32(1.5),
           "npi": np.int64(7), "arr": np.array([1.0, 2.0])}
    got = _decode(RowEncoder().encode(row))
    assert got == {"i": ("int64_list", [3]), "b": ("int64_list", [1]),
                   "f": ("float_list", [2.5]), "s": ("bytes_list", [b"Flash Cab"]),
                   "raw": ("bytes_list", [b"\x00\x01"]), "ints": ("int64_list", [1, 2]),
                   "mixed": ("float_list", [1.0, 2.5]), "strs": ("bytes_list", [b"a", b"b"]),
                   "np": ("float_list", [1.5]), "npi": ("int64_list", [7]),
                   "arr": ("float_list", [1.0, 2.0])}


def test_missing_values_are_left_out_for_the_model_to_impute():
    row = {"a": None, "b": "", "c": float("nan"), "d": [], "e": [None], "keep": 1}
    assert _decode(RowEncoder().encode(row)) == {"keep": ("int64_list", [1])}
    row = {"hour": None, "miles": "", "company": None}
    assert _decode(RowEncoder(_schema()).encode(row)) == {}


def test_the_schema_types_each_feature():
    enc = RowEncoder(_schema())
    got = _decode(enc.encode({"hour": "19", "miles": 0, "company": "Flash Cab", "untyped": 2.5}))
    assert got == {"hour": ("int64_list", [19]), "miles": ("float_list", [0.0]),
                   "company": ("bytes_list", [b"Flash Cab"]), "untyped": ("float_list", [2.5])}
    # CSV-style strings and JSON numbers alike
    got = _decode(enc.encode({"hour": 7.0, "miles": "1.25", "company": 17031}))
    assert got == {"hour": ("int64_list", [7]), "miles": ("float_list", [1.25]),
                   "company": ("bytes_list", [b"17031"])}
    assert _decode(enc.encode({"hour": ["1", 2], "miles": [1, "2.5"]})) == {
        "hour": ("int64_list", [1, 2]), "miles": ("float_list", [1.0, 2.5])}


@pytest.mark.parametrize("row, feature, words", [
    ({"hour": "3.5"}, "hour", ["'3.5'", "not an integer", "INT"]),
    ({"hour": 3.5}, "hour", ["3.5", "not an integer"]),
    ({"hour": "seven"}, "hour", ["'seven'", "INT"]),
    ({"miles": "far"}, "miles", ["'far'", "not a number", "FLOAT"]),
    ({"company": 1.5}, "company", ["1.5", "BYTES"]),
    ({"miles": {"a": 1}}, "miles", ["mapping"]),
    ({"miles": [[1.0]]}, "miles", ["nested"]),
    ({"miles": [1.0, None]}, "miles", ["missing"]),
    ({"hour": 2 ** 70}, "hour", ["out of range"]),
])
def test_a_value_the_schema_refuses_names_row_and_feature(row, feature, words):
    with pytest.raises(RowError) as info:
        RowEncoder(_schema()).encode(row, index=12)
    e = info.value
    assert (e.row, e.feature) == (12, feature)
    assert str(e).startswith(f"row 12, feature {feature!r}: ")
    for word in words:
        assert word in str(e)


def test_an_unknown_column_is_an_error_naming_it_and_the_known_ones_unless_ignored():
    with pytest.raises(RowError) as info:
        RowEncoder(_schema()).encode_rows([{"hour": 1}, {"hour": 2, "hours": 3}])
    e = info.value
    assert (e.row, e.feature) == (1, "hours")
    assert "not a feature of the schema" in str(e)
    assert "company, hour, miles, untyped" in str(e)
    ignoring = RowEncoder(_schema(), extra="ignore")
    assert _decode(ignoring.encode({"hour": 2, "hours": 3})) == {"hour": ("int64_list", [2])}
    # without a schema every column is encoded
    assert set(_decode(RowEncoder().encode({"hour": 2, "hours": 3}))) == {"hour", "hours"}
    with pytest.raises(ValueError, match="extra must be one of error, ignore"):
        RowEncoder(_schema(), extra="keep")


def test_schema_less_values_it_cannot_type_name_the_feature():
    with pytest.raises(RowError, match=r"row 0, feature 'x': mixes strings and numbers"):
        RowEncoder().encode({"x": [1, "a"]})
    with pytest.raises(RowError, match=r"row 3, feature 'x': .*is not an int, float, str"):
        RowEncoder().encode({"x": object()}, index=3)
    with pytest.raises(RowError, match=r"row 5: expected a mapping"):
        RowEncoder().encode([1, 2], index=5)


def test_from_schema_file_reads_the_curated_taxi_schema(tmp_path):
    import os

    path = os.path.join(os.path.dirname(data.bundled_spec()), "schema.pbtxt")
    enc = RowEncoder.from_schema_file(path)
    assert {"trip_start_hour", "trip_miles", "company", "fare"} <= set(enc.features)
    got = _decode(enc.encode({"trip_start_hour": "19", "trip_miles": "0", "company": "x",
                              "pickup_latitude": ""}))
    assert got == {"trip_start_hour": ("int64_list", [19]), "trip_miles": ("float_list", [0.0]),
                   "company": ("bytes_list", [b"x"])}
    # a binary Schema works too; garbage names the file
    binary = tmp_path / "schema.pb"
    binary.write_bytes(enc.schema.SerializeToString())
    assert RowEncoder.from_schema_file(binary).features == enc.features
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("feature { name: 'a' type: NOPE }")
    with pytest.raises(ValueError, match=f"{bad}: not a tensorflow_metadata Schema"):
        RowEncoder.from_schema_file(bad)


def test_encoded_rows_parse_with_the_models_parse_spec():
    import tensorflow as tf

    enc = RowEncoder(_schema())
    serialized = enc.encode_rows([{"hour": "5", "miles": 1, "company": "a"},
                                  {"hour": None, "miles": "2.5"}])
    parsed = tf.io.parse_example(serialized, {
        "hour": tf.io.VarLenFeature(tf.int64), "miles": tf.io.VarLenFeature(tf.float32),
        "company": tf.io.VarLenFeature(tf.string)})
    assert tf.sparse.to_dense(parsed["hour"]).numpy().tolist() == [[5], [0]]
    assert tf.sparse.to_dense(parsed["miles"]).numpy().tolist() == [[1.0], [2.5]]
    assert parsed["company"].values.numpy().tolist() == [b"a"]
    assert not math.isnan(parsed["miles"].values.numpy()[0])


def test_a_list_for_a_single_valued_feature_names_row_and_feature():
    schema = text_format.Parse(
        'feature { name: "hour" type: INT value_count { min: 1 max: 1 } }\n'
        'feature { name: "tags" type: BYTES }', schema_pb2.Schema())
    enc = RowEncoder(schema)
    with pytest.raises(RowError) as info:
        enc.encode({"hour": [3, 4]}, index=7)
    assert (info.value.row, info.value.feature) == (7, "hour")
    assert "2 values, but the schema allows at most one" in info.value.message
    assert _decode(enc.encode({"hour": [3], "tags": ["a", "b"]})) == {
        "hour": ("int64_list", [3]), "tags": ("bytes_list", [b"a", b"b"])}
