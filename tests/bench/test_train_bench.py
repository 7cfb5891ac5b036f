"""``tfx-mtl bench train``: the arithmetic by hand, the settings' checks, a tiny real run.

No timing is asserted: the numbers depend on the machine. The tiny run checks
that every configuration is built, warmed up, timed and reported.
"""
import json
import math

import pytest

from tfx_mtl import cli
from tfx_mtl.bench import train_bench as tb



def method_names():
    """What the registries hold (the bench derives its rows from them, so must this test)."""
    from tfx_mtl.models import combination, weighting

    combines = [n for n in combination.names() if combination.REGISTRY.get(n).needs_task_gradients]
    weightings = [n for n in weighting.names() if n != "uniform"]
    return combines, weightings


# -- arithmetic ---------------------------------------------------------------

def test_per_step_time_and_throughput():
    # 0.5 s for 50 steps = 500 ms / 50 = 10 ms per step.
    assert tb.per_step_ms(0.5, 50) == pytest.approx(10.0)
    # 512 examples per 4 ms step = 512 / 0.004 s = 128,000 examples/s.
    assert tb.examples_per_second(512, 4.0) == pytest.approx(128_000.0)


def test_ratios_are_step_times_over_sum_and_fit_ratio_is_loop_over_fit_throughput():
    # sum 4 ms, pcgrad 6 ms, fit 3.6 ms: pcgrad 6/4 = 1.5; fit 3.6/4 = 0.9, and the loop's
    # examples/s over fit's = (512/4) / (512/3.6) = 3.6/4 = 0.9 too.
    result = tb.ratios({"sum": 4.0, "pcgrad": 6.0, "keras_fit": 3.6})
    assert result == pytest.approx({"sum": 1.0, "pcgrad": 1.5, "keras_fit": 0.9})
    loop_over_fit = tb.examples_per_second(512, 4.0) / tb.examples_per_second(512, 3.6)
    assert result["keras_fit"] == pytest.approx(loop_over_fit)


def test_ratios_need_the_sum_baseline():
    with pytest.raises(ValueError, match="medians: no 'sum' baseline"):
        tb.ratios({"pcgrad": 6.0})


def test_targets_include_their_bound():
    assert tb.target_met(1.5, ("<=", 1.5)) and not tb.target_met(1.51, ("<=", 1.5))
    assert tb.target_met(0.9, (">=", 0.9)) and not tb.target_met(0.89, (">=", 0.9))
    with pytest.raises(ValueError, match="target: unknown comparison '<'"):
        tb.target_met(1.0, ("<", 1.0))


def test_summarise_takes_medians_over_rounds_then_ratios():
    # Medians: sum [4, 5, 3] -> 4; pcgrad [8, 7, 100] -> 8 (the outlier round is ignored);
    # fit [4.5, 4, 5] -> 4.5. Ratios: pcgrad 8/4 = 2.0 (> 1.5: missed), fit 4.5/4 = 1.125
    # (>= 0.9: met); mgda_ub has no target. Throughput of sum: 512 / 4 ms = 128,000/s.
    # At K=8 the same times are reported without a target (the bounds are for K <= 5).
    times = {"keras_fit": [4.5, 4.0, 5.0], "pcgrad": [8.0, 7.0, 100.0],
             "sum": [4.0, 5.0, 3.0], "mgda_ub": [6.0, 6.0, 6.0], "dwa": [4.0, 4.0, 4.0]}
    rows = tb.summarise({8: times, 3: times}, 512)
    assert [(r.name, r.k) for r in rows] == [
        ("sum", 3), ("sum", 8), ("pcgrad", 3), ("pcgrad", 8), ("mgda_ub", 3), ("mgda_ub", 8),
        ("dwa", 3), ("dwa", 8), ("keras_fit", 3), ("keras_fit", 8)]
    assert all((r.target, r.met) == (None, None) for r in rows if r.k == 8)
    rows = [r for r in rows if r.k == 3]
    by_name = {r.name: r for r in rows}
    assert by_name["sum"].examples_per_second == pytest.approx(128_000.0)
    assert (by_name["pcgrad"].ms_per_step, by_name["pcgrad"].ratio) == (8.0, 2.0)
    assert (by_name["pcgrad"].target, by_name["pcgrad"].met) == ("<= 1.5", False)
    assert by_name["keras_fit"].ratio == pytest.approx(1.125)
    assert (by_name["keras_fit"].target, by_name["keras_fit"].met) == (">= 0.9", True)
    # mgda_ub works on the representation: 6/4 = 1.5 > 1.2; dwa is loss-level: 4/4 = 1 <= 1.1.
    assert (by_name["mgda_ub"].target, by_name["mgda_ub"].met) == ("<= 1.2", False)
    assert (by_name["dwa"].target, by_name["dwa"].met) == ("<= 1.1", True)
    assert (by_name["sum"].target, by_name["sum"].met) == (None, None)


