"""The multi-task training loop on synthetic data: methods, masks, resume, diagnostics."""
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl import naming, synth
from tfx_mtl.models import architecture, combination, eval_metrics, synthetic_input
from tfx_mtl.models import weighting as weighting_lib
from tfx_mtl.models.loop import NonFiniteLossError
from tfx_mtl.models.trainer_config import TrainerConfig

from loop_support import data as _data, loop as _loop, params as _params



def _eval_losses(loop, spec, arrays):
    """Each task's training loss on ``arrays`` as one batch, as the loop's evaluator reports it."""
    batch = {k: tf.constant(v) for k, v in arrays.items()}
    return {task: metrics[eval_metrics.LOSS] for task, metrics in loop.evaluator([batch]).items()}


def _levels(combine):
    """The distinct levels ``combine`` runs at: the sum forms no per-task gradients (one
    level does), mgda_ub forces its own."""
    method = combination.REGISTRY.get(combine)
    if not method.needs_task_gradients:
        return (combination.PARAMETERS,)
    return tuple(dict.fromkeys(method.level_at(level) for level in combination.levels(combine)))


# Every architecture x every registered weighting (with sum), and every architecture x
# every registered combination (with uniform) at each level it runs at; plus cross pairs
# of a learned weighting with a gradient method. All read off the registries.
METHODS = sorted(
    {(a, w, "sum", combination.PARAMETERS)
     for a in architecture.ARCHITECTURES for w in weighting_lib.names()}
    | {(a, "uniform", c, level) for a in architecture.ARCHITECTURES
       for c in combination.names() for level in _levels(c)}
    | {(a, w, c, level) for a, (w, c) in zip(architecture.ARCHITECTURES, [
        ("uncertainty", "pcgrad"), ("gradnorm", "cagrad"), ("dwa", "mgda"),
        ("uncertainty", "mgda_ub")]) for level in _levels(c)},
    key=lambda m: (architecture.ARCHITECTURES.index(m[0]), m[1:]))
# A diagonal in the fast tier; the rest of the grid is marked `grid` (make test runs it).
FAST = {("shared_bottom", "uniform", "sum", combination.PARAMETERS),
        ("mmoe", "uncertainty", "pcgrad", combination.PARAMETERS),
        ("ple", "uniform", "pcgrad", combination.REPRESENTATION)}


@pytest.mark.parametrize("arch,weighting,combine,level", [
    pytest.param(*m, marks=() if m in FAST else pytest.mark.grid, id="-".join(m))
    for m in METHODS])
def test_every_method_trains_and_reduces_every_task_loss(arch, weighting, combine, level):
    spec, arrays = _data(tasks=3, task_types=("regression", "binary", "regression"))
    loop = _loop(spec, arrays, weighting=weighting, combine=combine, surgery_level=level,
                 weighting_params={"period": 5} if weighting == "dwa" else {},
                 architecture={"name": arch, "levels": 2 if arch == "ple" else 1})
    before = _eval_losses(loop, spec, arrays)
    result = loop.fit(synthetic_input.dataset(arrays, 64, shuffle_seed=0), 40)
    after = _eval_losses(loop, spec, arrays)
    assert (result.steps, result.weighting, result.combine, result.surgery_level) == (
        40, weighting, combine, level)
    assert all(after[t] < before[t] for t in spec.task_names), (before, after)
    assert all(np.isfinite(v) and v > 0 for v in result.weights.values()), result.weights


def test_the_grid_covers_every_registered_method_at_every_level():
    assert {m[1] for m in METHODS} == set(weighting_lib.names())
    for combine in combination.names():
        assert {m[3] for m in METHODS if m[2] == combine} == set(_levels(combine)), combine
    assert _levels("pcgrad") == (combination.PARAMETERS, combination.REPRESENTATION)
    assert _levels("mgda_ub") == (combination.REPRESENTATION,)
    assert _levels("sum") == (combination.PARAMETERS,)


def test_single_task_model_trains_its_one_task():
    spec, arrays = _data(tasks=2)
    one = TrainerConfig(tasks=("task_2",)).trained_spec(spec)
    loop = _loop(one, arrays, weighting="gradnorm", combine="pcgrad", tasks=["task_2"],
                 architecture={"name": "mmoe"})
    before = _eval_losses(loop, one, arrays)
    result = loop.fit(synthetic_input.dataset(arrays, 64), 30)
    assert one.task_names == ("task_2",)
    # One task: nothing to weigh or combine, whatever was asked for.
    assert (result.weighting, result.combine, result.shared_parameters) == ("uniform", "sum", 0)
    assert _eval_losses(loop, one, arrays)["task_2"] < before["task_2"]


