"""Aligned-MTL on numbers worked out by hand, the alignment it promises, and rank deficiency."""
import numpy as np
import tensorflow as tf
from combination_support import assert_scale_and_permutation_equivariant

from tfx_mtl.models import combination
from tfx_mtl.models.combination.aligned_mtl import aligned_mtl_weights


def _weights(G):
    G = np.asarray(G, dtype=np.float64)
    return aligned_mtl_weights(tf.constant(G @ G.T)).numpy()


def test_aligned_mtl_by_hand():
    # g1 = [1, 0], g2 = [0, 2]: M = diag(1, 4), V = I; B = sqrt(1) diag(1, 1/2);
    # beta = B 1 = (1, 1/2): both rescaled to norm 1 = sqrt(lambda_min), update [1, 1].
    G = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(_weights(G), [1.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(combination.combine("aligned_mtl", G).numpy(), [1.0, 1.0],
                               atol=1e-6)
    # g1 = [1, 2], g2 = [2.2, 0.4]: M = [[5, 3], [3, 5]], eigenvalues 8 on (1, 1)/sqrt2 and
    # 2 on (1, -1)/sqrt2; 1 lies on the first, so B 1 = sqrt(2/8) 1 = (1/2, 1/2);
    # update ([1, 2] + [2.2, 0.4]) / 2 = [1.6, 1.2].
    G = tf.constant([[1.0, 2.0], [2.2, 0.4]])
    np.testing.assert_allclose(_weights(G), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(combination.combine("aligned_mtl", G).numpy(), [1.6, 1.2],
                               atol=1e-6)


def test_aligned_mtl_aligns_the_gradients():
    # The rows of B G are orthogonal with equal norms sqrt(lambda_min): B M B = lambda_min I.
    G = np.random.default_rng(1).normal(size=(4, 7))
    m = G @ G.T
    values, vectors = np.linalg.eigh(m)
    B = np.sqrt(values[0]) * vectors @ np.diag(values ** -0.5) @ vectors.T
    np.testing.assert_allclose(B @ m @ B, values[0] * np.eye(4), atol=1e-9)
    np.testing.assert_allclose(_weights(G), B.sum(axis=1), atol=1e-9)
    assert_scale_and_permutation_equivariant(
        lambda m: aligned_mtl_weights(tf.constant(m)).numpy(), G)


def test_aligned_mtl_rank_deficient_as_the_authors():
    # g2 = 2 g1: M = [[1, 2], [2, 4]], eigenvalues 5 (on v = (1, 2)/sqrt5) and 0 (dropped);
    # B = v v^T, beta = v (v . 1) = (1, 2) 3/5 = (3/5, 6/5); update 3/5 g1 + 12/5 g1 = 3 g1.
    np.testing.assert_allclose(_weights([[1.0, 2.0], [2.0, 4.0]]), [0.6, 1.2], atol=1e-12)
    # A zero gradient: M = diag(1, 0) -> only e1 kept, beta = (1, 0); all zero: beta = 1.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [0.0, 0.0]]), [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(_weights(np.zeros((2, 2))), [1.0, 1.0], atol=1e-12)
    # The authors' tolerance: lambda_max K eps32 = 1 * 2 * 1.19e-7 = 2.4e-7 (in units of
    # lambda_max): M = diag(1, 1e-7) drops the second direction, beta = (1, 0);
    # M = diag(1, 1e-6) keeps it, beta = (sqrt(1e-6 / 1), 1) = (1e-3, 1).
    for small, expected in ((1e-7, [1.0, 0.0]), (1e-6, [1e-3, 1.0])):
        gram = tf.constant([[1.0, 0.0], [0.0, small]], tf.float64)
        np.testing.assert_allclose(aligned_mtl_weights(gram).numpy(), expected, rtol=1e-9)
