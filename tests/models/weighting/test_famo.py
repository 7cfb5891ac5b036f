"""FAMO on numbers worked out by hand."""
import math

import numpy as np
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.famo import famo_logit_gradient, famo_weights

NAMES = ("a", "b")
TYPES = ("regression", "binary")


def test_famo_weights():
    # xi = 0: z = [1/2, 1/2]; L = [2, 1]: z / L = [1/4, 1/2], c = 1 / (3/4);
    # w = K c z / L = 2 * [1/3, 2/3] = [2/3, 4/3]; sum w L = 4/3 + 4/3
    np.testing.assert_allclose(famo_weights([0.0, 0.0], [2.0, 1.0]).numpy(), [2 / 3, 4 / 3],
                               rtol=1e-6)
    # xi = [log 3, 0]: z = [3/4, 1/4]; L = [3, 1]: z / L = [1/4, 1/4] -> w = [1, 1]
    np.testing.assert_allclose(famo_weights([math.log(3.0), 0.0], [3.0, 1.0]).numpy(),
                               [1.0, 1.0], rtol=1e-6)
    # K = 3, the middle task has no labels (L = 0): weight 0, left out of c, K' = 2:
    # as the K = 2 case [2, 1] above.
    np.testing.assert_allclose(famo_weights([0.0, 5.0, 0.0], [2.0, 0.0, 1.0]).numpy(),
                               [2 / 3, 0.0, 4 / 3], rtol=1e-6)
    np.testing.assert_array_equal(famo_weights([0.0, 0.0], [0.0, 0.0]).numpy(), [0.0, 0.0])
    # A tiny loss: z / L = [5e36, 0.5], c z / L = [1, 1e-37]: w = [2, 0], finite.
    np.testing.assert_allclose(famo_weights([0.0, 0.0], [1e-37, 1.0]).numpy(), [2.0, 0.0],
                               atol=1e-6)


def test_famo_logit_gradient():
    # xi = 0, z = [1/2, 1/2]; L: [1, 1] -> [e^-1, 1]: delta = [1, 0], z.delta = 1/2;
    # J^T delta = z (delta - 1/2) = [1/4, -1/4]; gamma xi = 0.
    gradient = famo_logit_gradient([0.0, 0.0], [1.0, 1.0], [math.exp(-1.0), 1.0], 1e-3)
    np.testing.assert_allclose(gradient.numpy(), [0.25, -0.25], rtol=1e-6)
    # weight decay alone: delta = 0 -> gamma xi = 0.1 * [1, -1]
    gradient = famo_logit_gradient([1.0, -1.0], [2.0, 3.0], [2.0, 3.0], 0.1)
    np.testing.assert_allclose(gradient.numpy(), [0.1, -0.1], rtol=1e-6)
    # a task absent on either side has delta 0: delta = [0, log 2], z = [1/2, 1/2],
    # z.delta = log2 / 2: J^T delta = [-log2 / 4, log2 / 4]
    gradient = famo_logit_gradient([0.0, 0.0], [0.0, 2.0], [5.0, 1.0], 0.0)
    np.testing.assert_allclose(gradient.numpy(), [-math.log(2) / 4, math.log(2) / 4], rtol=1e-6)


def test_famo_module_first_records_then_steps_with_adam():
    w = weighting.make("famo", NAMES, TYPES, [1.0, 3.0])
    assert not w.trainable_variables and not w.needs_grad_norms
    ones = tf.ones([2])
    # Static weights multiply: at L = [1, 1], xi = 0, FAMO's weights are [1, 1].
    np.testing.assert_allclose(w.terms(ones)[0].numpy(), [1.0, 3.0])
    w.update(tf.constant([1.0, 1.0]))  # the first losses: recorded, xi stays 0
    np.testing.assert_array_equal(w.logits.numpy(), [0.0, 0.0])
    # Then L = [e^-1, 1]: gradient [1/4, -1/4] (above); Adam's first step is
    # lr g / |g| = 0.025 [1, -1] (m_hat = g, v_hat = g^2): xi = [-0.025, 0.025].
    w.update(tf.constant([math.exp(-1.0), 1.0]))
    np.testing.assert_allclose(w.logits.numpy(), [-0.025, 0.025], rtol=1e-5)
    # At L = [1, 1]: 2 softmax(xi) = [2 / (1 + e^0.05), 2 / (1 + e^-0.05)]
    # = [0.9750052, 1.0249948], times the static weights [1, 3].
    np.testing.assert_allclose(w.weights_for_logging(ones).numpy(),
                               [0.9750052, 3 * 1.0249948], rtol=1e-5)
    # Unchanged losses: delta = 0, the gradient is gamma xi = 1e-3 [-0.025, 0.025]
    # = [-2.5e-5, 2.5e-5]; Adam: m = 0.9 * 0.025 + 0.1 * -2.5e-5 = 0.0224975,
    # v = 0.999 * 6.25e-5 + 0.001 * 6.25e-10 = 6.24375e-5; m_hat = m / 0.19 = 0.1184079,
    # v_hat = v / 0.001999 = 0.0312344, sqrt = 0.1767326; step = 0.025 * 0.1184079 /
    # 0.1767326 = 0.0167496: momentum keeps xi moving, xi = -/+ 0.0417496.
    w.update(tf.constant([math.exp(-1.0), 1.0]))
    np.testing.assert_allclose(w.logits.numpy(), [-0.0417496, 0.0417496], rtol=1e-5)


def test_famo_weights_give_the_gradient_of_the_weighted_log_losses():
    # sum w L (w stop-gradient) has K' c times the gradient of sum z log L:
    # d/dL_k = K' c z_k / L_k; xi = 0, L = [2, 1]: [2/3, 4/3] (above).
    w = weighting.make("famo", NAMES, TYPES)
    losses = tf.Variable([2.0, 1.0])
    with tf.GradientTape() as tape:
        weights, reg = w.terms(losses)
        total = tf.reduce_sum(weights * losses + reg)
    np.testing.assert_allclose(tape.gradient(total, losses).numpy(), [2 / 3, 4 / 3], rtol=1e-6)


def test_famo_checkpoint_round_trip(tmp_path):
    saved = weighting.make("famo", NAMES, TYPES)
    for losses in ([1.0, 1.0], [0.5, 0.9], [0.4, 0.6]):
        saved.update(tf.constant(losses))
    path = tf.train.Checkpoint(weighting=saved).save(str(tmp_path / "ckpt"))
    restored = weighting.make("famo", NAMES, TYPES)
    tf.train.Checkpoint(weighting=restored).restore(path).assert_consumed()
    for losses in ([0.3, 0.5], [0.3, 0.4]):
        saved.update(tf.constant(losses))
        restored.update(tf.constant(losses))
    np.testing.assert_array_equal(restored.logits.numpy(), saved.logits.numpy())
    assert not np.allclose(saved.logits.numpy(), 0.0)
