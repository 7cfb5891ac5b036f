"""Uncertainty weighting on numbers worked out by hand."""
import math

import numpy as np
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.uncertainty import uncertainty_terms

NAMES = ("a", "b")
TYPES = ("regression", "binary")
ONES = tf.ones([2])  # the raw losses, where the weights do not depend on them


def test_uncertainty_terms():
    # s = [0, log 4]: exp(-s) = [1, 1/4]; regression 0.5 exp(-s) = [0.5, 0.125],
    # classification exp(-s) = [1, 0.25]; regulariser 0.5 s = [0, 0.5 log 4 = log 2 = 0.6931472]
    s = tf.constant([0.0, math.log(4.0)])
    weights, reg = uncertainty_terms(s, [True, True])
    np.testing.assert_allclose(weights.numpy(), [0.5, 0.125], rtol=1e-6)
    np.testing.assert_allclose(reg.numpy(), [0.0, 0.6931472], rtol=1e-6)
    weights, reg = uncertainty_terms(s, [False, False])
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.25], rtol=1e-6)
    np.testing.assert_allclose(reg.numpy(), [0.0, 0.6931472], rtol=1e-6)


def test_uncertainty_module_terms_and_gradients():
    w = weighting.make("uncertainty", NAMES, TYPES, {"b": 2.0})
    assert [v.name for v in w.trainable_variables] == ["log_variances:0"]
    losses = tf.constant([3.0, 3.0])
    with tf.GradientTape() as tape:
        weights, reg = w.terms(ONES)
        total = tf.reduce_sum(weights * losses + reg)
    # s = 0: regression w = 0.5, classification w = 1 times static 2 -> [0.5, 2], r = [0, 0].
    # d/ds [0.5 e^-s L + 0.5 s] = -0.5 * 3 + 0.5 = -1;
    # d/ds 2 [e^-s L + 0.5 s] = 2 (-3 + 0.5) = -5
    np.testing.assert_allclose(weights.numpy(), [0.5, 2.0])
    np.testing.assert_allclose(tape.gradient(total, w.log_variances).numpy(), [-1.0, -5.0])
    np.testing.assert_allclose(w.weights_for_logging(ONES).numpy(), [0.5, 2.0])


def test_uncertainty_log_variances_train_with_keras_adam():
    # Adam's first step moves each variable by lr * g / |g| = lr against the gradient:
    # gradients [-1, -5] above -> s = [0.1, 0.1]
    w = weighting.make("uncertainty", NAMES, TYPES, [1.0, 2.0])
    optimizer = tf.keras.optimizers.Adam(0.1)
    optimizer.build(list(w.trainable_variables))
    with tf.GradientTape() as tape:
        weights, reg = w.terms(ONES)
        total = tf.reduce_sum(weights * tf.constant([3.0, 3.0]) + reg)
    grads = tape.gradient(total, w.trainable_variables)
    optimizer.apply_gradients(zip(grads, w.trainable_variables))
    np.testing.assert_allclose(w.log_variances.numpy(), [0.1, 0.1], rtol=1e-5)