def test_a_task_without_labels_in_a_batch_contributes_nothing(tmp_path):
    # task_2 has no label at all: its loss is 0 (not NaN) and its own parameters stay put.
    spec, arrays = _data(tasks=2, rows=64, missing={"task_2": range(64)})
    loop = _loop(spec, arrays, combine="pcgrad")
    owned = loop.partition.owned["task_2"]
    before = [v.numpy().copy() for v in owned]
    result = loop.fit(synthetic_input.dataset(arrays, 32), 3)
    assert result.losses["task_2"] == 0.0 and result.losses["task_1"] > 0
    evaluated = _eval_losses(loop, spec, arrays)  # the evaluator masks alike
    assert evaluated["task_2"] == 0.0 and evaluated["task_1"] > 0
    for old, variable in zip(before, owned):
        np.testing.assert_array_equal(old, variable.numpy())


def test_the_training_report_is_strict_json_naming_what_was_not_finite(tmp_path):
    spec, arrays = _data(tasks=2, rows=64)
    result = _loop(spec, arrays).fit(synthetic_input.dataset(arrays, 32), 2)
    # An evaluation on labels of 1e30 gives an infinite rmse; the report must stay JSON.
    result = dataclasses.replace(result, eval_metrics={"task_1": {"rmse": float("inf")}})
    path = result.write(str(tmp_path))

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    report = json.loads(open(path).read(), parse_constant=refuse)
    assert report["eval_metrics"] == {"task_1": {"rmse": None}}
    assert report["not_finite"] == {"eval_metrics.task_1.rmse": "infinite (+Infinity)"}
    assert report["steps"] == 2


def test_a_non_finite_loss_stops_training_naming_task_and_step():
    spec, arrays = _data(tasks=2, rows=96)
    loop = _loop(spec, arrays)
    arrays[naming.label_key("task_2")][64:] = np.inf  # the third batch of 32
    with pytest.raises(NonFiniteLossError, match=r"task 'task_2': loss is (inf|nan) at step 3"):
        loop.fit(synthetic_input.dataset(arrays, 32, repeat=False), 10)


@pytest.mark.parametrize("weighting,combine", [("dwa", "pcgrad"), ("uncertainty", "cagrad"),
                                               ("famo", "sum"), ("rlw", "sum"),
                                               ("uniform", "gradvac"), ("uniform", "db_mtl")])
def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path, weighting, combine):
    spec, arrays = _data(tasks=2)
    options = dict(weighting=weighting, combine=combine, checkpoint_every=6,
                   weighting_params={"period": 4} if weighting == "dwa" else {},
                   architecture={"name": "mmoe", "dropout": 0.1})

    straight = _loop(spec, arrays, tmp_path / "straight", **options)
    straight.fit(synthetic_input.dataset(arrays, 32, shuffle_seed=3), 12)

    first = _loop(spec, arrays, tmp_path / "resumed", **options)
    assert first.fit(synthetic_input.dataset(arrays, 32, shuffle_seed=3), 6).resumed_from == 0
    # A new process would rebuild everything from scratch: so do we.
    second = _loop(spec, arrays, tmp_path / "resumed", **options)
    result = second.fit(synthetic_input.dataset(arrays, 32, shuffle_seed=3), 12)
    assert result.resumed_from == 6 and result.steps == 12
    for a, b in zip(_params(straight), _params(second)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    at = tf.ones([2])  # the weightings' state, seen through the weights at losses of 1
    np.testing.assert_allclose(straight.weighting.weights_for_logging(at).numpy(),
                               second.weighting.weights_for_logging(at).numpy(), atol=1e-6)
    # A stateful combination (GradVac's targets, DB-MTL's EMA) resumes from its saved state.
    for a, b in zip(straight.combination.variables, second.combination.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
    assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "resumed/ckpt/ckpt-*.index"))
                  ) == ["ckpt-12.index", "ckpt-6.index"]


