"""GradNorm on numbers worked out by hand."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.gradnorm import gradnorm_step

NAMES = ("a", "b")
TYPES = ("regression", "binary")
ONES = tf.ones([2])  # the raw losses, where the weights do not depend on them


def test_gradnorm_step_by_hand():
    # w = [1, 1], norms = [2, 1] -> G = [2, 1], G_bar = 1.5; Ltilde = [0.5, 1], mean 0.75,
    # r = [2/3, 4/3]; alpha = 1: target = 1.5 r = [1, 2]; G - target = [1, -1], sign [+1, -1];
    # dL/dw = sign * norms = [2, -1]; w - 0.1 * [2, -1] = [0.8, 1.1], sum 1.9;
    # renormalised to sum 2: [1.6/1.9, 2.2/1.9] = [0.8421053, 1.1578947]
    new = gradnorm_step([1.0, 1.0], [2.0, 1.0], [0.5, 1.0], [1.0, 1.0],
                                  alpha=1.0, learning_rate=0.1)
    np.testing.assert_allclose(new.numpy(), [0.8421053, 1.1578947], rtol=1e-6)


def test_gradnorm_step_alpha_and_floor():
    # alpha = 2 on the same numbers: r^2 = [4/9, 16/9], target = 1.5 r^2 = [2/3, 8/3];
    # G - target = [4/3, -5/3]: same signs, same step. A big step clips at the floor:
    # lr = 1: w = [1 - 2, 1 + 1] = [-1, 2] -> [0.001, 2] -> * 2 / 2.001 = [0.0009995, 1.9990005]
    same = gradnorm_step([1.0, 1.0], [2.0, 1.0], [0.5, 1.0], [1.0, 1.0], 2.0, 0.1)
    np.testing.assert_allclose(same.numpy(), [0.8421053, 1.1578947], rtol=1e-6)
    clipped = gradnorm_step([1.0, 1.0], [2.0, 1.0], [0.5, 1.0], [1.0, 1.0], 1.0, 1.0)
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
    np.testing.assert_allclose(gradnorm_step(*args, 0.0, 0.1).numpy(),
                               [1.1111111, 0.8888889], rtol=1e-6)
    np.testing.assert_allclose(gradnorm_step(*args, 3.0, 0.1).numpy(),
                               [0.8910891, 1.1089109], rtol=1e-6)


def test_gradnorm_module_first_two_updates():
    w = weighting.make("gradnorm", NAMES, TYPES, alpha=1.0, learning_rate=0.1)
    assert w.needs_grad_norms and not w.trainable_variables
    np.testing.assert_array_equal(w.terms(ONES)[0].numpy(), [1.0, 1.0])
    # Call 1: initial losses := [2, 1], so Ltilde = [1, 1], r = [1, 1]. norms [2, 1]: G = [2, 1],
    # G_bar = 1.5 = target; G - target = [.5, -.5] -> grad [2, -1] -> [0.8, 1.1] -> * 2 / 1.9 =
    # [16/19, 22/19] = [0.8421053, 1.1578947]
    w.update(tf.constant([2.0, 1.0]), tf.constant([2.0, 1.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 1.0])
    np.testing.assert_allclose(w.terms(ONES)[0].numpy(), [0.8421053, 1.1578947], rtol=1e-6)
    # Call 2: losses [1, 1] -> Ltilde = [0.5, 1], r = [2/3, 4/3]; norms [1, 1]: G = [16/19, 22/19],
    # G_bar = 1, target = [2/3, 4/3]; G - target = [10/57, -10/57] -> grad [1, -1];
    # w = [16/19 - 0.1, 22/19 + 0.1] = [0.7421053, 1.2578947], already summing to 2.
    w.update(tf.constant([1.0, 1.0]), tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 1.0])
    np.testing.assert_allclose(w.weights_for_logging(ONES).numpy(), [0.7421053, 1.2578947], rtol=1e-6)
    with pytest.raises(ValueError, match="grad_norms is required"):
        w.update(tf.constant([1.0, 1.0]), None)


def test_gradnorm_starts_from_normalised_static_weights_and_waits_for_initial_losses():
    # static [1, 3] -> * 2 / 4 = [0.5, 1.5]
    w = weighting.make("gradnorm", NAMES, TYPES, [1.0, 3.0])
    np.testing.assert_allclose(w.terms(ONES)[0].numpy(), [0.5, 1.5])
    # task b had no labels (loss 0): no initial loss for it yet, weights unchanged
    w.update(tf.constant([2.0, 0.0]), tf.constant([1.0, 0.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 0.0])
    np.testing.assert_allclose(w.terms(ONES)[0].numpy(), [0.5, 1.5])
    w.update(tf.constant([1.0, 4.0]), tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(w.initial_losses.numpy(), [2.0, 4.0])  # a's kept, b's recorded
    assert not np.allclose(w.terms(ONES)[0].numpy(), [0.5, 1.5])
    assert w.terms(ONES)[0].numpy().sum() == pytest.approx(2.0)
