"""``tfx-mtl bench transfer``: the paper's parameter matching and the statistics by hand,
the plot, and a tiny real run of the command."""
import json
import math

import numpy as np
import pytest

from tfx_mtl import cli
from tfx_mtl.bench import transfer_bench as tb


# -- parameter matching ----------------------------------------------------------

def test_matched_width_is_the_papers_113_within_half_a_unit():
    # MMoE paper: 100 features, 8 experts of 16, 2 towers of 8. MoE weights:
    # 100*16*8 + 2*16*8 = 12,800 + 256 = 13,056. A shared bottom of u units has
    # 100*u + 2*u*8 = 116*u weights: 13,056 / 116 = 112.55 -> 113 (13,108 weights).
    assert tb.moe_weights(100, 2, 8, 16, 8) == 13_056
    assert tb.matched_width(100, 2, 8, 16, 8) == 113
    assert tb.shared_bottom_weights(100, 2, 113, 8) == 13_108
    # Stated tolerance: half a unit's weights (116 / 2 = 58 of 13,056, 0.44%); here +52.
    assert abs(13_108 - 13_056) <= 116 / 2
    assert tb.TransferSettings().shared_bottom_units == 113


@pytest.mark.parametrize("experts,units,towers", [(8, 16, 8), (4, 32, 16), (3, 7, 5)])
def test_matching_holds_within_half_a_unit_for_other_sizes(experts, units, towers):
    width = tb.matched_width(100, 2, experts, units, towers)
    diff = tb.shared_bottom_weights(100, 2, width, towers) - tb.moe_weights(100, 2, experts,
                                                                             units, towers)
    assert abs(diff) <= (100 + 2 * towers) / 2


def test_parameter_counts_are_the_built_models_counts():
    # "all" adds biases, gates and heads; each must equal what the builders make.
    # MMoE, worked: experts 8*(100*16 + 16) = 12,928; gates 2*(100*8 + 8) = 1,616;
    # towers 2*(16*8 + 8) = 272; heads 2*(8 + 1) = 18: 14,834. OMoE: one gate, 808 less.
    settings = tb.TransferSettings(rhos=(0.5,), seeds=1, train_rows=128, validation_rows=128,
                                   test_rows=128, batch_size=64)
    counts = tb.parameter_counts(100, 2, 8, 16, 8, 113)
    assert counts["mmoe"]["all"] == 14_834 and counts["omoe"]["all"] == 14_834 - 808
    assert counts["shared_bottom"]["all"] == 100 * 113 + 113 + 2 * (113 * 8 + 8) + 2 * 9
    spec, _ = tb._arrays(0.5, 0, settings)
    for name in tb.MODELS:
        model = tb.build(name, spec, settings).model
        assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == \
            counts[name]["all"], name


# -- statistics -------------------------------------------------------------------

def test_interval_is_mean_and_t_half_width():
    # [1, 2, 3]: mean 2, SD 1, t(0.975, 2) = 4.303: half-width 4.303 / sqrt(3) = 2.4844.
    mean, half = tb.interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.303 / math.sqrt(3))
    assert tb.interval([5.0]) == (5.0, 0.0)


def test_gate_stats_by_hand():
    # Rows [0.5, 0.5] and [1, 0]: mean gate [0.75, 0.25]; row entropies ln 2 and 0, mean
    # 0.34657; entropy of the mean -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.56233; max ln 2.
    stats = tb.gate_stats([[0.5, 0.5], [1.0, 0.0]])
    assert stats["mean"] == pytest.approx([0.75, 0.25])
    assert stats["row_entropy"] == pytest.approx(math.log(2) / 2)
    assert stats["mean_entropy"] == pytest.approx(0.562335, abs=1e-6)
    assert stats["max_entropy"] == pytest.approx(math.log(2))


def _report(losses):
    """A Report from {(rho, model): [test loss of seed 0, seed 1, ...]}."""
    rhos = tuple(sorted({rho for rho, _ in losses}))
    models = tuple(m for m in tb.MODELS if any(m == name for _, name in losses))
    seeds = len(next(iter(losses.values())))
    runs = [{"rho": rho, "model": name, "seed": s, "test_loss": v, "train_loss": v / 2}
            for (rho, name), values in losses.items() for s, v in enumerate(values)]
    settings = tb.TransferSettings(rhos=rhos, seeds=seeds, models=models)
    return tb.Report(settings, runs, {"nproc": 2})


