"""``tfx-mtl bench serving``: the arithmetic by hand, settings' checks, a tiny real run.

The tiny run serves small real SavedModels (tests/serving_support.py) from in-process dev
servers over real gRPC on 127.0.0.1; no timing is asserted.
"""
import json

import pytest

import serving_support as ss
from tfx_mtl import cli
from tfx_mtl.bench import serving_bench as sb


def test_percentile_interpolates_between_closest_ranks():
    # 1..101: the 50th percentile is 51, the 99th is 100 (rank 0.99 * 100 = 99 -> value 100).
    values = list(range(1, 102))
    assert sb.percentile(values, 50) == 51
    assert sb.percentile(values, 99) == pytest.approx(100.0)
    # [10, 20]: p50 halfway = 15; p99 = 10 + 0.99 * 10 = 19.9.
    assert sb.percentile([20.0, 10.0], 50) == pytest.approx(15.0)
    assert sb.percentile([20.0, 10.0], 99) == pytest.approx(19.9)
    with pytest.raises(ValueError):
        sb.percentile([], 50)


def test_summarise_and_ratios():
    # (a) units of 2 ms; (b) of 6 ms (3 calls); 4 units each over 1 row.
    # units/s: (a) 4 / 0.008 s = 500; (b) 4 / 0.024 s = 166.7. Ratios to (a): p50 6/2 = 3,
    # throughput 500 / 166.7 = 3.
    cells = sb.summarise({("per_task", 1): [6.0] * 4, ("all_in_one", 1): [2.0] * 4},
                         {"all_in_one": 1, "per_task": 3})
    assert [c.config for c in cells] == ["all_in_one", "per_task"]
    assert cells[0].units_per_second == pytest.approx(500.0)
    assert cells[1].calls_per_unit == 3 and cells[1].rows_per_second == pytest.approx(500 / 3)
    r = sb.ratios(cells)[1]
    assert r["all_in_one"] == pytest.approx({"p50": 1.0, "p99": 1.0, "throughput": 1.0})
    assert r["per_task"] == pytest.approx({"p50": 3.0, "p99": 3.0, "throughput": 3.0})


def test_settings_name_the_bad_field(tmp_path):
    good = dict(model_base=str(tmp_path), single_task_bases=(("fare", str(tmp_path)),))
    with pytest.raises(sb.BenchError) as e:
        sb.BenchSettings(**{**good, "model_base": str(tmp_path / "missing")})
    assert e.value.field == "model_base"
    with pytest.raises(sb.BenchError) as e:
        sb.BenchSettings(**{**good, "single_task_bases": ()})
    assert e.value.field == "single_task_bases"
    with pytest.raises(sb.BenchError) as e:
        sb.BenchSettings(**{**good, "rounds": 0})
    assert e.value.field == "rounds"
    with pytest.raises(sb.BenchError) as e:
        sb.BenchSettings(**{**good, "servers": "docker"})
    assert e.value.field == "servers"


def test_cli_refuses_a_malformed_single_task_base(tmp_path, capsys):
    assert cli.main(["bench", "serving", "--model-base", str(tmp_path),
                     "--single-task-base", "fare"]) == 2
    assert "--single-task-base: expected TASK=DIR, got 'fare'" in capsys.readouterr().err


