"""BlessingGate on real Evaluator and ModelComparison outputs: TFX's Evaluator executor
runs TFMA, and ModelComparison's executor the paired comparison, on scripted models
(tests/scripted_models_support.py), so the metrics are known in advance and are
recomputed here with numpy.
"""
import json
import math
import os

import numpy as np
import pytest
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_mtl import comparison, finite, naming, task_spec
from tfx_mtl.components import blessing_gate, model_comparison
from tfx_mtl.pipeline import eval_config
from tfx_mtl.results import evaluation as evaluation_results

from scripted_models_support import artifact as _artifact
from scripted_models_support import compare, run_gate as _run_gate, scripted_model, write_examples

N = 80
TASKS = {
    "fare": {"type": "regression", "label": "fare", "role": "auxiliary",
             "metrics": [{"name": "rmse", "upper_bound": 50.0, "max_regression": "1%"}, "mae"]},
    "tipped": {"type": "binary", "label": "tipped", "role": "primary",
               "metrics": [{"name": "auc", "lower_bound": 0.6, "max_regression": 0.005},
                           "log_loss"]},
}


def _spec(policy):
    return task_spec.parse({
        "features": ["trip_miles"],
        "tasks": [{"name": name, **task} for name, task in TASKS.items()],
        "evaluation": {"policy": policy, "slices": ["payment_type"]}})


def _columns():
    rng = np.random.default_rng(7)
    fare = rng.normal(10, 3, N)
    tipped = (rng.random(N) < 0.4).astype(float)
    score = tipped + rng.normal(0, 0.8, N)
    return {
        "fare": fare, "fare_mask": (np.arange(N) % 8 != 0).astype(float),
        # The multi-task fare is clearly worse than its baseline: negative transfer.
        "cand_fare": fare + rng.normal(0, 1.5, N), "base_fare": fare + rng.normal(0, 1.0, N),
        "tipped": tipped, "tipped_mask": np.ones(N),
        # The multi-task tip score is the baseline's, sharpened: a better AUC.
        "cand_tipped": 1 / (1 + np.exp(-2 * score)),
        # Saturated: exactly 1.0 on some tipped examples, where TFMA's own log loss is NaN.
        "base_tipped": np.where((tipped == 1) & (np.arange(N) % 5 == 0), 1.0,
                                1 / (1 + np.exp(-(score + rng.normal(0, 0.8, N))))),
    }


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Per task: the real Evaluator's evaluation and blessing, with and without a baseline."""
    root = tmp_path_factory.mktemp("gate")
    columns = _columns()
    examples = _artifact(standard_artifacts.Examples, root / "examples", 1)
    examples.split_names = json.dumps(list(naming.SPLITS))
    write_examples(examples.uri, columns, strings={
        "payment_type": [b"Cash" if i % 3 else b"Card" for i in range(N)]})
    candidate = _artifact(standard_artifacts.Model, root / "candidate", 2)
    scripted_model(candidate.uri, "cand", TASKS, TASKS)
    spec = _spec("all")
    outputs = {}
    baselines = {}
    for i, task in enumerate(TASKS):
        baseline = baselines[task] = _artifact(standard_artifacts.Model,
                                               root / f"baseline_{task}", 10 + i)
        scripted_model(baseline.uri, "base", [task], TASKS)
        for with_baseline in (True, False):
            tag = f"{task}_{'with' if with_baseline else 'without'}"
            evaluation = _artifact(standard_artifacts.ModelEvaluation, root / tag / "eval", 20)
            blessing = _artifact(standard_artifacts.ModelBlessing, root / tag / "blessing", 21)
            inputs = {"examples": [examples], "model": [candidate]}
            if with_baseline:
                inputs["baseline_model"] = [baseline]
            evaluator_executor.Executor().Do(
                inputs, {"evaluation": [evaluation], "blessing": [blessing]},
                {"eval_config": proto_utils.proto_to_json(eval_config.for_task(spec, task)),
                 "example_splits": json.dumps([naming.TEST])})
            outputs[tag] = (evaluation, blessing)
    outputs["comparison"] = compare(root / "comparison", spec, examples, candidate, baselines)
    return root, columns, candidate, outputs


def _rmse(prediction, label, weight):
    return float(np.sqrt(np.sum(weight * (prediction - label) ** 2) / np.sum(weight)))


