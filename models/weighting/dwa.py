"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019): weights from the losses' rate of descent."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.weighting.base import REGISTRY, STATE, Weighting


def dwa_weights(previous_losses: tf.Tensor, before_previous_losses: tf.Tensor,
                temperature: float = 2.0) -> tf.Tensor:
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, Sec. 3.3).

    r_k = L_k(t-1) / L_k(t-2) (a task whose loss falls slowly has a large r_k),
    w_k = K exp(r_k / T) / sum_i exp(r_i / T); weights sum to K. A zero
    L_k(t-2) (no labels in that period) gives r_k = 0.
    """
    previous_losses = tf.convert_to_tensor(previous_losses, tf.float32)
    ratios = tf.math.divide_no_nan(previous_losses,
                                   tf.convert_to_tensor(before_previous_losses, tf.float32))
    k = tf.cast(tf.size(ratios), tf.float32)
    return k * tf.nn.softmax(ratios / temperature)


@dataclasses.dataclass(frozen=True)
class DWAParams:
    period: int = registry.integer(100, minimum=1)  # optimiser steps per "epoch"
    temperature: float = registry.number(2.0, above=0)  # T: higher is more uniform


@REGISTRY.register
class DWA(Weighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019) over periods of steps.

    Deviation: the paper averages losses per epoch; here per ``period`` optimiser
    steps. The weights are 1 (times the static weights) for the first two periods
    and are recomputed from the last two period means at each period boundary.
    """

    name = "dwa"
    Params = DWAParams

    def __init__(self, task_names, task_types, static_weights, params=None, seed=0):
        super().__init__(task_names, task_types, static_weights, params, seed)
        self.dwa = tf.Variable(tf.ones([self.k]), name="dwa_weights", **STATE)
        self.loss_sum = tf.Variable(tf.zeros([self.k]), name="loss_sum", **STATE)
        self.steps_in_period = tf.Variable(0, dtype=tf.int64, name="steps_in_period", **STATE)
        self.completed_periods = tf.Variable(0, dtype=tf.int64, name="completed_periods", **STATE)
        self.previous = tf.Variable(tf.zeros([self.k]), name="previous_mean", **STATE)
        self.before_previous = tf.Variable(tf.zeros([self.k]), name="before_previous_mean",
                                           **STATE)

    def terms(self, losses):
        return self._static() * self.dwa, tf.zeros([self.k])

    def update(self, losses, grad_norms=None):
        period = self.params.period
        total = self.loss_sum + tf.convert_to_tensor(losses, tf.float32)
        steps = self.steps_in_period + 1
        boundary = steps >= period
        previous = tf.where(boundary, total / period, self.previous)
        before_previous = tf.where(boundary, self.previous, self.before_previous)
        completed = self.completed_periods + tf.cast(boundary, tf.int64)
        weights = tf.where(boundary & (completed >= 2),
                           dwa_weights(previous, before_previous, self.params.temperature),
                           self.dwa)
        self.dwa.assign(weights)
        self.previous.assign(previous)
        self.before_previous.assign(before_previous)
        self.completed_periods.assign(completed)
        self.loss_sum.assign(tf.where(boundary, tf.zeros_like(total), total))
        self.steps_in_period.assign(tf.where(boundary, tf.zeros_like(steps), steps))
