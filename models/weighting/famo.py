"""FAMO (Liu, Feng, Stone & Liu, NeurIPS 2023): weights that equalise the losses' rates of descent."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.weighting.base import REGISTRY, STATE, Weighting, present, safe_log

# Adam's constants for the logits' own optimiser (PyTorch's defaults, as in the
# official code's torch.optim.Adam).
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8


def famo_weights(logits: tf.Tensor, losses: tf.Tensor) -> tf.Tensor:
    """[K] weights w_k = K' c z_k / L_k, z = softmax(logits), c = 1 / sum_i z_i / L_i.

    ``sum_k w_k L_k`` (w stop-gradient) has K' times the gradient of FAMO's
    ``c sum_k z_k log L_k``. Sums, normalisations and K' run over the tasks with a
    positive loss; the others get 0. Computed as K' softmax(logits - log L) over those
    tasks, which is the same and stays finite for tiny losses.
    """
    losses = tf.convert_to_tensor(losses, tf.float32)
    mask = present(losses)
    count = tf.reduce_sum(tf.cast(mask, tf.float32))
    scores = tf.where(mask, tf.convert_to_tensor(logits, tf.float32) - safe_log(losses),
                      tf.fill(tf.shape(losses), -float("inf")))
    weights = tf.where(mask, tf.nn.softmax(scores), tf.zeros_like(losses))
    return count * weights


def famo_logit_gradient(logits: tf.Tensor, before: tf.Tensor, after: tf.Tensor,
                        weight_decay: float) -> tf.Tensor:
    """[K] the gradient FAMO steps the logits along: J_softmax^T delta + gamma xi.

    delta_k = log L_k(before) - log L_k(after) (how much task k's loss fell); with
    z = softmax(xi), (J^T delta)_j = z_j (delta_j - sum_i z_i delta_i). A task whose
    loss is 0 on either side (no labels) has delta_k = 0. Descending it lowers the
    logit of the tasks that fell faster than the z-weighted average.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    both = present(before) & present(after)
    delta = tf.where(both, safe_log(before) - safe_log(after), tf.zeros_like(logits))
    z = tf.nn.softmax(logits)
    return z * (delta - tf.reduce_sum(z * delta)) + weight_decay * logits


def adam_step(variable: tf.Tensor, gradient: tf.Tensor, first: tf.Tensor, second: tf.Tensor,
              count: tf.Tensor, learning_rate: float):
    """One Adam step (Kingma & Ba, 2015); ``count`` is this step's number, from 1.
    Returns (new variable, new first moment, new second moment)."""
    first = ADAM_BETA_1 * first + (1 - ADAM_BETA_1) * gradient
    second = ADAM_BETA_2 * second + (1 - ADAM_BETA_2) * tf.square(gradient)
    t = tf.cast(count, tf.float32)
    corrected_first = first / (1 - ADAM_BETA_1 ** t)
    corrected_second = second / (1 - ADAM_BETA_2 ** t)
    step = learning_rate * corrected_first / (tf.sqrt(corrected_second) + ADAM_EPSILON)
    return variable - step, first, second


@dataclasses.dataclass(frozen=True)
class FAMOParams:
    learning_rate: float = registry.number(0.025, above=0)  # beta: the logits' Adam step
    weight_decay: float = registry.number(1e-3, minimum=0)  # gamma: L2 on the logits


@REGISTRY.register
class FAMO(Weighting):
    """Fast Adaptive Multitask Optimization (Liu, Feng, Stone & Liu, NeurIPS 2023):
    the update follows c sum_k z_k log(L_k - b_k), z = softmax(xi), so that every task's
    log loss falls at a similar rate, at O(1) cost (no per-task gradients).

    After each step the logits xi move along the gradient of the softmax against the
    fall of the log losses (``famo_logit_gradient``), with Adam at ``learning_rate``
    (beta) and L2 ``weight_decay`` (gamma), as the official code does (torch Adam with
    weight_decay; the paper's Algorithm 1 writes a plain gradient step).

    Deviations: (1) the loss "after" the update is the next step's loss, on the next
    batch, at the updated parameters, instead of a second forward pass on the same batch
    (which the official code runs; the stored LibMTL trainer we read never calls its
    ``update_w``): no extra forward pass, but delta then includes the change of batch,
    so xi moves on noisier signal; the first step only records the losses. (2) The
    weights are scaled by K' (the number of tasks with a positive loss), so uniform z and
    equal losses give weight 1 as ``uniform`` does (the paper's sum to 1); under Adam a
    constant factor only meets epsilon. (3) b_k = 0 (the losses here are >= 0; the
    official default) and no 1e-8 inside the log: a task with loss 0 (no labels in the
    global batch) gets weight 0, stays out of c, and has delta 0. (4) The static weights
    multiply the weights.
    """

    name = "famo"
    Params = FAMOParams

    def __init__(self, task_names, task_types, static_weights, params=None, seed=0):
        super().__init__(task_names, task_types, static_weights, params, seed)
        self.logits = tf.Variable(tf.zeros([self.k]), name="logits", **STATE)
        self.first_moment = tf.Variable(tf.zeros([self.k]), name="first_moment", **STATE)
        self.second_moment = tf.Variable(tf.zeros([self.k]), name="second_moment", **STATE)
        self.logit_steps = tf.Variable(0, dtype=tf.int64, name="logit_steps", **STATE)
        self.previous_losses = tf.Variable(tf.zeros([self.k]), name="previous_losses", **STATE)
        self.seen = tf.Variable(0, dtype=tf.int64, name="seen_losses", **STATE)  # 0 / 1

    def terms(self, losses):
        weights = tf.stop_gradient(famo_weights(self.logits, losses))
        return self._static() * weights, tf.zeros([self.k])

    def update(self, losses, grad_norms=None):
        losses = tf.convert_to_tensor(losses, tf.float32)
        gradient = famo_logit_gradient(self.logits, self.previous_losses, losses,
                                       self.params.weight_decay)
        count = self.logit_steps + 1
        logits, first, second = adam_step(self.logits, gradient, self.first_moment,
                                          self.second_moment, count, self.params.learning_rate)
        ready = self.seen > 0
        self.logits.assign(tf.where(ready, logits, self.logits))
        self.first_moment.assign(tf.where(ready, first, self.first_moment))
        self.second_moment.assign(tf.where(ready, second, self.second_moment))
        self.logit_steps.assign(tf.where(ready, count, self.logit_steps))
        self.previous_losses.assign(losses)
        self.seen.assign(1)
