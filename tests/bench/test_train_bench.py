"""``tfx-mtl bench train``: the arithmetic by hand, the settings' checks, a tiny real run.

No timing is asserted: the numbers depend on the machine. The tiny run checks
that every configuration is built, warmed up, timed and reported.
"""
import json
import math

import pytest

from tfx_mtl import cli
from tfx_mtl.bench import train_bench as tb

METHOD_NAMES = ("sum", "pcgrad", "cagrad", "mgda", "mgda_ub", "uncertainty", "gradnorm", "dwa",
                "pcgrad_jacobian", "gradnorm_jacobian")


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
    rows = tb.summarise({3: {"keras_fit": [4.5, 4.0, 5.0], "pcgrad": [8.0, 7.0, 100.0],
                             "sum": [4.0, 5.0, 3.0], "mgda_ub": [6.0, 6.0, 6.0]}}, 512)
    assert [(r.name, r.k) for r in rows] == [("sum", 3), ("pcgrad", 3), ("mgda_ub", 3),
                                             ("keras_fit", 3)]
    by_name = {r.name: r for r in rows}
    assert by_name["sum"].examples_per_second == pytest.approx(128_000.0)
    assert (by_name["pcgrad"].ms_per_step, by_name["pcgrad"].ratio) == (8.0, 2.0)
    assert (by_name["pcgrad"].target, by_name["pcgrad"].met) == ("<= 1.5", False)
    assert by_name["keras_fit"].ratio == pytest.approx(1.125)
    assert (by_name["keras_fit"].target, by_name["keras_fit"].met) == (">= 0.9", True)
    assert (by_name["mgda_ub"].target, by_name["mgda_ub"].met) == (None, None)


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
        "tfx-mtl bench train --tasks 2 5 --batch-size 512 --hidden-units 16,8 --tower-units 64 "
        "--steps 7 --warmup 10 --rounds 9 --rows 20000 --features 100 --learning-rate 0.001 "
        "--seed 0 --experts 4 --threads 0")
    only = tb.BenchSettings(tasks=(3,), threads=1, only=("mmoe", "mmoe_reference"))
    assert tb.command_line(only).endswith("--experts 4 --threads 1 --only mmoe mmoe_reference")


def test_only_times_the_named_configurations_and_sum_in_table_order():
    assert tb.BenchSettings(only=("mmoe_reference", "mmoe")).configurations == (
        "sum", "mmoe", "mmoe_reference")
    assert tb.BenchSettings().configurations == tb.NAMES
    with pytest.raises(tb.BenchError, match="only: unknown configuration"):
        tb.BenchSettings(only=("moe",))


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
    (["--tasks", "1"], "--tasks: every K must be >= 2"),
    (["--tasks", "5", "--features", "4"], "--features: must be at least the largest K (5)"),
])
def test_refused_settings_exit_2_naming_the_option(argv, message, capsys):
    assert cli.main(["bench", "train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_malformed_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["bench", "train", "--steps", "0"])
    assert caught.value.code == 2 and "--steps" in capsys.readouterr().err


@pytest.mark.grid  # trains every method
def test_a_tiny_run_reports_every_method_with_targets(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "train", "--tasks", "2", "--batch-size", "32", "--hidden-units", "8",
            "--tower-units", "4", "--steps", "2", "--warmup", "1", "--rounds", "1",
            "--rows", "128", "--features", "8", "--json", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out

    table = [line for line in printed.splitlines() if line.startswith(("loop ", "keras "))]
    labels = [f"loop {w} + {c}" + (" (pfor Jacobian)" if n in tb.JACOBIAN else "")
              for n, w, c in tb.METHODS] + ["keras model.fit", "loop mmoe (sum)",
                                            "loop ple (sum)", "keras fit reference mmoe"]
    assert [line.split("  ")[0].strip() for line in table] == labels
    for line in table:
        cells = line.split()
        target = " ".join(cells[-3:-1])
        name = line.split("  ")[0]
        expected = {"loop uniform + pcgrad": "<= 1.5", "loop uniform + cagrad": "<= 1.5",
                    "loop uniform + mgda": "<= 1.5", "loop gradnorm + sum": "<= 1.5",
                    "keras model.fit": ">= 0.9"}.get(name)
        if expected:
            assert target == expected and cells[-1] in ("yes", "NO"), line
        else:
            assert cells[-2:] == ["-", "-"], line
    assert "input pipeline alone (ms/batch): K=2 loop" in printed

    report = json.loads(out.read_text())
    ratios = report["K=2"]
    names = METHOD_NAMES + ("mmoe", "ple", "mmoe_reference")
    assert sorted(ratios) == sorted(names + ("fit_vs_loop", "mmoe_vs_reference"))
    assert ratios["sum"] == 1.0
    assert all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios
    assert sorted(report["medians_ms"]["K=2"]) == sorted(names + ("keras_fit",))
    assert ratios["mmoe_vs_reference"] == pytest.approx(medians_of(report, "mmoe")
                                                        / medians_of(report, "mmoe_reference"))
    assert "MMoE step / reference MMoE step (mmoe_vs_reference): " in printed
    assert all(len(times) == 1 for times in report["per_round_ms"]["K=2"].values())
    # fit_vs_loop = loop examples/s / fit examples/s = fit's median step time / the loop's.
    medians = report["medians_ms"]["K=2"]
    assert ratios["fit_vs_loop"] == pytest.approx(medians["keras_fit"] / medians["sum"])
    assert report["targets"] == {"fit_vs_loop": ">= 0.9", "pcgrad": "<= 1.5",
                                 "cagrad": "<= 1.5", "mgda": "<= 1.5", "gradnorm": "<= 1.5",
                                 "mmoe_vs_reference": "<= 1"}
    assert sorted(report["met"]["K=2"]) == sorted(report["targets"])
    assert report["command"].startswith("tfx-mtl bench train --tasks 2 --batch-size 32 ")
    assert report["machine"]["nproc"] >= 1 and report["machine"]["tensorflow"]


def medians_of(report, name):
    return report["medians_ms"]["K=2"][name]