def test_targets_follow_the_cost_class_of_the_method_and_stop_above_k5():
    assert tb.target("pcgrad", 5) == ("<=", 1.5)  # per-task gradients of the parameters
    assert tb.target("mgda_ub", 2) == ("<=", 1.2)  # ... of the representation
    assert tb.target("uncertainty", 3) == ("<=", 1.1)  # loss-level weighting
    assert tb.target("gradnorm", 5) == ("<=", 1.5)  # needs gradient norms of the last layer
    assert tb.target("keras_fit", 2) == (">=", 0.9)
    assert tb.target("sum", 5) is None and tb.target("pcgrad", 8) is None
    assert tb.target("mmoe", 3) is None


# -- rows from the registries -------------------------------------------------

def test_method_rows_are_every_registered_combination_and_weighting():
    combines, weightings = method_names()
    rows = tb.methods()
    assert rows[0] == tb.Method("sum", "uniform", "sum", tb.LOSS)
    assert [(m.weighting, m.combine) for m in rows if m.combine != "sum"] == [
        ("uniform", c) for c in combines for _ in range(1 + sum(
            m.combine == c and m.surgery_level is not None for m in rows))]
    assert [m.weighting for m in rows if m.combine == "sum"][1:] == weightings
    assert tb.names() == tuple(m.name for m in rows) + ("keras_fit", "mmoe", "ple",
                                                       "mmoe_reference")


def test_a_newly_registered_method_gets_a_row(monkeypatch):
    from tfx_mtl.models.combination import base as combination_base
    from tfx_mtl.models.weighting import base as weighting_base
    from tfx_mtl.models.weighting import uniform

    class Halves(combination_base.GradientCombination):
        name = "halves"

        def combine(self, G, seed=None):
            return 0.5 * G[0]

    class Again(uniform.Uniform):
        name = "again"

    monkeypatch.setattr(combination_base.REGISTRY, "_methods",
                        {**combination_base.REGISTRY._methods})
    monkeypatch.setattr(weighting_base.REGISTRY, "_methods", {**weighting_base.REGISTRY._methods})
    combination_base.REGISTRY.register(Halves)
    weighting_base.REGISTRY.register(Again)
    rows = {m.name: m for m in tb.methods()}
    assert rows["halves"] == tb.Method("halves", "uniform", "halves", tb.PARAMETERS)
    assert rows["again"] == tb.Method("again", "again", "sum", tb.LOSS)
    assert tb.label("halves") == "uniform + halves" and tb.level("again") == "loss"


def test_representation_rows_for_every_method_that_runs_there():
    rows = {m.name: m for m in tb.methods()}
    assert rows["pcgrad@representation"] == tb.Method(
        "pcgrad@representation", "uniform", "pcgrad", tb.REPRESENTATION, "representation")
    assert tb.label("pcgrad@representation") == "uniform + pcgrad @ representation"
    assert "mgda_ub@representation" not in rows  # already at representation level
    assert rows["mgda_ub"].level == tb.REPRESENTATION
    assert "db_mtl" in rows and "db_mtl@representation" not in rows  # parameters only
    assert tb.target("pcgrad@representation", 5) == ("<=", 1.2)


# -- settings -----------------------------------------------------------------

@pytest.mark.parametrize("options,field", [
    (dict(tasks=(1, 3)), "tasks"), (dict(tasks=(3, 3)), "tasks"), (dict(tasks=()), "tasks"),
    (dict(tasks=(5,), features=4), "features"), (dict(batch_size=64, rows=32), "rows"),
    (dict(steps=0), "steps"), (dict(hidden_units=(8, 0)), "hidden_units"),
    (dict(learning_rate=float("nan")), "learning_rate")])
