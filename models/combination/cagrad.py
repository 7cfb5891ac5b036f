"""CAGrad, conflict-averse gradient descent (Liu et al., NeurIPS 2021)."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_gram, as_matrix
from tfx_mtl.models.combination.simplex import best, face_solutions, normalised, quadratic


def _check_c(c) -> None:
    if tf.is_tensor(c):
        return
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not c >= 0:
        raise ValueError(f"c must be a number >= 0, got {c!r}")


def _objective(w: tf.Tensor, m: tf.Tensor, c) -> tf.Tensor:
    b = tf.fill([m.shape[0]], tf.constant(1.0 / m.shape[0], tf.float64))
    phi = tf.cast(c, tf.float64) * tf.sqrt(tf.maximum(tf.reduce_mean(m), 0.0))
    return (tf.linalg.matvec(w, tf.linalg.matvec(m, b))
            + phi * tf.sqrt(tf.maximum(quadratic(w, m), 0.0)))


def cagrad_objective(w: tf.Tensor, gram: tf.Tensor, c: float) -> tf.Tensor:
    """CAGrad's dual objective [N] for weight rows w [N, K], in normalised units.

    F(w) = w^T M b + phi sqrt(w^T M w) = g_w . g0 + phi ||g_w||, b = 1/K,
    phi = c sqrt(mean(M)), with M = G G^T / mean(diag(G G^T)) (float64), as
    minimised by :func:`cagrad_weights`; exposed so tests can score a grid.
    """
    return _objective(tf.cast(w, tf.float64), normalised(as_gram(gram)), c)


def cagrad_weights(gram: tf.Tensor, c: float = 0.5) -> tf.Tensor:
    """CAGrad's w [K] on the simplex minimising :func:`cagrad_objective` (exactly).

    Liu et al. (NeurIPS 2021) solve this dual with scipy; here, exactly, by
    face enumeration. With a = M b, on a face S with M_SS regular the
    stationarity condition a_S + phi M_SS w / ||G^T w|| = lambda 1 and
    1^T w = 1 give, with x = M_SS^-1 1, y = M_SS^-1 a_S and
    D = (1^T y)^2 - (1^T x)(a^T y - phi^2) > 0,
        w = ((1^T y + sqrt D) / (1^T x) x - y) / sqrt D.
    The non-smooth optimum G^T w = 0 is covered by adding MGDA's face
    candidates. Accuracy: the duality gap F(w) - min_i g_i . d is ~1e-10 of
    the mean squared gradient norm. This is the paper's objective exactly:
    the authors' code adds 1e-8 under the square root only to keep scipy's
    numerical gradient finite at g_w = 0 (it also makes their solution depend
    on the gradients' scale); scaling all gradients by s here scales the
    result by s.
    """
    _check_c(c)
    gram = as_gram(gram)
    k = gram.shape[0]
    if k == 1:
        return tf.ones([1], gram.dtype)
    m = normalised(tf.stop_gradient(gram))
    a = tf.reduce_mean(m, axis=1)  # M b with b = 1/K
    phi = tf.cast(c, tf.float64) * tf.sqrt(tf.maximum(tf.reduce_mean(m), 0.0))
    masks, x, y = face_solutions(m, a)
    sx, sy = tf.reduce_sum(x, axis=1), tf.reduce_sum(y, axis=1)
    discriminant = sy * sy - sx * (tf.linalg.matvec(y, a) - phi * phi)
    root = tf.sqrt(tf.maximum(discriminant, 0.0))
    stationary = tf.math.divide_no_nan(
        tf.math.divide_no_nan(sy + root, sx)[:, None] * x - y, root[:, None])
    min_norm = tf.math.divide_no_nan(x, sx[:, None])
    candidates = tf.concat([stationary, min_norm], axis=0)
    valid = tf.concat([discriminant > 0, tf.ones_like(discriminant, tf.bool)], axis=0)
    w = best(candidates, valid, lambda w: _objective(w, m, c))
    return tf.cast(w, gram.dtype)


def cagrad(G: tf.Tensor, c: float = 0.5) -> tf.Tensor:
    """CAGrad (Liu et al., NeurIPS 2021), as in the authors' code with rescale=1.

    g0 = mean of the rows, phi = c ||g0|| (= c sqrt(mean(G G^T))), w from
    :func:`cagrad_weights`, g_w = sum_k w_k g_k; returns
    (g0 + phi / ||g_w|| g_w) / (1 + c^2): the direction within distance phi of
    g0 that maximises the worst task's improvement min_i g_i . d, rescaled.
    c = 0 gives exactly the mean. (The authors divide by ||g_w|| + 1e-8;
    here a zero g_w adds nothing, keeping the result scale-free.) Caveat, as
    in the paper: if the optimum is g_w = 0 (0 in the hull, i.e. linearly
    dependent task gradients, which generic gradients with P >= K never are)
    the direction g_w / ||g_w|| is undefined and the formula is not optimal.
    """
    _check_c(c)
    G = as_matrix(G)
    if not tf.is_tensor(c) and c == 0:
        return tf.reduce_mean(G, axis=0)
    return tf.linalg.matvec(G, cagrad_coefficients(tf.matmul(G, G, transpose_b=True), c),
                            transpose_a=True)


def cagrad_coefficients(gram: tf.Tensor, c: float = 0.5) -> tf.Tensor:
    """[K] beta with :func:`cagrad` = G^T beta, from G G^T alone: g0 = G^T 1/K and
    g_w = G^T w, so beta = (1/K + phi / sqrt(w^T G G^T w) w) / (1 + c^2)."""
    _check_c(c)
    gram = as_gram(gram)
    k = gram.shape[0]
    mean = tf.fill([k], tf.constant(1.0 / k, gram.dtype))
    if not tf.is_tensor(c) and c == 0:
        return mean
    w = cagrad_weights(gram, c)
    norm = tf.sqrt(tf.maximum(tf.reduce_sum(w * tf.linalg.matvec(gram, w)), 0.0))
    c = tf.cast(c, gram.dtype)
    phi = c * tf.sqrt(tf.maximum(tf.reduce_mean(gram), 0.0))
    return (mean + tf.math.divide_no_nan(phi, norm) * w) / (1.0 + c * c)


@dataclasses.dataclass(frozen=True)
class CAGradParams:
    c: float = registry.number(0.5, minimum=0)  # radius of the ball around the mean gradient


@REGISTRY.register
class CAGrad(GradientCombination):
    """CAGrad (Liu et al., NeurIPS 2021) on the shared parameters: :func:`cagrad`, with
    the deviations stated there (an exact dual solution; no 1e-8 in the norm). Result on
    the mean's scale. Gram-based (:func:`cagrad_coefficients`), so it also runs on the
    shared representation's gradients (``surgery_level: representation``), which the
    paper does not do."""

    name = "cagrad"
    Params = CAGradParams

    def combine(self, G, seed=None):
        return cagrad(G, self.params.c)

    def task_weights(self, gram, seed=None):
        return cagrad_coefficients(gram, self.params.c)
