"""UPGrad on numbers worked out by hand, and the optimality of its projections."""
import numpy as np
import tensorflow as tf
from combination_support import assert_scale_and_permutation_equivariant

from tfx_mtl.models import combination
from tfx_mtl.models.combination.simplex import normalised
from tfx_mtl.models.combination.upgrad import dual_cone_weights, upgrad_weights


def _weights(G):
    G = np.asarray(G, dtype=np.float64)
    return upgrad_weights(tf.constant(G @ G.T)).numpy()


def test_upgrad_by_hand():
    # g1 = [1, 0], g2 = [-1, 1], g1 . g2 = -1. Projecting g1 onto {x : g1.x >= 0, g2.x >= 0}:
    # onto g2.x = 0, g1 - (-1/2) g2 = [1/2, 1/2] (g1 . it = 1/2 >= 0), weights (1, 1/2);
    # g2: onto g1.x = 0, g2 + g1 = [0, 1] (g2 . it = 1 >= 0), weights (1, 1).
    # Mean: beta = (1, 3/4), update ([1/2, 1/2] + [0, 1]) / 2 = [1/4, 3/4].
    G = tf.constant([[1.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(_weights(G), [1.0, 0.75], atol=1e-12)
    np.testing.assert_allclose(combination.combine("upgrad", G).numpy(), [0.25, 0.75],
                               atol=1e-6)
    # g1 = [1,0,0], g2 = [0,1,0], g3 = [-1,0,1] (only g1 . g3 = -1 < 0): g1 -> g1 + g3/2 =
    # [1/2, 0, 1/2], weights (1, 0, 1/2); g2 is in the cone, (0, 1, 0); g3 -> g3 + g1 =
    # [0, 0, 1], (1, 0, 1). beta = (2/3, 1/3, 1/2), update [1/6, 1/3, 1/2].
    G = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(_weights(G), [2 / 3, 1 / 3, 1 / 2], atol=1e-12)
    np.testing.assert_allclose(combination.combine("upgrad", G).numpy(), [1 / 6, 1 / 3, 1 / 2],
                               atol=1e-6)


def test_upgrad_of_non_conflicting_gradients_is_their_mean():
    # g1 . g2 = 1 >= 0: both lie in the dual cone, each projects onto itself.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [1.0, 1.0]]), [0.5, 0.5], atol=1e-12)


def test_upgrad_projections_are_optimal_and_never_conflict():
    # KKT of min v^T M v s.t. v >= e_i: v >= e_i, mu = M v >= 0, mu_j (v_j - e_ij) = 0 (to
    # ~1e-8 in units of the mean squared norm: K = 8 > P = 6 makes M singular);
    # and the update conflicts with no task: G (G^T beta) >= 0.
    rng = np.random.default_rng(0)
    for k in (3, 5, 8):
        for _ in range(4):
            G = rng.normal(size=(k, 6))
            G[1] = -0.8 * G[0] + 0.2 * rng.normal(size=6)
            m = normalised(tf.constant(G @ G.T)).numpy()
            W = dual_cone_weights(tf.constant(m)).numpy()
            mu = W @ m
            assert np.all(W >= np.eye(k) - 1e-12)
            assert np.all(mu >= -1e-7)
            np.testing.assert_allclose(mu * (W - np.eye(k)), 0.0, atol=1e-7)
            assert np.all(G @ (G.T @ _weights(G)) >= -1e-7 * np.trace(G @ G.T))
    assert_scale_and_permutation_equivariant(
        lambda m: upgrad_weights(tf.constant(m)).numpy(), G)
