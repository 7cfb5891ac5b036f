"""DB-MTL's loss part (the log transform) on numbers worked out by hand."""
import numpy as np
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.db_mtl import log_transform_weights

NAMES = ("a", "b", "c")
TYPES = ("regression", "binary", "regression")


def test_log_transform_weights():
    # eps = 1: w = 1 / (L + 1) for L = [1, 0.25]: [0.5, 0.8]; L = 0 (no labels): 0
    np.testing.assert_allclose(log_transform_weights([1.0, 0.25, 0.0], 1.0).numpy(),
                               [0.5, 0.8, 0.0], rtol=1e-6)
    # default eps 1e-8: 1 / L
    np.testing.assert_allclose(log_transform_weights([2.0, 0.25]).numpy(), [0.5, 4.0],
                               rtol=1e-6)


def test_db_mtl_module_has_the_gradient_of_the_log_losses():
    # d/dL log(L + eps) = 1 / (L + eps); eps = 1, L = [1, 3, 0]: [1/2, 1/4, 0],
    # times the static weights [2, 1, 1]
    w = weighting.make("db_mtl", NAMES, TYPES, [2.0, 1.0, 1.0], eps=1.0)
    losses = tf.Variable([1.0, 3.0, 0.0])
    with tf.GradientTape() as tape:
        weights, reg = w.terms(losses)
        total = tf.reduce_sum(weights * losses + reg)
    np.testing.assert_allclose(tape.gradient(total, losses).numpy(), [1.0, 0.25, 0.0], rtol=1e-6)
    assert not w.trainable_variables
