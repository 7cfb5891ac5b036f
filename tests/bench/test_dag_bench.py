"""``tfx-mtl bench dag``: process-tree accounting, progress attribution, slopes, verdicts."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import subprocess
import sys
import textwrap

import pytest

from tfx_mtl import cli
from tfx_mtl.bench import dag_bench as db
from tfx_mtl.runners import local

MB = 2 ** 20

# A real process tree doing known work: the parent starts A (burns 1.0 CPU-s, exits
# early), B (starts a grandchild G burning 0.5 CPU-s and reaps it, then holds 150 MB
# and burns 0.5) and C (holds 150 MB while B does); then the parent burns 0.3. B and C
# hold their memory together for a second whatever the machine's load: they meet
# through files in the directory given as argv[1], not through sleeps.
_TREE = textwrap.dedent("""
    import subprocess, sys, time

    def burn(seconds):
        start = time.process_time()
        while time.process_time() - start < seconds:
            pass

    def child(code):
        return subprocess.Popen([sys.executable, "-c", PRELUDE + code, sys.argv[1]])

    PRELUDE = "import os, subprocess, sys, time\\n" + (
        "def burn(s):\\n t = time.process_time()\\n"
        " while time.process_time() - t < s: pass\\n"
        "def mark(name): open(os.path.join(sys.argv[1], name), 'w').close()\\n"
        "def wait_for(name):\\n"
        " while not os.path.exists(os.path.join(sys.argv[1], name)): time.sleep(0.01)\\n")
    a = child("burn(1.0)")
    a.wait()
    b = child("g = subprocess.Popen([sys.executable, '-c', " + repr(PRELUDE + "burn(0.5)")
              + ", sys.argv[1]]); g.wait(); x = b'x' * (150 * 2 ** 20); burn(0.5); "
              "wait_for('c_holds'); time.sleep(1.0); mark('b_done')")
    c = child("x = b'x' * (150 * 2 ** 20); mark('c_holds'); wait_for('b_done')")
    b.wait(); c.wait()
    burn(0.3)