def _auc(score, label):
    pos, neg = score[label == 1], score[label == 0]
    return float(np.mean(pos[:, None] > neg[None, :]))


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_the_evaluation_reads_back_as_the_numbers_worked_out_by_hand(evaluated):
    _, c, _, outputs = evaluated
    spec = _spec("all")
    fare = evaluation_results.load(outputs["fare_with"][0].uri, spec.task("fare"))
    overall = evaluation_results.overall(fare)
    assert overall.candidate["rmse"] == pytest.approx(
        _rmse(c["cand_fare"], c["fare"], c["fare_mask"]), rel=1e-5)
    assert overall.baseline["rmse"] == pytest.approx(
        _rmse(c["base_fare"], c["fare"], c["fare_mask"]), rel=1e-5)
    assert overall.changes["rmse"] == pytest.approx(
        overall.candidate["rmse"] - overall.baseline["rmse"], abs=1e-9)
    assert overall.candidate["labelled_count"] == c["fare_mask"].sum() == 70
    assert overall.candidate["example_count"] == N
    card = next(s for s in fare if s.slice == (("payment_type", "Card"),))
    rows = np.arange(N) % 3 == 0
    assert card.candidate["rmse"] == pytest.approx(
        _rmse(c["cand_fare"][rows], c["fare"][rows], c["fare_mask"][rows]), rel=1e-5)
    assert [s.name for s in fare] == ["Overall", "payment_type=Card", "payment_type=Cash"]

    tipped = evaluation_results.overall(
        evaluation_results.load(outputs["tipped_with"][0].uri, spec.task("tipped")))
    # TFMA's AUC is a 10,000-bucket approximation of the exact rank statistic.
    assert tipped.candidate["auc"] == pytest.approx(_auc(c["cand_tipped"], c["tipped"]), abs=2e-3)
    assert tipped.baseline["auc"] == pytest.approx(_auc(c["base_tipped"], c["tipped"]), abs=2e-3)
    assert tipped.candidate["auc"] > tipped.baseline["auc"] + 0.005


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_policy_all_refuses_when_any_task_regresses_and_says_by_how_much(evaluated):
    root, c, candidate, outputs = evaluated
    blessing, report_artifact, report = _run_gate(root, candidate, outputs, _spec("all"),
                                                  name="all")
    assert report["policy"] == "all" and not report["blessed"]
    assert report["blocking"] == ["fare"]
    assert "not blessed: fare" in report["decision"]
    fare = report["tasks"]["fare"]
    assert not fare["blessed"] and fare["must_bless"]
    (failure,) = fare["failures"]
    cand = _rmse(c["cand_fare"], c["fare"], c["fare_mask"])
    base = _rmse(c["base_fare"], c["fare"], c["fare_mask"])
    assert failure.startswith(f"rmse = {cand:#.5g} vs baseline {base:#.5g} "
                              f"({(cand - base) / base * 100:+.2f}%, 95% interval +")
    assert failure.endswith("fails: may rise by at most 1% (significant: the whole interval "
                            "is beyond it)")
    assert set(fare["baseline_metrics"]) == set(fare["metrics"]) == {
        "rmse", "mae", "example_count", "labelled_count"}
    # The table's values are the paired comparison's, equal to TFMA's here (one seed).
    assert fare["metrics"]["rmse"] == pytest.approx(cand, rel=1e-6)
    assert fare["changes"]["rmse"] == pytest.approx(cand - base, rel=1e-5)
    interval = fare["intervals"]["rmse"]
    assert 0.01 < interval["relative_low"] < (cand - base) / base < interval["relative_high"]
    assert fare["verdicts"]["rmse"] == {"passed": False, "reading": "significant",
                                        "default": False, "words": failure}
    assert fare["bounds"]["rmse"] == ["<= 50", "may rise by at most 1% vs the baseline"]
    assert fare["seeds"] == [{"seed": 42, "metrics": {"rmse": fare["metrics"]["rmse"],
                                                      "mae": fare["metrics"]["mae"]},
                              "baseline_metrics": {"rmse": fare["baseline_metrics"]["rmse"],
                                                   "mae": fare["baseline_metrics"]["mae"]}}]
    assert report["split"] == "test" and report["seeds"] == [42]
    assert report["reading"] == "significant" and report["confidence"] == 0.95
    # Δm over rmse (fare: worse, negative) and auc (tipped: better, positive).
    auc = report["tasks"]["tipped"]
    expected = 50 * (-(cand - base) / base
                     + auc["changes"]["auc"] / auc["baseline_metrics"]["auc"])
    assert report["delta_m"]["value"] == pytest.approx(expected, rel=1e-6)
    assert report["delta_m"]["low"] < report["delta_m"]["value"] < report["delta_m"]["high"]
    assert fare["baseline_model"]["id"] == 10
    assert report["tasks"]["tipped"]["blessed"] and not report["tasks"]["tipped"]["failures"]
    assert fare["not_finite"] == {}
    assert report["model"] == {"id": 2, "uri": candidate.uri}
    # Pusher reads the blessing's "blessed" property; the marker file mirrors the Evaluator's.
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property("current_model_id") == 2
    assert os.listdir(blessing.uri) == ["NOT_BLESSED"]
    assert report_artifact.get_int_custom_property("blessed") == 0


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_policy_primary_lets_an_auxiliary_task_regress(evaluated):
    root, _, candidate, outputs = evaluated
    blessing, _, report = _run_gate(root, candidate, outputs, _spec("primary"), name="primary")
    assert report["blessed"] and report["blocking"] == []
    assert report["decision"] == "blessed under policy 'primary'"
    fare = report["tasks"]["fare"]  # still reported, just not required
    assert not fare["blessed"] and not fare["must_bless"] and fare["failures"]
    assert blessing.get_int_custom_property("blessed") == 1
    assert os.listdir(blessing.uri) == ["BLESSED"]


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_a_task_evaluated_without_its_baseline_is_refused_not_rubber_stamped(evaluated):
    root, _, candidate, outputs = evaluated
    # Without a baseline TFMA skips change bounds, and the Evaluator blesses tipped...
    assert outputs["tipped_without"][1].get_int_custom_property("blessed") == 1
    _, _, report = _run_gate(root, candidate, outputs, _spec("primary"), suffix="without",
                             name="without")
    tipped = report["tasks"]["tipped"]
    assert not tipped["blessed"] and tipped["baseline_model"]["id"] is None
    assert tipped["failures"] == ["no baseline model was evaluated, so the comparison with the "
                                  "single-task baseline was not made"]
    assert not report["blessed"] and report["blocking"] == ["tipped"]


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_saturated_predictions_give_a_finite_log_loss_in_the_report(evaluated):
    """TFMA's own log loss was NaN on the baseline's predictions of exactly 1.0; the
    project's clips them as Keras does (tfx_mtl.metric_formulas)."""
    root, columns, candidate, outputs = evaluated
    _, _, report = _run_gate(root, candidate, outputs, _spec("primary"), name="saturated")
    tipped = report["tasks"]["tipped"]
    assert (columns["base_tipped"] == 1.0).any()
    expected = comparison.metric_value("binary", "log_loss", columns["tipped"],
                                       columns["base_tipped"].astype(np.float32), np.ones(N))
    assert tipped["baseline_metrics"]["log_loss"] == pytest.approx(expected, rel=1e-9)
    assert tipped["changes"]["log_loss"] == pytest.approx(
        tipped["metrics"]["log_loss"] - expected, rel=1e-9)
    assert "not_finite" not in tipped or not tipped["not_finite"]


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_a_nan_metric_is_null_in_the_report_with_its_reason(evaluated, tmp_path):
    """A metric the comparison could not compute (e.g. over a NaN prediction) is NaN in
    its record (written null, with its reason); the report keeps it null, saying why."""
    root, _, candidate, outputs = evaluated
    record = blessing_gate.read_comparison(outputs["comparison"].uri)
    record["tasks"]["tipped"]["metrics"]["log_loss"].update(  # as compare() leaves them
        baseline=math.nan, change=math.nan, relative=math.nan)
    nan = _artifact(model_comparison.ModelComparisonResult, tmp_path / "nan", 42)
    with open(os.path.join(nan.uri, naming.MODEL_COMPARISON_FILE), "w") as f:
        f.write(finite.dumps(model_comparison.strict(record)))
    _, _, report = _run_gate(root, candidate, {**outputs, "comparison": nan}, _spec("primary"),
                             name="nan")
    tipped = report["tasks"]["tipped"]
    assert tipped["baseline_metrics"]["log_loss"] is None
    assert tipped["changes"]["log_loss"] is None
    assert tipped["metrics"]["log_loss"] > 0
    assert tipped["not_finite"] == {"baseline_metrics": {"log_loss": "undefined (NaN)"},
                                    "changes": {"log_loss": "undefined (NaN)"}}
    assert tipped["blessed"]  # log_loss has no bound: reported, not judged


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_a_task_the_comparison_lacks_is_refused_not_rubber_stamped(evaluated, tmp_path):
    root, _, candidate, outputs = evaluated
    record = blessing_gate.read_comparison(outputs["comparison"].uri)
    del record["tasks"]["tipped"]
    partial = _artifact(model_comparison.ModelComparisonResult, tmp_path / "partial", 41)
    with open(os.path.join(partial.uri, naming.MODEL_COMPARISON_FILE), "w") as f:
        json.dump(record, f)
    _, _, report = _run_gate(root, candidate, {**outputs, "comparison": partial},
                             _spec("primary"), name="partial")
    tipped = report["tasks"]["tipped"]
    assert not tipped["blessed"] and not report["blessed"]
    assert tipped["failures"] == ["no baseline model was evaluated, so the comparison with the "
                                  "single-task baseline was not made"]
    assert tipped["verdicts"]["auc"]["passed"] is False


