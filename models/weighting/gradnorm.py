"""GradNorm (Chen et al., ICML 2018): task weights that balance the gradient norms."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.weighting.base import REGISTRY, STATE, Weighting

# GradNorm keeps every weight at or above this before renormalising, so a
# task is never switched off for good (a zero weight gets no gradient back).
GRADNORM_MIN_WEIGHT = 1e-3


def gradnorm_step(weights: tf.Tensor, grad_norms: tf.Tensor, losses: tf.Tensor,
                  initial_losses: tf.Tensor, alpha: float, learning_rate: float) -> tf.Tensor:
    """One GradNorm update of the task weights (Chen et al., ICML 2018).

    ``grad_norms`` are ||grad_W L_k|| of the *unweighted* losses on the last
    shared layer W, so G_k = w_k grad_norms_k. With G_bar = mean(G), loss
    ratios Ltilde_k = L_k / L_k(0) and relative rates r_k = Ltilde_k /
    mean(Ltilde), the target G_bar r_k^alpha is a constant (no gradient), so
    L_grad = sum_k |G_k - target_k| has dL_grad/dw_k = sign(G_k - target_k)
    grad_norms_k. One SGD step on w, then clip at GRADNORM_MIN_WEIGHT and
    renormalise to sum(w) = K (the paper's renormalisation).
    """
    weights, grad_norms, losses, initial_losses = (
        tf.convert_to_tensor(t, tf.float32) for t in (weights, grad_norms, losses, initial_losses))
    k = tf.cast(tf.size(weights), tf.float32)
    norms = weights * grad_norms
    ratios = tf.math.divide_no_nan(losses, initial_losses)
    rates = tf.math.divide_no_nan(ratios, tf.reduce_mean(ratios))
    target = tf.stop_gradient(tf.reduce_mean(norms) * rates ** alpha)
    gradient = tf.sign(norms - target) * grad_norms
    weights = tf.maximum(weights - learning_rate * gradient, GRADNORM_MIN_WEIGHT)
    return weights * k / tf.reduce_sum(weights)


@dataclasses.dataclass(frozen=True)
class GradNormParams:
    alpha: float = registry.number(1.5, minimum=0)  # asymmetry: how hard slow tasks are pushed
    learning_rate: float = registry.number(0.025, above=0)  # of the weights' own SGD step


@REGISTRY.register
class GradNorm(Weighting):
    """GradNorm (Chen et al., ICML 2018): weights that balance gradient norms.

    Weights start at the static weights renormalised to sum K. Each task's
    initial loss L_k(0) is recorded at the first update where it is positive
    (a task without labels in the first batch has a loss of 0); until every
    task has one, the weights stay put. The weights take one plain SGD step per
    optimiser step with their own ``learning_rate`` (Algorithm 1 leaves the
    optimiser open). Deviation: before the paper's renormalisation each weight is
    floored at GRADNORM_MIN_WEIGHT. Note a static weight of 0 does not keep a task
    off: GradNorm raises it like any other.
    """

    name = "gradnorm"
    Params = GradNormParams
    needs_grad_norms = True

    def __init__(self, task_names, task_types, static_weights, params=None, seed=0):
        super().__init__(task_names, task_types, static_weights, params, seed)
        if not sum(self.static_weights) > 0:
            raise ValueError("static_weights: gradnorm needs a positive sum to normalise, "
                             f"got {list(self.static_weights)}")
        static = tf.constant(self.static_weights, tf.float32)
        self.task_weights = tf.Variable(static * self.k / tf.reduce_sum(static),
                                        name="task_weights", **STATE)
        self.initial_losses = tf.Variable(tf.zeros([self.k]), name="initial_losses", **STATE)

    def terms(self, losses):
        return tf.convert_to_tensor(self.task_weights), tf.zeros([self.k])

    def update(self, losses, grad_norms=None):
        if grad_norms is None:
            raise ValueError("GradNorm.update: grad_norms is required (the norms of the "
                             "unweighted task losses' gradients on the last shared layer)")
        losses = tf.convert_to_tensor(losses, tf.float32)
        initial = tf.where(self.initial_losses > 0, self.initial_losses, losses)
        stepped = gradnorm_step(self.task_weights, grad_norms, losses, initial,
                                self.params.alpha, self.params.learning_rate)
        ready = tf.reduce_all(initial > 0)
        self.task_weights.assign(tf.where(ready, stepped, self.task_weights))
        self.initial_losses.assign(initial)
