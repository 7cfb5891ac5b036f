"""UPGrad, unconflicting projection of gradients (Quinton & Rey, 2024, "Jacobian Descent for
Multi-Objective Optimization", arXiv:2406.16232)."""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_gram
from tfx_mtl.models.combination.simplex import RIDGE, faces, normalised, quadratic


def dual_cone_weights(m: tf.Tensor) -> tf.Tensor:
    """W [K, K], row i = argmin_{v >= e_i} v^T M v (float64 M [K, K]): the weights of the
    projection of g_i onto the dual cone {x : G x >= 0}, G^T w_i (Quinton & Rey, Prop. 1),
    exactly.

    Enumerates the free sets F (where v_j > (e_i)_j): KKT gives (M v)_F = 0 with v = e_i
    off F, i.e. v_F = -M_FF^-1 M_{F,i} (one batched solve over the faces for all i), plus
    v = e_i itself. Every candidate is clipped to v >= e_i (a feasible point) and scored on
    v^T M v, so the optimum, being one of them, wins (like :func:`simplex.best`).
    """
    k = m.shape[0]
    masks = tf.constant(faces(k))
    blocks = masks[:, :, None] * masks[:, None, :] * m[None]
    blocks += tf.linalg.diag(masks * RIDGE + (1.0 - masks))
    free = tf.linalg.solve(blocks, -masks[:, :, None] * m[None])  # [N, K, i]
    units = tf.eye(k, dtype=tf.float64)
    rows = []
    for i in range(k):
        unit = units[i]
        candidates = tf.concat([free[:, :, i] + unit * (1.0 - masks), unit[None]], axis=0)
        finite = tf.reduce_all(tf.math.is_finite(candidates), axis=1, keepdims=True)
        candidates = tf.maximum(tf.where(finite, candidates, unit[None]), unit[None])
        rows.append(tf.gather(candidates, tf.argmin(quadratic(candidates, m))))
    return tf.stack(rows)


def upgrad_weights(gram: tf.Tensor) -> tf.Tensor:
    """UPGrad's beta [K] from the Gram matrix M = G G^T alone: the update beta^T G is the
    mean over i of the projection of g_i onto the dual cone {x : g_k . x >= 0 for all k},
    so beta = mean_i w_i with w_i from :func:`dual_cone_weights` (float64, units of the
    mean squared norm; weights are scale-free). Accuracy: the KKT conditions
    (w_i >= e_i, M w_i >= 0, complementarity) hold to ~1e-8 of the mean squared norm,
    ~1e-12 when M is regular (the test checks them, K = 3..8).
    Scale: the mean's (non-conflicting gradients give exactly their mean).
    """
    gram = as_gram(gram)
    k = gram.shape[0]
    if k == 1:
        return tf.ones([1], gram.dtype)
    m = normalised(tf.stop_gradient(gram))
    beta = tf.reduce_mean(dual_cone_weights(m), axis=0)
    return tf.cast(beta, gram.dtype)


@REGISTRY.register
class UPGrad(GradientCombination):
    """UPGrad (Quinton & Rey, 2024): :func:`upgrad_weights`, update beta^T G (the base
    class's ``combine``); with the mean as its preference (the paper's default).

    Deviations from torchjd (the authors' library): each of the K quadratic programs is
    solved exactly by enumerating its 2^K faces (K <= 10) instead of quadprog; the Gram
    matrix is neither regularised (torchjd adds 1e-4 to its normalised diagonal) nor
    needs to be: singular faces get a 1e-12 ridge and every candidate is scored on the
    exact objective."""

    name = "upgrad"

    def task_weights(self, gram, seed=None):
        return upgrad_weights(gram)
