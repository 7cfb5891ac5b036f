"""IMTL-G on numbers worked out by hand, against the paper's formula, and its degenerate cases."""
import numpy as np
import pytest
import tensorflow as tf
from combination_support import assert_scale_and_permutation_equivariant

from tfx_mtl.models import combination
from tfx_mtl.models.combination import base
from tfx_mtl.models.combination.imtl_g import imtl_g_weights


def _weights(G):
    G = np.asarray(G, dtype=np.float64)
    return imtl_g_weights(tf.constant(G @ G.T)).numpy()


def _paper(G):
    """Liu et al. (ICLR 2021), Sec. 3.2, on G itself: alpha_2..K = g_1 U^T (D U^T)^-1."""
    u = G / np.linalg.norm(G, axis=1, keepdims=True)
    D, U = G[0] - G[1:], u[0] - u[1:]
    rest = G[0] @ U.T @ np.linalg.inv(D @ U.T)
    return np.concatenate([[1.0 - rest.sum()], rest])


def test_imtl_g_by_hand():
    # g1 = [1, 0], g2 = [0, 2]: u1 = [1, 0], u2 = [0, 1]; D = g1 - g2 = [1, -2],
    # U = u1 - u2 = [1, -1]; g1 U^T = 1, D U^T = 1 + 2 = 3 -> alpha2 = 1/3, alpha1 = 2/3;
    # g = [2/3, 2/3]: g . u1 = g . u2 = 2/3.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [0.0, 2.0]]), [2 / 3, 1 / 3], atol=1e-12)
    # g1 = [1, 0, 0], g2 = [0, 2, 0], g3 = [0, 0, 4]: equal projections alpha1 = 2 alpha2
    # = 4 alpha3, summing to 1 -> (4, 2, 1) / 7; the update is [4/7, 4/7, 4/7].
    G = tf.constant([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 4.0]])
    np.testing.assert_allclose(combination.combine("imtl_g", G).numpy(), [4 / 7] * 3, atol=1e-6)
    # g1 = [1, 0], g2 = [-1, 1]: u2 = [-1, 1]/sqrt2; g = [a1 - a2, a2], g . u1 = a1 - a2,
    # g . u2 = (2 a2 - a1)/sqrt2; equal -> a1 (sqrt2 + 1) = a2 (2 + sqrt2), a1 = sqrt2 a2;
    # a1 + a2 = 1 -> a2 = 1/(1 + sqrt2) = sqrt2 - 1, a1 = 2 - sqrt2.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [-1.0, 1.0]]),
                               [2 - 2 ** 0.5, 2 ** 0.5 - 1], atol=1e-12)


@pytest.mark.parametrize("k,p", [(2, 2), (3, 3), (3, 2), (4, 6), (5, 20)])
def test_imtl_g_is_the_papers_formula_and_equalises_the_projections(k, p):
    G = np.random.default_rng(k * 10 + p).normal(size=(k, p))
    alpha = _weights(G)
    np.testing.assert_allclose(alpha, _paper(G), atol=1e-10)
    projections = (G / np.linalg.norm(G, axis=1, keepdims=True)) @ (G.T @ alpha)
    np.testing.assert_allclose(projections, projections[0], atol=1e-10)
    assert_scale_and_permutation_equivariant(lambda m: imtl_g_weights(tf.constant(m)).numpy(), G)


def test_imtl_g_degenerate_cases_are_defined():
    # A zero gradient gets no weight (the paper's formula: D U^T = g1 . u1 = 1, g1 U^T = 1,
    # alpha2 = 1 -- all the weight on the zero gradient, a zero update).
    np.testing.assert_allclose(_weights([[1.0, 0.0], [0.0, 0.0]]), [1.0, 0.0], atol=1e-12)
    # ... and the others are IMTL-G among themselves: [1, 0, 0], [0, 2, 0] -> (2/3, 1/3).
    np.testing.assert_allclose(_weights([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]),
                               [2 / 3, 0.0, 1 / 3], atol=1e-12)
    # Singular: the same direction (U = 0, every alpha equalises the projections) -> uniform.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [3.0, 0.0]]), [0.5, 0.5], atol=1e-12)
    # Opposite gradients: the paper's formula gives U = 2 u1, D = 2 g1 -> alpha2 = 2/4 too.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [-1.0, 0.0]]), [0.5, 0.5], atol=1e-12)
    # All gradients zero: uniform, no NaN.
    np.testing.assert_allclose(_weights(np.zeros((3, 2))), [1 / 3] * 3, atol=1e-12)


def test_a_gram_based_method_combines_as_g_transpose_its_weights():
    # The base class's default combine: G^T task_weights(G G^T).
    G = tf.constant([[1.0, 0.0], [-1.0, 1.0]])
    alpha = combination.make("imtl_g").task_weights(tf.matmul(G, G, transpose_b=True))
    np.testing.assert_allclose(combination.combine("imtl_g", G).numpy(),
                               tf.linalg.matvec(G, alpha, transpose_a=True).numpy(), atol=1e-7)
    neither = type("Neither", (base.GradientCombination,), {"name": "neither"})
    with pytest.raises(NotImplementedError, match="neither combine nor task_weights"):
        object.__new__(neither).combine(G)  # (not registered: skip its parameters)
