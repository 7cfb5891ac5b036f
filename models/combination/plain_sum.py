"""The plain sum: what summing the task losses gives, one backward pass and no surgery."""
from __future__ import annotations

import tensorflow as tf

from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_gram, as_matrix


def sum_gradients(G: tf.Tensor) -> tf.Tensor:
    """[P] plain sum of the task gradients (what summing the losses gives)."""
    return tf.reduce_sum(as_matrix(G), axis=0)


@REGISTRY.register
class Sum(GradientCombination):
    """The gradient of the summed (weighted) losses: the step needs no per-task gradients."""

    name = "sum"
    needs_task_gradients = False

    def combine(self, G, seed=None):
        return sum_gradients(G)

    def task_weights(self, gram, seed=None):
        gram = as_gram(gram)
        return tf.ones([gram.shape[0]], gram.dtype)
