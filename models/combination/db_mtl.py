"""DB-MTL's gradient balancing (Lin, Ye, Zhang & Kwok, 2023, "Dual-Balancing for Multi-Task
Learning"): an EMA of each task's gradient, each scaled to the largest one's norm."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.combination.base import REGISTRY, STATE, GradientCombination, as_matrix


def ema_gradients(buffer: tf.Tensor, G: tf.Tensor, step, beta: float, beta_sigma: float
                  ) -> tf.Tensor:
    """[K, P] the new buffer G + (beta / step^beta_sigma) (buffer - G), ``step`` counting
    from 1: an EMA keeping beta / step^beta_sigma of the old buffer (the paper's and
    LibMTL's rule; the buffer starts at 0, without bias correction)."""
    rate = tf.cast(beta, G.dtype) / tf.pow(tf.cast(step, G.dtype), tf.cast(beta_sigma, G.dtype))
    return G + rate * (buffer - G)


def balanced_sum(buffer: tf.Tensor) -> tf.Tensor:
    """[P] sum_k (max_j ||b_j|| / ||b_k||) b_k: every task's buffered gradient scaled to the
    largest norm, then summed (the sum's scale); a zero row contributes nothing."""
    buffer = as_matrix(buffer, "buffer")
    norms = tf.norm(buffer, axis=1)
    scales = tf.math.divide_no_nan(tf.reduce_max(norms), norms)
    return tf.linalg.matvec(buffer, scales, transpose_a=True)


@dataclasses.dataclass(frozen=True)
class DBMTLParams:
    # share of the old EMA kept at step 1; beta / step^beta_sigma > 1 (allowed, as in LibMTL,
    # for beta > 1 with beta_sigma > 0) extrapolates until the step makes it < 1
    beta: float = registry.number(0.9, minimum=0)
    beta_sigma: float = registry.number(0.0, minimum=0)  # that share decays as step^-beta_sigma


@REGISTRY.register
class DBMTL(GradientCombination):
    """DB-MTL's gradient part (Lin, Ye, Zhang & Kwok, 2023, arXiv:2308.12029): the buffer
    b = :func:`ema_gradients` of each task's gradient, then :func:`balanced_sum`.

    The paper's method is both halves, ``--weighting db_mtl --combine db_mtl``: the
    weighting ``db_mtl`` trains on log losses (so G holds the gradients of log L_k);
    this combination alone balances the gradients of whatever losses the weighting
    gives. State: the buffer [K, P] (built with ``parameters=P``) and the step count,
    saved in the checkpoint.
    Defaults beta = 0.9, beta_sigma = 0 as LibMTL's. Result on the *sum*'s scale
    (K gradients of the largest norm, as in the paper). Deviations: LibMTL divides by
    ||b_k|| + 1e-8; here exactly (a zero buffer row contributes 0). Parameter level
    only: an EMA of per-example representation gradients has no meaning, so the
    method cannot run at representation level (the paper/LibMTL refuse it too).
    """

    name = "db_mtl"
    Params = DBMTLParams
    stateful = True
    representation_level = False

    def __init__(self, params=None, tasks=None, parameters=None):
        super().__init__(params, tasks, parameters)
        # [K, 0] without P: no shared parameters, nothing to combine.
        self.buffer = tf.Variable(tf.zeros([self.k, self.p or 0]), name="gradient_ema", **STATE)
        self.steps = tf.Variable(0, dtype=tf.int64, name="steps", **STATE)

    def combine(self, G, seed=None):
        G = as_matrix(G)
        self._check_tasks(G.shape[0])
        if G.shape[1] != self.buffer.shape[1]:
            raise ValueError(f"db_mtl was built for {self.buffer.shape[1]} parameters "
                             f"(parameters=P), got {G.shape[1]} columns")
        step = self.steps + 1
        buffer = ema_gradients(tf.cast(self.buffer, G.dtype), G, step, self.params.beta,
                               self.params.beta_sigma)
        self.buffer.assign(tf.cast(buffer, self.buffer.dtype))
        self.steps.assign(step)
        return balanced_sum(buffer)
