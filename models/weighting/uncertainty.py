"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018): learned homoscedastic noise."""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.weighting.base import REGISTRY, Weighting


def uncertainty_terms(log_var: tf.Tensor, is_regression) -> tuple[tf.Tensor, tf.Tensor]:
    """(weights [K], regulariser [K]) of Kendall, Gal & Cipolla (CVPR 2018).

    With s = log sigma^2 (learned, one per task): a regression task's loss is
    L / (2 sigma^2) + log sigma = 0.5 exp(-s) L + 0.5 s; a classification
    task's L / sigma^2 + log sigma = exp(-s) L + 0.5 s. Differentiable in s.
    """
    log_var = tf.convert_to_tensor(log_var, tf.float32)
    is_regression = tf.convert_to_tensor(is_regression, tf.bool)
    scale = tf.where(is_regression, 0.5, 1.0)
    return scale * tf.exp(-log_var), 0.5 * log_var


@REGISTRY.register
class Uncertainty(Weighting):
    """Learned homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018).

    The K log-variances s_k (init 0) are trained by the model's optimiser.
    Deviation: the static weight multiplies the task's whole term, w and r, so a
    weight of 0 removes the task (rather than letting its s_k run to -inf) and the
    optimal s_k does not depend on it.
    """

    name = "uncertainty"

    def __init__(self, task_names, task_types, static_weights, params=None, seed=0):
        super().__init__(task_names, task_types, static_weights, params, seed)
        self.log_variances = tf.Variable(tf.zeros([self.k]), trainable=True, name="log_variances")
        self._is_regression = tuple(t == "regression" for t in self.task_types)

    def terms(self, losses):
        weights, regulariser = uncertainty_terms(self.log_variances, self._is_regression)
        static = self._static()
        return static * weights, static * regulariser
