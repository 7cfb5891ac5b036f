"""PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_gram, as_matrix


def pcgrad_with_order(G: tf.Tensor, order) -> tf.Tensor:
    """PCGrad (Yu et al., NeurIPS 2020, Algorithm 1) with an explicit task order.

    For each task i, g_i' starts at g_i and, for each other task j in
    ``order``, loses its component along the *original* g_j when
    g_i' . g_j < 0: g_i' -= (g_i' . g_j / ||g_j||^2) g_j. Returns sum_i g_i'.
    Rows are independent, so all i are processed at once per j; a zero g_j
    projects nothing.

    Every g_i' stays a combination of the original gradients, g_i' = sum_m
    C[i, m] g_m, so the projections run on the K x K coefficients C with the
    Gram matrix (g_i' . g_j = (C gram)[i, j]) and G is touched twice: once for
    the Gram matrix, once for the result (sum_i C[i, :]) G.
    """
    G = as_matrix(G)
    weights = pcgrad_weights(tf.matmul(G, G, transpose_b=True), order)
    return tf.linalg.matvec(G, weights, transpose_a=True)


def pcgrad_weights(gram: tf.Tensor, order) -> tf.Tensor:
    """[K] PCGrad's coefficients sum_i C[i, :] of the original gradients, from the Gram
    matrix G G^T alone (:func:`pcgrad_with_order` = G^T of these)."""
    gram = as_gram(gram)
    k = gram.shape[0]
    static = tf.get_static_value(order) if tf.is_tensor(order) else np.asarray(order)
    if static is not None and sorted(np.asarray(static).reshape(-1).tolist()) != list(range(k)):
        raise ValueError(f"order must be a permutation of 0..{k - 1}, got {static.tolist()}")
    order = tf.cast(tf.reshape(order, [k]), tf.int32)
    dtype = gram.dtype
    gram = tf.cast(gram, tf.float64)
    coefficients = tf.eye(k, dtype=tf.float64)
    tasks = tf.range(k, dtype=tf.int32)
    for position in range(k):
        j = order[position]
        dots = tf.linalg.matvec(coefficients, tf.gather(gram, j))  # [K]: g_i' . g_j
        step = tf.math.divide_no_nan(tf.minimum(dots, 0.0), tf.gather(tf.gather(gram, j), j))
        step = tf.where(tasks == j, tf.zeros_like(step), step)
        coefficients = coefficients - step[:, None] * tf.one_hot(j, k, dtype=tf.float64)[None, :]
    return tf.cast(tf.reduce_sum(coefficients, axis=0), dtype)


def pcgrad_order(k: int, seed: tf.Tensor) -> tf.Tensor:
    """The step's random task order: a stateless permutation of 0..k-1 from ``seed`` [2].

    Stateless, so every replica and a restarted run draw the same order for
    the same (run seed, step).
    """
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape != (2,):
        raise ValueError(f"seed must be an int32/int64 tensor of shape [2], "
                         f"got {seed.dtype.name} {seed.shape}")
    return tf.argsort(tf.random.stateless_uniform([k], seed=seed), stable=True)


def pcgrad(G: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """PCGrad with a fresh random order per step (the paper's), drawn from ``seed``."""
    G = as_matrix(G)
    return pcgrad_with_order(G, pcgrad_order(G.shape[0], seed))


@REGISTRY.register
class PCGrad(GradientCombination):
    """PCGrad (Yu et al., NeurIPS 2020) on the shared parameters, a fresh random task order
    per step drawn from (run seed, step). As in the paper, the projected gradients are
    summed (the sum's scale); task-specific parameters get their own task's gradient (see
    the step). Gram-based (:func:`pcgrad_weights`), so it also runs on the shared
    representation's gradients (``surgery_level: representation``), which the paper
    does not do."""

    name = "pcgrad"
    random = True

    def task_weights(self, gram, seed=None):
        self._check_seed(seed)
        gram = as_gram(gram)
        return pcgrad_weights(gram, pcgrad_order(gram.shape[0], seed))
