"""Building blocks the architectures share: hidden stacks, towers + heads, gated mixtures.

Each helper returns the names of the layers it made, so a builder can record
which layers belong to one task (``Network.task_layers``) without guessing from
names. The custom layers use plain TensorFlow ops: ``tf.keras`` is Keras 3, or
Keras 2 (tf_keras) once tensorflow_transform has been imported first (it sets
``TF_USE_LEGACY_KERAS=1``), and the models must build, train and export in both.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from tfx_mtl.models import heads
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.task_spec import Task


def hidden_stack(x, units: Sequence[int], config: ArchitectureConfig, prefix: str,
                 dropout: bool = True) -> tuple[tf.keras.KerasTensor, list[str]]:
    """Dense layers ``<prefix>_<i>`` (each followed by dropout if configured) and their names."""
    names = []
    for i, width in enumerate(units):
        x, made = hidden_dense(x, width, config, f"{prefix}_{i}", dropout)
        names += made
    return x, names


def hidden_dense(x, width: int, config: ArchitectureConfig, name: str,
                 dropout: bool = True) -> tuple[tf.keras.KerasTensor, list[str]]:
    """One hidden Dense ``name`` (then ``<name>_dropout`` if configured) and the names."""
    x = tf.keras.layers.Dense(width, activation=config.activation, name=name)(x)
    if not (dropout and config.dropout):
        return x, [name]
    return tf.keras.layers.Dropout(config.dropout, name=f"{name}_dropout")(x), [name, f"{name}_dropout"]


def tower_and_head(x, task: Task, config: ArchitectureConfig,
                   num_classes: Mapping[str, int]) -> tuple[tf.keras.KerasTensor, list[str]]:
    """Task tower ``<task>_tower_<i>`` then ``<task>_head``: the task's raw output."""
    x, names = hidden_stack(x, config.tower_units, config, f"{task.name}_tower", dropout=False)
    width = heads.head_width(task, num_classes.get(task.name))
    head = f"{task.name}_head"
    return tf.keras.layers.Dense(width, name=head)(x), names + [head]


def expert(x, config: ArchitectureConfig, prefix: str) -> tuple[tf.keras.KerasTensor, list[str], str]:
    """One expert MLP of ``hidden_units``: (output, layer names, name of its last Dense)."""
    out, names = hidden_stack(x, config.hidden_units, config, prefix)
    return out, names, f"{prefix}_{len(config.hidden_units) - 1}"


def gated_mixture(gate_input, experts: Sequence, name: str) -> tuple[tf.keras.KerasTensor, list[str]]:
    """Softmax gate ``<name>_gate`` over ``experts`` and their weighted sum ``<name>_mix``."""
    gate = tf.keras.layers.Dense(len(experts), activation="softmax", name=f"{name}_gate")(gate_input)
    return MixExperts(name=f"{name}_mix")([gate, *experts]), [f"{name}_gate", f"{name}_mix"]


@tf.keras.utils.register_keras_serializable(package="tfx_mtl")
class MixExperts(tf.keras.layers.Layer):
    """``[gate [batch, E], expert_1 .. expert_E [batch, d]] -> sum_e gate[:, e] * expert_e``."""

    def call(self, inputs):
        gate, experts = inputs[0], list(inputs[1:])
        return tf.einsum("be,bed->bd", gate, tf.stack(experts, axis=1))  # stacked: [batch, E, d]


@tf.keras.utils.register_keras_serializable(package="tfx_mtl")
class Fork(tf.keras.layers.Layer):
    """A real copy (``tf.identity``) of its input.

    Task-specific layers that read a tensor the shared layers also read take this
    copy instead, so the copy can be a representation tensor that is not an
    ancestor of the other representation tensors (a gradient w.r.t. it then
    covers only the task-specific paths; see :mod:`tfx_mtl.models.network`).
    """

    def call(self, inputs):
        return tf.identity(inputs)
