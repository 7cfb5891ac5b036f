"""MGDA on numbers worked out by hand (and brute-force grids)."""
import numpy as np
import pytest
import tensorflow as tf
from combination_support import G1, G2, simplex_grid

PAIR = tf.constant([G1, G2])

from tfx_mtl.models.combination.mgda import mgda, mgda_weights

def test_mgda_on_orthogonal_gradients():
    # g1 = [1, 0], g2 = [0, 2]: ||a g1 + (1-a) g2||^2 = a^2 + 4 (1-a)^2, minimal at 2a = 8(1-a),
    # a = 0.8 (Algorithm 1: (g22 - g12) / (g11 - 2 g12 + g22) = 4 / 5); point [0.8, 0.4],
    # whose dot product with each gradient is 0.8.
    G = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(mgda_weights(tf.matmul(G, G, transpose_b=True)).numpy(),
                               [0.8, 0.2], atol=1e-7)
    result = mgda(G).numpy()
    np.testing.assert_allclose(result, [0.8, 0.4], atol=1e-7)
    np.testing.assert_allclose(G.numpy() @ result, [0.8, 0.8], atol=1e-6)


@pytest.mark.parametrize("k", [2, 3])
def test_mgda_of_identical_gradients_is_that_gradient(k):
    G = tf.constant([[1.0, -2.0, 0.5]] * k)
    np.testing.assert_allclose(mgda(G).numpy(), [1.0, -2.0, 0.5], atol=1e-6)


def test_mgda_three_tasks_by_hand():
    # g1 = [1,0], g2 = [0,2], g3 = [3,3]: the pair's min-norm point u = [0.8, 0.4] (above) has
    # u.u = 0.8 <= u.g3 = 2.4 + 1.2 = 3.6, so it is optimal over all three: alpha = (0.8, 0.2, 0).
    G = tf.constant([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(mgda_weights(tf.matmul(G, G, transpose_b=True)).numpy(),
                               [0.8, 0.2, 0.0], atol=1e-7)
    # g1, g2, g3 the unit vectors of R^3: by symmetry alpha = 1/3 each, point [1/3, 1/3, 1/3]
    np.testing.assert_allclose(mgda(tf.eye(3)).numpy(), [1 / 3] * 3, atol=1e-7)


def test_mgda_three_tasks_matches_a_brute_force_grid():
    G = np.array([[1.0, 0.2, -0.3], [-0.4, 1.0, 0.1], [-0.5, -0.6, 0.8]])
    gram = G @ G.T
    grid = simplex_grid(3, 400)
    values = np.einsum("nk,kl,nl->n", grid, gram, grid)
    alpha = mgda_weights(tf.constant(gram)).numpy()
    # never worse than the best grid point, and next to it
    assert alpha @ gram @ alpha <= values.min() + 1e-12
    np.testing.assert_allclose(alpha, grid[values.argmin()], atol=2.5e-3)
    assert alpha.min() > 0.05  # the optimum is interior here: a real 3-way solve


def test_mgda_weights_satisfy_the_optimality_condition_for_larger_k():
    # min-norm point over the simplex: (M a)_r >= a^T M a for every r (equality on the support).
    rng = np.random.default_rng(0)
    for k in (4, 6):
        G = rng.normal(size=(k, 5))
        G[1] = -0.9 * G[0] + 0.1 * rng.normal(size=5)  # a strong conflict
        gram = G @ G.T
        alpha = mgda_weights(tf.constant(gram)).numpy()
        assert alpha.min() >= 0 and abs(alpha.sum() - 1) < 1e-12
        assert (gram @ alpha).min() >= alpha @ gram @ alpha - 1e-10 * np.trace(gram)


