"""Random loss weighting (Lin, Ye, Xu, Shi, Zhang & Kwok, TMLR 2022): fresh random weights each step."""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.weighting.base import REGISTRY, STATE, Weighting

# Folded into (run seed, step) so RLW's draws differ from a random combination's
# (which the step seeds with the same pair).
_SALT = 0x524C57  # "RLW"


def rlw_weights(draw: tf.Tensor) -> tf.Tensor:
    """[K] K softmax(draw): positive weights summing to K (the draw is N(0, I))."""
    draw = tf.convert_to_tensor(draw, tf.float32)
    return tf.cast(tf.size(draw), tf.float32) * tf.nn.softmax(draw)


def rlw_draw(k: int, seed: tf.Tensor) -> tf.Tensor:
    """[k] standard normal, a function of ``seed`` = (run seed, step) alone."""
    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), _SALT)
    return tf.random.stateless_normal([k], seed)


@REGISTRY.register
class RLW(Weighting):
    """Random Loss Weighting (Lin, Ye, Xu, Shi, Zhang & Kwok, "Reasonable Effectiveness
    of Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022): each step's
    weights are softmax(z), z ~ N(0, I), drawn afresh.

    The draw is stateless, from (run seed, step): the step is a counter variable
    advanced by ``update`` and saved in the checkpoint, so a resumed run draws the same
    weights. Deviation: the weights are scaled to sum K (the paper and LibMTL's RLW use
    softmax(z), summing to 1), so that their mean is 1 as with ``uniform``; under Adam a
    constant factor only meets epsilon. The static weights multiply the weights.
    """

    name = "rlw"

    def __init__(self, task_names, task_types, static_weights, params=None, seed=0):
        super().__init__(task_names, task_types, static_weights, params, seed)
        self.steps = tf.Variable(0, dtype=tf.int64, name="steps", **STATE)

    def terms(self, losses):
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(self.steps)])
        return self._static() * rlw_weights(rlw_draw(self.k, seed)), tf.zeros([self.k])

    def update(self, losses, grad_norms=None):
        self.steps.assign_add(1)
