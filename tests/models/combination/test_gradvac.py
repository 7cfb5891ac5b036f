"""GradVac on numbers worked out by hand."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.errors import InputError
from tfx_mtl.models import combination
from tfx_mtl.models.combination.gradvac import gradvac_with_order
from tfx_mtl.models.combination.pcgrad import pcgrad_order, pcgrad_with_order

SEED = tf.constant([7, 1], tf.int64)


def _gram(G):
    G = tf.constant(G)
    return G, tf.matmul(G, G, transpose_b=True)


def test_gradvac_raises_the_cosine_to_its_target_and_moves_the_target():
    # g1 = [3, 0], g2 = [0, 2]: cos = 0 < target 0.6 (sqrt(1 - 0.6^2) = 0.8) for both pairs.
    # g1' = g1 + ||g1|| (0.6 * 1 - 0 * 0.8) / (||g2|| 0.8) g2 = g1 + 3 * 0.6 / 1.6 g2
    #     = g1 + 1.125 g2 = [3, 2.25], cos(g1', g2) = 2.25 / 3.75 = 0.6;
    # g2' = g2 + 2 * 0.6 / (3 * 0.8) g1 = g2 + 0.5 g1 = [1.5, 2], cos = 1.5 / 2.5 = 0.6.
    # update = [4.5, 4.25] = 1.5 g1 + 2.125 g2; targets (beta 0.5): 0.5 * 0.6 + 0.5 * 0 = 0.3.
    G, gram = _gram([[3.0, 0.0], [0.0, 2.0]])
    method = combination.make("gradvac", beta=0.5, tasks=2)
    method.targets.assign([[0.0, 0.6], [0.6, 0.0]])
    np.testing.assert_allclose(method.combine(G, SEED).numpy(), [4.5, 4.25], atol=1e-6)
    np.testing.assert_allclose(method.targets.numpy(), [[0.0, 0.3], [0.3, 0.0]], atol=1e-7)
    weights, _ = gradvac_with_order(gram, [[0.0, 0.6], [0.6, 0.0]], [1, 0], 0.5)
    np.testing.assert_allclose(weights.numpy(), [1.5, 2.125], atol=1e-6)


def test_gradvac_leaves_gradients_above_their_target_alone_but_learns_the_target():
    # g1 = [1, 0], g2 = [1, 1]: cos = 1/sqrt(2) = 0.7071068 >= target 0: the plain sum [2, 1];
    # the targets move to beta * 0.7071068 = 0.0707107 (beta 0.1).
    G, _ = _gram([[1.0, 0.0], [1.0, 1.0]])
    method = combination.make("gradvac", beta=0.1, tasks=2)
    np.testing.assert_allclose(method.combine(G, SEED).numpy(), [2.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(method.targets.numpy(), [[0.0, 0.0707107], [0.0707107, 0.0]],
                               atol=1e-6)


def test_gradvac_with_zero_targets_is_pcgrad_step_by_step():
    # The order-dependent case of test_pcgrad (order 1, 2, 3): with targets 0 the vaccine is
    # PCGrad's projection, so the sum is [0, -0.5]. The cosines seen along the way:
    #  g1=[1,0] vs g2=[-1,1]: -1/sqrt2; g1'=[.5,.5] vs g3=[0,-1]: -.5/(sqrt(.5) * 1) = -1/sqrt2
    #  g2 vs g1: -1/sqrt2; g2'=[0,1] vs g3: -1
    #  g3 vs g1: 0 (no projection); g3 vs g2: -1/sqrt2
    # targets (beta 0.5): half of each: -0.3535534 and -0.5; g3 vs g1 stays 0.
    G, gram = _gram([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    weights, targets = gradvac_with_order(gram, tf.zeros([3, 3]), [0, 1, 2], 0.5)
    np.testing.assert_allclose(tf.linalg.matvec(G, weights, transpose_a=True).numpy(),
                               [0.0, -0.5], atol=1e-7)
    h = -0.5 / np.sqrt(2.0)
    np.testing.assert_allclose(targets.numpy(), [[0, h, h], [h, 0, -0.5], [0, h, 0]], atol=1e-7)


def test_gradvac_first_step_matches_pcgrad_with_the_same_random_order():
    G = tf.constant(np.random.default_rng(0).normal(size=(4, 6)), tf.float32)
    method = combination.make("gradvac", tasks=4)
    expected = pcgrad_with_order(G, pcgrad_order(4, SEED))
    np.testing.assert_allclose(method.combine(G, SEED).numpy(), expected.numpy(), atol=1e-5)
    # task weights reproduce the update from the Gram matrix (representation level)
    fresh = combination.make("gradvac", tasks=4)
    alpha = fresh.task_weights(tf.matmul(G, G, transpose_b=True), SEED)
    np.testing.assert_allclose(tf.linalg.matvec(G, alpha, transpose_a=True).numpy(),
                               expected.numpy(), atol=1e-5)


def test_gradvac_ignores_a_zero_gradient_and_keeps_its_target():
    G, _ = _gram([[1.0, 0.0], [0.0, 0.0]])
    method = combination.make("gradvac", beta=0.5, tasks=2)
    method.targets.assign([[0.0, 0.4], [0.4, 0.0]])
    np.testing.assert_allclose(method.combine(G, SEED).numpy(), [1.0, 0.0])
    np.testing.assert_allclose(method.targets.numpy(), [[0.0, 0.4], [0.4, 0.0]], atol=1e-7)


def test_gradvac_refuses_bad_parameters_and_shapes():
    with pytest.raises(ValueError, match="gradvac keeps state per task: build it with tasks=K"):
        combination.make("gradvac")
    with pytest.raises(InputError, match="combine_params.beta.*must be a number > 0 and <= 1, got 1.5"):
        combination.make("gradvac", beta=1.5, tasks=2)
    with pytest.raises(ValueError, match="gradvac was built for 3 tasks, got 2 rows"):
        combination.make("gradvac", tasks=3).combine(tf.ones([2, 4]), SEED)
    with pytest.raises(ValueError, match="seed is required"):
        combination.make("gradvac", tasks=2).combine(tf.ones([2, 4]))