def _scalars(log_dir):
    from tensorboard.backend.event_processing import event_accumulator
    acc = event_accumulator.EventAccumulator(log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


@pytest.mark.parametrize("combine", ["pcgrad", "sum"])
def test_tensorboard_has_losses_weights_and_the_conflict_diagnostic(tmp_path, combine):
    spec, arrays = _data(tasks=3)
    result = _loop(spec, arrays, tmp_path, weighting="uncertainty", combine=combine).fit(
        synthetic_input.dataset(arrays, 32), 10)
    scalars = _scalars(str(tmp_path / "logs"))
    for task in spec.task_names:
        assert len(scalars[f"loss/{task}"]) == 2 and len(scalars[f"weight/{task}"]) == 2
    for pair in ("task_1__task_2", "task_1__task_3", "task_2__task_3"):
        assert all(-1 <= c <= 1 for c in scalars[f"grad_cosine/{pair}"])
        assert all(0 <= c <= 1 for c in scalars[f"grad_conflict/{pair}"])
    # pcgrad forms per-task gradients at every step; sum measures them on the logging steps.
    assert result.measured_steps == (10 if combine == "pcgrad" else 2)
    assert scalars["grad_conflict/measured_steps"] == ([5, 5] if combine == "pcgrad" else [1, 1])


def test_conflicts_are_more_frequent_between_unrelated_tasks():
    """The diagnostic separates related tasks (task weight cosine 0.9) from unrelated ones (0)."""
    fractions, cosines = {}, {}
    for rho in (0.9, 0.0):
        spec, arrays = _data(tasks=2, correlation=rho, rows=2048)
        result = _loop(spec, arrays, combine="pcgrad").fit(
            synthetic_input.dataset(arrays, 128, shuffle_seed=0), 60)
        fractions[rho], cosines[rho] = result.conflict_fraction, result.mean_cosine
    assert fractions[0.0] > fractions[0.9] + 0.3, fractions
    assert cosines[0.9]["task_1__task_2"] > cosines[0.0]["task_1__task_2"] + 0.1, cosines


@pytest.mark.grid  # trains three weightings for 1,500 steps each
def test_learned_weights_rescue_the_small_scale_task():
    """Losses 1000x apart: uniform weights let the large task own the trunk.

    Labels scaled by 1 and sqrt(1000), trained in label units, so task_2's MSE is
    about 1000x task_1's. Uncertainty weighting and GradNorm rebalance the
    tasks; task_1's held-out loss must end clearly below uniform's.
    Measured when written: uniform 0.536, uncertainty 0.348, gradnorm 0.435.
    """
    config = synth.SynthConfig(rows=4096, tasks=2, correlation=0.5, features=8, seed=0,
                               label_scales=(1.0, 1000 ** 0.5))
    spec = synthetic_input.spec(config)
    assert all(not t.standardize for t in spec.tasks)
    arrays = synthetic_input.transformed(synth.sample(config), spec)
    train = {k: v[:3072] for k, v in arrays.items()}
    held_out = {k: v[3072:] for k, v in arrays.items()}
    assert held_out[naming.label_key("task_2")].var() > 500 * held_out[
        naming.label_key("task_1")].var()
    small_task_loss = {}
    for weighting in ("uniform", "uncertainty", "gradnorm"):
        loop = _loop(spec, train, weighting=weighting, log_every=1000,
                     architecture={"hidden_units": (32,), "tower_units": (8,)})
        loop.fit(synthetic_input.dataset(train, 128, shuffle_seed=0), 1500)
        small_task_loss[weighting] = _eval_losses(loop, spec, held_out)["task_1"]
    assert small_task_loss["uncertainty"] < 0.9 * small_task_loss["uniform"], small_task_loss
    assert small_task_loss["gradnorm"] < 0.9 * small_task_loss["uniform"], small_task_loss


@pytest.mark.parametrize("weighting,combine", [("uniform", "pcgrad"), ("gradnorm", "mgda_ub")])
def test_per_task_gradients_by_jacobian_or_backward_passes_agree(weighting, combine):
    spec, arrays = _data(tasks=3)
    params = {}
    for mode in ("backward", "jacobian"):
        loop = _loop(spec, arrays, weighting=weighting, combine=combine, per_task_gradients=mode)
        loop.fit(synthetic_input.dataset(arrays, 64), 5)
        params[mode] = _params(loop)
    for a, b in zip(params["backward"], params["jacobian"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
