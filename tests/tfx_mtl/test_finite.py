"""Strict JSON for metric values: NaN and infinities become null with their reason."""
import io
import json
import math

import pytest

from tfx_mtl import comparison, finite, task_spec
from tfx_mtl.results import evaluation, summary

NAN, INF = float("nan"), float("inf")


def _strict_load(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_reason_names_nan_and_each_infinity_and_nothing_else():
    assert finite.reason(NAN) == "undefined (NaN)"
    assert finite.reason(INF) == "infinite (+Infinity)"
    assert finite.reason(-INF) == "infinite (-Infinity)"
    assert [finite.reason(v) for v in (0.0, 1e308, None, 3, "nan")] == [None] * 5


def test_sections_null_the_values_and_keep_the_reasons_across_rewrites():
    values = {"metrics": {"auc": 0.9, "log_loss": NAN},
              "baseline_metrics": {"auc": 0.8, "log_loss": INF}, "changes": {"auc": 0.1}}
    first = finite.sections(values)
    assert first == {
        "metrics": {"auc": 0.9, "log_loss": None},
        "baseline_metrics": {"auc": 0.8, "log_loss": None},
        "changes": {"auc": 0.1},
        "not_finite": {"metrics": {"log_loss": "undefined (NaN)"},
                       "baseline_metrics": {"log_loss": "infinite (+Infinity)"}}}
    assert finite.sections(first) == first  # reading a strict report again changes nothing
    assert finite.sections({"metrics": {"auc": 0.5}}) == {"metrics": {"auc": 0.5},
                                                          "not_finite": {}}


def test_dumps_refuses_what_strict_parsers_refuse():
    assert _strict_load(finite.dumps({"a": None, "b": 1.5})) == {"a": None, "b": 1.5}
    for bad in (NAN, INF, -INF):
        with pytest.raises(ValueError):
            finite.dumps({"nested": [bad]})


def _entry(candidate, baseline, higher_is_better=False, low=None, high=None):
    change = candidate - baseline
    relative = change / baseline if baseline else NAN
    return {"metric": "log_loss" if not higher_is_better else "auc",
            "higher_is_better": higher_is_better, "confidence": 0.95,
            "candidate": candidate, "baseline": baseline, "change": change,
            "change_low": change if low is None else low,
            "change_high": change if high is None else high,
            "relative": relative, "relative_low": relative, "relative_high": relative}


def test_a_bound_on_a_nan_metric_says_it_cannot_be_judged():
    for reading in ("significant", "strict"):
        for candidate, baseline, whose in [
                (NAN, 0.3, "the multi-task value is undefined (NaN)"),
                (0.3, NAN, "the baseline value is undefined (NaN)")]:
            passed, text = comparison.verdict(_entry(candidate, baseline), 0.01, True, reading)
            assert not passed
            assert text == (f"log_loss cannot be judged: {whose}, so the bound fails "
                            f"(may rise by at most 1%; {reading})")
    # An infinite baseline makes the relative change 0/inf or inf/inf: undefined too.
    passed, text = comparison.verdict(_entry(0.3, INF), 0.01, True, "strict")
    assert not passed and "the baseline value is infinite (+Infinity)" in text
    # An absolute bound with both values finite reads as a judged regression.
    passed, text = comparison.verdict(_entry(0.7, 0.75, True, -0.08, -0.02), 0.01, False,
                                      "significant")
    assert not passed and text == (
        "auc = 0.70000 vs baseline 0.75000 (-0.05000, 95% interval -0.08000 to -0.02000) fails: "
        "may fall by at most 0.01 (significant: the whole interval is beyond it)")
    assert evaluation.describe_value_failure("log_loss", NAN, "<= 0.7") == (
        "log_loss cannot be judged: its value is undefined (NaN), and a bound (<= 0.7) fails "
        "on a value that is not a number")
    assert evaluation.describe_value_failure("log_loss", 0.9, "<= 0.7") == (
        "log_loss = 0.9 fails the bound <= 0.7")


SPEC = task_spec.parse({
    "features": ["x"],
    "tasks": [{"name": "clicked", "type": "binary", "label": "clicked",
               "metrics": ["auc", "log_loss"]}]})


def _summary(task_info):
    return {"tasks": {"clicked": {
        "type": "binary", "role": "primary", "must_bless": True, "blessed": True,
        "bounds": {}, "failures": [], **task_info}},
        "policy": "all", "decision": "blessed under policy 'all'", "blocking": [],
        "model_blessed": True, "pushed": None, "output_dir": "/o", "pipeline": "p",
        "run_id": "r", "transfer_report": "/o/t.json", "components": []}


def test_the_summary_shows_the_reason_and_its_json_is_strict(tmp_path):
    info = finite.sections({"metrics": {"labelled_count": 10.0, "auc": 0.8, "log_loss": 0.4},
                            "baseline_metrics": {"labelled_count": 10.0, "auc": 0.7,
                                                 "log_loss": NAN},
                            "changes": {"auc": 0.1, "log_loss": NAN}})
    out = io.StringIO()
    summary.render(_summary(info), SPEC, out)
    text = out.getvalue()
    row = next(line for line in text.splitlines() if line.lstrip().startswith("log_loss"))
    assert row.split()[1:4] == ["0.4000", "NaN", "NaN"]
    assert "task 'clicked': the baseline's log_loss is undefined (NaN)" in text
    path = tmp_path / "summary.json"
    summary.write_json(_summary(info), str(path))
    assert _strict_load(path.read_text())["tasks"]["clicked"]["not_finite"] == {
        "baseline_metrics": {"log_loss": "undefined (NaN)"},
        "changes": {"log_loss": "undefined (NaN)"}}
    with pytest.raises(ValueError):  # a NaN that bypassed `sections` is refused, not written
        summary.write_json(_summary({"metrics": {"auc": math.nan}}), str(tmp_path / "bad.json"))
    assert not (tmp_path / "bad.json").exists()


def test_restored_undoes_nulled_through_strict_json():
    record = {"tasks": {"t": {"metrics": {"log_loss": {"baseline": NAN, "change": -INF,
                                                       "per_seed": [{"c": INF}, {"c": 1.0}]}}}},
              "n": 3}
    clean, reasons = finite.nulled(record)
    back = finite.restored(_strict_load(finite.dumps(clean)), reasons)
    entry = back["tasks"]["t"]["metrics"]["log_loss"]
    assert math.isnan(entry["baseline"]) and entry["change"] == -INF
    assert entry["per_seed"] == [{"c": INF}, {"c": 1.0}] and back["n"] == 3
    assert finite.nulled(back) == (clean, reasons)


def test_nulled_walks_any_record_and_names_each_path():
    record = {"steps": 10, "eval_metrics": {"fare": {"rmse": INF, "mae": 2.0}},
              "losses": [0.5, NAN], "name": "x", "none": None}
    clean, reasons = finite.nulled(record)
    assert clean == {"steps": 10, "eval_metrics": {"fare": {"rmse": None, "mae": 2.0}},
                     "losses": [0.5, None], "name": "x", "none": None}
    assert reasons == {"eval_metrics.fare.rmse": "infinite (+Infinity)",
                       "losses.1": "undefined (NaN)"}
    assert finite.nulled(clean) == (clean, {})