def test_tiny_run_reports_every_cell(tmp_path, capsys):
    multi = tmp_path / "multi"
    ss.write_model(multi, 1)
    fare_dir = ss.write_model(tmp_path / "fare", 3)  # a SavedModel dir itself: linked as a base
    ss.write_model(tmp_path / "big_tipper", 2)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in (
        {"trip_miles": 1.5, "trip_seconds": 300, "company": "a"},
        {"trip_miles": 0.2, "trip_seconds": 60},
        {"trip_miles": 7.0, "trip_seconds": 900, "company": "b", "tips": 1.0})))
    out = tmp_path / "bench.json"
    assert cli.main([
        "bench", "serving", "--model-base", str(multi),
        "--single-task-base", f"fare={fare_dir}",
        "--single-task-base", f"big_tipper={tmp_path / 'big_tipper'}",
        "--rows", "1", "4", "--units", "2", "--warmup", "1", "--rounds", "2",
        "--servers", "inprocess", "--input", str(rows), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(c) one call per single-task model" in printed
    result = json.loads(out.read_text())
    assert result["tasks"] == ["fare", "big_tipper"]
    for rows_key in ("rows=1", "rows=4"):
        assert set(result[rows_key]) == set(sb.CONFIGS)
        assert result[rows_key]["all_in_one"]["calls_per_unit"] == 1
        assert result[rows_key]["per_task"]["calls_per_unit"] == 2
        assert result[rows_key]["single_task"]["calls_per_unit"] == 2
        for cell in result[rows_key].values():
            assert cell["units"] == 4 and cell["p50_ms"] > 0 and cell["units_per_second"] > 0
        assert result["ratios"][rows_key]["all_in_one"]["p50"] == pytest.approx(1.0)
    assert len(result["latencies_ms"]) == 6
    assert result["memory"]["servers"] == "inprocess"
    assert result["command"].startswith("tfx-mtl bench serving --model-base ")
    assert {"settings", "machine", "seconds"} <= set(result)


def _rows_file(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in (
        {"trip_miles": 1.5, "trip_seconds": 300, "company": "a"},
        {"trip_miles": 0.2, "trip_seconds": 60},
        {"trip_miles": 7.0, "trip_seconds": 900, "company": "b"})))
    return rows


def _check_request_checks_result(result, printed, units):
    assert result["baseline"] == "checks_off"
    assert "--request-checks" in result["command"]
    for rows_key in ("rows=1", "rows=4"):
        assert set(result[rows_key]) == set(sb.CHECK_CONFIGS)
        for cell in result[rows_key].values():
            assert cell["calls_per_unit"] == 1
            assert cell["units"] == units and cell["p50_ms"] > 0
        ratio = result["ratios"][rows_key]
        on, off = result[rows_key]["checks_on"], result[rows_key]["checks_off"]
        assert ratio["checks_on"]["p50"] == pytest.approx(on["p50_ms"] / off["p50_ms"])
        assert ratio["checks_off"]["p50"] == pytest.approx(1.0)
    assert len(result["latencies_ms"]) == 4
    for label in ("request checks on", "request checks off", "p50 vs off", "units/s vs off"):
        assert label in printed


def _run_request_checks(tmp_path, capsys, servers, rounds):
    """``bench serving --request-checks`` on the tiny model: (its JSON, what it printed)."""
    ss.write_model(tmp_path / "multi", 1)
    out = tmp_path / "bench.json"
    assert cli.main([
        "bench", "serving", "--model-base", str(tmp_path / "multi"), "--request-checks",
        "--rows", "1", "4", "--units", "2", "--warmup", "1", "--rounds", str(rounds),
        "--servers", servers, "--input", str(_rows_file(tmp_path)),
        "--json", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_request_checks_compares_checks_on_and_off(tmp_path, capsys):
    result, printed = _run_request_checks(tmp_path, capsys, "inprocess", rounds=2)
    _check_request_checks_result(result, printed, 4)
    assert result["memory"]["servers"] == "inprocess"


def test_request_checks_pair_differs_only_in_the_checks(tmp_path):
    # A scalar `examples` is refused by the rank check with the checks on; without them the
    # request gets past the checks (TensorFlow then fails or answers, in its own words).
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    ss.write_model(tmp_path / "multi", 1)
    servers = sb.start_checks_pair(str(tmp_path / "multi"), "m")
    try:
        stubs = {c: ss.prediction_stub(s.address) for c, s in servers.items()}
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(
            ss.example_bytes({"trip_miles": 2.0})))
        with pytest.raises(grpc.RpcError) as on:
            stubs["checks_on"].Predict(request, timeout=10)
        assert "rank" in on.value.details()
        try:
            stubs["checks_off"].Predict(request, timeout=10)
        except grpc.RpcError as off:
            assert off.details() != on.value.details()
    finally:
        for s in servers.values():
            s.stop(0)


def test_check_same_outputs_refuses_different_answers(tmp_path):
    # Two versions of the tiny model answer differently (fare.value = ... + version).
    examples = [ss.example_bytes({"trip_miles": 2.0, "trip_seconds": 120})]
    ss.write_model(tmp_path / "v1", 1)
    ss.write_model(tmp_path / "v2", 2)
    with ss.serve(tmp_path / "v1", "m") as one, ss.serve(tmp_path / "v2", "m") as two:
        callers = {name: sb.Caller([(ss.prediction_stub(s.address), "m", "serving_default")],
                                   examples, (1,), 10.0)
                   for name, s in (("checks_on", one), ("checks_off", two))}
        sb.check_same_outputs({"checks_on": callers["checks_on"]}, 1)
        with pytest.raises(RuntimeError, match="checks_off's fare_value differs"):
            sb.check_same_outputs(callers, 1)


def test_request_checks_refuses_single_task_bases(tmp_path, capsys):
    assert cli.main(["bench", "serving", "--model-base", str(tmp_path), "--request-checks",
                     "--single-task-base", f"fare={tmp_path}"]) == 2
    assert "--single-task-base: not with --request-checks" in capsys.readouterr().err


def test_a_base_without_a_saved_model_is_refused_before_any_server_starts(tmp_path, capsys):
    (tmp_path / "base" / "1").mkdir(parents=True)  # a version directory, but no saved_model.pb
    assert cli.main(["bench", "serving", "--model-base", str(tmp_path / "base"),
                     "--request-checks"]) == 2
    err = capsys.readouterr().err
    assert "--model-base: " in err and "neither a model base" in err


@pytest.mark.subprocess
def test_request_checks_in_one_server_process(tmp_path, capsys):
    result, printed = _run_request_checks(tmp_path, capsys, "subprocess", rounds=1)
    _check_request_checks_result(result, printed, 2)
    assert result["memory"]["servers"] == "subprocess"
