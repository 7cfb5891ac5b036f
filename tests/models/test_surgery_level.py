"""Representation-level vs parameter-level surgery on a linear trunk, worked out by hand.

The trunk is z_n = x_n . W (W [2, 1] shared, one example per row of X [N, 2]); the
heads are fixed and linear, L_k = sum_n c_k[n] z_n, so task k's gradient of the
representation is r_k = c_k (one coordinate per example) and of the parameters
g_k = X^T c_k. Hence G_par G_par^T = C X X^T C^T against G_rep G_rep^T = C C^T: with
orthonormal inputs (X X^T = I) the two Gram matrices are equal and every method gives
the same update at both levels; otherwise they may differ.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import combination
from tfx_mtl.models.combination.base import REPRESENTATION, GradientCombination
from tfx_mtl.models.train_step import per_task_gradients, representation_gradients

SEED = tf.constant([7, 1], tf.int64)
ORTHONORMAL = [[1.0, 0.0], [0.0, 1.0]]
SKEWED = [[1.0, 0.0], [1.0, 1.0]]


def _updates(name, X, C, w=(0.5, -0.3)):
    """(parameter-level update, representation-level update) of W, both [2], each by a
    fresh method ``name`` (or made by ``name()``): a stateful method must see the same
    first step at both levels."""
    X, C = tf.constant(X), tf.constant(C)
    W = tf.Variable(tf.reshape(tf.constant(w), [2, 1]))
    with tf.GradientTape(persistent=True) as tape:
        z = tf.matmul(X, W)  # [N, 1]
        losses = tf.linalg.matvec(C, z[:, 0])  # [K]
    k = C.shape[0]
    fresh = (lambda: combination.make(name, tasks=k)) if isinstance(name, str) else name
    G = per_task_gradients(tape, losses, [W], k, vectorised=False)
    parameters = fresh().combine(G, SEED)
    ctx = tf.distribute.get_replica_context()
    representation, _ = representation_gradients(tape, losses, [z], [W], fresh(), SEED, ctx)
    return parameters.numpy(), tf.reshape(representation[0], [-1]).numpy()


def _both_levels():
    return [n for n in combination.names()
            if combination.REGISTRY.get(n).needs_task_gradients
            and combination.REGISTRY.get(n).runs_on_representation()]


# c_1 = (2, 1), c_2 = (-1, 1): r_1 . r_2 = -1, a conflict at both levels when X = I.
# PCGrad: |g_1|^2 = 5, |g_2|^2 = 2; g_1' = (2, 1) + 1/2 (-1, 1) = (1.5, 1.5),
#         g_2' = (-1, 1) + 1/5 (2, 1) = (-0.6, 1.2); sum (0.9, 2.7).
# MGDA (K = 2 closed form): gamma = (2 + 1) / (5 + 2 + 2) = 1/3;
#         1/3 (2, 1) + 2/3 (-1, 1) = (0, 1).
@pytest.mark.parametrize("name,expected", [("pcgrad", [0.9, 2.7]), ("mgda", [0.0, 1.0])])
def test_orthonormal_inputs_give_the_same_update_at_both_levels(name, expected):
    parameters, representation = _updates(name, ORTHONORMAL,
                                          [[2.0, 1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(parameters, expected, atol=1e-6)
    np.testing.assert_allclose(representation, expected, atol=1e-6)


def test_every_method_agrees_across_levels_when_the_gram_matrices_are_equal():
    # X = I: G_par = G_rep exactly, so any method (Gram-based or elementwise) must agree.
    C = [[2.0, 1.0], [-1.0, 1.0], [0.5, -2.0]]
    for name in _both_levels():
        parameters, representation = _updates(name, ORTHONORMAL, C)
        np.testing.assert_allclose(representation, parameters, atol=1e-5, err_msg=name)


# Orthogonal representation gradients, c_1 = (1, 1), c_2 = (1, -1) (r_1 . r_2 = 0), but
# X = [[1, 0], [1, 1]] makes the parameter gradients conflict:
#   g_1 = X^T c_1 = (2, 1), g_2 = X^T c_2 = (0, -1), g_1 . g_2 = -1.
# Representation level: nothing conflicts, PCGrad is the sum X^T (2, 0) = (2, 0); MGDA's
#   Gram is diag(2, 2), alpha = (1/2, 1/2): 1/2 (2, 1) + 1/2 (0, -1) = (1, 0).
# Parameter level: PCGrad g_1' = (2, 1) + (0, -1) = (2, 0), g_2' = (0, -1) + 1/5 (2, 1)
#   = (0.4, -0.8), sum (2.4, -0.8); MGDA gamma = (1 + 1) / (5 + 2 + 1) = 1/4:
#   1/4 (2, 1) + 3/4 (0, -1) = (0.5, -0.5).
@pytest.mark.parametrize("name,at_parameters,at_representation", [
    ("pcgrad", [2.4, -0.8], [2.0, 0.0]), ("mgda", [0.5, -0.5], [1.0, 0.0])])
def test_the_levels_differ_when_the_trunk_mixes_examples(name, at_parameters,
                                                         at_representation):
    parameters, representation = _updates(name, SKEWED,
                                          [[1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_allclose(parameters, at_parameters, atol=1e-6)
    np.testing.assert_allclose(representation, at_representation, atol=1e-6)


def test_one_task_gives_the_plain_gradient_direction_at_both_levels():
    # K = 1: beta is one number, so both levels move along g = X^T c (SKEWED, c = (2, -1):
    # g = (1, -1)); a method whose weights do not depend on the gradients' scale (checked
    # here on its Gram matrix scaled by 9) gives exactly the same update at both levels.
    C = [[2.0, -1.0]]
    for name in combination.names():
        if not combination.REGISTRY.get(name).runs_on_representation():
            continue
        parameters, representation = _updates(name, SKEWED, C)
        for update in (parameters, representation):
            assert update @ np.array([1.0, -1.0]) > 0, (name, update)
            assert abs(update[0] + update[1]) < 1e-6, (name, update)
        if combination.REGISTRY.get(name).gram_based():
            gram = tf.constant([[2.0]])
            weights = [combination.make(name, tasks=1).task_weights(g, SEED)
                       for g in (gram, 9 * gram)]
            if np.allclose(*weights):
                np.testing.assert_allclose(representation, parameters, atol=1e-6, err_msg=name)


class _SignAgreement(GradientCombination):
    """Test-only elementwise method: per coordinate, the sum of the task gradients that
    agree in sign with the coordinate's sum."""

    name = "sign_agreement"
    elementwise = True

    def __init__(self):  # not registered: no parameters to look up
        self.params = None

    def combine(self, G, seed=None):
        agree = tf.cast(tf.sign(G) == tf.sign(tf.reduce_sum(G, 0))[None], G.dtype)
        return tf.reduce_sum(G * agree, 0)


