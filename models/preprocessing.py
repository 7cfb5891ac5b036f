"""Transform module: ``preprocessing_fn`` derived from the task spec.

Per feature kind (missing values are imputed, never crashed on):
  numeric      z-score from the mean and variance of the present values; missing -> 0
               (the mean)
  bucketized   quantile buckets of the present values; missing -> the mean's bucket
  categorical  as string, vocabulary (top_k) plus OOV hash buckets

"Present" means not empty and finite. Analysis is ONE pass over train: every numeric and
bucketized column goes into one [batch, D] block (missing cells NaN, which TFT's
analyzers skip), analysed by one mean-and-variance analyzer per column of the block and
one quantiles analyzer per distinct bucket count; the imputed value is applied after the
analysis and never feeds it. (Before issue 18 the mean was imputed first and the z-score
and quantiles analysed the imputed column: a second pass over train, and a standard
deviation shrunk by the imputed cells; now it is the present values' own.) A column with
no present value in train has no mean: it is 0 in every row (bucketized: the last
bucket, TFT's boundaries of no value being all 0), never NaN.

Per task: the label (evaluated from its column or expression), a 0/1 mask that
is 0 wherever any column the label reads is missing, NaN or infinite (or a
regression label is not finite), and for regression tasks the mean and standard deviation of the
labelled values, which the Trainer bakes into the head so the model learns in
standardised units and serves in the label's own units. Inputs are keyed by the
data's column names as written; output names follow :mod:`tfx_mtl.naming`, from each
feature's safe key (:mod:`tfx_mtl.column_keys`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from tfx_mtl import naming
from tfx_mtl.task_spec import Feature, Task, TaskSpec

# Key of the task spec inside the components' custom_config.
SPEC_CONFIG_KEY = "task_spec"
FLOAT_KINDS = ("numeric", "bucketized")  # the kinds analysed in the [batch, D] block


def preprocessing_fn(inputs: Mapping[str, Any], custom_config: Mapping[str, Any]):
    """TFX entry point: the spec comes in ``custom_config`` (see pipeline)."""
    return transform(inputs, TaskSpec.from_dict(custom_config[SPEC_CONFIG_KEY]))


def transform(inputs: Mapping[str, Any], spec: TaskSpec) -> dict[str, tf.Tensor]:
    keys = spec.column_keys  # inputs are keyed by column, outputs by the column's safe key
    floats = [f for f in spec.features if f.kind in FLOAT_KINDS]
    transformed = _transform_floats(floats, [inputs[f.name] for f in floats]) if floats else {}
    outputs: dict[str, tf.Tensor] = {}
    for feature in spec.features:
        key = keys[feature.name]
        outputs[naming.feature_key(key)] = (
            transformed[feature.name] if feature.kind in FLOAT_KINDS
            else _categorical(feature, key, inputs[feature.name]))
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


def _present_or_nan(x) -> tf.Tensor:
    """A column as float32 [batch]: its value where present and finite, else NaN."""
    values, present = _dense_with_mask(x)
    values = tf.cast(values, tf.float32)
    present = tf.logical_and(present, tf.math.is_finite(values))
    return tf.where(present, values, tf.fill(tf.shape(values), float("nan")))


def _transform_floats(features: Sequence[Feature], columns: Sequence[Any]
                      ) -> dict[str, tf.Tensor]:
    """The numeric and bucketized features in one analysis phase: {column: output}.

    One mean-and-variance analyzer over the [batch, D] block (TFT skips NaN and infinite
    cells, so each column's statistics are its present values'), one quantiles analyzer
    per distinct bucket count over that count's columns (NaN skipped too); the missing
    cells get the mean only after, in the transform."""
    block = tf.stack([_present_or_nan(x) for x in columns], axis=1)  # [batch, D]
    # TFT's own combined analyzer (tft.mean and tft.var each wrap it): one pass, both.
    mean, var = tft.analyzers._mean_and_var(block, reduce_instance_dims=False)  # noqa: SLF001
    # A column with no present value in train has a NaN mean and variance: every cell
    # is then missing and becomes 0 (z = 0, as the mean of present values would give),
    # never NaN fed to the model.
    mean, var = (tf.where(tf.math.is_nan(t), tf.zeros_like(t), t) for t in (mean, var))
    filled = tf.where(tf.math.is_finite(block), block, mean)
    # As tft.scale_to_z_score: a constant column is centred, not divided by 0.
    centred = filled - mean
    std = tf.sqrt(var)
    z = tf.where(std != 0.0, centred / tf.where(std != 0.0, std, 1.0), centred)
    out = {f.name: z[:, i] for i, f in enumerate(features) if f.kind == "numeric"}
    for count in sorted({f.buckets for f in features if f.kind == "bucketized"}):
        index = [i for i, f in enumerate(features) if f.kind == "bucketized"
                 and f.buckets == count]
        # tft.bucketize's epsilon; boundaries [len(index), count - 1].
        boundaries = tft.quantiles(tf.gather(block, index, axis=1), count,
                                   epsilon=min(1.0 / count, 0.01), reduce_instance_dims=False)
        boundaries = tf.reshape(boundaries, [len(index), -1])
        for j, i in enumerate(index):
            out[features[i].name] = tft.apply_buckets(
                filled[:, i], tf.expand_dims(boundaries[j], axis=0))
    return out


def _categorical(feature: Feature, key: str, x) -> tf.Tensor:
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
        # tft.mean and tft.var of the labelled values in one analyzer (the same numbers).
        mean, var = tft.analyzers._mean_and_var(tf.boolean_mask(value, present))  # noqa: SLF001
        std = tf.sqrt(var)
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
