"""Model selection on validation: the normalised-loss criterion by hand, on real training
where tasks converge at different speeds, across a resume, and its errors."""
import json

import numpy as np
import pytest

from tfx_mtl import naming, synth
from tfx_mtl.models import early_stopping, synthetic_input
from tfx_mtl.models.early_stopping import EarlyStopping, SelectionError, normalized_loss

from loop_support import data as _data, loop as _loop

# Worked example (docs/models_and_methods.md): a fast task A, a slow task B, 11 evaluations.
A = [1.00, .30, .28, .29, .30, .31, .32, .33, .34, .35, .36]
B = [1.00, .90, .80, .70, .60, .52, .47, .45, .45, .46, .47]
# mean(A/1, B/1), by hand:
CRITERION = [1.0, .60, .54, .495, .45, .415, .395, .390, .395, .405, .415]


def _run(losses: dict, patience=3, weights=None):
    """Feeds the evaluations 1, 2, ... to EarlyStopping until it stops: (best, stopped at)."""
    tasks = list(losses)
    selection = EarlyStopping(tasks, weights or [1.0] * len(tasks), patience, [],
                              max_evals=len(A))
    for i in range(len(A)):
        if selection.observe({t: {"loss": losses[t][i]} for t in tasks}, step=i + 1):
            return int(selection.best_step.numpy()), i + 1, selection
    return int(selection.best_step.numpy()), None, selection


def test_the_criterion_on_the_worked_example():
    values = [normalized_loss([a, b], [A[0], B[0]], [1, 1]) for a, b in zip(A, B)]
    np.testing.assert_allclose(values, CRITERION, atol=1e-12)
    # Weighted: (2 * .33 / 1 + 1 * .45 / 1) / 3 = .37 at evaluation 8; weight 0: not counted.
    assert normalized_loss([.33, .45], [1, 1], [2, 1]) == pytest.approx(.37)
    assert normalized_loss([.33, .45], [1, 1], [0, 1]) == pytest.approx(.45)


def test_the_criterion_waits_for_the_slow_task_whatever_the_loss_scales():
    # Per-task early stopping on A (one task: the criterion orders as A's loss does)
    # selects evaluation 3 and stops at 6, while B is still falling.
    assert _run({"a": A})[:2] == (3, 6)
    # The normalised mean selects 8, where B is at its best, and stops at 11.
    best, stopped_at, selection = _run({"a": A, "b": B})
    assert (best, stopped_at) == (8, 11)
    assert float(selection.best.numpy()) == pytest.approx(.390)
    # Loss scales do not matter: B (or A) a million times larger selects the same step,
    # where a plain sum of A x 1e6 + B would follow A (evaluation 3).
    assert _run({"a": A, "b": [1e6 * b for b in B]})[:2] == (8, 11)
    assert _run({"a": [1e6 * a for a in A], "b": B})[:2] == (8, 11)
    assert int(np.argmin(np.asarray(A) * 1e6 + np.asarray(B))) + 1 == 3
    # A weighted 3:1: (3a + b) / 4 is .3625, .3575, .36 at evaluations 6, 7, 8: it selects 7.
    assert _run({"a": A, "b": B}, patience=20, weights=[3, 1])[0] == 7


def test_the_curve_records_every_evaluation():
    _, _, selection = _run({"a": A, "b": B})
    report = selection.report(eval_every=1)
    assert [p["step"] for p in report["curve"]] == list(range(1, 12))
    np.testing.assert_allclose([p["value"] for p in report["curve"]], CRITERION, atol=1e-12)
    assert report["curve"][7]["losses"] == {"a": pytest.approx(.33), "b": pytest.approx(.45)}
    assert report["reference_losses"] == {"a": 1.0, "b": 1.0}
    assert (report["best_step"], report["stopped_early"], report["patience"]) == (8, True, 3)
    assert (report["criterion"], report["split"]) == ("normalized_validation_loss",
                                                      "validation")


@pytest.mark.parametrize("first", [0.0, float("nan"), float("inf"), -1.0])
def test_a_first_loss_that_cannot_divide_is_refused_naming_the_task(first):
    selection = EarlyStopping(["a", "b"], [1, 1], 3, [], max_evals=2)
    with pytest.raises(SelectionError, match=r"task 'b': its validation loss at the first "
                                             r"evaluation \(step 100\) is"):
        selection.observe({"a": {"loss": 1.0}, "b": {"loss": first}}, step=100)
    # A task of weight 0 does not count, so its first loss may be anything.
    EarlyStopping(["a", "b"], [1, 0], 3, [], max_evals=2).observe(
        {"a": {"loss": 1.0}, "b": {"loss": first}}, step=100)


def test_all_zero_weights_are_refused_naming_the_fields():
    with pytest.raises(SelectionError) as err:
        early_stopping.selection_weights(["a", "b"], [0.0, 0.0])
    assert err.value.field == "tasks.a.weight, tasks.b.weight"
    # One task: nothing to weigh it against, the criterion is its own loss.
    assert early_stopping.selection_weights(["a"], [0.0]) == (1.0,)


