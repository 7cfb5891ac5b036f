"""Geometric loss strategy (Chennupati et al., CVPR-W 2019): minimise the losses' geometric mean."""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.weighting.base import REGISTRY, Weighting, present, safe_log


def gls_weights(losses: tf.Tensor) -> tf.Tensor:
    """[K] weights whose ``sum_k w_k L_k`` has the gradient of ``K' (prod L_k)^(1/K')``.

    The product runs over the K' tasks with a positive loss (a task without labels in
    the batch has L_k = 0, which would make the product 0 and every weight 0 or NaN):
    with GLS = exp(mean of their log L_k), d(K' GLS)/dL_k = GLS / L_k; absent tasks
    get 0, and with no task present every weight is 0.
    """
    losses = tf.convert_to_tensor(losses, tf.float32)
    mask = present(losses)
    count = tf.reduce_sum(tf.cast(mask, tf.float32))
    log_gls = tf.math.divide_no_nan(tf.reduce_sum(safe_log(losses)), count)
    return tf.where(mask, tf.exp(log_gls - safe_log(losses)), tf.zeros_like(losses))


@REGISTRY.register
class GLS(Weighting):
    """Geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++",
    CVPR Workshops 2019): the objective is (prod_k L_k)^(1/K).

    Written as weights ``GLS / L_k`` (stop-gradient) on the raw losses, so any gradient
    combination can follow. Deviations: the objective is scaled by K (the present tasks'
    count K'), so equal losses give weight 1 as ``uniform`` does (the paper's gradient
    is this / K; under Adam a constant factor only meets epsilon); tasks with a zero
    loss (no labels in the global batch) are left out of the product and get weight 0;
    the static weights multiply the weights.
    """

    name = "gls"

    def terms(self, losses):
        return self._static() * tf.stop_gradient(gls_weights(losses)), tf.zeros([self.k])