def test_bad_settings_name_the_field(options, field):
    with pytest.raises(tb.BenchError) as caught:
        tb.BenchSettings(**options)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")


def test_command_line_repeats_the_settings():
    settings = tb.BenchSettings(tasks=(2, 5), hidden_units=(16, 8), steps=7)
    assert tb.command_line(settings) == (
        "tfx-mtl bench train --ks 2 5 --batch-size 512 --hidden-units 16,8 --tower-units 64 "
        "--steps 7 --warmup 5 --rounds 5 --rows 20000 --features 100 --learning-rate 0.001 "
        "--seed 0 --experts 4 --threads 0")
    only = tb.BenchSettings(tasks=(3,), threads=1, methods=("mmoe", "mmoe_reference"))
    assert tb.command_line(only).endswith("--experts 4 --threads 1 --methods mmoe mmoe_reference")
    assert tb.command_line(only, [1, 0]).endswith("--threads 1 0 --methods mmoe mmoe_reference")


def test_the_default_grid_is_k_2_3_5_8():
    assert tb.BenchSettings().tasks == (2, 3, 5, 8)


def test_methods_filter_times_the_named_configurations_and_sum_in_table_order():
    assert tb.BenchSettings(methods=("mmoe_reference", "mmoe", "dwa")).configurations == (
        "sum", "dwa", "mmoe", "mmoe_reference")
    assert tb.BenchSettings().configurations == tb.names()
    with pytest.raises(tb.BenchError, match="methods: unknown configuration"):
        tb.BenchSettings(methods=("moe",))


def test_thread_settings_must_be_distinct():
    with pytest.raises(tb.BenchError, match="threads: must be distinct"):
        tb.run_thread_settings(tb.BenchSettings(), (1, 1))


def _run(threads, ms):
    """A run's JSON as to_json writes it, from per-round times of K=5 (no training)."""
    per_round = {5: {"sum": [ms], "pcgrad": [2 * ms]}}
    settings = tb.BenchSettings(tasks=(5,), threads=threads)
    report = tb.Report(settings, tb.summarise(per_round, 512), per_round,
                       {"load": {"before": [1.5, 1.0, 1.0], "after": [2.25, 1.0, 1.0]}},
                       {5: {"loop": 0.1, "fit": 0.2}}, 12.0)
    return tb.to_json(report)


def test_the_table_puts_the_thread_settings_side_by_side():
    # One thread: sum 4 ms, pcgrad 8 ms (ratio 2.00, > 1.5: NO); default: 3 and 6 ms.
    text = tb.format_table([_run(1, 4.0), _run(0, 3.0)])
    lines = text.splitlines()
    assert lines[0].split("  ")[0] == "configuration"
    assert "ms (1 thread)" in lines[0] and "ms (default threads)" in lines[0]
    assert lines[0].index("ms (1 thread)") < lines[0].index("ms (default threads)")
    pcgrad = next(line for line in lines if line.startswith("uniform + pcgrad"))
    assert pcgrad.split()[3:] == ["parameters", "5", "<=", "1.5", "8.00", "2.00", "NO",
                                  "6.00", "2.00", "NO"]
    assert "1 thread: load average (1 min) 1.50 before, 2.25 after; 12 s" in text



def test_reference_ratio_is_mmoe_over_the_reference():
    # MMoE 8.4 ms, reference 7.6 ms: 8.4 / 7.6 = 1.105 (the 1.11x; target <= 1 missed).
    ratio = tb.reference_ratio({"sum": 5.0, "mmoe": 8.4, "mmoe_reference": 7.6})
    assert ratio == pytest.approx(1.10526, rel=1e-4)
    assert not tb.target_met(ratio, tb.REFERENCE_TARGET)
    assert tb.reference_ratio({"sum": 5.0, "mmoe": 8.4}) is None


def test_the_reference_mmoe_is_deepctrs_shape():
    # Same experts, towers and inputs as the project's MMoE, but DeepCTR's gates and heads
    # have no bias: K * (E + 1) fewer parameters (K=3, E=4: 15).
    import numpy as np

    from tfx_mtl import synth
    from tfx_mtl.models import synthetic_input

    settings = tb.BenchSettings(tasks=(3,), hidden_units=(8, 8), tower_units=(4,), features=6)
    spec = synthetic_input.spec(synth.SynthConfig(rows=10, tasks=3, features=6))
    reference = tb.reference_mmoe(spec, settings)
    ours = tb._network(spec, settings, "mmoe").model

    def count(model):
        return sum(int(np.prod(v.shape)) for v in model.trainable_variables)

    assert count(ours) - count(reference) == 3 * (4 + 1)
    assert sorted(reference.output) == ["task_1", "task_2", "task_3"]


