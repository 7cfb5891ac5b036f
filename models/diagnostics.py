"""Gradient-conflict statistics: the negative-transfer diagnostic.

For every pair of tasks, the cosine similarity of their gradients on the
shared parameters; a negative cosine is a conflict (one task's step makes the
other's loss worse, to first order). The counters live in ``tf.Variable``s so
they accumulate inside the compiled step, on every replica alike, and are read
and reset once per logging interval.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import tensorflow as tf

_STATE = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class ConflictStats(tf.Module):
    """Sums of pairwise cosines and counts of conflicting steps since the last read."""

    def __init__(self, task_names: Sequence[str]):
        super().__init__(name="conflict_stats")
        self.task_names = tuple(task_names)
        k = len(self.task_names)
        self.cosine_sum = tf.Variable(tf.zeros([k, k]), name="cosine_sum", **_STATE)
        self.conflicts = tf.Variable(tf.zeros([k, k]), name="conflicts", **_STATE)
        self.any_conflict = tf.Variable(0.0, name="any_conflict", **_STATE)
        self.steps = tf.Variable(0.0, name="steps", **_STATE)

    def update(self, cosine: tf.Tensor) -> None:
        """Adds one step's [K, K] cosine matrix."""
        conflict = tf.cast(cosine < 0.0, tf.float32)
        self.cosine_sum.assign_add(cosine)
        self.conflicts.assign_add(conflict)
        self.any_conflict.assign_add(tf.cast(tf.reduce_any(conflict > 0), tf.float32))
        self.steps.assign_add(1.0)

    def read_and_reset(self) -> dict[str, float] | None:
        """Means since the last read, keyed for TensorBoard; None if nothing was measured."""
        steps = float(self.steps.numpy())
        if steps == 0:
            return None
        cosine = self.cosine_sum.numpy() / steps
        conflicts = self.conflicts.numpy() / steps
        result = {"grad_conflict/any_pair": float(self.any_conflict.numpy()) / steps,
                  "grad_conflict/measured_steps": steps}
        for i, j in itertools.combinations(range(len(self.task_names)), 2):
            pair = f"{self.task_names[i]}__{self.task_names[j]}"
            result[f"grad_cosine/{pair}"] = float(cosine[i, j])
            result[f"grad_conflict/{pair}"] = float(conflicts[i, j])
        for variable in (self.cosine_sum, self.conflicts):
            variable.assign(np.zeros(variable.shape, np.float32))
        self.any_conflict.assign(0.0)
        self.steps.assign(0.0)
        return result
