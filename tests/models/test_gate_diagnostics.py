"""Expert and gate diagnostics (MMoE, PLE): the arithmetic on numbers worked out by hand,
a gate that must collapse and one that must not, the in-graph sums, TensorBoard and the
training report."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import gate_diagnostics as gd
from tfx_mtl.models import synthetic_input
from tfx_mtl.models.network import Gate

from loop_support import data as _data, loop as _loop

from .test_loop import _scalars  # TensorBoard's scalars by tag

MMOE = [Gate("a_gate", "a", ("e0", "e1", "e2")), Gate("b_gate", "b", ("e0", "e1", "e2"))]


def test_mmoe_load_entropy_and_warnings_by_hand():
    """Task a's mean gate [0.6, 0.3, 0.1], task b's [0.97, 0.02, 0.01] over 3 experts.
    load = mean over the 2 tasks: e0 (0.6+0.97)/2 = 0.785, e1 (0.3+0.02)/2 = 0.16,
    e2 (0.1+0.01)/2 = 0.055; uniform load 1/3, so unused below 0.25/3 = 0.0833: e2 only.
    H(a) = 0.6 ln(1/0.6) + 0.3 ln(1/0.3) + 0.1 ln(1/0.1)
         = 0.6*0.510826 + 0.3*1.203973 + 0.1*2.302585 = 0.306495 + 0.361192 + 0.230259
         = 0.897946 nats. b's largest share 0.97 > 0.95: collapsed onto e0; a's 0.6 is not."""
    report = gd.summarise(MMOE, {"a_gate": [0.6, 0.3, 0.1], "b_gate": [0.97, 0.02, 0.01]},
                          {"a_gate": 0.5, "b_gate": 0.1}, rows=10, step=7)
    assert report["load"] == pytest.approx({"e0": 0.785, "e1": 0.16, "e2": 0.055})
    assert report["uniform_load"] == pytest.approx({e: 1 / 3 for e in ("e0", "e1", "e2")})
    a = report["gates"]["a"]
    assert a["entropy"] == pytest.approx(0.897946, abs=1e-6)
    assert (a["row_entropy"], a["max_entropy"]) == pytest.approx((0.5, math.log(3)))
    assert a["mean"] == pytest.approx({"e0": 0.6, "e1": 0.3, "e2": 0.1})
    assert (report["step"], report["rows"]) == (7, 10)
    assert report["thresholds"] == {"unused_share": 0.25, "collapsed_share": 0.95}
    assert [(w["kind"], w["task"], w.get("gate"), w["expert"]) for w in report["warnings"]] == [
        ("unused_expert", None, None, "e2"), ("collapsed_gate", "b", "b", "e0")]
    assert report["warnings"][0]["message"] == (
        "expert 'e2' is unused: its load (share of its level's gate mass) is 0.055, under "
        "0.25 x its load under uniform gates (0.083)")
    assert report["warnings"][1]["message"] == (
        "task 'b''s gate 'b' has collapsed onto expert 'e0': 97.0% of its mean mass (over 95%)")


def test_uniform_gates_warn_of_nothing_and_have_the_maximum_entropy():
    report = gd.summarise(MMOE, {"a_gate": [1 / 3] * 3, "b_gate": [1 / 3] * 3},
                          {"a_gate": 1.0, "b_gate": 1.0}, rows=4, step=1)
    assert report["warnings"] == []
    assert report["gates"]["b"]["entropy"] == pytest.approx(math.log(3))


def test_ple_load_per_level_and_a_task_expert_that_only_its_task_can_use():
    """Level 1 (the last): a's gate [a1, s0, s1] mean [0.5, 0.3, 0.2], b's [b1, s0, s1]
    mean [0.06, 0.64, 0.3]; 2 gates at the level, each 1/2 of its mass:
    load a1 = 0.5/2 = 0.25, b1 = 0.06/2 = 0.03, s0 = (0.3+0.64)/2 = 0.47,
    s1 = (0.2+0.3)/2 = 0.25 (sum 1). Uniform: a1 = b1 = (1/3)/2 = 1/6, s0 = s1 = 2/3/2 = 1/3.
    b1: 0.03 < 0.25/6 = 0.0417, unused (task b's own expert); a1 0.25 is not.
    Level 0: a's gate [a0, s] mean [0.9, 0.1], the shared gate [a0, s] mean [0.5, 0.5]:
    load a0 = (0.9+0.5)/2 = 0.7, s = 0.3; uniform 1/2 each: nothing unused."""
    gates = [Gate("a_level_0_gate", "a", ("a0", "s"), 0),
             Gate("level_0_shared_gate", None, ("a0", "s"), 0),
             Gate("a_level_1_gate", "a", ("a1", "s0", "s1"), 1),
             Gate("b_level_1_gate", "b", ("b1", "s0", "s1"), 1)]
    means = {"a_level_0_gate": [0.9, 0.1], "level_0_shared_gate": [0.5, 0.5],
             "a_level_1_gate": [0.5, 0.3, 0.2], "b_level_1_gate": [0.06, 0.64, 0.3]}
    report = gd.summarise(gates, means, dict.fromkeys(means, 0.0), rows=2, step=1)
    assert report["load"] == pytest.approx(
        {"a0": 0.7, "s": 0.3, "a1": 0.25, "b1": 0.03, "s0": 0.47, "s1": 0.25})
    assert report["uniform_load"] == pytest.approx(
        {"a0": 0.5, "s": 0.5, "a1": 1 / 6, "b1": 1 / 6, "s0": 1 / 3, "s1": 1 / 3})
    assert set(report["gates"]) == {"a_level_0", "level_0_shared", "a_level_1", "b_level_1"}
    assert [(w["kind"], w["task"], w["expert"]) for w in report["warnings"]] == [
        ("unused_expert", "b", "b1")]
    # The shared gate collapsing is named as such.
    means["level_0_shared_gate"] = [0.02, 0.98]
    (collapsed,) = [w for w in gd.summarise(gates, means, dict.fromkeys(means, 0.0), 2, 1)[
        "warnings"] if w["kind"] == "collapsed_gate"]
    assert collapsed["message"].startswith("the shared gate 'level_0_shared' has collapsed "
                                           "onto expert 's': 98.0%")


def test_scalars_for_tensorboard():
    report = gd.summarise(MMOE, {"a_gate": [0.6, 0.3, 0.1], "b_gate": [0.97, 0.02, 0.01]},
                          {"a_gate": 0.5, "b_gate": 0.1}, rows=10, step=7)
    scalars = gd.scalars(report)
    assert scalars["gates/a/e1"] == pytest.approx(0.3)
    assert scalars["gates/b/row_entropy"] == pytest.approx(0.1)
    assert scalars["gates/a/entropy"] == pytest.approx(0.897946, abs=1e-6)
    assert scalars["experts/load/e2"] == pytest.approx(0.055)
    assert len(scalars) == 2 * (3 + 2) + 3


def _gates_of(network):
    model = network.model
    return tf.keras.Model(model.input, {g.layer: model.get_layer(g.layer).output
                                        for g in network.gates})


@pytest.mark.parametrize("arch", [{"name": "mmoe"}, {"name": "ple", "levels": 2,
                                                      "task_experts": 2}])
def test_the_in_graph_sums_match_the_gates_computed_directly(arch):
    spec, arrays = _data(tasks=2, rows=48)
    loop = _loop(spec, arrays, architecture=arch, eval_every=0, early_stopping_patience=0)
    batch = {k: tf.constant(v) for k, v in arrays.items()}
    tf.function(loop.gate_stats.replica_update)(batch)
    report = loop.gate_stats.read(step=3)
    assert loop.gate_stats.read(step=4) is None  # read once
    outputs = _gates_of(loop.network)({k: batch[k] for k in spec.feature_keys})
    assert report["rows"] == 48
    for gate in loop.network.gates:
        rows = outputs[gate.layer].numpy().astype(np.float64)
        got = report["gates"][gd.gate_id(gate)]
        np.testing.assert_allclose(list(got["mean"].values()), rows.mean(0), rtol=1e-5)
        row_entropy = -(rows * np.log(rows)).sum(1).mean()
        assert got["row_entropy"] == pytest.approx(row_entropy, rel=1e-5)
    levels = {g.level for g in loop.network.gates}
    for level in levels:
        experts = {e for g in loop.network.gates if g.level == level for e in g.experts}
        assert sum(report["load"][e] for e in experts) == pytest.approx(1.0, abs=1e-5)


def _train(arch, steps=30, prefer=None):
    """MMoE/PLE on 2 symmetric tasks (correlation 1, same scale) for ``steps`` steps;
    ``prefer``: add 8 to that expert's logit in every task gate's bias first."""
    spec, arrays = _data(tasks=2, rows=256, correlation=1.0)
    loop = _loop(spec, arrays, architecture=arch, eval_every=0, early_stopping_patience=0,
                 log_every=10)
    if prefer is not None:
        for gate in loop.network.gates:
            bias = loop.network.model.get_layer(gate.layer).bias
            bias.assign(bias + 8.0 * tf.one_hot(gate.experts.index(prefer), len(gate.experts)))
    return loop.fit(synthetic_input.dataset(arrays, 64), steps)


def test_a_gate_biased_onto_one_expert_collapses_and_the_others_are_unused():
    """exp(8) / (exp(8) + 2) = 0.9993 of each gate on expert_0 at the start; 30 Adam steps
    at 0.01 move a bias by at most about 0.3, far from undoing it."""
    result = _train({"name": "mmoe"}, prefer="expert_0")
    kinds = {(w["kind"], w["task"], w["expert"]) for w in result.gates["warnings"]}
    assert kinds == {("collapsed_gate", "task_1", "expert_0"),
                     ("collapsed_gate", "task_2", "expert_0"),
                     ("unused_expert", None, "expert_1"), ("unused_expert", None, "expert_2")}
    assert result.gates["step"] == 30
    assert result.gates["gates"]["task_1"]["entropy"] < 0.1


def test_default_gates_on_symmetric_tasks_do_not_collapse():
    """Glorot gates on standardised features: near-uniform on average, nothing to warn."""
    result = _train({"name": "mmoe"})
    assert result.gates["warnings"] == []
    for gate in result.gates["gates"].values():
        assert gate["entropy"] > 0.9 * gate["max_entropy"]
        assert gate["max_share"] < 0.6


@pytest.mark.parametrize("arch", [{"name": "mmoe"}, {"name": "ple", "levels": 2},
                                  {"name": "shared_bottom"}])
def test_tensorboard_and_the_report_have_the_gates_of_moe_families_only(arch, tmp_path):
    spec, arrays = _data(tasks=2, rows=128)
    result = _loop(spec, arrays, tmp_path, architecture=arch, eval_every=0,
                   early_stopping_patience=0).fit(synthetic_input.dataset(arrays, 32), 10)
    scalars = _scalars(str(tmp_path / "logs"))
    with open(result.write(str(tmp_path / "report"))) as f:
        report = json.load(f)["gates"]
    gated = [t for t in scalars if t.startswith(("gates/", "experts/"))]
    if arch["name"] == "shared_bottom":
        assert report is None and gated == []
        return
    assert (report["step"], report["rows"]) == (10, 32)
    assert report["thresholds"] == gd.THRESHOLDS
    first = "task_1" if arch["name"] == "mmoe" else "task_1_level_0"
    expert = "expert_0" if arch["name"] == "mmoe" else "level_0_shared_expert_0"
    for tag in (f"gates/{first}/{expert}", f"gates/{first}/entropy",
                f"gates/{first}/row_entropy", f"experts/load/{expert}"):
        assert len(scalars[tag]) == 2, tag  # log_every 5: steps 5 and 10
    assert scalars[f"experts/load/{expert}"][-1] == pytest.approx(report["load"][expert])
    assert set(report["gates"]) == ({"task_1", "task_2"} if arch["name"] == "mmoe" else
                                    {"task_1_level_0", "task_2_level_0", "level_0_shared",
                                     "task_1_level_1", "task_2_level_1"})


@pytest.mark.subprocess
def test_run_fn_of_an_mmoe_writes_the_gates_to_its_report_and_tensorboard(transformed, tmp_path):
    """A real run_fn (TFX's FnArgs over real Transform output, a process of its own)."""
    from tfx_mtl.models.trainer_config import TrainerConfig

    from . import test_checkpoint_key as resume
    from .conftest import SPEC, trainer_job

    config = TrainerConfig.from_dict({
        "batch_size": 4, "log_every": 3, "eval_every": 0, "early_stopping_patience": 0,
        "checkpoint_every": 0, "architecture": {"name": "mmoe", "experts": 2,
                                                "hidden_units": [4], "tower_units": [2]}})
    job = trainer_job(transformed, tmp_path, config, 6)
    (report,) = resume._finish(resume._start(tmp_path, "mmoe", job, tmp_path / "root"))
    gates = report["gates"]
    assert (gates["step"], gates["rows"], set(gates["gates"])) == (6, 4, set(SPEC.task_names))
    assert set(gates["load"]) == {"expert_0", "expert_1"}
    scalars = _scalars(str(tmp_path / "mmoe" / "run"))
    for task in SPEC.task_names:
        assert len(scalars[f"gates/{task}/entropy"]) == 2  # steps 3 and 6
