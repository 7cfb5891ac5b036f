"""Dynamic Weight Average on numbers worked out by hand."""
import numpy as np
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.dwa import dwa_weights

NAMES = ("a", "b")
TYPES = ("regression", "binary")
ONES = tf.ones([2])  # the raw losses, where the weights do not depend on them


def test_dwa_weights_by_hand():
    # r = [1/2, 2/2] = [0.5, 1]; T = 2: exp(0.25), exp(0.5);
    # w_1 = 2 exp(.25) / (exp(.25) + exp(.5)) = 2 / (1 + exp(.25)) = 0.8756470, w_2 = 1.1243530
    np.testing.assert_allclose(dwa_weights([1.0, 2.0], [2.0, 2.0], 2.0).numpy(),
                               [0.8756470, 1.1243530], rtol=1e-6)
    # equal ratios give weight 1 each
    np.testing.assert_allclose(dwa_weights([3.0, 1.0, 6.0], [3.0, 1.0, 6.0]).numpy(),
                               [1.0, 1.0, 1.0], rtol=1e-6)


def _dwa_feed(w, update):
    """Periods of 2 steps: means p0 = [2, 2], p1 = [1, 2], p2 = [1, 2] (-> ratios [1, 1])."""
    seen = []
    for losses in ([1.0, 2.0], [3.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 1.0], [1.0, 3.0]):
        update(w, tf.constant(losses))
        seen.append(w.weights_for_logging(ONES).numpy())
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
