"""Combining per-task gradients of the shared parameters into one update.

Everything acts on ``G`` [K, P]: row k is task k's gradient of the shared
parameters, flattened (:func:`flatten` / :func:`unflatten` convert between
per-variable Jacobians and ``G``). K is small (1..10) and static, so loops over
tasks are Python loops. All functions are TensorFlow ops that run inside
``tf.function`` and in a ``MirroredStrategy`` replica context; the trainer
feeds them the *global* (all-reduced) ``G``, so every replica computes the
same update.

Scale of the result: ``sum`` and ``pcgrad`` return a *sum* over tasks;
``mgda`` returns a convex combination and ``cagrad`` a vector on the scale
of the *mean* (both as in their papers), i.e. about 1/K of the sum.

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
from typing import Sequence

import numpy as np
import tensorflow as tf

METHODS = ("sum", "pcgrad", "cagrad", "mgda", "mgda_ub")

# Ridge added to each face's Gram block: keeps every batched solve regular
# (duplicate gradients, K > P) while moving a regular face's solution by
# ~1e-12 relative; candidates are scored on the exact objective anyway (_best).
_RIDGE = 1e-12


# -- helpers ---------------------------------------------------------------
def _matrix(G, name: str = "G") -> tf.Tensor:
    G = tf.convert_to_tensor(G)
    if G.shape.rank != 2:
        raise ValueError(f"{name} must be a [K, P] matrix (one row per task), got shape {G.shape}")
    if G.shape[0] is None:
        raise ValueError(f"{name} must have a static number of rows (tasks), got shape {G.shape}")
    return G


def _gram(gram) -> tf.Tensor:
    gram = tf.convert_to_tensor(gram)
    if gram.shape.rank != 2 or gram.shape[0] is None or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square [K, K] matrix with static K, "
                         f"got shape {gram.shape}")
    return gram


def flatten(grads_per_var: Sequence[tf.Tensor]) -> tf.Tensor:
    """[K, P] from per-variable Jacobians [K, *var_shape] (concatenated in order)."""
    if not grads_per_var:
        raise ValueError("grads_per_var is empty: no shared variables to flatten")
    pieces, k = [], None
    for i, g in enumerate(grads_per_var):
        if g is None:
            raise ValueError(f"grads_per_var[{i}] is None: fill unconnected gradients "
                             "with zeros first")
        g = tf.convert_to_tensor(g)
        if g.shape.rank is not None and g.shape.rank < 1:
            raise ValueError(f"grads_per_var[{i}] must have a leading task axis, got a scalar")
        if k is None:
            k, dtype = g.shape[0], g.dtype
        elif g.dtype != dtype:
            raise ValueError(f"grads_per_var[{i}] has dtype {g.dtype.name}, "
                             f"grads_per_var[0] has {dtype.name}")
        elif g.shape[0] is not None and k is not None and g.shape[0] != k:
            raise ValueError(f"grads_per_var[{i}] has {g.shape[0]} task rows, "
                             f"grads_per_var[0] has {k}")
        pieces.append(tf.reshape(g, [k if k is not None else tf.shape(g)[0], -1]))
    return tf.concat(pieces, axis=1)


def unflatten(vector: tf.Tensor, shapes: Sequence) -> list[tf.Tensor]:
    """Inverse of one row of :func:`flatten`: split ``vector`` [P] into tensors of ``shapes``."""
    vector = tf.convert_to_tensor(vector)
    if vector.shape.rank != 1:
        raise ValueError(f"vector must be 1-D [P], got shape {vector.shape}")
    shapes = [tf.TensorShape(s) for s in shapes]
    for i, shape in enumerate(shapes):
        if not shape.is_fully_defined():
            raise ValueError(f"shapes[{i}] = {shape} is not fully defined")
    sizes = [s.num_elements() for s in shapes]
    if vector.shape[0] is not None and vector.shape[0] != sum(sizes):
        raise ValueError(f"vector has {vector.shape[0]} elements, shapes need {sum(sizes)}")
    return [tf.reshape(piece, shape)
            for piece, shape in zip(tf.split(vector, sizes), shapes)]


def cosine_matrix(G: tf.Tensor) -> tf.Tensor:
    """[K, K] pairwise cosine similarities of the rows of G (0 where a row is 0)."""
    G = _matrix(G)
    unit = tf.math.divide_no_nan(G, tf.norm(G, axis=1, keepdims=True))
    return tf.clip_by_value(tf.matmul(unit, unit, transpose_b=True), -1.0, 1.0)


def sum_gradients(G: tf.Tensor) -> tf.Tensor:
    """[P] plain sum of the task gradients (what summing the losses gives)."""
    return tf.reduce_sum(_matrix(G), axis=0)


# -- PCGrad ----------------------------------------------------------------
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
    G = _matrix(G)
    k = G.shape[0]
    static = tf.get_static_value(order) if tf.is_tensor(order) else np.asarray(order)
    if static is not None and sorted(np.asarray(static).reshape(-1).tolist()) != list(range(k)):
        raise ValueError(f"order must be a permutation of 0..{k - 1}, got {static.tolist()}")
    order = tf.cast(tf.reshape(order, [k]), tf.int32)
    gram = tf.cast(tf.matmul(G, G, transpose_b=True), tf.float64)
    coefficients = tf.eye(k, dtype=tf.float64)
    tasks = tf.range(k, dtype=tf.int32)
    for position in range(k):
        j = order[position]
        dots = tf.linalg.matvec(coefficients, tf.gather(gram, j))  # [K]: g_i' . g_j
        step = tf.math.divide_no_nan(tf.minimum(dots, 0.0), tf.gather(tf.gather(gram, j), j))
        step = tf.where(tasks == j, tf.zeros_like(step), step)
        coefficients = coefficients - step[:, None] * tf.one_hot(j, k, dtype=tf.float64)[None, :]
    weights = tf.cast(tf.reduce_sum(coefficients, axis=0), G.dtype)
    return tf.linalg.matvec(G, weights, transpose_a=True)


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
    G = _matrix(G)
    return pcgrad_with_order(G, pcgrad_order(G.shape[0], seed))


# -- exact solvers on the faces of the simplex -----------------------------
def _faces(k: int) -> np.ndarray:
    """[2^k - 1, k] 0/1 masks of all non-empty task subsets, largest first."""
    masks = [m for m in itertools.product((1.0, 0.0), repeat=k) if any(m)]
    return np.array(sorted(masks, key=lambda m: -sum(m)), dtype=np.float64)


def _normalised(gram: tf.Tensor) -> tf.Tensor:
    """float64 symmetric Gram scaled to mean diagonal 1 (0 if all gradients are 0).

    The weights are scale-free, so solving in these units makes the
    tolerances relative; non-finite entries become 0 so a NaN gradient
    propagates through the combination instead of failing the solve.
    """
    m = tf.cast(gram, tf.float64)
    m = 0.5 * (m + tf.transpose(m))
    m = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
    return tf.math.divide_no_nan(m, tf.reduce_mean(tf.linalg.diag_part(m)))


def _face_solutions(m: tf.Tensor, rhs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """For every face S: x = M_SS^-1 1_S and y = M_SS^-1 rhs_S (zero off S), as [N, K]."""
    k = m.shape[0]
    masks = tf.constant(_faces(k))
    blocks = masks[:, :, None] * masks[:, None, :] * m[None]
    blocks += tf.linalg.diag(masks * _RIDGE + (1.0 - masks))
    solution = tf.linalg.solve(blocks, tf.stack([masks, masks * rhs[None]], axis=-1))
    return masks, solution[..., 0], solution[..., 1]


def _best(candidates: tf.Tensor, valid: tf.Tensor, objective) -> tf.Tensor:
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


def _quadratic(w: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """w_n^T M w_n for each row of w [N, K]."""
    return tf.reduce_sum(tf.matmul(w, m) * w, axis=1)


# -- MGDA ------------------------------------------------------------------
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
    gram = _gram(gram)
    k = gram.shape[0]
    if k == 1:
        return tf.ones([1], gram.dtype)
    m = _normalised(tf.stop_gradient(gram))
    if k == 2:
        alpha = _min_norm_2(m[0, 0], m[0, 1], m[1, 1])
    else:
        masks, x, _ = _face_solutions(m, tf.zeros([k], tf.float64))
        candidates = tf.math.divide_no_nan(x, tf.reduce_sum(x, axis=1, keepdims=True))
        alpha = _best(candidates, tf.ones([masks.shape[0]], tf.bool), lambda w: _quadratic(w, m))
    return tf.cast(alpha, gram.dtype)


def mgda(G: tf.Tensor) -> tf.Tensor:
    """[P] sum_k alpha_k g_k with alpha = :func:`mgda_weights` (G G^T)."""
    G = _matrix(G)
    alpha = mgda_weights(tf.matmul(G, G, transpose_b=True))
    return tf.linalg.matvec(G, alpha, transpose_a=True)


# -- CAGrad ----------------------------------------------------------------
def _check_c(c) -> None:
    if tf.is_tensor(c):
        return
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not c >= 0:
        raise ValueError(f"c (cagrad_c) must be a number >= 0, got {c!r}")


def _objective(w: tf.Tensor, m: tf.Tensor, c) -> tf.Tensor:
    b = tf.fill([m.shape[0]], tf.constant(1.0 / m.shape[0], tf.float64))
    phi = tf.cast(c, tf.float64) * tf.sqrt(tf.maximum(tf.reduce_mean(m), 0.0))
    return (tf.linalg.matvec(w, tf.linalg.matvec(m, b))
            + phi * tf.sqrt(tf.maximum(_quadratic(w, m), 0.0)))


def cagrad_objective(w: tf.Tensor, gram: tf.Tensor, c: float) -> tf.Tensor:
    """CAGrad's dual objective [N] for weight rows w [N, K], in normalised units.

    F(w) = w^T M b + phi sqrt(w^T M w) = g_w . g0 + phi ||g_w||, b = 1/K,
    phi = c sqrt(mean(M)), with M = G G^T / mean(diag(G G^T)) (float64), as
    minimised by :func:`cagrad_weights`; exposed so tests can score a grid.
    """
    return _objective(tf.cast(w, tf.float64), _normalised(_gram(gram)), c)


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
    gram = _gram(gram)
    k = gram.shape[0]
    if k == 1:
        return tf.ones([1], gram.dtype)
    m = _normalised(tf.stop_gradient(gram))
    a = tf.reduce_mean(m, axis=1)  # M b with b = 1/K
    phi = tf.cast(c, tf.float64) * tf.sqrt(tf.maximum(tf.reduce_mean(m), 0.0))
    masks, x, y = _face_solutions(m, a)
    sx, sy = tf.reduce_sum(x, axis=1), tf.reduce_sum(y, axis=1)
    discriminant = sy * sy - sx * (tf.linalg.matvec(y, a) - phi * phi)
    root = tf.sqrt(tf.maximum(discriminant, 0.0))
    stationary = tf.math.divide_no_nan(
        tf.math.divide_no_nan(sy + root, sx)[:, None] * x - y, root[:, None])
    min_norm = tf.math.divide_no_nan(x, sx[:, None])
    candidates = tf.concat([stationary, min_norm], axis=0)
    valid = tf.concat([discriminant > 0, tf.ones_like(discriminant, tf.bool)], axis=0)
    w = _best(candidates, valid, lambda w: _objective(w, m, c))
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
    G = _matrix(G)
    g0 = tf.reduce_mean(G, axis=0)
    if not tf.is_tensor(c) and c == 0:
        return g0
    gram = tf.matmul(G, G, transpose_b=True)
    w = cagrad_weights(gram, c)
    g_w = tf.linalg.matvec(G, w, transpose_a=True)
    c = tf.cast(c, G.dtype)
    phi = c * tf.sqrt(tf.maximum(tf.reduce_mean(gram), 0.0))
    return (g0 + tf.math.divide_no_nan(phi, tf.norm(g_w)) * g_w) / (1.0 + c * c)


# -- dispatch --------------------------------------------------------------
def combine(method: str, G: tf.Tensor, *, seed: tf.Tensor | None = None,
            cagrad_c: float = 0.5) -> tf.Tensor:
    """[P] the shared parameters' gradient by ``method`` (one of :data:`METHODS`).

    ``seed`` [2] (int32/int64, e.g. (run seed, step)) is required for pcgrad.
    """
    if method == "sum":
        return sum_gradients(G)
    if method == "pcgrad":
        if seed is None:
            raise ValueError("combine('pcgrad'): seed is required (an int tensor [2], "
                             "e.g. (run seed, step))")
        return pcgrad(G, seed)
    if method == "cagrad":
        return cagrad(G, cagrad_c)
    if method == "mgda":
        return mgda(G)
    if method == "mgda_ub":
        raise ValueError("combine('mgda_ub'): MGDA-UB weighs the tasks by MGDA on the shared "
                         "representation's gradients; compute them with mgda_weights(gram) "
                         "and back-propagate the weighted losses instead")
    raise ValueError(f"unknown combination method {method!r} (one of: {', '.join(METHODS)})")
