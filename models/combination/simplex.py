"""Exact solvers on the faces of the simplex, shared by MGDA and CAGrad.

MGDA's min-norm problem and CAGrad's dual are solved exactly rather than by
the papers' iterative solvers: K <= 10, so enumerating the 2^K - 1 faces of
the simplex costs at most 1023 batched 10x10 solves in float64, and the best
candidate is optimal to rounding (the tests check the optimality
certificates). Sener & Koltun's Frank-Wolfe from uniform weights, measured on
random K=3..10 problems, was still up to ~1.7e-2 (in units of the mean squared
gradient norm) above the minimum after 25 iterations and ~4e-3 after 250.
"""
from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

# Ridge added to each face's Gram block: keeps every batched solve regular
# (duplicate gradients, K > P) while moving a regular face's solution by
# ~1e-12 relative; candidates are scored on the exact objective anyway (best).
RIDGE = 1e-12


def faces(k: int) -> np.ndarray:
    """[2^k - 1, k] 0/1 masks of all non-empty task subsets, largest first."""
    masks = [m for m in itertools.product((1.0, 0.0), repeat=k) if any(m)]
    return np.array(sorted(masks, key=lambda m: -sum(m)), dtype=np.float64)


def normalised(gram: tf.Tensor) -> tf.Tensor:
    """float64 symmetric Gram scaled to mean diagonal 1 (0 if all gradients are 0).

    The weights are scale-free, so solving in these units makes the
    tolerances relative; non-finite entries become 0 so a NaN gradient
    propagates through the combination instead of failing the solve.
    """
    m = tf.cast(gram, tf.float64)
    m = 0.5 * (m + tf.transpose(m))
    m = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
    return tf.math.divide_no_nan(m, tf.reduce_mean(tf.linalg.diag_part(m)))


def face_solutions(m: tf.Tensor, rhs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """For every face S: x = M_SS^-1 1_S and y = M_SS^-1 rhs_S (zero off S), as [N, K]."""
    k = m.shape[0]
    masks = tf.constant(faces(k))
    blocks = masks[:, :, None] * masks[:, None, :] * m[None]
    blocks += tf.linalg.diag(masks * RIDGE + (1.0 - masks))
    solution = tf.linalg.solve(blocks, tf.stack([masks, masks * rhs[None]], axis=-1))
    return masks, solution[..., 0], solution[..., 1]


def best(candidates: tf.Tensor, valid: tf.Tensor, objective) -> tf.Tensor:
    """The candidate (row) with the smallest objective after clipping it onto the simplex.

    Clipped candidates are genuine points of the simplex scored on the exact
    objective, so an infeasible or inaccurate candidate can lose but never
    win wrongly; the optimum is among them.
    """
    finite = tf.reduce_all(tf.math.is_finite(candidates), axis=1)
    candidates = tf.maximum(tf.where(finite[:, None], candidates, tf.zeros_like(candidates)), 0.0)
    totals = tf.reduce_sum(candidates, axis=1, keepdims=True)
    candidates = tf.math.divide_no_nan(candidates, totals)
    valid = valid & finite & (totals[:, 0] > 0)
    scores = tf.where(valid, objective(candidates), tf.constant(np.inf, tf.float64))
    return tf.gather(candidates, tf.argmin(scores))


def quadratic(w: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """w_n^T M w_n for each row of w [N, K]."""
    return tf.reduce_sum(tf.matmul(w, m) * w, axis=1)
