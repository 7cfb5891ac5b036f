"""Bounds on the new multiclass metrics, end to end through the gate's real inputs.

Scripted models (tests/scripted_models_support.py) give three-class probabilities. The
baseline puts 0.6 on the true class; the multi-task model does too, except that it
takes half the Gentoo penguins for Adelie, and on a tenth of the examples it is
saturated (probability exactly 1, half of them on a wrong class): its recall of Gentoo
is 0.5 and its log loss finite but much worse. TFX's Evaluator (TFMA), ModelComparison
and BlessingGate run for real.
"""
import json
import math

import numpy as np
import pytest
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_mtl import comparison, naming, task_spec
from tfx_mtl.pipeline import eval_config

from scripted_models_support import artifact, compare, run_gate, scripted_model, write_examples

pytestmark = pytest.mark.e2e  # TFMA on Beam, SavedModels

N = 600
NAMES = ("Adelie", "Chinstrap", "Gentoo")
TASK = "species"


def _spec(bounded_class):
    return task_spec.parse({
        "features": ["x"],
        "tasks": [{"name": TASK, "type": "multiclass", "label": "species_name", "metrics": [
            "accuracy", {"name": "recall", "class": bounded_class, "lower_bound": 0.8},
            {"name": "log_loss", "max_regression": "10%"}, "top_k_accuracy", "auc_micro",
            "auc_macro", {"name": "precision", "class": "Adelie"}]}]})


def _columns():
    rng = np.random.default_rng(5)
    label = rng.integers(0, 3, N)
    base = np.full((N, 3), 0.2)
    base[np.arange(N), label] = 0.6
    cand = base.copy()
    gentoo = np.flatnonzero(label == 2)
    cand[gentoo[::2]] = [0.6, 0.2, 0.2]  # half the Gentoo taken for Adelie
    saturated = np.arange(0, N, 10)
    cand[saturated] = 0.0
    cand[saturated, np.where(np.arange(len(saturated)) % 2, label[saturated],
                             (label[saturated] + 1) % 3)] = 1.0
    columns = {TASK: label, f"{TASK}_mask": np.ones(N), f"base_{TASK}": base,
               f"cand_{TASK}": cand}
    return {k: v.astype(np.float32) for k, v in columns.items()}, label


def _evaluate(root, name, spec, examples, candidate, baseline):
    evaluation = artifact(standard_artifacts.ModelEvaluation, root / name / "eval", 20)
    blessing = artifact(standard_artifacts.ModelBlessing, root / name / "blessing", 21)
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [candidate], "baseline_model": [baseline]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"eval_config": proto_utils.proto_to_json(eval_config.for_task(spec, TASK)),
         "example_splits": json.dumps([naming.TEST])})
    return evaluation, blessing


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiclass_gate")
    columns, label = _columns()
    examples = artifact(standard_artifacts.Examples, root / "examples", 1)
    examples.split_names = json.dumps(list(naming.SPLITS))
    write_examples(examples.uri, columns,
                   strings={"species_name": [NAMES[c].encode() for c in label]})
    candidate = artifact(standard_artifacts.Model, root / "candidate", 2)
    scripted_model(candidate.uri, "cand", [TASK], [TASK], classes={TASK: 3})
    baseline = artifact(standard_artifacts.Model, root / "baseline", 3)
    scripted_model(baseline.uri, "base", [TASK], [TASK], classes={TASK: 3})
    return root, columns, label, examples, candidate, baseline


def _gate(world, bounded_class):
    root, _, _, examples, candidate, baseline = world
    spec = _spec(bounded_class)
    outputs = {f"{TASK}_with": _evaluate(root, bounded_class, spec, examples, candidate,
                                         baseline),
               "comparison": compare(root / f"comparison_{bounded_class}", spec, examples,
                                     candidate, {TASK: baseline}, samples=200)}
    return run_gate(root, candidate, outputs, spec, name=f"gate_{bounded_class}")


def test_a_value_bound_on_one_class_and_a_change_bound_on_log_loss(world):
    _, columns, label, *_ = world
    _, _, report = _gate(world, "Gentoo")
    info = report["tasks"][TASK]
    classes = {name: i for i, name in enumerate(NAMES)}
    expected = comparison.metric_value("multiclass", "recall[Gentoo]", label,
                                       columns[f"cand_{TASK}"], np.ones(N), classes)
    assert expected == pytest.approx(0.5, abs=0.06)
    assert info["metrics"]["recall[Gentoo]"] == pytest.approx(expected, abs=1e-9)
    assert info["baseline_metrics"]["recall[Gentoo]"] == 1.0
    # saturated wrong predictions cost -ln(1e-7) each: finite, and far worse than 0.51
    assert math.isfinite(info["metrics"]["log_loss"]) and info["metrics"]["log_loss"] > 1.0
    assert info["baseline_metrics"]["log_loss"] == pytest.approx(-math.log(0.6), rel=1e-6)
    assert not info["blessed"] and not report["blessed"]
    failures = "\n".join(info["failures"])
    assert f"recall[Gentoo] = {info['metrics']['recall[Gentoo]']:.6g} fails the bound >= 0.8" \
        in failures
    assert "log_loss = " in failures and "may rise by at most 10%" in failures
    assert set(info["bounds"]) == {"recall[Gentoo]", "log_loss"}


def test_the_review_table_lists_every_class_from_tfma_s_confusion_matrix(world):
    """The notebook's per-class table (tfx_mtl.results.review) on the Evaluator's output:
    the same precision and recall as the gated metrics, for every class."""
    from tfx_mtl.results import review

    root, columns, label, examples, candidate, baseline = world
    evaluation, _ = _evaluate(root, "review", _spec("Gentoo"), examples, candidate, baseline)
    frame = review.class_frame(review.confusion_matrices(evaluation.uri), list(NAMES))
    classes = {name: i for i, name in enumerate(NAMES)}
    for name in NAMES:
        for metric in ("precision", "recall"):
            for model, side in ((review.MULTI_TASK, "cand"), (review.BASELINE, "base")):
                assert frame.loc[name, f"{metric}_{model}"] == pytest.approx(
                    comparison.metric_value("multiclass", f"{metric}[{name}]", label,
                                            columns[f"{side}_{TASK}"], np.ones(N), classes),
                    rel=1e-9), (name, metric, model)
    assert frame["labelled"].sum() == N


def test_the_same_bound_on_a_class_the_model_gets_right_passes(world):
    _, _, report = _gate(world, "Chinstrap")
    info = report["tasks"][TASK]
    assert info["metrics"]["recall[Chinstrap]"] >= 0.8
    # only the change bound on log loss fails now
    (failure,) = info["failures"]
    assert failure.startswith("log_loss = ")