def test_summary_pairs_each_seed_with_its_shared_bottom():
    # rho 0: shared_bottom [1.0, 1.2], mmoe [0.9, 1.0]: paired differences -0.1 and -0.2,
    # mean -0.15, SD 0.0707, t(1) = 12.706: half-width 12.706 * 0.0707 / sqrt(2) = 0.6353.
    report = _report({(0.0, "shared_bottom"): [1.0, 1.2], (0.0, "mmoe"): [0.9, 1.0]})
    rows = {r["model"]: r for r in tb.summary(report)}
    assert rows["mmoe"]["vs_shared_bottom"] == pytest.approx(-0.15)
    assert rows["mmoe"]["vs_interval"] == pytest.approx(12.706 * 0.05, rel=1e-4)
    assert rows["shared_bottom"]["test_loss"] == pytest.approx(1.1)
    assert "vs_shared_bottom" not in rows["shared_bottom"]
    table = tb.markdown(report)
    # mmoe alone: [0.9, 1.0], mean 0.95, SD 0.0707 too: the same half-width 0.6353.
    assert "| 0 | mmoe | 0.9500 +/- 0.6353 | -0.1500 +/- 0.6353 | 0.4750 |" in table


def test_plot_writes_a_png(tmp_path):
    import matplotlib.image

    report = _report({(0.0, "shared_bottom"): [1.0, 1.2], (0.0, "mmoe"): [0.9, 1.0],
                      (1.0, "shared_bottom"): [0.5, 0.6], (1.0, "mmoe"): [0.5, 0.55]})
    path = tmp_path / "t.png"
    tb.plot(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(str(path)).shape[:2] == (400, 600)


# -- settings and the command ------------------------------------------------------

@pytest.mark.parametrize("options,field", [
    (dict(rhos=()), "rhos"), (dict(rhos=(-1.0,)), "rhos"), (dict(models=("moe",)), "models"),
    (dict(seeds=0), "seeds"), (dict(test_rows=8), "test_rows"), (dict(patience=-1), "patience"),
    (dict(learning_rate=0.0), "learning_rate")])
def test_bad_settings_name_the_field(options, field):
    with pytest.raises(tb.BenchError) as caught:
        tb.TransferSettings(**options)
    assert caught.value.field == field


def test_refused_settings_exit_2_naming_the_option(tmp_path, capsys):
    argv = ["bench", "transfer", "--output-dir", str(tmp_path), "--rhos", "1.5"]
    assert cli.main(argv) == 2
    assert "--rhos: must be numbers in (-1, 1]" in capsys.readouterr().err


@pytest.mark.grid  # trains 8 small models
def test_a_tiny_run_writes_the_table_the_json_and_a_png(tmp_path, capsys):
    import matplotlib.image

    argv = ["bench", "transfer", "--output-dir", str(tmp_path), "--rhos", "0", "1",
            "--seeds", "2", "--models", "shared_bottom", "mmoe", "--train-rows", "128",
            "--validation-rows", "64", "--test-rows", "64", "--batch-size", "32",
            "--steps", "4", "--eval-every", "2", "--experts", "2", "--expert-units", "4",
            "--tower-units", "2"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 1 | mmoe |" in printed and "shared bottom 8," in printed  # (400*2+8)/104 -> 8
    report = json.loads((tmp_path / "transfer.json").read_text())
    assert len(report["runs"]) == 8 and len(report["summary"]) == 4
    assert all(math.isfinite(r["test_loss"]) for r in report["runs"])
    gates = [r["gates"] for r in report["runs"] if r["model"] == "mmoe"]
    assert all(sorted(g) == ["task_1_gate", "task_2_gate"] for g in gates)
    assert all(sum(s["mean"]) == pytest.approx(1.0, abs=1e-5) for g in gates for s in g.values())
    assert report["command"].startswith("tfx-mtl bench transfer --rhos 0 1 --seeds 2 ")
    assert (tmp_path / "transfer.md").read_text().count("\n| ") == 5  # header + 4 rows
    assert matplotlib.image.imread(str(tmp_path / "transfer.png")).ndim == 3


@pytest.mark.grid  # trains 2 small models
def test_curves_report_train_and_validation_loss_and_gates_every_interval():
    settings = tb.TransferSettings(rhos=(0.0,), seeds=1, train_rows=128, validation_rows=64,
                                   test_rows=64, batch_size=32, steps=4, experts=2,
                                   expert_units=4, tower_units=2)
    mmoe = tb.curves("mmoe", 0.0, 0, settings, every=2)
    assert [p["step"] for p in mmoe] == [2, 4]
    assert all(sorted(p[s]) == ["task_1", "task_2"] for p in mmoe for s in ("train", "validation"))
    assert sorted(mmoe[-1]["gates"]) == ["task_1_gate", "task_2_gate"]
    assert "gates" not in tb.curves("shared_bottom", 0.0, 0, settings, every=4)[0]
