"""``tfx-mtl query`` against the real dev server: JSON lines in, one JSON result per row out."""
import csv
import io
import itertools
import json
import os
import subprocess

import numpy as np
import pytest
from serving_support import MODEL_NAME, SCHEMA_TEXT, expected, serve, write_model
from taxi_support import tfx_mtl_bin

from tfx_mtl import cli, data

VERSION = 2
SCHEMA = SCHEMA_TEXT
ROWS = [{"trip_miles": 0.5, "trip_seconds": 600, "company": "Flash Cab"},
        {"trip_miles": 3, "trip_seconds": "120"},
        {"trip_miles": 1.5},
        {"trip_miles": 2, "trip_seconds": 60, "company": None},
        {"trip_seconds": 30}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    write_model(base, VERSION)
    with serve(base) as srv:
        yield srv


@pytest.fixture
def files(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]) + "\n"
                    + "".join(json.dumps(r) + "\n" for r in ROWS[2:]))
    schema = tmp_path / "schema.pbtxt"
    schema.write_text(SCHEMA)
    return rows, schema


def _want():
    return expected([{k: float(v) for k, v in r.items() if k != "company" and v is not None}
                     for r in ROWS], VERSION)


def _query(capsys, *args):
    status = cli.main(["query", *args])
    out, err = capsys.readouterr()
    return status, [json.loads(line) for line in out.splitlines()], err


def test_every_task_per_row_in_batches(server, files, capsys):
    rows, schema = files
    status, results, err = _query(capsys, "--server", server.address, "--model", MODEL_NAME,
                                  "--input", str(rows), "--schema", str(schema), "--batch", "2")
    assert status == 0, err
    want = _want()
    assert len(results) == len(ROWS)
    for i, result in enumerate(results):
        assert set(result) == {"fare", "big_tipper"}
        assert result["fare"]["value"] == pytest.approx(float(want["fare"]["value"][i]), rel=1e-6)
        assert result["big_tipper"]["probability"] == pytest.approx(
            float(want["big_tipper"]["probability"][i]), rel=1e-6)
        assert result["big_tipper"]["class_id"] == int(want["big_tipper"]["class_id"][i])
        assert isinstance(result["big_tipper"]["class_id"], int)


def test_one_task_from_stdin(server, files, capsys, monkeypatch):
    rows, schema = files
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(rows.read_bytes())))
    status, results, err = _query(capsys, "--server", server.address, "--model", MODEL_NAME,
                                  "--task", "fare", "--input", "-", "--schema", str(schema))
    assert status == 0, err
    np.testing.assert_allclose([r["value"] for r in results], _want()["fare"]["value"], rtol=1e-6)
    assert all(set(r) == {"value"} for r in results)


