"""Aligned-MTL, independent component alignment (Senushkin et al., CVPR 2023)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_gram
from tfx_mtl.models.combination.simplex import normalised

# The authors drop eigenvalues <= lambda_max * K * eps, with eps torch's default float32
# machine epsilon (their gradients are float32; so are the step's here).
EPS = float(np.finfo(np.float32).eps)


def aligned_mtl_weights(gram: tf.Tensor) -> tf.Tensor:
    """Aligned-MTL's beta [K] from the Gram matrix M = G G^T = V Lambda V^T alone.

    Senushkin et al. (CVPR 2023), Algorithm 1: B = sqrt(lambda_min) V Lambda^-1/2 V^T makes
    the rows of B G orthogonal with equal norms sqrt(lambda_min) (condition number 1); the
    update is (B G)^T w = G^T (B w) with w = 1, as in the authors' code (``weights.sum``),
    so beta = B 1. Rank-deficient M, as the authors: eigenvalues <= lambda_max K eps
    (eps = float32 machine epsilon, ~1.2e-7) are dropped, B uses the rest and lambda_min
    is the smallest kept one; all gradients zero: beta = 1. Float64 eigendecomposition
    (units of the mean squared norm). Scale: the sum's (orthogonal gradients of equal
    norm give exactly their sum).
    """
    gram = as_gram(gram)
    k = gram.shape[0]
    m = normalised(tf.stop_gradient(gram))
    values, vectors = tf.linalg.eigh(m)
    keep = values > tf.reduce_max(values) * k * EPS
    kept = tf.where(keep, values, tf.ones_like(values))
    smallest = tf.reduce_min(tf.where(keep, values, tf.constant(np.inf, tf.float64)))
    scale = tf.where(keep, tf.sqrt(smallest / kept), tf.zeros_like(values))
    balance = tf.matmul(vectors * scale[None], vectors, transpose_b=True)
    beta = tf.where(tf.reduce_any(keep), tf.reduce_sum(balance, axis=1),
                    tf.ones([k], tf.float64))
    return tf.cast(beta, gram.dtype)


@REGISTRY.register
class AlignedMTL(GradientCombination):
    """Aligned-MTL (Senushkin et al., CVPR 2023): :func:`aligned_mtl_weights`, update
    beta^T G (the base class's ``combine``), the paper's ``scale_mode='min'``.

    Deviations: the eigendecomposition is of G G^T in float64 (the authors': float32
    ``symeig``); the task-specific parameters get their own gradients (the authors'
    default ``scale_decoder_grad=False`` too). The authors' Aligned-MTL-UB is this method
    with ``surgery_level: representation``."""

    name = "aligned_mtl"

    def task_weights(self, gram, seed=None):
        return aligned_mtl_weights(gram)
