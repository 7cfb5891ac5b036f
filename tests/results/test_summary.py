"""The run summary's table and lines: intervals, Δm, default bounds, seeds (hand-made report)."""
import io

from tfx_mtl import naming, task_spec
from tfx_mtl.results import summary

SPEC = task_spec.parse({
    "features": ["x"],
    "tasks": [
        {"name": "clicked", "type": "binary", "label": "clicked", "metrics": ["auc", "log_loss"]},
        {"name": "spend", "type": "regression", "label": "spend", "role": "auxiliary",
         "metrics": [{"name": "rmse", "max_regression": "none", "reason": "informational"}]},
    ]})


def _task(**extra):
    return {"type": "binary", "role": "primary", "must_bless": True, "blessed": False,
            "metrics": {"labelled_count": 100.0, "auc": 0.80, "log_loss": 0.40},
            "baseline_metrics": {"labelled_count": 100.0, "auc": 0.82, "log_loss": 0.38},
            "changes": {"auc": -0.02, "log_loss": 0.02},
            "intervals": {"auc": {"relative": -0.0244, "change_low": -0.035,
                                  "change_high": -0.006, "relative_low": -0.0427,
                                  "relative_high": -0.0073}},
            "bounds": {"auc": ["may fall by at most 1% vs the baseline (default)"]},
            "failures": ["auc = 0.8 vs baseline 0.82 ... fails"], **extra}


def _summary(seeds=(42,), **extra):
    spend = {"type": "regression", "role": "auxiliary", "must_bless": True, "blessed": True,
             "metrics": {"labelled_count": 90.0, "rmse": 3.0},
             "baseline_metrics": {"labelled_count": 90.0, "rmse": 3.1},
             "changes": {"rmse": -0.1}, "intervals": {},
             "bounds": {"rmse": ["no change bound: informational"]}, "failures": []}
    return {"tasks": {"clicked": _task(**extra), "spend": spend}, "policy": "all",
            "decision": "refused under policy 'all'", "blocking": ["clicked"],
            "model_blessed": False, "pushed": None, "split": "test", "reading": "significant",
            "confidence": 0.9, "seeds": list(seeds),
            "delta_m": {"value": -1.06, "low": -2.5, "high": 0.3,
                        "metrics": {"clicked": "auc", "spend": "rmse"}}}


def _render(record):
    out = io.StringIO()
    summary.render(record, SPEC, out)
    return out.getvalue()


def test_the_table_shows_each_change_with_its_interval_and_marks_default_bounds():
    text = _render(_summary())
    header = next(line for line in text.splitlines() if line.startswith("task"))
    assert "90% interval" in header
    auc = next(line for line in text.splitlines() if line.startswith("clicked"))
    assert "-0.0200 (-2.4%)" in auc and "[-4.3%, -0.7%]" in auc
    assert "may fall by at most 1% (default)" in auc
    log_loss = next(line for line in text.splitlines() if line.lstrip().startswith("log_loss"))
    assert log_loss.split()[5] == "-"  # not compared: no interval
    rmse = next(line for line in text.splitlines() if line.startswith("spend"))
    assert "no change bound: informational" in rmse


def test_the_lines_say_how_verdicts_were_read_and_give_delta_m_with_its_interval():
    text = _render(_summary())
    assert ("judged on the test split, the multi-task model and each baseline trained with "
            "1 seed(s); a change bound reads the paired 90% interval as 'significant' "
            "(refused only when the whole interval is beyond the bound)") in text
    assert ("Δm = -1.06% [-2.50%, +0.30%]: the mean relative change over clicked auc, "
            "spend rmse, positive = better than the single-task baselines") in text
    assert "seed 42" not in text  # one seed: its values are the table's


def test_several_seeds_list_each_seed_s_values():
    rows = [{"seed": 42, "metrics": {"auc": 0.79}, "baseline_metrics": {"auc": 0.83}},
            {"seed": 43, "metrics": {"auc": 0.81}, "baseline_metrics": {"auc": 0.81}}]
    record = _summary(seeds=(42, 43))
    record["tasks"]["clicked"]["seeds"] = rows
    text = _render(record)
    assert "trained with 2 seed(s)" in text
    assert "seed 42: task 'clicked': auc 0.7900 vs 0.8300" in text
    assert "seed 43: task 'clicked': auc 0.8100 vs 0.8100" in text


