"""Transform module: ``preprocessing_fn`` derived from the task spec.

Per feature kind (missing values are imputed, never crashed on):
  numeric      missing -> mean of present values, then z-score
  bucketized   missing -> mean, then quantile buckets
  categorical  as string, vocabulary (top_k) plus OOV hash buckets

Per task: the label (evaluated from its column or expression), a 0/1 mask that
is 0 wherever any column the label reads is missing, NaN or infinite (or a
regression label is not finite), and for regression tasks the mean and standard deviation of the
labelled values, which the Trainer bakes into the head so the model learns in
standardised units and serves in the label's own units. Inputs are keyed by the
data's column names as written; output names follow :mod:`tfx_mtl.naming`, from each
feature's safe key (:mod:`tfx_mtl.column_keys`).
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from tfx_mtl import naming
from tfx_mtl.task_spec import Feature, Task, TaskSpec

# Key of the task spec inside the components' custom_config.
SPEC_CONFIG_KEY = "task_spec"


def preprocessing_fn(inputs: Mapping[str, Any], custom_config: Mapping[str, Any]):
    """TFX entry point: the spec comes in ``custom_config`` (see pipeline)."""
    return transform(inputs, TaskSpec.from_dict(custom_config[SPEC_CONFIG_KEY]))


def transform(inputs: Mapping[str, Any], spec: TaskSpec) -> dict[str, tf.Tensor]:
    outputs: dict[str, tf.Tensor] = {}
    keys = spec.column_keys  # inputs are keyed by column, outputs by the column's safe key
    for feature in spec.features:
        outputs[naming.feature_key(keys[feature.name])] = _transform_feature(
            feature, keys[feature.name], inputs[feature.name])
    columns = {name: _dense_with_mask(inputs[name]) for name in spec.label_columns}
    for task in spec.tasks:
        outputs.update(_transform_label(task, columns))
    return outputs


def _dense_with_mask(x) -> tuple[tf.Tensor, tf.Tensor]:
    """A [batch, <=1] sparse (or dense) column as dense values [batch] and presence [batch]."""
    if isinstance(x, tf.RaggedTensor):
        x = x.to_sparse()
    if not isinstance(x, tf.SparseTensor):
        x = tf.reshape(x, [-1])
        return x, tf.ones_like(x, dtype=tf.bool)
    shape = [x.dense_shape[0], 1]
    default = "" if x.dtype == tf.string else tf.zeros([], x.dtype)
    values = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, shape), default)
    present = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.bool), shape), False)
    return tf.squeeze(values, axis=1), tf.squeeze(present, axis=1)


def _filled_float(x) -> tf.Tensor:
    values, present = _dense_with_mask(x)
    values = tf.cast(values, tf.float32)
    present = tf.logical_and(present, tf.math.is_finite(values))
    mean = tft.mean(tf.boolean_mask(values, present))
    return tf.where(present, values, mean)


def _transform_feature(feature: Feature, key: str, x) -> tf.Tensor:
    if feature.kind == "numeric":
        return tft.scale_to_z_score(_filled_float(x))
    if feature.kind == "bucketized":
        return tft.bucketize(_filled_float(x), feature.buckets)
    values, _ = _dense_with_mask(x)
    if values.dtype != tf.string:
        values = tf.strings.as_string(values)
    return tft.compute_and_apply_vocabulary(
        values, top_k=feature.top_k, num_oov_buckets=feature.oov_buckets,
        vocab_filename=naming.feature_vocab_name(key))


def _transform_label(task: Task, columns: Mapping[str, tuple[tf.Tensor, tf.Tensor]]
                     ) -> dict[str, tf.Tensor]:
    expr = task.label_expr
    values = {c: columns[c][0] if columns[c][0].dtype == tf.string
              else tf.cast(columns[c][0], tf.float32) for c in expr.columns}
    # A NaN or infinite value in a column the label reads is a missing label, whatever
    # the task's type (a NaN is not 0, so it would be a positive binary label).
    present = tf.reduce_all(tf.stack(
        [columns[c][1] if values[c].dtype == tf.string
         else tf.logical_and(columns[c][1], tf.math.is_finite(values[c]))
         for c in expr.columns]), axis=0)
    value = expr.evaluate(values, logical_and=tf.logical_and, logical_or=tf.logical_or,
                          logical_not=tf.logical_not)
    out = {}
    if task.type == "binary":
        positive = value if value.dtype == tf.bool else tf.not_equal(value, 0.0)
        label = tf.where(present, tf.cast(positive, tf.int64), tf.zeros_like(present, tf.int64))
    elif task.type == "regression":
        value = tf.cast(value, tf.float32)
        present = tf.logical_and(present, tf.math.is_finite(value))
        label = tf.where(present, value, tf.zeros_like(value))
        labelled = tf.boolean_mask(value, present)
        mean = tft.mean(labelled)
        std = tf.sqrt(tft.var(labelled))
        std = tf.where(std > 0.0, std, tf.ones_like(std))
        out[naming.label_mean_key(task.name)] = tf.fill(tf.shape(label), mean)
        out[naming.label_std_key(task.name)] = tf.fill(tf.shape(label), std)
    else:  # multiclass: a vocabulary over the labelled values
        if value.dtype != tf.string:
            value = tf.strings.as_string(value)
        vocab = tft.vocabulary(tf.boolean_mask(value, present),
                               vocab_filename=naming.label_vocab_name(task.name))
        class_id = tft.apply_vocabulary(value, vocab, default_value=-1)
        present = tf.logical_and(present, class_id >= 0)
        label = tf.where(present, class_id, tf.zeros_like(class_id))
    out[naming.label_key(task.name)] = label
    out[naming.mask_key(task.name)] = tf.cast(present, tf.float32)
    return out
