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
