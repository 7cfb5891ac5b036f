"""BlessingGate on real Evaluator outputs: TFX's Evaluator executor runs TFMA on scripted models.

The "models" are SavedModels whose ``<task>__evaluation`` signature returns a
column of the example (``cand_<task>`` for the multi-task candidate,
``base_<task>`` for a baseline) and whose ``transform_features`` returns each
task's label and mask, exactly the signatures the pipeline's models export. So
the metrics are known in advance and are recomputed here with numpy.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_mtl import naming, task_spec
from tfx_mtl.components import blessing_gate
from tfx_mtl.pipeline import eval_config
from tfx_mtl.results import evaluation as evaluation_results

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
        # Saturated: exactly 1.0 on some tipped examples, where TFMA's log loss is NaN.
        "base_tipped": np.where((tipped == 1) & (np.arange(N) % 5 == 0), 1.0,
                                1 / (1 + np.exp(-(score + rng.normal(0, 0.8, N))))),
    }


def _write_examples(uri, columns):
    os.makedirs(os.path.join(uri, "Split-eval"))
    path = os.path.join(uri, "Split-eval", "data.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(N):
            feature = {k: tf.train.Feature(float_list=tf.train.FloatList(value=[v[i]]))
                       for k, v in columns.items()}
            feature["payment_type"] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[b"Cash" if i % 3 else b"Card"]))
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


def _scripted_model(export_dir, scored, tasks):
    """A SavedModel with the pipeline's evaluation signatures, scoring ``<scored>_<task>``."""
    spec = {k: tf.io.FixedLenFeature([], tf.float32)
            for t in TASKS for k in (t, f"{t}_mask", f"cand_{t}", f"base_{t}")}
    examples = tf.TensorSpec([None], tf.string)

    @tf.function(input_signature=[examples])
    def transform_features(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        return {**{naming.label_key(t): parsed[t] for t in TASKS},
                **{naming.mask_key(t): parsed[f"{t}_mask"] for t in TASKS}}

    def evaluation(task):
        @tf.function(input_signature=[examples])
        def score(serialized):
            return {task: tf.io.parse_example(serialized, spec)[f"{scored}_{task}"]}
        return score

    signatures = {naming.TRANSFORM_FEATURES: transform_features}
    signatures.update({naming.evaluation_signature(t): evaluation(t) for t in tasks})
    tf.saved_model.save(tf.Module(), os.path.join(export_dir, "Format-Serving"),
                        signatures=signatures)


def _artifact(cls, uri, id_):
    artifact = cls()
    artifact.uri = str(uri)
    artifact.id = id_
    os.makedirs(artifact.uri, exist_ok=True)
    return artifact


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Per task: the real Evaluator's evaluation and blessing, with and without a baseline."""
    root = tmp_path_factory.mktemp("gate")
    columns = _columns()
    examples = _artifact(standard_artifacts.Examples, root / "examples", 1)
    examples.split_names = '["eval"]'
    _write_examples(examples.uri, columns)
    candidate = _artifact(standard_artifacts.Model, root / "candidate", 2)
    _scripted_model(candidate.uri, "cand", TASKS)
    spec = _spec("all")
    outputs = {}
    for i, task in enumerate(TASKS):
        baseline = _artifact(standard_artifacts.Model, root / f"baseline_{task}", 10 + i)
        _scripted_model(baseline.uri, "base", [task])
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
                 "example_splits": json.dumps(["eval"])})
            outputs[tag] = (evaluation, blessing)
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


def _run_gate(root, candidate, outputs, spec, suffix="with", name="out"):
    inputs = {"model": [candidate]}
    for task in spec.task_names:
        evaluation, blessing = outputs[f"{task}_{suffix}"]
        inputs[blessing_gate.evaluation_key(task)] = [evaluation]
        inputs[blessing_gate.blessing_key(task)] = [blessing]
    blessing = _artifact(standard_artifacts.ModelBlessing, root / name / "blessing", 30)
    report = _artifact(blessing_gate.TransferReport, root / name / "report", 31)
    blessing_gate.Executor().Do(inputs, {"blessing": [blessing], "report": [report]},
                                {"spec": json.dumps(spec.to_dict())})
    with open(os.path.join(report.uri, naming.TRANSFER_REPORT_FILE)) as f:
        return blessing, report, json.load(f, parse_constant=_not_json)


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


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
    assert failure.startswith(f"rmse = {cand:.6g} vs baseline {base:.6g} (+")
    assert f"{(cand - base) / base * 100:+.2f}%" in failure
    assert failure.endswith("fails: may rise by at most 1% vs the baseline")
    assert set(fare["baseline_metrics"]) == set(fare["metrics"]) == {
        "rmse", "mae", "example_count", "labelled_count"}
    assert fare["changes"]["rmse"] == pytest.approx(cand - base, rel=1e-5)
    assert fare["bounds"]["rmse"] == ["<= 50", "may rise by at most 1% vs the baseline"]
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
def test_a_nan_metric_is_null_in_the_report_with_its_reason(evaluated):
    root, _, candidate, outputs = evaluated
    _, _, report = _run_gate(root, candidate, outputs, _spec("primary"), name="nan")
    tipped = report["tasks"]["tipped"]
    assert tipped["baseline_metrics"]["log_loss"] is None  # saturated baseline predictions
    assert tipped["changes"]["log_loss"] is None
    assert tipped["metrics"]["log_loss"] > 0
    assert tipped["not_finite"] == {"baseline_metrics": {"log_loss": "undefined (NaN)"},
                                    "changes": {"log_loss": "undefined (NaN)"}}
    assert tipped["blessed"]  # log_loss has no bound: reported, not judged


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
    gate = blessing_gate.BlessingGate(model=model, evaluations=evals, blessings=blessings,
                                      spec=spec)
    assert set(gate.inputs) == {"model", "fare_evaluation", "fare_blessing",
                                "tipped_evaluation", "tipped_blessing"}
    assert set(gate.outputs) == {"blessing", "report"}
    assert task_spec.TaskSpec.from_dict(json.loads(gate.exec_properties["spec"])) == spec
    with pytest.raises(ValueError, match="need one per task of the spec"):
        blessing_gate.BlessingGate(model=model, evaluations={"fare": evals["fare"]},
                                   blessings=blessings, spec=spec)