def test_an_elementwise_method_acts_on_each_examples_representation_gradient():
    # c_1 = (2, 1), c_2 = (-1, 1), X = [[1, 0], [1, 1]].
    # Representation: coordinate sums (1, 2); keep 2 and (1 + 1): cotangent (2, 2),
    #   W's update X^T (2, 2) = (4, 2).
    # Parameters: g_1 = (3, 1), g_2 = (0, 1), sums (3, 2); keep 3 and (1 + 1): (3, 2).
    parameters, representation = _updates(_SignAgreement, SKEWED, [[2.0, 1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(parameters, [3.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(representation, [4.0, 2.0], atol=1e-6)


def test_the_elementwise_cotangent_is_reshaped_onto_every_representation_tensor():
    # Two representation tensors of different shapes ([N, 1] and [N, 3]); without a
    # conflict the sign-agreement method is the sum, so the update must be the plain
    # gradient of the summed losses: any mix-up of the pieces would change it.
    X = tf.constant([[1.0, 2.0], [0.5, -1.0], [2.0, 1.0]])
    W = tf.Variable([[0.3], [-0.2]])
    V = tf.Variable([[0.1, 0.4, -0.3], [0.2, -0.5, 0.6]])
    heads = tf.constant([[1.0, 2.0, 0.5, 1.5], [3.0, 1.0, 2.0, 0.5]])  # [K, 4], positive
    with tf.GradientTape(persistent=True) as tape:
        a, b = tf.matmul(X, W), tf.matmul(X, V)
        features = tf.nn.relu(tf.concat([a, b], 1))  # [N, 4]
        losses = tf.reduce_sum(tf.matmul(features, heads, transpose_b=True), 0)  # [K]
        total = tf.reduce_sum(losses)
    expected = tape.gradient(total, [W, V])
    got, _ = representation_gradients(tape, losses, [a, b], [W, V], _SignAgreement(), SEED,
                                   tf.distribute.get_replica_context())
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-6)


def test_representation_level_is_refused_for_a_method_that_cannot_run_there():
    class ParametersOnly(GradientCombination):
        name = "parameters_only"
        representation_level = False

        def combine(self, G, seed=None):
            return G[0]

    with pytest.raises(ValueError, match="surgery_level: gradient combination "
                                         "'parameters_only' cannot run at representation"):
        ParametersOnly.level_at(REPRESENTATION)