@pytest.mark.e2e  # TFX's Evaluator executor runs TFMA on Beam
def test_a_task_without_a_bound_in_the_spec_is_judged_on_the_default_one(evaluated):
    """The issue's case: a spec with no bounds blessed a task 27% worse than its baseline."""
    root, _, candidate, outputs = evaluated
    raw = {"features": ["trip_miles"],
           "tasks": [{"name": name, **{**task, "metrics": [
               m["name"] if isinstance(m, dict) else m for m in task["metrics"]]}}
               for name, task in TASKS.items()]}
    spec = task_spec.parse(raw)
    _, _, report = _run_gate(root, candidate, outputs, spec, name="defaults")
    fare = report["tasks"]["fare"]
    assert not fare["blessed"] and not report["blessed"]
    assert fare["bound_defaults"] == ["rmse"]
    assert fare["bounds"]["rmse"] == ["may rise by at most 1% vs the baseline (default)"]
    assert fare["verdicts"]["rmse"]["default"] and not fare["verdicts"]["rmse"]["passed"]
    assert report["tasks"]["tipped"]["blessed"]  # better than its baseline: passes the default

    raw["tasks"][0]["metrics"] = [{"name": "rmse", "max_regression": "none",
                                   "reason": "informational"}, "mae"]
    _, _, report = _run_gate(root, candidate, outputs, task_spec.parse(raw), name="relaxed")
    fare = report["tasks"]["fare"]
    assert fare["blessed"] and fare["unbounded"] == {"rmse": "informational"}
    assert fare["verdicts"] == {} and fare["bounds"]["rmse"] == ["no change bound: informational"]


