"""PCGrad on numbers worked out by hand."""
import numpy as np
import pytest
import tensorflow as tf
from combination_support import G1, G2

PAIR = tf.constant([G1, G2])

from tfx_mtl.models.combination.pcgrad import pcgrad, pcgrad_order, pcgrad_with_order

def test_pcgrad_projects_a_conflicting_pair_onto_each_others_normal_planes():
    # 9.65 / 6.98 = 1.3825215, 9.65 / 14.25 = 0.6771930
    # g1' = g1 + 1.3825215 g2 = [-0.0737822, 0.1060172, 0.9147564, 0.2349570]
    # g2' = g2 + 0.6771930 g1 = [-0.1456140, 0.1228070, 0.6385965, 0.0315789]
    # sum = [-0.2193963, 0.2288242, 1.5533529, 0.2665360]
    result = pcgrad_with_order(PAIR, [0, 1]).numpy()
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
    np.testing.assert_allclose(pcgrad_with_order(PAIR, [1, 0]).numpy(), result, atol=1e-6)


def test_pcgrad_leaves_non_conflicting_gradients_alone():
    # [1, 2] . [3, -1] = 1 >= 0: no projection, the plain sum [4, 1]
    G = tf.constant([[1.0, 2.0], [3.0, -1.0]])
    np.testing.assert_allclose(pcgrad(G, tf.constant([7, 3])).numpy(), [4.0, 1.0])


def test_pcgrad_with_three_tasks_depends_on_the_order():
    # g1 = [1, 0], g2 = [-1, 1], g3 = [0, -1]; dots g1.g2 = -1, g1.g3 = 0, g2.g3 = -1;
    # ||g1||^2 = 1, ||g2||^2 = 2, ||g3||^2 = 1.
    G = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    # order (1, 2, 3):
    #  g1: vs g2: -1 < 0 -> [1,0] + 1/2 [-1,1] = [.5,.5]; vs g3: -.5 < 0 -> + .5 [0,-1] = [.5, 0]
    #  g2: vs g1: -1 -> [-1,1] + [1,0] = [0,1]; vs g3: -1 -> [0,1] + [0,-1] = [0, 0]
    #  g3: vs g1: 0 -> no; vs g2: -1 -> [0,-1] + 1/2 [-1,1] = [-.5, -.5]
    #  sum [0, -0.5]
    np.testing.assert_allclose(pcgrad_with_order(G, [0, 1, 2]).numpy(), [0.0, -0.5], atol=1e-7)
    # order (3, 2, 1):
    #  g1: vs g3: 0 -> no; vs g2: -1 -> [.5, .5]
    #  g2: vs g3: -1 -> [-1,1] + [0,-1] = [-1, 0]; vs g1: -1 -> [-1,0] + [1,0] = [0, 0]
    #  g3: vs g2: -1 -> [-.5,-.5]; vs g1: -.5 -> [-.5,-.5] + .5 [1,0] = [0, -.5]
    #  sum [0.5, 0]
    np.testing.assert_allclose(pcgrad_with_order(G, tf.constant([2, 1, 0])).numpy(), [0.5, 0.0],
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
    np.testing.assert_allclose(pcgrad_with_order(G, [1, 2, 0]).numpy(), [-0.0097049, 0.0970493],
                               atol=1e-6)


def test_pcgrad_order_is_reproducible_per_seed_and_varies_across_seeds():
    G = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    step = tf.function(lambda seed: pcgrad(G, seed))
    seed = tf.constant([42, 5], tf.int64)
    first = step(seed).numpy()
    np.testing.assert_array_equal(step(seed).numpy(), first)
    np.testing.assert_allclose(first, pcgrad_with_order(G, pcgrad_order(3, seed)).numpy())
    orders = {tuple(pcgrad_order(3, tf.constant([42, s], tf.int64)).numpy()) for s in range(30)}
    assert len(orders) > 1 and all(sorted(o) == [0, 1, 2] for o in orders)
    results = {tuple(np.round(step(tf.constant([42, s], tf.int64)).numpy(), 6)) for s in range(30)}
    assert len(results) > 1


def test_pcgrad_ignores_a_zero_gradient():
    # g2 = 0: nothing to project on (no 0/0); the sum is g1 + g3 = [1, 1]
    G = tf.constant([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    result = pcgrad_with_order(G, [1, 0, 2]).numpy()
    np.testing.assert_allclose(result, [1.0, 1.0])


def test_pcgrad_rejects_bad_order_and_seed():
    with pytest.raises(ValueError, match="order must be a permutation of 0..1"):
        pcgrad_with_order(PAIR, [0, 0])
    with pytest.raises(ValueError, match="seed must be an int32/int64 tensor of shape \\[2\\]"):
        pcgrad(PAIR, tf.constant([1.0, 2.0]))


