"""IMTL-G, the gradient half of impartial multi-task learning (Liu et al., ICLR 2021).

IMTL, the paper's full method, is IMTL-G on the gradients plus IMTL-L on the losses:
``--weighting imtl_l --combine imtl_g``.
"""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_gram
from tfx_mtl.models.combination.simplex import normalised

# A task whose squared gradient norm is at most this (in units of the mean squared norm) has
# no gradient: no direction to project on.
ZERO = 1e-12
# The IMTL-G system counts as singular below this smallest-to-largest singular value ratio.
SINGULAR = 1e-10


def imtl_g_weights(gram: tf.Tensor) -> tf.Tensor:
    """IMTL-G's alpha [K] (summing to 1) from the Gram matrix M = G G^T alone.

    Liu et al. (ICLR 2021): the update g = sum_k alpha_k g_k has the same
    projection onto every unit gradient u_k = g_k / ||g_k||; with the rows D_k = g_1 - g_k
    and U_k = u_1 - u_k (k >= 2) they solve alpha_{2..K} = g_1 U^T (D U^T)^-1 and
    alpha_1 = 1 - sum. In Gram entries (n_k = ||g_k|| = sqrt(M_kk)), g . u_k = c for all k
    and 1^T alpha = 1 are the bordered system [M, -n; 1^T, 0] [alpha; c] = [0; 1], solved
    here in float64 (units of the mean squared norm): the paper's numbers wherever its
    D U^T is regular (the test checks them against its formula on G), symmetric in the
    tasks (no task is the reference).

    Degenerate cases (the paper leaves them undefined), defined here:
    - a task with a zero gradient (e.g. no labels in the batch) gets alpha_k = 0 and the
      other tasks are IMTL-G among themselves (the paper's formula would give it all
      the weight at K = 2: a zero update);
    - a singular system (e.g. two gradients pointing the same way: every alpha equalises
      the projections), or no non-zero gradient: uniform weights over the non-zero tasks
      (1/K each if all are zero).
    Scale: alpha sums to 1, so the update is on the scale of one gradient (the mean's).
    """
    gram = as_gram(gram)
    k = gram.shape[0]
    if k == 1:
        return tf.ones([1], gram.dtype)
    m = normalised(tf.stop_gradient(gram))
    diag = tf.linalg.diag_part(m)
    active = diag > ZERO
    on = tf.cast(active, tf.float64)
    n = tf.sqrt(tf.maximum(diag, 0.0)) * on
    # Rows of a zero task: alpha_k = 0 (identity row, column not used by the others).
    rows = tf.where(active[:, None], tf.concat([m, -n[:, None]], axis=1),
                    tf.concat([tf.eye(k, dtype=tf.float64), tf.zeros([k, 1], tf.float64)], 1))
    system = tf.concat([rows, tf.concat([on, [0.0]], axis=0)[None]], axis=0)
    values = tf.linalg.svd(system, compute_uv=False)
    singular = ~(values[-1] > SINGULAR * values[0]) | ~tf.reduce_any(active)
    safe = tf.where(singular, tf.eye(k + 1, dtype=tf.float64), system)
    rhs = tf.concat([tf.zeros([k], tf.float64), [1.0]], axis=0)
    solved = tf.linalg.solve(safe, rhs[:, None])[:k, 0]
    uniform = tf.where(tf.reduce_any(active), on / tf.reduce_sum(on),
                       tf.fill([k], tf.constant(1.0 / k, tf.float64)))
    return tf.cast(tf.where(singular, uniform, solved), gram.dtype)


@REGISTRY.register
class IMTLG(GradientCombination):
    """IMTL-G (Liu et al., ICLR 2021): :func:`imtl_g_weights`, the update
    sum_k alpha_k g_k (``combine`` is the base class's G^T alpha).

    Deviations: computed from the Gram matrix in a symmetric form (equal to the paper's
    where its matrix is regular); zero gradients and singular systems defined as stated
    there. The paper computes it on the gradients of the shared feature z (here:
    ``surgery_level: representation``; the default is the parameters) and pairs it with
    IMTL-L: ``--weighting imtl_l --combine imtl_g`` is IMTL."""

    name = "imtl_g"

    def task_weights(self, gram, seed=None):
        return imtl_g_weights(gram)