def test_the_decision_follows_the_policy():
    for policy, blessed, expected in [
            ("all", {"fare": True, "tipped": True}, ()),
            ("all", {"fare": False, "tipped": True}, ("fare",)),
            ("primary", {"fare": False, "tipped": True}, ()),
            ("primary", {"fare": True, "tipped": False}, ("tipped",))]:
        decision = blessing_gate.decide(_spec(policy), blessed)
        assert decision.blocking == expected and decision.blessed == (not expected)


def test_the_component_takes_one_evaluation_and_blessing_per_task():
    from tfx.types import channel

    spec = _spec("all")
    model = channel.Channel(type=standard_artifacts.Model)
    evals = {t: channel.Channel(type=standard_artifacts.ModelEvaluation) for t in spec.task_names}
    blessings = {t: channel.Channel(type=standard_artifacts.ModelBlessing) for t in spec.task_names}
    compared = channel.Channel(type=model_comparison.ModelComparisonResult)
    gate = blessing_gate.BlessingGate(model=model, comparison=compared, evaluations=evals,
                                      blessings=blessings, spec=spec)
    assert set(gate.inputs) == {"model", "comparison", "fare_evaluation", "fare_blessing",
                                "tipped_evaluation", "tipped_blessing"}
    assert set(gate.outputs) == {"blessing", "report"}
    assert task_spec.TaskSpec.from_dict(json.loads(gate.exec_properties["spec"])) == spec
    with pytest.raises(ValueError, match="need one per task of the spec"):
        blessing_gate.BlessingGate(model=model, comparison=compared,
                                   evaluations={"fare": evals["fare"]}, blessings=blessings,
                                   spec=spec)
