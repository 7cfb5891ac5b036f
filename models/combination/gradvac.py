"""GradVac, Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021)."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.combination.base import (REGISTRY, STATE, GradientCombination, as_gram,
                                              as_matrix)
from tfx_mtl.models.combination.pcgrad import pcgrad_order


def gradvac_with_order(gram: tf.Tensor, targets: tf.Tensor, order, beta: float
                       ) -> tuple[tf.Tensor, tf.Tensor]:
    """One GradVac step on the Gram matrix: (task weights [K], the new targets [K, K]).

    Wang et al. (ICLR 2021), Algorithm 1: for each task i, g_i' starts at g_i
    and, for each other task j in ``order``, with phi = cos(g_i', g_j) and
    the target phi_hat = ``targets[i, j]``: if phi < phi_hat,
        g_i' += ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
                / (||g_j|| sqrt(1 - phi_hat^2)) g_j,
    which makes cos(g_i', g_j) = phi_hat; then, whether or not it fired,
    phi_hat <- (1 - beta) phi_hat + beta phi. The update is sum_i g_i'. With
    targets 0 this is PCGrad (Yu et al., 2020) exactly.

    As in :func:`~tfx_mtl.models.combination.pcgrad.pcgrad_with_order`, every
    g_i' = sum_m C[i, m] g_m, so the step runs on the K x K coefficients C
    and the Gram matrix (float64): g_i' . g_j = (C gram)[i, j],
    ||g_i'||^2 = (C gram C^T)[i, i]; the weights are the column sums of C.
    All i are processed at once per j (one order for every i). A zero g_i' or
    g_j changes nothing, neither the gradient nor its target (no cosine to
    learn from); a target of exactly 1 (all past cosines 1) adds nothing.
    """
    gram = as_gram(gram)
    k = gram.shape[0]
    order = tf.cast(tf.reshape(order, [k]), tf.int32)
    gram64 = tf.cast(gram, tf.float64)
    targets = tf.cast(targets, tf.float64)
    beta = tf.cast(beta, tf.float64)
    coefficients = tf.eye(k, dtype=tf.float64)
    tasks = tf.range(k, dtype=tf.int32)
    for position in range(k):
        j = order[position]
        column = tf.gather(gram64, j)  # [K]: g_m . g_j
        norm_j = tf.sqrt(tf.maximum(tf.gather(column, j), 0.0))
        dots = tf.linalg.matvec(coefficients, column)  # [K]: g_i' . g_j
        norms = tf.sqrt(tf.maximum(
            tf.reduce_sum(tf.matmul(coefficients, gram64) * coefficients, axis=1), 0.0))
        cosine = tf.clip_by_value(tf.math.divide_no_nan(dots, norms * norm_j), -1.0, 1.0)
        target = tf.gather(targets, j, axis=1)
        defined = (tasks != j) & (norms > 0) & (norm_j > 0)
        fires = defined & (cosine < target)
        room = tf.sqrt(tf.maximum(1.0 - target * target, 0.0))
        step = tf.math.divide_no_nan(
            norms * (target * tf.sqrt(tf.maximum(1.0 - cosine * cosine, 0.0)) - cosine * room),
            norm_j * room)
        step = tf.where(fires, step, tf.zeros_like(step))
        coefficients = coefficients + step[:, None] * tf.one_hot(j, k, dtype=tf.float64)[None, :]
        moved = tf.where(defined, (1.0 - beta) * target + beta * cosine, target)
        targets = targets + (moved - target)[:, None] * tf.one_hot(j, k, dtype=tf.float64)[None, :]
    return tf.cast(tf.reduce_sum(coefficients, axis=0), gram.dtype), targets


@dataclasses.dataclass(frozen=True)
class GradVacParams:
    # EMA rate of the target cosines (the paper's 1e-2; LibMTL's default is 0.5)
    beta: float = registry.number(0.01, above=0, maximum=1)


@REGISTRY.register
class GradVac(GradientCombination):
    """GradVac (Wang, Tsvetkov, Firat & Cao, ICLR 2021): :func:`gradvac_with_order` with a
    fresh random task order per step drawn from (run seed, step), as PCGrad's; the target
    cosines phi_hat [K, K] (starting at 0) are state, saved in the checkpoint.

    The result is on the *sum*'s scale (sum_i g_i', as in the paper). Deviations: the
    paper applies the vaccine per layer or block of a Transformer; here to all shared
    parameters at once (or, at representation level, to the shared representation) --
    LibMTL's default granularity ``whole_model``. One random order per step serves every
    task i (the paper's loop order is unspecified; LibMTL shuffles per i). LibMTL updates
    phi_hat only when the vaccine fires and adds 1e-8 to denominators; this follows the
    paper's Algorithm 1 (every pair with both gradients non-zero) and divides exactly.
    """

    name = "gradvac"
    Params = GradVacParams
    stateful = True
    random = True

    def __init__(self, params=None, tasks=None, parameters=None):
        super().__init__(params, tasks, parameters)
        self.targets = tf.Variable(tf.zeros([self.k, self.k]), name="target_cosines", **STATE)

    def task_weights(self, gram, seed=None):
        self._check_seed(seed)
        gram = as_gram(gram)
        self._check_tasks(gram.shape[0])
        weights, targets = gradvac_with_order(gram, self.targets, pcgrad_order(self.k, seed),
                                              self.params.beta)
        self.targets.assign(tf.cast(targets, self.targets.dtype))
        return weights

    def combine(self, G, seed=None):
        G = as_matrix(G)
        return tf.linalg.matvec(G, self.task_weights(tf.matmul(G, G, transpose_b=True), seed),
                                transpose_a=True)