# -- real training -------------------------------------------------------------
def _fast_and_slow(train_rows=1024, validation_rows=512, seed=0):
    """task_1: a weak linear signal in unit noise, learnt within ~30 steps, after which its
    validation loss only wanders; task_2: sin(2 x_1) + x_2 x_3, learnt over ~200 steps."""
    config = synth.SynthConfig(rows=train_rows + validation_rows, tasks=2, features=8,
                               seed=seed)
    spec = synthetic_input.spec(config)
    arrays = synthetic_input.transformed(synth.sample(config), spec)
    x = [arrays[naming.feature_key(f"x_{i}")] for i in range(4)]
    noise = np.random.default_rng(seed).standard_normal(len(x[0]))
    arrays[naming.label_key("task_1")] = (0.3 * x[0] + noise).astype(np.float32)
    arrays[naming.label_key("task_2")] = (np.sin(2 * x[1]) + x[2] * x[3]).astype(np.float32)
    return (spec, {k: v[:train_rows] for k, v in arrays.items()},
            {k: v[train_rows:] for k, v in arrays.items()})


def test_training_continues_until_the_slow_task_stops_improving():
    spec, train, validation = _fast_and_slow()
    loop = _loop(spec, train, eval_every=10, early_stopping_patience=5, learning_rate=0.01,
                 architecture={"hidden_units": (64,), "tower_units": (16,)})
    result = loop.fit(synthetic_input.dataset(train, 64, shuffle_seed=0), 1500,
                      eval_data=lambda: synthetic_input.dataset(validation, 512, repeat=False))
    curve = result.selection["curve"]
    steps = [p["step"] for p in curve]
    fast = [p["losses"]["task_1"] for p in curve]
    slow = [p["losses"]["task_2"] for p in curve]
    fast_best = steps[int(np.argmin(fast))]  # where early stopping on task_1 alone selects
    assert result.stopped_early and result.steps < 1500
    assert result.selection["best_step"] == result.best_step > fast_best + 50, (fast_best, curve)
    # The slow task gained most of what it learnt after the fast one's best step.
    assert slow[steps.index(result.best_step)] < 0.5 * slow[steps.index(fast_best)], curve
    # The run ended the criterion's patience past its best evaluation.
    assert steps[-1] == result.best_step + 5 * 10 == result.steps


def test_the_last_step_is_a_candidate_and_the_report_has_the_selection(tmp_path):
    spec, arrays = _data(tasks=2, rows=256)
    loop = _loop(spec, arrays, eval_every=10, early_stopping_patience=0)
    result = loop.fit(synthetic_input.dataset(arrays, 64), 25,
                      eval_data=lambda: synthetic_input.dataset(arrays, 256, repeat=False))
    assert [p["step"] for p in result.selection["curve"]] == [10, 20, 25]
    assert not result.stopped_early and result.steps == 25  # patience 0: never stops
    assert result.selection["best_step"] == result.best_step
    assert set(result.selection["reference_losses"]) == set(spec.task_names)
    report = json.load(open(result.write(str(tmp_path))))
    assert report["selection"]["curve"][-1]["step"] == 25
    assert report["selection"]["weights"] == {"task_1": 1.0, "task_2": 1.0}


def test_without_evaluation_there_is_no_selection():
    spec, arrays = _data(tasks=2, rows=64)
    result = _loop(spec, arrays).fit(synthetic_input.dataset(arrays, 32), 3)
    assert result.selection is None and result.best_step is None


@pytest.mark.parametrize("budget", [12, None], ids=["budget-known", "budget-grows"])
def test_resuming_keeps_the_reference_losses_and_the_curve(tmp_path, budget):
    """run_fn gives the budget (max_steps); without it, the first run sizes its curve for
    6 steps and the resumed one, with 12, grows it."""
    spec, arrays = _data(tasks=2)
    options = dict(eval_every=3, early_stopping_patience=50, checkpoint_every=6,
                   learning_rate=0.05, max_steps=budget)
    eval_data = lambda: synthetic_input.dataset(arrays, 128, repeat=False)  # noqa: E731

    def train(directory, steps):
        return _loop(spec, arrays, tmp_path / directory, **options).fit(
            synthetic_input.dataset(arrays, 32, shuffle_seed=3), steps, eval_data=eval_data)

    straight = train("straight", 12)
    assert train("resumed", 6).selection["curve"][-1]["step"] == 6
    resumed = train("resumed", 12)  # a new process: everything rebuilt, then restored
    assert resumed.resumed_from == 6
    assert [p["step"] for p in resumed.selection["curve"]] == [3, 6, 9, 12]
    assert resumed.selection == straight.selection
    # The reference is the first evaluation's (step 3), not the resumed run's first.
    assert resumed.selection["reference_losses"] == resumed.selection["curve"][0]["losses"]
    assert resumed.selection["curve"][0]["value"] == 1.0


def test_the_selected_weights_are_the_best_evaluation_s():
    spec, arrays = _data(tasks=2, rows=256)
    _, noise = _data(tasks=2, rows=256, seed=7)  # validation labels unrelated to the inputs
    noise = {**arrays, **{k: v for k, v in noise.items() if "__label" in k}}
    loop = _loop(spec, arrays, eval_every=5, early_stopping_patience=2, learning_rate=0.05)
    eval_data = lambda: synthetic_input.dataset(noise, 256, repeat=False)  # noqa: E731
    result = loop.fit(synthetic_input.dataset(arrays, 64), 500, eval_data=eval_data)
    assert result.stopped_early and result.best_step == result.steps - 10
    now = loop.evaluator(eval_data())
    reference = result.selection["reference_losses"]
    assert normalized_loss([now[t]["loss"] for t in spec.task_names],
                           [reference[t] for t in spec.task_names], [1, 1]) == pytest.approx(
        result.selection["best_value"], rel=1e-5)