def test_bad_input_exits_2_naming_file_and_line(server, files, tmp_path, capsys):
    rows, schema = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"trip_miles": 1.0}\n{"trip_miles": 1.0,\n')
    common = ["--server", server.address, "--model", MODEL_NAME]
    status, out, err = _query(capsys, *common, "--input", str(bad))
    assert status == 2 and out == []
    assert f"{bad}, line 2: not JSON" in err
    bad.write_bytes(b'{"trip_miles": 1.0}\n{"company": "\xff"}\n')
    status, _, err = _query(capsys, *common, "--input", str(bad))
    assert status == 2 and f"{bad}, line 2: not UTF-8 text" in err
    bad.write_text('{"trip_miles": 1.0}\n[1, 2]\n')
    status, _, err = _query(capsys, *common, "--input", str(bad))
    assert status == 2 and f"{bad}, line 2: expected a JSON object" in err
    bad.write_text('\n{"trip_seconds": "3.5"}\n')
    status, _, err = _query(capsys, *common, "--input", str(bad), "--schema", str(schema))
    assert status == 2
    assert f"{bad}, line 2, feature 'trip_seconds': '3.5' is not an integer" in err
    bad.write_text('{"trip_mile": 1}\n')
    status, _, err = _query(capsys, *common, "--input", str(bad), "--schema", str(schema))
    assert status == 2 and "feature 'trip_mile': not a feature of the schema" in err
    status, out, err = _query(capsys, *common, "--input", str(bad), "--schema", str(schema),
                              "--ignore-extra")
    assert status == 0 and len(out) == 1, err
    status, _, err = _query(capsys, *common, "--input", str(tmp_path / "none.jsonl"))
    assert status == 2 and "--input" in err and "none.jsonl" in err
    status, _, err = _query(capsys, *common, "--input", str(rows), "--schema",
                            str(tmp_path / "none.pbtxt"))
    assert status == 2 and "--schema" in err and "none.pbtxt" in err


def test_a_list_for_a_single_valued_feature_exits_2_naming_the_line(server, tmp_path, capsys):
    schema = tmp_path / "schema.pbtxt"  # as the taxi schema: one value per feature
    schema.write_text(SCHEMA.replace("type: FLOAT", "type: FLOAT value_count { min: 0 max: 1 }"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"trip_miles": 1.0}\n\n{"trip_miles": [1.0, 2.0]}\n')
    status, out, err = _query(capsys, "--server", server.address, "--model", MODEL_NAME,
                              "--input", str(rows), "--schema", str(schema))
    assert status == 2 and out == []  # refused before any row was sent
    assert (f"tfx-mtl query: error: {rows}, line 3, feature 'trip_miles': 2 values, but the "
            "schema allows at most one") in err


def test_server_errors_exit_1_with_the_status_code(server, files, capsys):
    rows, schema = files
    status, out, err = _query(capsys, "--server", server.address, "--model", "nope",
                              "--input", str(rows), "--schema", str(schema))
    assert status == 1 and out == []
    assert "tfx-mtl query: error: NOT_FOUND: " in err
    status, out, err = _query(capsys, "--server", server.address, "--model", MODEL_NAME,
                              "--task", "tip", "--input", str(rows), "--schema", str(schema))
    assert status == 1 and "FAILED_PRECONDITION" in err and "no task 'tip'" in err
    status, out, err = _query(capsys, "--server", server.address, "--model", MODEL_NAME,
                              "--input", str(rows))  # no schema: ints for a FLOAT feature
    assert status == 1 and "INVALID_ARGUMENT" in err


@pytest.mark.subprocess
def test_the_installed_command_end_to_end(server, files):
    rows, schema = files
    result = subprocess.run([tfx_mtl_bin(), "query", "--server", server.address, "--model",
                             MODEL_NAME, "--input", str(rows), "--schema", str(schema)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = [json.loads(line) for line in result.stdout.splitlines()]
    np.testing.assert_allclose([r["fare"]["value"] for r in results], _want()["fare"]["value"],
                               rtol=1e-6)


@pytest.mark.e2e
@pytest.mark.subprocess
def test_query_the_pipeline_model_with_taxi_rows(taxi_run, taxi_slice, tmp_path):
    """The model pushed by the real pipeline, queried with raw CSV rows and the curated schema."""
    import tensorflow as tf

    from tfx_mtl.serving.examples import RowEncoder

    pushed = taxi_run.summary["pushed"]
    schema = os.path.join(os.path.dirname(data.bundled_spec()), "schema.pbtxt")
    with open(taxi_slice, newline="") as f:
        rows = list(itertools.islice(csv.DictReader(f), 50))
    jsonl = tmp_path / "taxi.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = os.path.dirname(pushed)
    with serve(base, "taxi") as srv:
        result = subprocess.run([tfx_mtl_bin(), "query", "--server", srv.address, "--model",
                                 "taxi", "--input", str(jsonl), "--schema", schema,
                                 "--batch", "16"],
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(results) == len(rows)
    assert all(set(r) == {"big_tipper", "fare", "trip_seconds"} for r in results)
    model = tf.saved_model.load(pushed)
    examples = tf.constant(RowEncoder.from_schema_file(schema).encode_rows(rows))
    direct = model.signatures["serving_default"](examples=examples)
    np.testing.assert_allclose([r["fare"]["value"] for r in results],
                               direct["fare_value"].numpy(), rtol=1e-5)
    np.testing.assert_allclose([r["big_tipper"]["probability"] for r in results],
                               direct["big_tipper_probability"].numpy(), rtol=1e-5)
