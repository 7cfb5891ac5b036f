"""The two readings of a change bound, end to end through the gate's real inputs.

Scripted models (tests/scripted_models_support.py) score each regression task with
``y + error``; the multi-task errors are correlated with the baseline's (as two models
of one data are) and scaled so that the multi-task RMSE is exactly ``SCALE[task]``
times the baseline's on the test split. ``slight`` is 1.5% worse, within the noise of
1,500 test examples; ``clear`` is 10% worse. TFX's Evaluator (TFMA), ModelComparison and
BlessingGate run for real; the bound is the same 1% everywhere.
"""
import json

import numpy as np
import pytest
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_mtl import naming, task_spec
from tfx_mtl.pipeline import eval_config

from scripted_models_support import artifact, compare, run_gate as _run_gate, scripted_model, write_examples


pytestmark = pytest.mark.e2e  # TFMA on Beam, SavedModels

N = 1500
SCALE = {"slight": 1.015, "clear": 1.10}


def _spec(reading):
    return task_spec.parse({
        "features": ["x"],
        "tasks": [{"name": t, "type": "regression", "label": t,
                   "metrics": [{"name": "rmse", "max_regression": "1%"}]} for t in SCALE],
        "evaluation": {"reading": reading}})


def _columns():
    rng = np.random.default_rng(11)
    columns = {}
    for task, scale in SCALE.items():
        y = rng.normal(10, 4, N)
        base_error = rng.normal(0, 4, N)
        error = 0.8 * base_error + 0.6 * rng.normal(0, 4, N)
        error *= scale * np.sqrt(np.mean(base_error ** 2) / np.mean(error ** 2))
        columns.update({task: y, f"{task}_mask": np.ones(N), f"base_{task}": y + base_error,
                        f"cand_{task}": y + error})
    return {k: v.astype(np.float32) for k, v in columns.items()}


def _rmse(prediction, label):
    return np.sqrt(np.mean((prediction.astype(np.float64) - label) ** 2, axis=-1))


@pytest.fixture(scope="module")
def gate_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("readings")
    columns = _columns()
    examples = artifact(standard_artifacts.Examples, root / "examples", 1)
    examples.split_names = json.dumps(list(naming.SPLITS))
    write_examples(examples.uri, columns)
    candidate = artifact(standard_artifacts.Model, root / "candidate", 2)
    scripted_model(candidate.uri, "cand", list(SCALE), list(SCALE))
    baselines = {}
    outputs = {}
    spec = _spec("significant")
    for i, task in enumerate(SCALE):
        baselines[task] = artifact(standard_artifacts.Model, root / f"baseline_{task}", 10 + i)
        scripted_model(baselines[task].uri, "base", [task], list(SCALE))
        evaluation = artifact(standard_artifacts.ModelEvaluation, root / task / "eval", 20 + i)
        blessing = artifact(standard_artifacts.ModelBlessing, root / task / "blessing", 30 + i)
        evaluator_executor.Executor().Do(
            {"examples": [examples], "model": [candidate], "baseline_model": [baselines[task]]},
            {"evaluation": [evaluation], "blessing": [blessing]},
            {"eval_config": proto_utils.proto_to_json(eval_config.for_task(spec, task)),
             "example_splits": json.dumps([naming.TEST])})
        outputs[f"{task}_with"] = (evaluation, blessing)
    outputs["comparison"] = compare(root / "comparison", spec, examples, candidate, baselines,
                                    samples=2000)
    return root, columns, candidate, outputs


def test_within_the_noise_significant_blesses_and_strict_refuses(gate_inputs):
    root, _, candidate, outputs = gate_inputs
    _, _, significant = _run_gate(root, candidate, outputs, _spec("significant"), name="sig")
    _, _, strict = _run_gate(root, candidate, outputs, _spec("strict"), name="strict")
    slight_sig, slight_strict = significant["tasks"]["slight"], strict["tasks"]["slight"]
    assert slight_sig["changes"]["rmse"] == slight_strict["changes"]["rmse"]
    assert slight_sig["intervals"]["rmse"]["relative"] == pytest.approx(0.015, abs=1e-5)
    low = slight_sig["intervals"]["rmse"]["relative_low"]
    assert low < 0.01  # the interval reaches within the bound: the regression is not shown
    assert slight_sig["blessed"] and not slight_sig["failures"]
    assert not slight_strict["blessed"]
    (failure,) = slight_strict["failures"]
    assert failure.endswith("fails: may rise by at most 1% (strict: the change is beyond it)")


def test_clearly_worse_is_refused_whatever_the_reading(gate_inputs):
    root, _, candidate, outputs = gate_inputs
    for reading in ("significant", "strict"):
        _, blessing, report = _run_gate(root, candidate, outputs, _spec(reading),
                                        name=f"clear_{reading}")
        clear = report["tasks"]["clear"]
        assert clear["intervals"]["rmse"]["relative_low"] > 0.01
        assert not clear["blessed"] and not report["blessed"]
        assert report["blocking"] == (["clear"] if reading == "significant"
                                      else ["slight", "clear"])
    _, blessing, _ = _run_gate(root, candidate, outputs, _spec("significant"), name="b")
    assert blessing.get_int_custom_property("blessed") == 0


def test_the_interval_is_a_plain_paired_bootstrap_of_the_same_predictions(gate_inputs):
    """An independent numpy bootstrap (other generator): resample test rows, recompute
    both RMSEs on the same rows, take the percentiles of the relative change."""
    root, columns, candidate, outputs = gate_inputs
    _, _, report = _run_gate(root, candidate, outputs, _spec("significant"), name="numpy")
    rng = np.random.default_rng(2024)
    for task in SCALE:
        rows = rng.integers(0, N, size=(4000, N))
        y = columns[task].astype(np.float64)[rows]
        c = _rmse(columns[f"cand_{task}"][rows], y)
        b = _rmse(columns[f"base_{task}"][rows], y)
        low, high = np.quantile(c / b - 1, [0.025, 0.975])
        interval = report["tasks"][task]["intervals"]["rmse"]
        assert interval["relative_low"] == pytest.approx(low, abs=0.005)
        assert interval["relative_high"] == pytest.approx(high, abs=0.005)
