"""IMTL-L (Liu et al., ICLR 2021): learned loss scales e^{s_k} with the regulariser -s_k."""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.weighting.base import REGISTRY, Weighting, present


def imtl_l_terms(scales: tf.Tensor, losses: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(weights [K], regulariser [K]) of IMTL-L: the task's loss is e^s L - s.

    d/ds = e^s L - 1 = 0 at e^s L = 1: the learned scale makes every scaled loss 1.
    A task with L = 0 (no labels in the batch) gets regulariser 0, so its s_k is not
    pushed up by -s alone while it has nothing to balance.
    """
    scales = tf.convert_to_tensor(scales, tf.float32)
    regulariser = tf.where(present(losses), -scales, tf.zeros_like(scales))
    return tf.exp(scales), regulariser


@REGISTRY.register
class IMTLL(Weighting):
    """The loss part of Impartial Multi-Task Learning, IMTL-L (Liu, Li, Kuang, Xue, Chen,
    Yang, Liao & Zhang, "Towards Impartial Multi-task Learning", ICLR 2021): each task's
    loss becomes e^{s_k} L_k - s_k, with s_k (init 0) trained by the model's optimiser
    (like ``uncertainty``), which drives every scaled loss towards 1.

    Deviations: the static weight multiplies the task's whole term (w and r); a task
    with a zero loss (no labels in the global batch) drops its -s_k for that step.
    IMTL-G (the gradient part) is not this weighting.
    """

    name = "imtl_l"

    def __init__(self, task_names, task_types, static_weights, params=None, seed=0):
        super().__init__(task_names, task_types, static_weights, params, seed)
        self.scales = tf.Variable(tf.zeros([self.k]), trainable=True, name="loss_scales")

    def terms(self, losses):
        weights, regulariser = imtl_l_terms(self.scales, tf.stop_gradient(losses))
        static = self._static()
        return static * weights, static * regulariser
