"""CAGrad on numbers worked out by hand (and brute-force grids)."""
import numpy as np
import pytest
import tensorflow as tf
from combination_support import G1, G2, simplex_grid

PAIR = tf.constant([G1, G2])

from tfx_mtl.models.combination.cagrad import cagrad, cagrad_objective, cagrad_weights
from tfx_mtl.models.combination.mgda import mgda

def test_cagrad_with_c_zero_is_the_mean():
    np.testing.assert_array_equal(cagrad(PAIR, 0.0).numpy(),
                                  np.mean([G1, G2], axis=0, dtype=np.float32))


def test_cagrad_symmetric_pair_by_hand():
    # g1 = [2, 1], g2 = [-2, 1] (g1.g2 = -3: conflicting), g0 = [0, 1], ||g0|| = 1, phi = c = 0.5.
    # u = w g1 + (1-w) g2 = [4w - 2, 1]; g0.u = 1, so F(w) = 1 + 0.5 sqrt((4w-2)^2 + 1), minimal at
    # w = 1/2, u = g0. d = g0 + phi u/||u|| = [0, 1.5]; / (1 + c^2) = 1.25 -> [0, 1.2].
    G = tf.constant([[2.0, 1.0], [-2.0, 1.0]])
    np.testing.assert_allclose(cagrad_weights(tf.matmul(G, G, transpose_b=True), 0.5).numpy(),
                               [0.5, 0.5], atol=1e-7)
    result = cagrad(G, 0.5).numpy()
    np.testing.assert_allclose(result, [0.0, 1.2], atol=1e-6)
    # worst-task improvement: min(g_i . d) = 1.2 > min(g_i . g0) = 1
    assert (G.numpy() @ result).min() > (G.numpy() @ G.numpy().mean(0)).min()


def test_cagrad_improves_the_worst_task_over_the_mean():
    # g1 = [1, 0], g2 = [-2, 0.1]: mean [-0.5, 0.05] has g1 . mean = -0.5 < 0
    G = np.array([[1.0, 0.0], [-2.0, 0.1]])
    mean_worst = (G @ G.mean(0)).min()
    for c in (0.2, 0.5, 0.9):
        result = cagrad(tf.constant(G), c).numpy()
        assert (G @ result).min() >= mean_worst


# The third set has 0 = (2/3) g1 + (1/3) g2 in its hull (g2 = -2 g1), where F = 0; the grid
# (multiples of 1/300) contains (2/3, 1/3, 0) and finds nothing lower for c = 0.8.
DEGENERATE = [[1.0, 0.5], [-2.0, -1.0], [0.0, 1.0]]


@pytest.mark.parametrize("k, steps, vectors", [
    (2, 2000, [[1.0, 0.3, -0.2], [-0.8, 0.5, 0.1]]),
    (3, 300, [[1.0, 0.3, -0.2], [-0.8, 0.5, 0.1], [0.2, -0.9, 0.4]]),
    (3, 300, DEGENERATE)])
def test_cagrad_solver_matches_a_brute_force_grid(k, steps, vectors):
    G = np.array(vectors)
    gram = tf.constant(G @ G.T)
    for c in (0.3, 0.8):
        w = cagrad_weights(gram, c)
        grid = simplex_grid(k, steps)
        best = cagrad_objective(grid, gram, c).numpy().min()
        assert float(cagrad_objective(w[None], gram, c)[0]) <= best + 1e-12
    if vectors is DEGENERATE:
        np.testing.assert_allclose(cagrad_weights(gram, 0.8).numpy(), [2 / 3, 1 / 3, 0],
                                   atol=1e-9)


def test_cagrad_is_optimal_by_duality_for_larger_k():
    # Weak duality: for every d with ||d - g0|| <= phi, min_i g_i.d <= F(w) for every w on the
    # simplex. So if the returned d (before the 1/(1+c^2) rescale) attains min_i g_i.d = F(w),
    # both are optimal.
    rng = np.random.default_rng(1)
    c = 0.5
    for k in (4, 6):
        G = rng.normal(size=(k, 7)) * rng.exponential(size=(k, 1))
        G[1] = -0.9 * G[0] + 0.1 * rng.normal(size=7)
        gram = G @ G.T
        d = cagrad(tf.constant(G), c).numpy() * (1 + c * c)
        g0 = G.mean(0)
        phi = c * np.linalg.norm(g0)
        assert np.linalg.norm(d - g0) <= phi * (1 + 1e-9)
        scale = np.mean(np.diag(gram))
        w = cagrad_weights(tf.constant(gram), c)
        dual = float(cagrad_objective(w[None], tf.constant(gram), c)[0]) * scale
        assert (G @ d).min() == pytest.approx(dual, abs=1e-7 * scale)


def test_mgda_and_cagrad_are_scale_free():
    G = np.array([[1.0, 0.3, -0.2], [-0.8, 0.5, 0.1], [0.2, -0.9, 0.4]])
    for fn in (mgda, lambda G: cagrad(G, 0.5)):
        np.testing.assert_allclose(fn(tf.constant(G * 1e-6)).numpy(),
                                   fn(tf.constant(G)).numpy() * 1e-6, rtol=1e-9, atol=0)


