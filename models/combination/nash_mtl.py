"""Nash-MTL, multi-task learning as a bargaining game (Navon et al., ICML 2022)."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_gram
from tfx_mtl.models.combination.simplex import normalised

# Ridge (in units of the mean squared gradient norm) that keeps a solution in existence when
# M is singular with a positive null vector (e.g. g_1 = -g_2: then alpha ~ 1/sqrt(RIDGE)
# and the update G^T alpha is ~0); moves a regular problem's alpha by ~RIDGE / lambda_min.
RIDGE = 1e-8
# A task whose squared gradient norm is at most this (units of the mean squared norm) has none.
ZERO = 1e-12
# Newton stops early at this bargaining residual max_k |alpha_k (M alpha)_k - 1|: typical
# problems (K <= 8, P = 1000, random or conflicting) need 2-6 steps; near-singular ones
# stall at their rounding floor (~1e-8) and take every step.
SOLVED = 1e-10


def _bargaining(m: tf.Tensor, iterations: int) -> tf.Tensor:
    """alpha > 0 with M alpha = 1 / alpha: Newton's method on the strictly convex
    f(a) = a^T M a / 2 - sum_k log a_k (gradient M a - 1/a, so its minimiser is the
    solution; Hessian M + diag(1/a^2)), each step d cut to stay inside a > 0 by the
    fraction-to-boundary rule a += min(1, 0.99 min_{d_k<0} -a_k/d_k) d. Start: the
    best multiple of a_k = 1/sqrt(M_kk) (the solution when the gradients are orthogonal).
    At most ``iterations`` steps, fewer once max_k |a_k (M a)_k - 1| <= SOLVED (measured
    in the test; see :func:`nash_mtl_weights`)."""
    k = m.shape[0]
    m = m + RIDGE * tf.eye(k, dtype=tf.float64)
    b = tf.math.rsqrt(tf.linalg.diag_part(m))
    start = b * tf.sqrt(k / tf.reduce_sum(tf.linalg.matvec(m, b) * b))

    def unsolved(i, a):
        residual = tf.reduce_max(tf.abs(a * tf.linalg.matvec(m, a) - 1.0))
        return (i < iterations) & (residual > SOLVED)

    def newton(i, a):
        grad = tf.linalg.matvec(m, a) - 1.0 / a
        step = -tf.linalg.solve(m + tf.linalg.diag(1.0 / (a * a)), grad[:, None])[:, 0]
        boundary = tf.reduce_min(tf.where(step < 0, -a / tf.minimum(step, -1e-300),
                                          tf.constant(float("inf"), tf.float64)))
        return i + 1, a + tf.minimum(tf.constant(1.0, tf.float64), 0.99 * boundary) * step

    return tf.while_loop(unsolved, newton, (tf.constant(0), start))[1]


def nash_mtl_weights(gram: tf.Tensor, iterations: int = 20, max_norm: float = 1.0
                     ) -> tf.Tensor:
    """Nash-MTL's alpha [K] from the Gram matrix M = G G^T alone.

    Navon et al. (ICML 2022): the Nash bargaining solution is the update
    G^T alpha with alpha > 0 and (G G^T) alpha = 1 / alpha (element-wise), i.e. every
    task's share alpha_k g_k . (G^T alpha) = 1. Solved in float64 by :func:`_bargaining`
    on M / s (s = mean squared gradient norm; then alpha = alpha' / sqrt(s)), with
    at most ``iterations`` Newton steps instead of the paper's CCP with cvxpy: 20 steps reach
    the solution to rounding (max_k |alpha_k (M alpha)_k - 1| < 1e-7, float64) on
    random K <= 10 problems with strong conflicts, duplicates, gradient norms spread over
    e^+-4 and K > P, alpha within 1e-6 (relative) of a 300-step damped-Newton reference;
    5 steps do not (the test measures both).

    Scale: at the solution ||G^T alpha||^2 = alpha^T M alpha = K, whatever the gradients'
    scale; then, as the authors' code clips the shared parameters' gradient norm to
    ``max_norm`` (1.0; 0 = no clipping), alpha is scaled by min(1, max_norm / sqrt(K)). So the
    update's norm is fixed (neither the sum's nor the mean's scale) -- like a normalised
    gradient; the learning rate sets the step length. A zero gradient gets alpha_k = 0
    (the others bargain among themselves); all gradients zero: alpha = 1.
    """
    gram = as_gram(gram)
    k = gram.shape[0]
    raw = tf.cast(tf.stop_gradient(gram), tf.float64)
    diag = tf.linalg.diag_part(raw)
    scale = tf.reduce_mean(tf.where(tf.math.is_finite(diag), diag, tf.zeros_like(diag)))
    m = normalised(raw)
    # A task without gradient has no utility to bargain with: alpha_k = 0, the rest solved
    # among themselves (its row and column replaced by the identity's).
    active = tf.linalg.diag_part(m) > ZERO
    both = active[:, None] & active[None, :]
    alpha = _bargaining(tf.where(both, m, tf.eye(k, dtype=tf.float64)), iterations)
    alpha = tf.where(active, alpha, tf.zeros_like(alpha))
    if max_norm > 0:
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(tf.linalg.matvec(m, alpha) * alpha), 0.0))
        alpha *= tf.where(norm > max_norm, max_norm / tf.maximum(norm, max_norm),
                          tf.constant(1.0, tf.float64))
    alpha = tf.where(scale > 0, alpha / tf.sqrt(tf.maximum(scale, 1e-300)),
                     tf.ones([k], tf.float64))
    return tf.cast(alpha, gram.dtype)


@dataclasses.dataclass(frozen=True)
class NashMTLParams:
    iterations: int = registry.integer(20, minimum=1)  # Newton steps of the bargaining solve
    max_norm: float = registry.number(1.0, minimum=0)  # clip the update's norm to this; 0 = never


@REGISTRY.register
class NashMTL(GradientCombination):
    """Nash-MTL (Navon et al., ICML 2022): :func:`nash_mtl_weights`, update G^T alpha.

    Deviations from the paper / the authors' code: the bargaining equation is solved to
    convergence by Newton's method in TensorFlow inside the step (the authors: up to 20
    concave-convex iterations with cvxpy/ECOS, warm-started from the last step's alpha,
    stopped at residual 1e-3); the weights are recomputed every step (their
    ``update_weights_every`` defaults to 1 too); their ``max_norm`` clipping of the shared
    gradient is applied through alpha, from the Gram matrix (so at representation level it
    clips the representation's update); a tiny ridge (``RIDGE``) makes singular M solvable;
    the task-specific parameters get their own gradients unweighted at parameter level (the
    authors back-propagate sum_k alpha_k L_k into them)."""

    name = "nash_mtl"
    Params = NashMTLParams

    def task_weights(self, gram, seed=None):
        return nash_mtl_weights(gram, self.params.iterations, self.params.max_norm)