def test_a_report_from_before_intervals_renders_as_before():
    record = _summary()
    for key in ("split", "reading", "confidence", "seeds", "delta_m"):
        del record[key]
    del record["tasks"]["clicked"]["intervals"]
    text = _render(record)
    assert "95% interval" in text and "Δm" not in text and "judged on" not in text


def test_each_trainer_says_which_step_it_kept():
    record = _summary()
    record["selection"] = {
        "Trainer": {"steps": 2300, "best_step": 1300, "stopped_early": True,
                    "best_value": 0.41234},
        "baseline_clicked": {"steps": 5000, "best_step": 4900, "stopped_early": False,
                             "best_value": 0.5},
        "old": {"steps": 1000, "best_step": None, "stopped_early": False, "best_value": None}}
    text = _render(record)
    assert ("selection: Trainer kept step 1300 (best normalised validation loss 0.4123); "
            "stopped early at step 2300") in text
    assert "selection: baseline_clicked kept step 4900 (best normalised validation loss " \
           "0.5000); ran its whole budget at step 5000" in text
    assert "selection: old trained 1000 steps, no in-loop evaluation: its last weights" in text


def test_an_interval_wider_than_the_bound_warns_and_a_narrower_one_does_not():
    """auc's bound: 1% of the baseline; the interval [-4.27%, -0.73%] is +/- 1.77%, so
    a change of the bound's size cannot be told from noise. [-1.2%, -0.4%] is +/- 0.4%."""
    record = _summary()
    (warning,) = summary.interval_warnings(record, SPEC)
    assert (warning["task"], warning["metric"], warning["split"]) == ("clicked", "auc", "test")
    assert warning["message"] == (
        "task 'clicked': the test split (100 labelled) gives auc's change an interval of "
        "+/- 1.77%, wider than its bound (1%): it cannot tell a change of the bound's size "
        "from noise")
    record["warnings"] = [warning]
    assert f"warning: {warning['message']}" in _render(record)
    record["tasks"]["clicked"]["intervals"]["auc"].update(relative_low=-0.012,
                                                          relative_high=-0.004)
    assert summary.interval_warnings(record, SPEC) == []


def test_an_absolute_bound_reads_the_change_interval():
    spec = task_spec.parse({"features": ["x"], "tasks": [
        {"name": "clicked", "type": "binary", "label": "clicked",
         "metrics": [{"name": "auc", "max_regression": 0.01}]}]})
    record = _summary()
    del record["tasks"]["spend"]
    # change interval [-0.035, -0.006]: +/- 0.0145 > 0.01
    assert [w["metric"] for w in summary.interval_warnings(record, spec)] == ["auc"]
    record["tasks"]["clicked"]["intervals"]["auc"].update(change_low=-0.02, change_high=0.0)
    assert summary.interval_warnings(record, spec) == []  # +/- 0.01: not wider


def test_the_multi_task_trainer_s_gate_warnings_are_warned_and_printed_a_baseline_s_not():
    collapsed = {"kind": "collapsed_gate", "gate": "clicked", "task": "clicked",
                 "expert": "expert_0", "share": 0.97,
                 "message": "task 'clicked''s gate 'clicked' has collapsed onto expert "
                            "'expert_0': 97.0% of its mean mass (over 95%)"}
    record = _summary()
    record["gates"] = {
        naming.trainer_node(): {"step": 500, "rows": 256, "warnings": [collapsed]},
        naming.baseline_node("clicked"): {"step": 500, "rows": 256, "warnings": [collapsed]},
        naming.trainer_node(1): {"step": 500, "rows": 256, "warnings": []}}
    (warning,) = summary.gate_warnings(record)
    assert (warning["kind"], warning["node"], warning["task"], warning["expert"],
            warning["split"]) == ("collapsed_gate", "Trainer", "clicked", "expert_0", "train")
    assert warning["message"] == f"Trainer: {collapsed['message']} (step 500, 256 train rows)"
    record["warnings"] = [warning]
    assert f"warning: {warning['message']}" in _render(record)
    del record["gates"]  # a summary of a run recorded before the gate diagnostics
    assert summary.gate_warnings(record) == []
