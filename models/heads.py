"""Per-task-type head math: masked losses and serving outputs.

A head's raw output is what the network computes: logits for classification,
a standardised value ``z`` for regression (the served value is
``mean + std * z``, with mean/std of the labelled training values from
Transform). The training step and the evaluator average a task's loss over the
examples that carry its label only (its ``mask``), so a missing label
contributes nothing and a batch with no label for a task gives 0, not NaN.
A classification task's examples may be weighted by class (``class_weights``);
the mean stays over the labelled examples: ``sum_i m_i w_i l_i / sum_i m_i``.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfx_mtl.task_spec import Task


def head_width(task: Task, num_classes: int | None = None) -> int:
    """Units of the task's output layer."""
    if task.type == "multiclass":
        if not num_classes or num_classes < 2:
            raise ValueError(f"task {task.name!r}: a multiclass head needs >= 2 classes, "
                             f"the label vocabulary has {num_classes}")
        return num_classes
    return 1


def per_example_loss(task: Task, raw: tf.Tensor, label: tf.Tensor,
                     mean: tf.Tensor | float = 0.0, std: tf.Tensor | float = 1.0,
                     class_weights: Sequence[float] | None = None) -> tf.Tensor:
    """Unreduced loss [batch] for one task; regression is scored in z-units.

    ``class_weights`` (classification; by class id, see :mod:`class_weights`) multiply
    each example's loss by its label's weight; None leaves the loss as it was."""
    if task.type == "binary":
        loss = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.cast(tf.reshape(label, [-1]), tf.float32), logits=tf.reshape(raw, [-1]))
    elif task.type == "multiclass":
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(tf.reshape(label, [-1]), tf.int32), logits=raw)
    else:
        return _regression_loss(task, raw, label, mean, std)
    if class_weights is None:
        return loss
    return loss * tf.gather(tf.constant(class_weights, tf.float32),
                            tf.cast(tf.reshape(label, [-1]), tf.int32))


def _regression_loss(task: Task, raw: tf.Tensor, label: tf.Tensor,
                     mean: tf.Tensor | float, std: tf.Tensor | float) -> tf.Tensor:
    z_label = (tf.cast(tf.reshape(label, [-1]), tf.float32) - mean) / std
    error = tf.reshape(raw, [-1]) - z_label
    if task.loss == "mae":
        return tf.abs(error)
    if task.loss == "huber":
        abs_error = tf.abs(error)
        quadratic = tf.minimum(abs_error, task.huber_delta)
        return 0.5 * tf.square(quadratic) + task.huber_delta * (abs_error - quadratic)
    return tf.square(error)


def outputs(task: Task, raw: tf.Tensor, mean: tf.Tensor | float = 0.0,
            std: tf.Tensor | float = 1.0, class_names: tf.Tensor | None = None
            ) -> dict[str, tf.Tensor]:
    """The task's serving outputs, named as in :mod:`tfx_mtl.naming`."""
    if task.type == "binary":
        probability = tf.sigmoid(tf.reshape(raw, [-1]))
        return {"probability": probability,
                "class_id": tf.cast(probability >= 0.5, tf.int64)}
    if task.type == "multiclass":
        probabilities = tf.nn.softmax(raw, axis=-1)
        class_id = tf.argmax(probabilities, axis=-1)
        result = {"probabilities": probabilities, "class_id": class_id}
        if class_names is not None:
            result["class"] = tf.gather(class_names, class_id)
        return result
    return {"value": mean + std * tf.reshape(raw, [-1])}
