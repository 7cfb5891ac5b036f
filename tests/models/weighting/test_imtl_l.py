"""IMTL-L on numbers worked out by hand."""
import math

import numpy as np
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.imtl_l import imtl_l_terms

NAMES = ("a", "b")
TYPES = ("regression", "binary")


def test_imtl_l_terms():
    # s = [0, log 2]: w = e^s = [1, 2], r = -s = [0, -log 2]; a task with L = 0: r = 0
    weights, reg = imtl_l_terms([0.0, math.log(2.0)], [3.0, 0.5])
    np.testing.assert_allclose(weights.numpy(), [1.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(reg.numpy(), [0.0, -math.log(2.0)], rtol=1e-6)
    _, reg = imtl_l_terms([0.0, math.log(2.0)], [3.0, 0.0])
    np.testing.assert_array_equal(reg.numpy(), [0.0, 0.0])


def test_imtl_l_scales_are_trained_towards_unit_scaled_losses():
    w = weighting.make("imtl_l", NAMES, TYPES, [1.0, 2.0])
    assert [v.name for v in w.trainable_variables] == ["loss_scales:0"]
    w.scales.assign([0.0, math.log(2.0)])
    losses = tf.constant([3.0, 0.5])
    with tf.GradientTape() as tape:
        weights, reg = w.terms(losses)
        total = tf.reduce_sum(weights * losses + reg)
    # d/ds (e^s L - s) = e^s L - 1: [3 - 1, 2 * 0.5 - 1] = [2, 0], times static [1, 2]:
    # the second task's scaled loss is already 1.
    np.testing.assert_allclose(tape.gradient(total, w.scales).numpy(), [2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(weights.numpy(), [1.0, 4.0], rtol=1e-6)
    # A task with no labels: -s drops out, so its gradient is 0 (not -1 forever).
    with tf.GradientTape() as tape:
        weights, reg = w.terms(tf.constant([3.0, 0.0]))
        total = tf.reduce_sum(weights * tf.constant([3.0, 0.0]) + reg)
    np.testing.assert_allclose(tape.gradient(total, w.scales).numpy(), [2.0, 0.0], atol=1e-6)