# -- the command line ---------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["--ks", "1"], "--ks: every K must be >= 2"),
    (["--ks", "5", "--features", "4"], "--features: must be at least the largest K (5)"),
    (["--quick", "--features", "4"], "--features: must be at least the largest K (5)"),
    (["--threads", "1", "1"], "--threads: must be distinct"),
    (["--methods", "moe"], "--methods: unknown configuration(s) moe"),
])
def test_refused_settings_exit_2_naming_the_option(argv, message, capsys):
    assert cli.main(["bench", "train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_malformed_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["bench", "train", "--steps", "0"])
    assert caught.value.code == 2 and "--steps" in capsys.readouterr().err


TINY = ["bench", "train", "--ks", "2", "--batch-size", "32", "--hidden-units", "8",
        "--tower-units", "4", "--steps", "2", "--warmup", "1", "--rounds", "1",
        "--rows", "128", "--features", "8"]


@pytest.mark.grid  # trains every method
def test_a_tiny_run_reports_every_method_with_targets(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main([*TINY, "--threads", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out

    combines, weightings = method_names()
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("configuration")) + 2
    table = lines[start:start + len(tb.names())]
    labels = [tb.label(name) for name in tb.names()]
    assert [line.split("  ")[0].strip() for line in table] == labels
    assert "input pipeline alone (ms/batch, default threads): K=2 loop" in printed
    assert "default threads: load average (1 min) " in printed

    report = json.loads(out.read_text())
    run, = report["runs"]
    assert report["command"].startswith("tfx-mtl bench train --ks 2 --batch-size 32 ")
    assert report["command"].endswith("--threads 0")
    for row in run["rows"]:
        assert row["target"] == (None if row["name"] in ("sum", "mmoe", "ple", "mmoe_reference")
                                 else "<= 1.1" if row["level"] == "loss"
                                 else ">= 0.9" if row["name"] == "keras_fit"
                                 else "<= 1.2" if row["level"] == "representation"
                                 else "<= 1.5"), row
    ratios = run["K=2"]
    names = tuple(n for n in tb.names() if n != "keras_fit")
    assert set(combines) | set(weightings) <= set(names)
    assert sorted(ratios) == sorted(names + ("fit_vs_loop", "mmoe_vs_reference"))
    assert ratios["sum"] == 1.0
    assert all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios
    assert sorted(run["medians_ms"]["K=2"]) == sorted(names + ("keras_fit",))
    assert ratios["mmoe_vs_reference"] == pytest.approx(
        run["medians_ms"]["K=2"]["mmoe"] / run["medians_ms"]["K=2"]["mmoe_reference"])
    assert "MMoE step / reference MMoE step (mmoe_vs_reference): " in printed
    assert all(len(times) == 1 for times in run["per_round_ms"]["K=2"].values())
    # fit_vs_loop = loop examples/s / fit examples/s = fit's median step time / the loop's.
    medians = run["medians_ms"]["K=2"]
    assert ratios["fit_vs_loop"] == pytest.approx(medians["keras_fit"] / medians["sum"])
    assert run["machine"]["nproc"] >= 1 and run["machine"]["tensorflow"]
    assert len(run["machine"]["load"]["before"]) == 3


@pytest.mark.subprocess  # one process per thread setting
def test_both_thread_settings_run_in_their_own_processes_side_by_side(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main([*TINY, "--methods", "pcgrad", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [run["threads"] for run in report["runs"]] == [1, 0]
    assert [run["machine"]["intra_op_threads"] for run in report["runs"]] == [1, 0]
    assert [[row["name"] for row in run["rows"]] for run in report["runs"]] == [
        ["sum", "pcgrad"]] * 2
    assert report["command"].endswith("--threads 1 0 --methods pcgrad")
    header = next(line for line in printed.splitlines() if line.startswith("configuration"))
    assert "ms (1 thread)" in header and "ms (default threads)" in header
