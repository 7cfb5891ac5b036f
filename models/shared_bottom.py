"""Hard parameter sharing: one shared MLP trunk, one tower per task.

Inputs are the Transform outputs of the spec's features: numeric features enter
as they are (already z-scored), bucket and vocabulary ids through an embedding
each. The model returns a dict ``task -> raw head output`` (logits, or a
standardised value for regression; see :mod:`tfx_mtl.models.heads`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import tensorflow as tf

from tfx_mtl import naming
from tfx_mtl.models import heads
from tfx_mtl.task_spec import TaskSpec


@dataclasses.dataclass(frozen=True)
class ArchitectureConfig:
    hidden_units: tuple[int, ...] = (128, 64)  # shared trunk
    tower_units: tuple[int, ...] = (32,)  # per task
    activation: str = "relu"
    dropout: float = 0.0


def input_cardinalities(spec: TaskSpec, vocabulary_size) -> dict[str, int]:
    """Number of ids of each id-valued feature; ``vocabulary_size(name)`` reads TFT's vocab."""
    sizes = {}
    for feature in spec.features:
        if feature.kind == "bucketized":
            sizes[feature.name] = feature.buckets
        elif feature.kind == "categorical":
            sizes[feature.name] = (vocabulary_size(naming.feature_vocab_name(feature.name))
                                   + feature.oov_buckets)
    return sizes


def build(spec: TaskSpec, cardinalities: Mapping[str, int],
          num_classes: Mapping[str, int] | None = None,
          config: ArchitectureConfig = ArchitectureConfig()) -> tf.keras.Model:
    """The Keras model for ``spec``; ``num_classes`` is needed for multiclass tasks."""
    num_classes = num_classes or {}
    inputs, parts = {}, []
    for feature in spec.features:
        key = naming.feature_key(feature.name)
        if feature.kind == "numeric":
            inputs[key] = tf.keras.Input(shape=(), name=key, dtype=tf.float32)
            parts.append(tf.keras.layers.Reshape((1,), name=f"{key}_column")(inputs[key]))
        else:
            inputs[key] = tf.keras.Input(shape=(), name=key, dtype=tf.int64)
            parts.append(tf.keras.layers.Embedding(
                cardinalities[feature.name], feature.embedding_dim,
                name=f"{key}_embedding")(inputs[key]))
    x = tf.keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    for i, units in enumerate(config.hidden_units):
        x = tf.keras.layers.Dense(units, activation=config.activation, name=f"shared_{i}")(x)
        if config.dropout:
            x = tf.keras.layers.Dropout(config.dropout, name=f"shared_{i}_dropout")(x)
    outputs = {}
    for task in spec.tasks:
        t = x
        for i, units in enumerate(config.tower_units):
            t = tf.keras.layers.Dense(units, activation=config.activation,
                                      name=f"{task.name}_tower_{i}")(t)
        width = heads.head_width(task, num_classes.get(task.name))
        outputs[task.name] = tf.keras.layers.Dense(width, name=f"{task.name}_head")(t)
    return tf.keras.Model(inputs=inputs, outputs=outputs, name="shared_bottom")