""")
_KNOWN_CPU = 1.0 + 0.5 + 0.5 + 0.3


@pytest.mark.subprocess
def test_tree_cpu_counts_every_process_once_and_rss_sums_the_tree(tmp_path):
    m = db.run_measured([sys.executable, "-c", _TREE, str(tmp_path)], interval=0.1)
    assert m.returncode == 0
    # wait4's rusage holds every reaped descendant: at least the known work.
    assert m.cpu_exact >= _KNOWN_CPU
    sampled = [s.cpu for s in m.samples[:-1]]
    assert sampled == sorted(sampled)  # cumulative: never decreases
    # The last sample (the parent alone, its children reaped) has the whole tree's CPU,
    # and no sample counts a process twice.
    assert sampled[-1] == pytest.approx(m.cpu_exact, abs=0.3)
    assert max(sampled) <= m.cpu_exact + 0.05
    # B and C hold 150 MB each at the same time: the tree's RSS is their sum, more
    # than any one process's peak.
    peak = max(s.rss for s in m.samples)
    assert peak >= 300 * MB
    assert peak > m.max_rss_one_process + 100 * MB


def _progress_lines() -> list[str]:
    """Lines exactly as ``tfx-mtl run`` prints them (its ComponentProgress handler)."""
    out = io.StringIO()
    handler = local.ComponentProgress(out)

    def record(msg, *args):
        handler.emit(logging.LogRecord("tfx", logging.INFO, __file__, 0, msg, args, None))

    record(local._RUNNING, "CsvExampleGen")
    record(local._FINISHED, "CsvExampleGen")
    record(local._RUNNING, "StatisticsGen")
    record(local._CACHED, 7)
    record(local._FINISHED, "StatisticsGen")
    return out.getvalue().splitlines()


def test_progress_lines_of_the_real_handler_parse():
    lines = _progress_lines()
    assert [db.parse_progress(line) for line in lines] == [
        ("CsvExampleGen", "started"), ("CsvExampleGen", "finished"),
        ("StatisticsGen", "started"), ("StatisticsGen", "cached")]
    for other in ("  model shared_bottom, weighting uniform, combine sum",
                  "  warning: the train split has 12 rows", "pipeline finished in 175.4s",
                  "  baselines: train (single-task, per task); policy 'any'"):
        assert db.parse_progress(other) is None


def test_groups_follow_the_issue_table():
    assert [db.group(n) for n in (
        "CsvExampleGen", "ImportExampleGen", "StatisticsGen", "Transform", "Trainer",
        "Trainer__seed1", "baseline_fare", "latest_baseline_fare", "evaluate_fare",
        "SchemaGen", "SchemaGate", "BlessingGate", "Pusher")] == [
        db.EXAMPLE_GEN, db.EXAMPLE_GEN, db.STATISTICS, db.TRANSFORM, db.TRAINERS,
        db.TRAINERS, db.TRAINERS, db.TRAINERS, db.EVALUATORS, db.REST, db.REST, db.REST,
        db.REST]


def test_attribute_interpolates_the_cumulative_cpu_at_each_component():
    S = db.Sample
    samples = [S(0, 0, 100), S(1, 1, 200), S(2, 3, 900), S(3, 4, 300), S(4, 8, 400),
               S(5, 9, 0)]
    E = db.Event
    events = [E(0.5, "CsvExampleGen", "started"), E(2.5, "CsvExampleGen", "finished"),
              E(2.5, "Transform", "started"), E(3.5, "Transform", "finished"),
              E(4.2, "pipeline", "finished")]  # no start: ignored
    r = db.attribute(samples, events, rows=1000, total_seconds=5.0, total_cpu=9.0)
    gen, tf = r["components"]["CsvExampleGen"], r["components"]["Transform"]
    # cpu(2.5) = 3 + (4 - 3) * 0.5 = 3.5; cpu(0.5) = 0.5; cpu(3.5) = 4 + 4 * 0.5 = 6.
    assert gen["cpu_seconds"] == pytest.approx(3.0)
    assert tf["cpu_seconds"] == pytest.approx(2.5)
    assert (gen["seconds"], tf["seconds"]) == (2.0, 1.0)
    assert (gen["peak_rss"], tf["peak_rss"]) == (900, 300)
    assert gen["rows_per_second"] == 500
    g = r["groups"]
    assert g[db.REST]["cpu_seconds"] == pytest.approx(9.0 - 5.5)
    assert g[db.REST]["seconds"] == pytest.approx(5.0 - 3.0)
    assert g[db.REST]["peak_rss"] == 400  # samples at 0, 4, 5: outside every component
    assert g[db.WHOLE] == {"seconds": 5.0, "cpu_seconds": 9.0, "peak_rss": 900,
                           "rows_per_second": 200}
    assert g[db.EVALUATORS]["cpu_seconds"] == 0


def test_a_component_between_two_samples_gets_the_next_samples_rss():
    S, E = db.Sample, db.Event
    samples = [S(0, 0, 100), S(1, 1, 700), S(2, 2, 50)]
    r = db.attribute(samples, [E(0.2, "Pusher", "started"), E(0.4, "Pusher", "finished")],
                     rows=10, total_seconds=2, total_cpu=2)
    assert r["components"]["Pusher"]["peak_rss"] == 700
    assert r["components"]["Pusher"]["cpu_seconds"] == pytest.approx(0.2)


def _sizes(cpu: dict[int, float], rss: dict[int, float] | None = None,
           whole_seconds: dict[int, float] | None = None):
    sizes = {}
    for rows, c in cpu.items():
        groups = {g: {"seconds": 1.0, "cpu_seconds": c, "peak_rss": 1} for g in db.GROUPS}
        groups[db.WHOLE] = {"seconds": (whole_seconds or {}).get(rows, 60.0),
                            "cpu_seconds": 6 * c, "peak_rss": (rss or {}).get(rows, 1)}
        sizes[rows] = groups
    return sizes


def test_slopes_between_consecutive_sizes():
    assert db.slope(10, 5, 100, 50) == pytest.approx(1.0)
    assert db.slope(100, 50, 1000, 50) == pytest.approx(0.0)
    # 2 -> 8 while rows 1 -> 4: 8/2 = 4 = 4^1; 8 -> 16 while 4 -> 16: 2 = 4^0.5.
    s = db.slopes(_sizes({1: 2.0, 4: 8.0, 16: 16.0}))
    assert [x["slope"] for x in s[db.TRANSFORM]] == pytest.approx([1.0, 0.5])
    assert [(x["from"], x["to"]) for x in s[db.WHOLE]] == [(1, 4), (4, 16)]
    assert db.slope(1, 0, 10, 5) is None


def test_verdicts():
    # 100k -> 1M: CPU x 10^0.8 (slope 0.8), RSS x 1.1, 25 minutes end to end: all met.
    good = _sizes({100_000: 10.0, 1_000_000: 10.0 * 10 ** 0.8}, rss={100_000: 100,
                  1_000_000: 110}, whole_seconds={1_000_000: 25 * 60})
    v = db.verdicts(good, features=100)
    assert {k: x["met"] for k, x in v.items()} == {"wall": True, "slopes": True, "rss": True}
    # slope 1.2, RSS x 1.3, 31 minutes: none met.
    bad = _sizes({100_000: 10.0, 1_000_000: 10.0 * 10 ** 1.2}, rss={100_000: 100,
                 1_000_000: 130}, whole_seconds={1_000_000: 31 * 60})
    v = db.verdicts(bad, features=100)
    assert {k: x["met"] for k, x in v.items()} == {"wall": False, "slopes": False,
                                                   "rss": False}
    assert "1.20" in v["slopes"]["detail"] and "1.30x" in v["rss"]["detail"]
    # Only the trainers growing faster than rows does not fail the data-component target.
    trainers = _sizes({100_000: 10.0, 1_000_000: 10.0})
    trainers[1_000_000][db.TRAINERS]["cpu_seconds"] = 1000.0
    assert db.verdicts(trainers, features=100)["slopes"]["met"] is True
    # 10k only: nothing can be judged.
    v = db.verdicts(_sizes({10_000: 5.0}), features=100)
    assert {k: x["met"] for k, x in v.items()} == {"wall": None, "slopes": None, "rss": None}
    # 1M rows of 20 features is not the target's workload.
    assert db.verdicts(good, features=20)["wall"]["met"] is None


def test_settings_name_the_bad_field():
    with pytest.raises(db.BenchError) as e:
        db.Settings(rows=(100, 100))
    assert e.value.field == "rows"
    with pytest.raises(db.BenchError) as e:
        db.Settings(features=2, tasks=3)
    assert e.value.field == "features"
    with pytest.raises(db.BenchError) as e:
        db.Settings(formats=("parquet",))
    assert e.value.field == "formats"
    assert db.Settings(rows=(300, 10)).rows == (10, 300)


def test_cli_refuses_fewer_features_than_tasks(capsys):
    assert cli.main(["bench", "dag", "--rows", "10", "--features", "2", "--tasks", "3"]) == 2
    assert "--features" in capsys.readouterr().err


@pytest.mark.subprocess
def test_synth_data_is_cached_by_its_parameters(tmp_path):
    settings = db.Settings(rows=(50,), features=4, tasks=2, work_dir=str(tmp_path))
    said = []
    first = db.synth_data(settings, 50, "csv", said.append)
    assert os.path.isfile(first["data"]) and os.path.isfile(first["spec"])
    mtime = os.path.getmtime(first["data"])
    assert db.synth_data(settings, 50, "csv", said.append) == first
    assert os.path.getmtime(first["data"]) == mtime and said[-1].startswith("reusing")
    other = db.synth_data(settings, 50, "tfrecord", said.append)
    assert other["data"] != first["data"] and other["data"].endswith(".tfrecord")
    parts = db.synth_data(dataclasses.replace(settings, files=3), 50, "csv", said.append)
    assert os.path.isdir(parts["data"]) and sorted(
        f for f in os.listdir(parts["data"]) if f.endswith(".csv")) == [
        f"part-0000{i}-of-00003.csv" for i in range(3)]


@pytest.mark.e2e
@pytest.mark.subprocess
def test_bench_dag_runs_the_dag_at_two_sizes(tmp_path):
    out = tmp_path / "dag.json"
    argv = ["bench", "dag", "--rows", "300", "600", "--features", "5", "--train-steps", "5",
            "--work-dir", str(tmp_path / "work"), "--json", str(out)]
    done = subprocess.run(db.cli(*argv), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["command"] == ("tfx-mtl bench dag --rows 300 600 --features 5 --tasks 3 "
                                 "--format csv --files 1 --train-steps 5")
    csv = report["formats"]["csv"]
    assert [r["rows"] for r in csv["runs"]] == [300, 600]
    for r in csv["runs"]:
        whole = r["groups"][db.WHOLE]
        # The sampled tree CPU agrees with wait4's exact total.
        assert r["cpu_seconds_sampled"] == pytest.approx(whole["cpu_seconds"], rel=0.05)
        for g in db.GROUPS:
            assert r["groups"][g]["cpu_seconds"] > 0 and r["groups"][g]["peak_rss"] > 0
        assert sum(r["groups"][g]["cpu_seconds"] for g in db.GROUPS) == pytest.approx(
            whole["cpu_seconds"])
        assert len(r["load_before"]) == 3
        assert "CsvExampleGen" in r["components"] and "evaluate_task_1" in r["components"]
    assert all(math.isfinite(s["slope"]) for s in csv["slopes_cpu"][db.WHOLE])
    assert csv["verdicts"]["slopes"]["met"] is not None
    assert "| **whole run** | 300 |" in done.stdout
    assert not os.listdir(tmp_path / "work" / "runs")  # each run's output removed
    assert not os.listdir(tmp_path / "work" / "tmp")


def test_markdown_has_a_row_per_group_and_size_and_the_verdicts_in_order():
    sizes = _sizes({100_000: 10.0, 1_000_000: 10.0 * 10 ** 1.2},
                   rss={100_000: 2 ** 30, 1_000_000: 2 ** 30},
                   whole_seconds={1_000_000: 25 * 60})
    runs = [{"rows": n, "groups": {g: {**v, "rows_per_second": n / v["seconds"]}
                                   for g, v in sizes[n].items()},
             "load_before": [1.0, 1, 1], "load_after": [2.0, 2, 2]} for n in sorted(sizes)]
    # Sorted keys, as the JSON written by --json gives them back.
    report = json.loads(json.dumps({"formats": {"csv": {
        "runs": runs, "slopes_cpu": db.slopes(sizes), "slopes_wall": db.slopes(sizes, "seconds"),
        "verdicts": db.verdicts(sizes, features=100)}}}, sort_keys=True))
    text = db.markdown(report)
    assert "| Transform | 100000 | 1.0 | 10.0 | 100000 | 0.00 |  |  |" in text
    assert "|  | 1000000 | 1.0 | 158.5 | 1000000 | 0.00 | 1.20 | 0.00 |" in text
    verdicts = [line for line in text.splitlines() if line.startswith("- ")][:3]
    assert verdicts == [
        "- 1M rows x 100 features end to end < 30 min: met (25.0 min (target < 30 min))",
        "- every data component's CPU slope <= 1.0: **not met** (largest: ExampleGen 1.20 "
        "(100000 -> 1000000 rows; target <= 1))",
        "- peak RSS flat in rows (largest within 1.2x of 100k): met (1000000 rows / 100000 "
        "rows: 1.00x (target <= 1.2x))"]
