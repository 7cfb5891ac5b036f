"""Gradient combination on numbers worked out by hand (and brute-force grids)."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import gradient_combination as gc

# A conflicting pair: g1 . g2 = -3 - 0.8 + 0.15 - 6 = -9.65,
# ||g1||^2 = 4 + 1 + 0.25 + 9 = 14.25, ||g2||^2 = 2.25 + 0.64 + 0.09 + 4 = 6.98.
G1 = [2.0, -1.0, 0.5, 3.0]
G2 = [-1.5, 0.8, 0.3, -2.0]
PAIR = tf.constant([G1, G2])


def _simplex_grid(k: int, steps: int) -> np.ndarray:
    """All points of the simplex with coordinates in multiples of 1/steps."""
    points = [p for p in itertools.product(range(steps + 1), repeat=k - 1) if sum(p) <= steps]
    return np.array([list(p) + [steps - sum(p)] for p in points], dtype=np.float64) / steps


# -- PCGrad ----------------------------------------------------------------
def test_pcgrad_projects_a_conflicting_pair_onto_each_others_normal_planes():
    # 9.65 / 6.98 = 1.3825215, 9.65 / 14.25 = 0.6771930
    # g1' = g1 + 1.3825215 g2 = [-0.0737822, 0.1060172, 0.9147564, 0.2349570]
    # g2' = g2 + 0.6771930 g1 = [-0.1456140, 0.1228070, 0.6385965, 0.0315789]
    # sum = [-0.2193963, 0.2288242, 1.5533529, 0.2665360]
    result = gc.pcgrad_with_order(PAIR, [0, 1]).numpy()
    np.testing.assert_allclose(result, [-0.2193963, 0.2288242, 1.5533529, 0.2665360], atol=1e-6)
    g1p = np.array(G1) + 9.65 / 6.98 * np.array(G2)
    g2p = np.array(G2) + 9.65 / 14.25 * np.array(G1)
    np.testing.assert_allclose(g1p, [-0.0737822, 0.1060172, 0.9147564, 0.2349570], atol=1e-6)
    np.testing.assert_allclose(g2p, [-0.1456140, 0.1228070, 0.6385965, 0.0315789], atol=1e-6)
    # each projection is orthogonal to the other original gradient
    assert abs(g1p @ np.array(G2)) < 1e-12 and abs(g2p @ np.array(G1)) < 1e-12
    # so result . g1 = g1' . g1 = 14.25 - 1.3825215 * 9.65 = 0.9086676 >= 0 and
    #    result . g2 = g2' . g2 = 6.98 - 0.6771930 * 9.65 = 0.4450877 >= 0
    np.testing.assert_allclose([result @ np.array(G1), result @ np.array(G2)],
                               [0.9086676, 0.4450877], atol=1e-5)
    # with two tasks the order does not matter
    np.testing.assert_allclose(gc.pcgrad_with_order(PAIR, [1, 0]).numpy(), result, atol=1e-6)


def test_pcgrad_leaves_non_conflicting_gradients_alone():
    # [1, 2] . [3, -1] = 1 >= 0: no projection, the plain sum [4, 1]
    G = tf.constant([[1.0, 2.0], [3.0, -1.0]])
    np.testing.assert_allclose(gc.pcgrad(G, tf.constant([7, 3])).numpy(), [4.0, 1.0])


def test_pcgrad_with_three_tasks_depends_on_the_order():
    # g1 = [1, 0], g2 = [-1, 1], g3 = [0, -1]; dots g1.g2 = -1, g1.g3 = 0, g2.g3 = -1;
    # ||g1||^2 = 1, ||g2||^2 = 2, ||g3||^2 = 1.
    G = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    # order (1, 2, 3):
    #  g1: vs g2: -1 < 0 -> [1,0] + 1/2 [-1,1] = [.5,.5]; vs g3: -.5 < 0 -> + .5 [0,-1] = [.5, 0]
    #  g2: vs g1: -1 -> [-1,1] + [1,0] = [0,1]; vs g3: -1 -> [0,1] + [0,-1] = [0, 0]
    #  g3: vs g1: 0 -> no; vs g2: -1 -> [0,-1] + 1/2 [-1,1] = [-.5, -.5]
    #  sum [0, -0.5]
    np.testing.assert_allclose(gc.pcgrad_with_order(G, [0, 1, 2]).numpy(), [0.0, -0.5], atol=1e-7)
    # order (3, 2, 1):
    #  g1: vs g3: 0 -> no; vs g2: -1 -> [.5, .5]
    #  g2: vs g3: -1 -> [-1,1] + [0,-1] = [-1, 0]; vs g1: -1 -> [-1,0] + [1,0] = [0, 0]
    #  g3: vs g2: -1 -> [-.5,-.5]; vs g1: -.5 -> [-.5,-.5] + .5 [1,0] = [0, -.5]
    #  sum [0.5, 0]
    np.testing.assert_allclose(gc.pcgrad_with_order(G, tf.constant([2, 1, 0])).numpy(), [0.5, 0.0],
                               atol=1e-7)


def test_pcgrad_never_projects_a_task_onto_itself():
    # g1 = [1, 0], g2 = [-1, 0.1], g3 = [-1, -0.1]; ||g2||^2 = ||g3||^2 = 1.01; order (2, 3, 1).
    #  g1: vs g2: -1 -> [1, 0] + (1/1.01) [-1, .1] = [1/101, 10/101];
    #      vs g3: -2/101 -> + (2/101)/1.01 g3 = [1/101 - 200/10201, 10/101 - 20/10201]
    #      = [-99/10201, 990/10201] = [-0.0097049, 0.0970493]; now g1' . g1 < 0, but j = 1 is i.
    #  g2: vs g3: 1 - 0.01 = 0.99 >= 0 -> no; vs g1: -1 -> [-1, .1] + [1, 0] = [0, 0.1]
    #  g3: vs g2: 0.99 -> no; vs g1: -1 -> [-1, -.1] + [1, 0] = [0, -0.1]
    #  sum [-0.0097049, 0.0970493]
    G = tf.constant([[1.0, 0.0], [-1.0, 0.1], [-1.0, -0.1]])
    np.testing.assert_allclose(gc.pcgrad_with_order(G, [1, 2, 0]).numpy(), [-0.0097049, 0.0970493],
                               atol=1e-6)


def test_pcgrad_order_is_reproducible_per_seed_and_varies_across_seeds():
    G = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    step = tf.function(lambda seed: gc.pcgrad(G, seed))
    seed = tf.constant([42, 5], tf.int64)
    first = step(seed).numpy()
    np.testing.assert_array_equal(step(seed).numpy(), first)
    np.testing.assert_allclose(first, gc.pcgrad_with_order(G, gc.pcgrad_order(3, seed)).numpy())
    orders = {tuple(gc.pcgrad_order(3, tf.constant([42, s], tf.int64)).numpy()) for s in range(30)}
    assert len(orders) > 1 and all(sorted(o) == [0, 1, 2] for o in orders)
    results = {tuple(np.round(step(tf.constant([42, s], tf.int64)).numpy(), 6)) for s in range(30)}
    assert len(results) > 1


def test_pcgrad_ignores_a_zero_gradient():
    # g2 = 0: nothing to project on (no 0/0); the sum is g1 + g3 = [1, 1]
    G = tf.constant([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    result = gc.pcgrad_with_order(G, [1, 0, 2]).numpy()
    np.testing.assert_allclose(result, [1.0, 1.0])


def test_pcgrad_rejects_bad_order_and_seed():
    with pytest.raises(ValueError, match="order must be a permutation of 0..1"):
        gc.pcgrad_with_order(PAIR, [0, 0])
    with pytest.raises(ValueError, match="seed must be an int32/int64 tensor of shape \\[2\\]"):
        gc.pcgrad(PAIR, tf.constant([1.0, 2.0]))


# -- MGDA ------------------------------------------------------------------
def test_mgda_on_orthogonal_gradients():
    # g1 = [1, 0], g2 = [0, 2]: ||a g1 + (1-a) g2||^2 = a^2 + 4 (1-a)^2, minimal at 2a = 8(1-a),
    # a = 0.8 (Algorithm 1: (g22 - g12) / (g11 - 2 g12 + g22) = 4 / 5); point [0.8, 0.4],
    # whose dot product with each gradient is 0.8.
    G = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(gc.mgda_weights(tf.matmul(G, G, transpose_b=True)).numpy(),
                               [0.8, 0.2], atol=1e-7)
    result = gc.mgda(G).numpy()
    np.testing.assert_allclose(result, [0.8, 0.4], atol=1e-7)
    np.testing.assert_allclose(G.numpy() @ result, [0.8, 0.8], atol=1e-6)


@pytest.mark.parametrize("k", [2, 3])
def test_mgda_of_identical_gradients_is_that_gradient(k):
    G = tf.constant([[1.0, -2.0, 0.5]] * k)
    np.testing.assert_allclose(gc.mgda(G).numpy(), [1.0, -2.0, 0.5], atol=1e-6)


def test_mgda_three_tasks_by_hand():
    # g1 = [1,0], g2 = [0,2], g3 = [3,3]: the pair's min-norm point u = [0.8, 0.4] (above) has
    # u.u = 0.8 <= u.g3 = 2.4 + 1.2 = 3.6, so it is optimal over all three: alpha = (0.8, 0.2, 0).
    G = tf.constant([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(gc.mgda_weights(tf.matmul(G, G, transpose_b=True)).numpy(),
                               [0.8, 0.2, 0.0], atol=1e-7)
    # g1, g2, g3 the unit vectors of R^3: by symmetry alpha = 1/3 each, point [1/3, 1/3, 1/3]
    np.testing.assert_allclose(gc.mgda(tf.eye(3)).numpy(), [1 / 3] * 3, atol=1e-7)


def test_mgda_three_tasks_matches_a_brute_force_grid():
    G = np.array([[1.0, 0.2, -0.3], [-0.4, 1.0, 0.1], [-0.5, -0.6, 0.8]])
    gram = G @ G.T
    grid = _simplex_grid(3, 400)
    values = np.einsum("nk,kl,nl->n", grid, gram, grid)
    alpha = gc.mgda_weights(tf.constant(gram)).numpy()
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
        alpha = gc.mgda_weights(tf.constant(gram)).numpy()
        assert alpha.min() >= 0 and abs(alpha.sum() - 1) < 1e-12
        assert (gram @ alpha).min() >= alpha @ gram @ alpha - 1e-10 * np.trace(gram)


# -- CAGrad ----------------------------------------------------------------
def test_cagrad_with_c_zero_is_the_mean():
    np.testing.assert_array_equal(gc.cagrad(PAIR, 0.0).numpy(),
                                  np.mean([G1, G2], axis=0, dtype=np.float32))


def test_cagrad_symmetric_pair_by_hand():
    # g1 = [2, 1], g2 = [-2, 1] (g1.g2 = -3: conflicting), g0 = [0, 1], ||g0|| = 1, phi = c = 0.5.
    # u = w g1 + (1-w) g2 = [4w - 2, 1]; g0.u = 1, so F(w) = 1 + 0.5 sqrt((4w-2)^2 + 1), minimal at
    # w = 1/2, u = g0. d = g0 + phi u/||u|| = [0, 1.5]; / (1 + c^2) = 1.25 -> [0, 1.2].
    G = tf.constant([[2.0, 1.0], [-2.0, 1.0]])
    np.testing.assert_allclose(gc.cagrad_weights(tf.matmul(G, G, transpose_b=True), 0.5).numpy(),
                               [0.5, 0.5], atol=1e-7)
    result = gc.cagrad(G, 0.5).numpy()
    np.testing.assert_allclose(result, [0.0, 1.2], atol=1e-6)
    # worst-task improvement: min(g_i . d) = 1.2 > min(g_i . g0) = 1
    assert (G.numpy() @ result).min() > (G.numpy() @ G.numpy().mean(0)).min()


def test_cagrad_improves_the_worst_task_over_the_mean():
    # g1 = [1, 0], g2 = [-2, 0.1]: mean [-0.5, 0.05] has g1 . mean = -0.5 < 0
    G = np.array([[1.0, 0.0], [-2.0, 0.1]])
    mean_worst = (G @ G.mean(0)).min()
    for c in (0.2, 0.5, 0.9):
        result = gc.cagrad(tf.constant(G), c).numpy()
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
        w = gc.cagrad_weights(gram, c)
        grid = _simplex_grid(k, steps)
        best = gc.cagrad_objective(grid, gram, c).numpy().min()
        assert float(gc.cagrad_objective(w[None], gram, c)[0]) <= best + 1e-12
    if vectors is DEGENERATE:
        np.testing.assert_allclose(gc.cagrad_weights(gram, 0.8).numpy(), [2 / 3, 1 / 3, 0],
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
        d = gc.cagrad(tf.constant(G), c).numpy() * (1 + c * c)
        g0 = G.mean(0)
        phi = c * np.linalg.norm(g0)
        assert np.linalg.norm(d - g0) <= phi * (1 + 1e-9)
        scale = np.mean(np.diag(gram))
        w = gc.cagrad_weights(tf.constant(gram), c)
        dual = float(gc.cagrad_objective(w[None], tf.constant(gram), c)[0]) * scale
        assert (G @ d).min() == pytest.approx(dual, abs=1e-7 * scale)


def test_mgda_and_cagrad_are_scale_free():
    G = np.array([[1.0, 0.3, -0.2], [-0.8, 0.5, 0.1], [0.2, -0.9, 0.4]])
    for fn in (gc.mgda, lambda G: gc.cagrad(G, 0.5)):
        np.testing.assert_allclose(fn(tf.constant(G * 1e-6)).numpy(),
                                   fn(tf.constant(G)).numpy() * 1e-6, rtol=1e-9, atol=0)


# -- dispatch, cosine, flatten ---------------------------------------------
def test_combine_dispatches_and_rejects_unknown_methods():
    np.testing.assert_allclose(gc.combine("sum", PAIR).numpy(), [0.5, -0.2, 0.8, 1.0], atol=1e-7)
    np.testing.assert_allclose(gc.combine("pcgrad", PAIR, seed=tf.constant([1, 2])).numpy(),
                               gc.pcgrad_with_order(PAIR, [0, 1]).numpy())
    np.testing.assert_allclose(gc.combine("mgda", PAIR).numpy(), gc.mgda(PAIR).numpy())
    np.testing.assert_allclose(gc.combine("cagrad", PAIR, cagrad_c=0.3).numpy(),
                               gc.cagrad(PAIR, 0.3).numpy())
    with pytest.raises(ValueError, match="unknown combination method 'adam'.*sum, pcgrad, cagrad, "
                                         "mgda, mgda_ub"):
        gc.combine("adam", PAIR)
    with pytest.raises(ValueError, match="mgda_weights"):
        gc.combine("mgda_ub", PAIR)
    with pytest.raises(ValueError, match="seed is required"):
        gc.combine("pcgrad", PAIR)
    with pytest.raises(ValueError, match="cagrad_c"):
        gc.combine("cagrad", PAIR, cagrad_c=-1.0)
    with pytest.raises(ValueError, match="G must be a \\[K, P\\] matrix"):
        gc.combine("sum", tf.zeros([3]))


def test_every_method_runs_in_a_tf_function():
    @tf.function
    def run(G, seed):
        return [gc.combine(m, G, seed=seed) for m in gc.METHODS if m != "mgda_ub"]

    G = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    eager = [gc.combine(m, G, seed=tf.constant([3, 4])) for m in gc.METHODS if m != "mgda_ub"]
    for traced, expected in zip(run(G, tf.constant([3, 4])), eager):
        np.testing.assert_allclose(traced.numpy(), expected.numpy(), atol=1e-6)


def test_cosine_matrix():
    # [3, 4] . [4, 3] = 24, norms 5 and 5 -> 0.96; [3, 4] . [-3, -4] -> -1; a zero row -> 0
    G = tf.constant([[3.0, 4.0], [4.0, 3.0], [-3.0, -4.0], [0.0, 0.0]])
    np.testing.assert_allclose(gc.cosine_matrix(G).numpy(), [
        [1.0, 0.96, -1.0, 0.0],
        [0.96, 1.0, -0.96, 0.0],
        [-1.0, -0.96, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0]], atol=1e-6)


def test_flatten_unflatten_round_trip():
    kernel = tf.reshape(tf.range(12, dtype=tf.float32), [2, 2, 3])  # K=2, variable [2, 3]
    bias = tf.constant([[100.0, 101.0], [102.0, 103.0]])  # K=2, variable [2]
    G = gc.flatten([kernel, bias])
    np.testing.assert_array_equal(G.numpy(), [[0, 1, 2, 3, 4, 5, 100, 101],
                                              [6, 7, 8, 9, 10, 11, 102, 103]])
    for k in range(2):
        pieces = gc.unflatten(G[k], [(2, 3), tf.TensorShape([2])])
        np.testing.assert_array_equal(pieces[0].numpy(), kernel[k].numpy())
        np.testing.assert_array_equal(pieces[1].numpy(), bias[k].numpy())
    with pytest.raises(ValueError, match="vector has 8 elements, shapes need 9"):
        gc.unflatten(G[0], [(3, 3)])
    with pytest.raises(ValueError, match="grads_per_var\\[1\\] has 3 task rows"):
        gc.flatten([kernel, tf.zeros([3, 2])])
    with pytest.raises(ValueError, match="grads_per_var\\[0\\] is None"):
        gc.flatten([None])
