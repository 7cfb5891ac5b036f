"""Loss weighting on hand-worked numbers; modules in tf.function, MirroredStrategy, checkpoints."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import weighting

NAMES = ("a", "b")
TYPES = ("regression", "binary")


# -- pure functions --------------------------------------------------------
def test_uncertainty_terms():
    # s = [0, log 4]: exp(-s) = [1, 1/4]; regression 0.5 exp(-s) = [0.5, 0.125],
    # classification exp(-s) = [1, 0.25]; regulariser 0.5 s = [0, 0.5 log 4 = log 2 = 0.6931472]
    s = tf.constant([0.0, math.log(4.0)])
    weights, reg = weighting.uncertainty_terms(s, [True, True])
    np.testing.assert_allclose(weights.numpy(), [0.5, 0.125], rtol=1e-6)
    np.testing.assert_allclose(reg.numpy(), [0.0, 0.6931472], rtol=1e-6)
    weights, reg = weighting.uncertainty_terms(s, [False, False])
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.25], rtol=1e-6)
    np.testing.assert_allclose(reg.numpy(), [0.0, 0.6931472], rtol=1e-6)


def test_gradnorm_step_by_hand():
    # w = [1, 1], norms = [2, 1] -> G = [2, 1], G_bar = 1.5; Ltilde = [0.5, 1], mean 0.75,
    # r = [2/3, 4/3]; alpha = 1: target = 1.5 r = [1, 2]; G - target = [1, -1], sign [+1, -1];
    # dL/dw = sign * norms = [2, -1]; w - 0.1 * [2, -1] = [0.8, 1.1], sum 1.9;
    # renormalised to sum 2: [1.6/1.9, 2.2/1.9] = [0.8421053, 1.1578947]
    new = weighting.gradnorm_step([1.0, 1.0], [2.0, 1.0], [0.5, 1.0], [1.0, 1.0],
                                  alpha=1.0, learning_rate=0.1)
    np.testing.assert_allclose(new.numpy(), [0.8421053, 1.1578947], rtol=1e-6)


def test_gradnorm_step_alpha_and_floor():
    # alpha = 2 on the same numbers: r^2 = [4/9, 16/9], target = 1.5 r^2 = [2/3, 8/3];
    # G - target = [4/3, -5/3]: same signs, same step. A big step clips at the floor:
    # lr = 1: w = [1 - 2, 1 + 1] = [-1, 2] -> [0.001, 2] -> * 2 / 2.001 = [0.0009995, 1.9990005]
    same = weighting.gradnorm_step([1.0, 1.0], [2.0, 1.0], [0.5, 1.0], [1.0, 1.0], 2.0, 0.1)
    np.testing.assert_allclose(same.numpy(), [0.8421053, 1.1578947], rtol=1e-6)
    clipped = weighting.gradnorm_step([1.0, 1.0], [2.0, 1.0], [0.5, 1.0], [1.0, 1.0], 1.0, 1.0)
    np.testing.assert_allclose(clipped.numpy(), [0.0009995, 1.9990005], rtol=1e-5)


def test_gradnorm_step_alpha_sets_the_target():
    # w = [1, 1], norms = [1, 1.2] -> G = [1, 1.2], G_bar = 1.1; losses [1, 1.1] / initial [1, 1]:
    # Ltilde = [1, 1.1], mean 1.05, r = [0.952381, 1.047619].
    # alpha = 0: target = G_bar = [1.1, 1.1]; G - target = [-.1, .1] -> grad [-1, 1.2];
    #   w = [1.1, 0.88], sum 1.98 -> [1.1111111, 0.8888889]
    # alpha = 3: r^3 = [0.863838, 1.149768], target = [0.950221, 1.264745];
    #   G - target = [.0498, -.0647] -> grad [1, -1.2]; w = [0.9, 1.12], sum 2.02
    #   -> [0.8910891, 1.1089109]
    args = ([1.0, 1.0], [1.0, 1.2], [1.0, 1.1], [1.0, 1.0])
    np.testing.assert_allclose(weighting.gradnorm_step(*args, 0.0, 0.1).numpy(),
                               [1.1111111, 0.8888889], rtol=1e-6)
    np.testing.assert_allclose(weighting.gradnorm_step(*args, 3.0, 0.1).numpy(),
                               [0.8910891, 1.1089109], rtol=1e-6)


def test_dwa_weights_by_hand():
    # r = [1/2, 2/2] = [0.5, 1]; T = 2: exp(0.25), exp(0.5);
    # w_1 = 2 exp(.25) / (exp(.25) + exp(.5)) = 2 / (1 + exp(.25)) = 0.8756470, w_2 = 1.1243530
    np.testing.assert_allclose(weighting.dwa_weights([1.0, 2.0], [2.0, 2.0], 2.0).numpy(),
                               [0.8756470, 1.1243530], rtol=1e-6)
    # equal ratios give weight 1 each
    np.testing.assert_allclose(weighting.dwa_weights([3.0, 1.0, 6.0], [3.0, 1.0, 6.0]).numpy(),
                               [1.0, 1.0, 1.0], rtol=1e-6)


# -- modules ---------------------------------------------------------------
def test_uniform_uses_the_static_weights():
    w = weighting.make("uniform", NAMES, TYPES, [2.0, 0.5])
    weights, reg = w.terms()
    np.testing.assert_array_equal(weights.numpy(), [2.0, 0.5])
    np.testing.assert_array_equal(reg.numpy(), [0.0, 0.0])
    assert not w.trainable_variables and not w.needs_grad_norms
    w.update(tf.constant([1.0, 1.0]))
    np.testing.assert_array_equal(w.weights_for_logging().numpy(), [2.0, 0.5])
    default = weighting.make("uniform", NAMES, TYPES)
    np.testing.assert_array_equal(default.terms()[0].numpy(), [1.0, 1.0])


def test_uncertainty_module_terms_and_gradients():
    w = weighting.make("uncertainty", NAMES, TYPES, {"b": 2.0})
    assert [v.name for v in w.trainable_variables] == ["log_variances:0"]
    losses = tf.constant([3.0, 3.0])
    with tf.GradientTape() as tape:
        weights, reg = w.terms()
        total = tf.reduce_sum(weights * losses + reg)
    # s = 0: regression w = 0.5, classification w = 1 times static 2 -> [0.5, 2], r = [0, 0].
    # d/ds [0.5 e^-s L + 0.5 s] = -0.5 * 3 + 0.5 = -1;
    # d/ds 2 [e^-s L + 0.5 s] = 2 (-3 + 0.5) = -5
    np.testing.assert_allclose(weights.numpy(), [0.5, 2.0])
    np.testing.assert_allclose(tape.gradient(total, w.log_variances).numpy(), [-1.0, -5.0])
    np.testing.assert_allclose(w.weights_for_logging().numpy(), [0.5, 2.0])


def test_uncertainty_log_variances_train_with_keras_adam():
    # Adam's first step moves each variable by lr * g / |g| = lr against the gradient:
    # gradients [-1, -5] above -> s = [0.1, 0.1]
    w = weighting.make("uncertainty", NAMES, TYPES, [1.0, 2.0])
    optimizer = tf.keras.optimizers.Adam(0.1)
    optimizer.build(list(w.trainable_variables))
    with tf.GradientTape() as tape:
        weights, reg = w.terms()
        total = tf.reduce_sum(weights * tf.constant([3.0, 3.0]) + reg)
    grads = tape.gradient(total, w.trainable_variables)
    optimizer.apply_gradients(zip(grads, w.trainable_variables))
    np.testing.assert_allclose(w.log_variances.numpy(), [0.1, 0.1], rtol=1e-5)


def test_gradnorm_module_first_two_updates():
    w = weighting.make("gradnorm", NAMES, TYPES, alpha=1.0, learning_rate=0.1)
    assert w.needs_grad_norms and not w.trainable_variables
    np.testing.assert_array_equal(w.terms()[0].numpy(), [1.0, 1.0])
    # Call 1: initial losses := [2, 1], so Ltilde = [1, 1], r = [1, 1]. norms [2, 1]: G = [2, 1],
    # G_bar = 1.5 = target; G - target = [.5, -.5] -> grad [2, -1] -> [0.8, 1.1] -> * 2 / 1.9 =
    # [16/19, 22/19] = [0.8421053, 1.1578947]
    w.update(tf.constant([2.0, 1.0]), tf.constant([2.0, 1.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 1.0])
    np.testing.assert_allclose(w.terms()[0].numpy(), [0.8421053, 1.1578947], rtol=1e-6)
    # Call 2: losses [1, 1] -> Ltilde = [0.5, 1], r = [2/3, 4/3]; norms [1, 1]: G = [16/19, 22/19],
    # G_bar = 1, target = [2/3, 4/3]; G - target = [10/57, -10/57] -> grad [1, -1];
    # w = [16/19 - 0.1, 22/19 + 0.1] = [0.7421053, 1.2578947], already summing to 2.
    w.update(tf.constant([1.0, 1.0]), tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 1.0])
    np.testing.assert_allclose(w.weights_for_logging().numpy(), [0.7421053, 1.2578947], rtol=1e-6)
    with pytest.raises(ValueError, match="grad_norms is required"):
        w.update(tf.constant([1.0, 1.0]), None)


def test_gradnorm_starts_from_normalised_static_weights_and_waits_for_initial_losses():
    # static [1, 3] -> * 2 / 4 = [0.5, 1.5]
    w = weighting.make("gradnorm", NAMES, TYPES, [1.0, 3.0])
    np.testing.assert_allclose(w.terms()[0].numpy(), [0.5, 1.5])
    # task b had no labels (loss 0): no initial loss for it yet, weights unchanged
    w.update(tf.constant([2.0, 0.0]), tf.constant([1.0, 0.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 0.0])
    np.testing.assert_allclose(w.terms()[0].numpy(), [0.5, 1.5])
    w.update(tf.constant([1.0, 4.0]), tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 4.0])  # a's kept, b's recorded
    assert not np.allclose(w.terms()[0].numpy(), [0.5, 1.5])
    assert w.terms()[0].numpy().sum() == pytest.approx(2.0)


def _dwa_feed(w, update):
    """Periods of 2 steps: means p0 = [2, 2], p1 = [1, 2], p2 = [1, 2] (-> ratios [1, 1])."""
    seen = []
    for losses in ([1.0, 2.0], [3.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 1.0], [1.0, 3.0]):
        update(w, tf.constant(losses))
        seen.append(w.weights_for_logging().numpy())
    return seen


def _check_dwa(seen):
    # steps 1-3: weights 1; step 4 ends p1: r = p1 / p0 = [0.5, 1] -> [0.8756470, 1.1243530]
    # (dwa_weights by hand above) times static [2, 1]; step 5 mid-period: unchanged;
    # step 6 ends p2: r = p2 / p1 = [1, 1] -> [1, 1] times static.
    for step in range(3):
        np.testing.assert_allclose(seen[step], [2.0, 1.0])
    np.testing.assert_allclose(seen[3], [1.7512940, 1.1243530], rtol=1e-6)
    np.testing.assert_allclose(seen[4], seen[3])
    np.testing.assert_allclose(seen[5], [2.0, 1.0], rtol=1e-6)


def test_dwa_module_weights_per_period():
    w = weighting.make("dwa", NAMES, TYPES, [2.0, 1.0], period=2, temperature=2.0)
    assert not w.trainable_variables and not w.needs_grad_norms
    _check_dwa(_dwa_feed(w, lambda w, losses: w.update(losses)))


def test_dwa_module_under_tf_function():
    w = weighting.make("dwa", NAMES, TYPES, [2.0, 1.0], period=2)
    step = tf.function(lambda losses: w.update(losses))
    _check_dwa(_dwa_feed(w, lambda w, losses: step(losses)))


@pytest.mark.parametrize("name", weighting.WEIGHTINGS)
def test_modules_under_mirrored_strategy_and_tf_function(name):
    # Same numbers as the eager runs: gradnorm's first update above, dwa's first three steps.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        params = {"gradnorm": dict(alpha=1.0, learning_rate=0.1), "dwa": dict(period=2)}
        w = weighting.make(name, NAMES, TYPES, **params.get(name, {}))

    @tf.function
    def step(losses, norms):
        def replica(losses, norms):
            weights, reg = w.terms()
            w.update(losses, norms)
            return weights * losses + reg, w.weights_for_logging()
        return strategy.run(replica, args=(losses, norms))

    effective, logged = step(tf.constant([2.0, 1.0]), tf.constant([2.0, 1.0]))
    expected = {
        "uniform": ([2.0, 1.0], [1.0, 1.0]),
        # s = 0: regression 0.5 * 2, binary 1 * 1
        "uncertainty": ([1.0, 1.0], [0.5, 1.0]),
        "gradnorm": ([2.0, 1.0], [0.8421053, 1.1578947]),
        "dwa": ([2.0, 1.0], [1.0, 1.0]),
    }[name]
    np.testing.assert_allclose(effective.numpy(), expected[0], rtol=1e-6)
    np.testing.assert_allclose(logged.numpy(), expected[1], rtol=1e-6)
    if name == "dwa":
        np.testing.assert_allclose(w.loss_sum.numpy(), [2.0, 1.0])
        assert int(w.steps_in_period.numpy()) == 1


def test_checkpoint_round_trip(tmp_path):
    saved = weighting.make("dwa", NAMES, TYPES, period=2)
    for losses in ([1.0, 2.0], [3.0, 2.0], [1.0, 2.0], [1.0, 2.0], [5.0, 5.0]):
        saved.update(tf.constant(losses))
    path = tf.train.Checkpoint(weighting=saved).save(str(tmp_path / "ckpt"))
    restored = weighting.make("dwa", NAMES, TYPES, period=2)
    tf.train.Checkpoint(weighting=restored).restore(path).assert_consumed()
    for a, b in zip(saved.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(restored.weights_for_logging().numpy(), [0.8756470, 1.1243530],
                               rtol=1e-6)
    # and it carries on from the saved half period: [5, 5] + [1, 1] ends p2 = [3, 3];
    # r = p2 / p1 = [3 / 1, 3 / 2] = [3, 1.5]; T = 2: w = 2 softmax([1.5, 0.75])
    # = [2 / (1 + exp(-0.75)), 2 / (1 + exp(0.75))] = [1.3583574, 0.6416426]
    restored.update(tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(restored.weights_for_logging().numpy(), [1.3583574, 0.6416426],
                               rtol=1e-6)

    g_saved = weighting.make("gradnorm", NAMES, TYPES)
    g_saved.update(tf.constant([2.0, 1.0]), tf.constant([2.0, 1.0]))
    path = tf.train.Checkpoint(weighting=g_saved).save(str(tmp_path / "gradnorm"))
    g_restored = weighting.make("gradnorm", NAMES, TYPES)
    tf.train.Checkpoint(weighting=g_restored).restore(path).assert_consumed()
    np.testing.assert_array_equal(g_restored.task_weights.numpy(), g_saved.task_weights.numpy())
    np.testing.assert_array_equal(g_restored.initial_losses.numpy(), [2.0, 1.0])


def test_make_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown weighting 'magic' \\(one of: uniform, "
                                         "uncertainty, gradnorm, dwa\\)"):
        weighting.make("magic", NAMES, TYPES)
    with pytest.raises(ValueError, match="weighting 'dwa': unknown parameter 'alpha' "
                                         "\\(allowed: period, temperature\\)"):
        weighting.make("dwa", NAMES, TYPES, alpha=1.5)
    with pytest.raises(ValueError, match="weighting 'gradnorm': parameter 'learning_rate' must "
                                         "be a number > 0, got 0"):
        weighting.make("gradnorm", NAMES, TYPES, learning_rate=0)
    with pytest.raises(ValueError, match="parameter 'period' must be an integer >= 1"):
        weighting.make("dwa", NAMES, TYPES, period=2.5)
    with pytest.raises(ValueError, match="unknown parameter 'period' \\(allowed: none\\)"):
        weighting.make("uniform", NAMES, TYPES, period=3)
    with pytest.raises(ValueError, match="task_types: task 'b' has unknown type 'ranking'"):
        weighting.make("uniform", NAMES, ("binary", "ranking"))
    with pytest.raises(ValueError, match="task_types has 1 entries for 2 tasks"):
        weighting.make("uniform", NAMES, ("binary",))
    with pytest.raises(ValueError, match="static_weights: task 'a' has weight -1"):
        weighting.make("uniform", NAMES, TYPES, [-1.0, 1.0])
    with pytest.raises(ValueError, match="static_weights: unknown task\\(s\\) 'c'"):
        weighting.make("uniform", NAMES, TYPES, {"c": 1.0})
    with pytest.raises(ValueError, match="static_weights has 3 entries for 2 tasks"):
        weighting.make("uniform", NAMES, TYPES, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="gradnorm needs a positive sum"):
        weighting.make("gradnorm", NAMES, TYPES, [0.0, 0.0])
