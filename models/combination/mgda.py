"""MGDA, the multiple-gradient descent algorithm as multi-objective optimisation (Sener & Koltun,
NeurIPS 2018), at either surgery level (``mgda``), or forced to the shared representation's
gradients (``mgda_ub``, the paper's MGDA-UB)."""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.combination.base import (REGISTRY, REPRESENTATION, GradientCombination,
                                              as_gram, as_matrix)
from tfx_mtl.models.combination.simplex import best, face_solutions, normalised, quadratic


def _min_norm_2(g11, g12, g22) -> tf.Tensor:
    """Sener & Koltun (NeurIPS 2018) Algorithm 1: argmin_gamma ||gamma g1 + (1 - gamma) g2||^2."""
    gamma = tf.math.divide_no_nan(g22 - g12, g11 - 2.0 * g12 + g22)
    gamma = tf.where(g12 >= g11, tf.ones_like(gamma),
                     tf.where(g12 >= g22, tf.zeros_like(gamma), gamma))
    return tf.stack([gamma, 1.0 - gamma])


def mgda_weights(gram: tf.Tensor) -> tf.Tensor:
    """MGDA's task weights alpha [K] from the Gram matrix G G^T [K, K].

    Sener & Koltun (NeurIPS 2018), Sec. 3.1: the min-norm point of the convex
    hull of the gradients, min_{alpha in simplex} alpha^T (G G^T) alpha.
    K = 2: their closed form (Algorithm 1). K >= 3: exact, by face
    enumeration: on a face S the KKT conditions give
    alpha_S = M_SS^-1 1 / (1^T M_SS^-1 1); the min-norm point lies in the
    relative interior of some face, so the best feasible candidate is the
    optimum (when it is 0, its face is singular and the ridge limit of that
    formula is the null-space weighting, still recovered). Accuracy: the KKT
    gap alpha^T M alpha - min_r (M alpha)_r is ~1e-11 of the mean squared
    gradient norm (float64). No gradient flows through the weights.
    """
    gram = as_gram(gram)
    k = gram.shape[0]
    if k == 1:
        return tf.ones([1], gram.dtype)
    m = normalised(tf.stop_gradient(gram))
    if k == 2:
        alpha = _min_norm_2(m[0, 0], m[0, 1], m[1, 1])
    else:
        masks, x, _ = face_solutions(m, tf.zeros([k], tf.float64))
        candidates = tf.math.divide_no_nan(x, tf.reduce_sum(x, axis=1, keepdims=True))
        alpha = best(candidates, tf.ones([masks.shape[0]], tf.bool), lambda w: quadratic(w, m))
    return tf.cast(alpha, gram.dtype)


def mgda(G: tf.Tensor) -> tf.Tensor:
    """[P] sum_k alpha_k g_k with alpha = :func:`mgda_weights` (G G^T)."""
    G = as_matrix(G)
    alpha = mgda_weights(tf.matmul(G, G, transpose_b=True))
    return tf.linalg.matvec(G, alpha, transpose_a=True)


@REGISTRY.register
class MGDA(GradientCombination):
    """MGDA (Sener & Koltun, NeurIPS 2018, Sec. 3.1) on the shared parameters' gradients.

    Deviation: the min-norm weights are exact (:func:`mgda_weights`) instead of the
    paper's Frank-Wolfe iterations. As in the paper, the update is the min-norm
    point itself, a convex combination (about 1/K of the sum's scale). Gram-based, so
    ``surgery_level: representation`` runs it as MGDA-UB."""

    name = "mgda"

    def task_weights(self, gram, seed=None):
        return mgda_weights(gram)


@REGISTRY.register
class MGDAUB(MGDA):
    """MGDA-UB (Sener & Koltun, NeurIPS 2018, Sec. 3.3): MGDA on the gradients of the
    shared representation, an upper bound that needs only K backward passes through
    the task heads; the losses weighted by its weights are back-propagated once.

    Deviations: the weights are exact, as for ``mgda``; the representation is every
    tensor at the shared/task-specific boundary (:mod:`tfx_mtl.models.network`), not
    one Z; under MirroredStrategy the Gram matrix is summed over replicas (each holds
    its share of the batch's representation), so every replica uses the same weights.
    The same as ``--combine mgda --surgery-level representation``; kept as a name that
    forces that level whatever ``trainer.surgery_level`` says.
    """

    name = "mgda_ub"
    forced_level = REPRESENTATION
