"""The input layer every architecture shares: Transform outputs -> one feature vector.

Numeric features enter as they are (Transform already z-scored them); bucket and
vocabulary ids go through an embedding each. All parts are concatenated into one
[batch, width] vector, the input of every architecture's first shared layer.
"""
from __future__ import annotations

import numbers
from typing import Callable, Mapping

import tensorflow as tf

from tfx_mtl import naming
from tfx_mtl.task_spec import TaskSpec


def input_cardinalities(spec: TaskSpec, vocabulary_size: Callable[[str], int]) -> dict[str, int]:
    """Number of ids of each id-valued feature; ``vocabulary_size(name)`` reads TFT's vocab."""
    sizes, keys = {}, spec.column_keys
    for feature in spec.features:
        if feature.kind == "bucketized":
            sizes[feature.name] = feature.buckets
        elif feature.kind == "categorical":
            sizes[feature.name] = (vocabulary_size(naming.feature_vocab_name(keys[feature.name]))
                                   + feature.oov_buckets)
    return sizes


def input_layer(spec: TaskSpec, cardinalities: Mapping[str, int]
                ) -> tuple[dict[str, tf.keras.KerasTensor], tf.keras.KerasTensor]:
    """(inputs keyed by the features' Transform output keys, ``spec.feature_keys``, the
    concatenated feature vector). ``cardinalities`` is keyed by column."""
    inputs, parts = {}, []
    for feature, key in zip(spec.features, spec.feature_keys):
        if feature.kind == "numeric":
            inputs[key] = tf.keras.Input(shape=(), name=key, dtype=tf.float32)
            parts.append(tf.keras.layers.Reshape((1,), name=f"{key}_column")(inputs[key]))
            continue
        size = cardinalities.get(feature.name)
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"cardinalities[{feature.name!r}]: the {feature.kind} feature needs "
                             f"a positive number of ids, got {size!r}")
        inputs[key] = tf.keras.Input(shape=(), name=key, dtype=tf.int64)
        parts.append(tf.keras.layers.Embedding(int(size), feature.embedding_dim,
                                               name=f"{key}_embedding")(inputs[key]))
    vector = tf.keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    return inputs, vector
