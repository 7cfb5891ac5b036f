"""DB-MTL's loss balancing (Lin, Ye, Zhang & Kwok, 2023): the gradient of log(L_k + eps)."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.weighting.base import REGISTRY, Weighting, present


def log_transform_weights(losses: tf.Tensor, eps: float = 1e-8) -> tf.Tensor:
    """[K] 1 / (L_k + eps): ``w_k L_k`` (w stop-gradient) has the gradient of
    log(L_k + eps). A task with L_k = 0 (no labels in the batch) gets 0: its loss has no
    gradient either way, and the logged weight stays finite-looking rather than 1/eps."""
    losses = tf.convert_to_tensor(losses, tf.float32)
    return tf.where(present(losses), 1.0 / (losses + eps), tf.zeros_like(losses))


@dataclasses.dataclass(frozen=True)
class DBMTLParams:
    eps: float = registry.number(1e-8, above=0)  # inside the log, as in LibMTL's DB_MTL


@REGISTRY.register
class DBMTL(Weighting):
    """The loss-scale half of DB-MTL (Lin, Ye, Zhang & Kwok, "Dual-Balancing for
    Multi-Task Learning", arXiv 2308.12029, 2023): each task's loss is log-transformed,
    log(L_k + eps), so that tasks with losses of different scales pull alike.

    The gradient-magnitude half (an EMA of each task's gradient, rescaled to the largest
    norm) is the gradient combination ``db_mtl``; the paper's method is
    ``--weighting db_mtl --combine db_mtl``; either alone is an ablation. Deviations: a
    task with a zero loss gets weight 0 (its gradient is 0 anyway); the static weights
    multiply the weights.
    """

    name = "db_mtl"
    Params = DBMTLParams

    def terms(self, losses):
        weights = tf.stop_gradient(log_transform_weights(losses, self.params.eps))
        return self._static() * weights, tf.zeros([self.k])
