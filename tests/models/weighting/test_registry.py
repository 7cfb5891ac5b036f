"""The registry of weightings: uniform, construction and parameters, every method under
MirroredStrategy and tf.function, checkpoints."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting import rlw

NAMES = ("a", "b")
TYPES = ("regression", "binary")
ONES = tf.ones([2])  # the raw losses, where the weights do not depend on them


def test_uniform_uses_the_static_weights():
    w = weighting.make("uniform", NAMES, TYPES, [2.0, 0.5])
    weights, reg = w.terms(ONES)
    np.testing.assert_array_equal(weights.numpy(), [2.0, 0.5])
    np.testing.assert_array_equal(reg.numpy(), [0.0, 0.0])
    assert not w.trainable_variables and not w.needs_grad_norms
    w.update(tf.constant([1.0, 1.0]))
    np.testing.assert_array_equal(w.weights_for_logging(ONES).numpy(), [2.0, 0.5])
    default = weighting.make("uniform", NAMES, TYPES)
    np.testing.assert_array_equal(default.terms(ONES)[0].numpy(), [1.0, 1.0])


@pytest.mark.parametrize("name", weighting.names())
def test_modules_under_mirrored_strategy_and_tf_function(name):
    # Same numbers as the eager runs: gradnorm's first update above, dwa's first three steps.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        params = {"gradnorm": dict(alpha=1.0, learning_rate=0.1), "dwa": dict(period=2)}
        w = weighting.make(name, NAMES, TYPES, **params.get(name, {}))

    @tf.function
    def step(losses, norms):
        def replica(losses, norms):
            weights, reg = w.terms(losses)
            w.update(losses, norms)
            return weights * losses + reg, w.weights_for_logging(losses)
        return strategy.run(replica, args=(losses, norms))

    effective, logged = step(tf.constant([2.0, 1.0]), tf.constant([2.0, 1.0]))
    expected = {
        "uniform": ([2.0, 1.0], [1.0, 1.0]),
        # s = 0: regression 0.5 * 2, binary 1 * 1
        "uncertainty": ([1.0, 1.0], [0.5, 1.0]),
        "gradnorm": ([2.0, 1.0], [0.8421053, 1.1578947]),
        "dwa": ([2.0, 1.0], [1.0, 1.0]),
        # xi = 0, L = [2, 1]: 2 c z / L = [2/3, 4/3]; the first update only records L
        "famo": ([4 / 3, 4 / 3], [2 / 3, 4 / 3]),
        # the draws of steps 0 and 1 of run seed 0 (the counter advances in update)
        "rlw": tuple(rlw.rlw_weights(rlw.rlw_draw(2, tf.constant([0, s], tf.int64))).numpy()
                     * ([2.0, 1.0], [1.0, 1.0])[s] for s in (0, 1)),
        # GLS = sqrt(2): w = GLS / L = [0.7071068, 1.4142136]
        "gls": ([1.4142136, 1.4142136], [0.7071068, 1.4142136]),
        # s = 0: w = e^0 = 1, r = -0
        "imtl_l": ([2.0, 1.0], [1.0, 1.0]),
        # 1 / (L + 1e-8)
        "db_mtl": ([1.0, 1.0], [0.5, 1.0]),
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
    np.testing.assert_allclose(restored.weights_for_logging(ONES).numpy(), [0.8756470, 1.1243530],
                               rtol=1e-6)
    # and it carries on from the saved half period: [5, 5] + [1, 1] ends p2 = [3, 3];
    # r = p2 / p1 = [3 / 1, 3 / 2] = [3, 1.5]; T = 2: w = 2 softmax([1.5, 0.75])
    # = [2 / (1 + exp(-0.75)), 2 / (1 + exp(0.75))] = [1.3583574, 0.6416426]
    restored.update(tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(restored.weights_for_logging(ONES).numpy(), [1.3583574, 0.6416426],
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
                                         "uncertainty, gradnorm, dwa, famo, rlw, gls, "
                                         "imtl_l, db_mtl\\)"):
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
