"""The spec's metrics computed inside the training loop (model selection, TensorBoard).

TFMA computes the authoritative metrics after training; this module gives the
loop the same metrics, by the same spec names, on the validation split while it
trains, using Keras metric objects weighted by each task's label mask. Values
are in label units (a regression head's output is de-standardised first).
Each task also gets ``loss`` (:data:`LOSS`): its training loss (the masked mean
the step minimises, in z-units for a standardised regression) on those batches,
which the selection criterion (:mod:`early_stopping`) is made of.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import tensorflow as tf

from tfx_mtl import naming
from tfx_mtl.models import heads
from tfx_mtl.task_spec import Metric, Task, TaskSpec

_FACTORIES: dict[str, Callable[[Metric], tf.keras.metrics.Metric]] = {
    "auc": lambda m: tf.keras.metrics.AUC(num_thresholds=1000),
    "auc_pr": lambda m: tf.keras.metrics.AUC(num_thresholds=1000, curve="PR"),
    "binary_accuracy": lambda m: tf.keras.metrics.BinaryAccuracy(),
    "precision": lambda m: tf.keras.metrics.Precision(),
    "recall": lambda m: tf.keras.metrics.Recall(),
    "log_loss": lambda m: tf.keras.metrics.BinaryCrossentropy(),
    "mse": lambda m: tf.keras.metrics.MeanSquaredError(),
    "mae": lambda m: tf.keras.metrics.MeanAbsoluteError(),
    "rmse": lambda m: tf.keras.metrics.RootMeanSquaredError(),
}
# Multiclass (labels are class ids). The AUCs read one-hot labels: Keras' AUC flattens
# them with the probabilities (micro) or averages per class (``multi_label``: macro).
_MULTICLASS: dict[str, Callable[[Metric], tf.keras.metrics.Metric]] = {
    "accuracy": lambda m: tf.keras.metrics.SparseCategoricalAccuracy(),
    "log_loss": lambda m: tf.keras.metrics.SparseCategoricalCrossentropy(),
    "top_k_accuracy": lambda m: tf.keras.metrics.SparseTopKCategoricalAccuracy(k=m.k),
    "auc_micro": lambda m: tf.keras.metrics.AUC(num_thresholds=1000),
    "auc_macro": lambda m: tf.keras.metrics.AUC(num_thresholds=1000, multi_label=True),
}
_ONE_HOT = ("auc_micro", "auc_macro")
# Not in the loop: a per-class precision/recall names a class of the label column, whose
# id the loop does not know (the Evaluator learns it from the raw column).
_NOT_IN_LOOP = ("precision", "recall")


LOSS = "loss"


def metric_names(task: Task) -> tuple[str, ...]:
    """The keys of ``task``'s metrics the loop computes (:attr:`Metric.key`)."""
    return tuple(m.key for m in _loop_metrics(task))


def _loop_metrics(task: Task) -> list[Metric]:
    if task.type != "multiclass":
        return list(task.metrics)
    return [m for m in task.metrics if m.name not in _NOT_IN_LOOP]


def _make(task: Task, metric: Metric) -> tf.keras.metrics.Metric:
    return (_MULTICLASS if task.type == "multiclass" else _FACTORIES)[metric.name](metric)


class Evaluator:
    """Scores batches with the spec's metrics; the prediction step is traced once.

    The training loop evaluates every ``eval_every`` steps: keeping one compiled
    prediction per loop avoids a retrace at each evaluation.
    """

    def __init__(self, model: tf.keras.Model, spec: TaskSpec,
                 label_stats: Mapping[str, tuple[float, float]],
                 class_weights: Mapping[str, Sequence[float]] | None = None):
        """``class_weights``: weight the tasks' ``loss`` as training does (metrics never)."""
        self.spec = spec
        class_weights = dict(class_weights or {})
        keys = list(spec.feature_keys)

        @tf.function
        def predict(batch):
            """{task: (scored output, per-example training loss)}."""
            raw = model({k: batch[k] for k in keys}, training=False)
            result = {}
            for task in spec.tasks:
                mean, std = label_stats.get(task.name, (0.0, 1.0))
                out = heads.outputs(task, raw[task.name], mean, std)
                loss = heads.per_example_loss(task, raw[task.name],
                                              batch[naming.label_key(task.name)], mean, std,
                                              class_weights.get(task.name))
                result[task.name] = (out[naming.SCORED_OUTPUT[task.type]], loss)
            return result

        self._predict = predict

    def __call__(self, batches: Iterable[Mapping[str, tf.Tensor]]) -> dict[str, dict[str, float]]:
        """Every spec metric and the loss of every task over ``batches``:
        ``{task: {metric: value, "loss": value}}``."""
        spec = self.spec
        metrics = {task.name: {m.key: _make(task, m) for m in _loop_metrics(task)}
                   for task in spec.tasks}
        one_hot = {task.name: {m.key for m in _loop_metrics(task)
                               if task.type == "multiclass" and m.name in _ONE_HOT}
                   for task in spec.tasks}
        losses = {task.name: tf.keras.metrics.Mean() for task in spec.tasks}
        for batch in batches:
            predicted = self._predict(batch)
            for task in spec.tasks:
                label = tf.reshape(batch[naming.label_key(task.name)], [-1])
                mask = tf.reshape(tf.cast(batch[naming.mask_key(task.name)], tf.float32), [-1])
                score, loss = predicted[task.name]
                losses[task.name].update_state(loss, sample_weight=mask)
                if task.type != "multiclass":  # Keras reduces the last axis: one value per row
                    label = tf.reshape(tf.cast(label, tf.float32), [-1, 1])
                    score = tf.reshape(score, [-1, 1])
                for key, metric in metrics[task.name].items():
                    if key in one_hot[task.name]:
                        metric.update_state(tf.one_hot(label, tf.shape(score)[-1]), score,
                                            sample_weight=mask)
                    else:
                        metric.update_state(label, score, sample_weight=mask)
        for task in spec.tasks:
            metrics[task.name][LOSS] = losses[task.name]
        return {task: {name: float(m.result()) for name, m in by_name.items()}
                for task, by_name in metrics.items()}

