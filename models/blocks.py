"""Building blocks the architectures share: hidden stacks, towers + heads, gated mixtures.

Which parameters are shared and which belong to one task is not recorded here:
the training loop reads it off the graph (:mod:`tfx_mtl.models.ownership`).
``tf.keras`` is Keras 3 (``tfx_mtl/__init__.py`` pins it before TensorFlow
Transform can switch a process to Keras 2).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from tfx_mtl.models import heads
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.task_spec import Task


def hidden_stack(x, units: Sequence[int], config: ArchitectureConfig, prefix: str,
                 dropout: bool = True) -> tf.keras.KerasTensor:
    """Dense layers ``<prefix>_<i>``, each followed by dropout if configured."""
    for i, width in enumerate(units):
        x = hidden_dense(x, width, config, f"{prefix}_{i}", dropout)
    return x


def hidden_dense(x, width: int, config: ArchitectureConfig, name: str,
                 dropout: bool = True) -> tf.keras.KerasTensor:
    """One hidden Dense ``name``, then ``<name>_dropout`` if configured."""
    x = tf.keras.layers.Dense(width, activation=config.activation, name=name)(x)
    if not (dropout and config.dropout):
        return x
    return tf.keras.layers.Dropout(config.dropout, name=f"{name}_dropout")(x)


def tower_and_head(x, task: Task, config: ArchitectureConfig,
                   num_classes: Mapping[str, int]) -> tf.keras.KerasTensor:
    """Task tower ``<task>_tower_<i>`` then ``<task>_head``: the task's raw output."""
    x = hidden_stack(x, config.tower_units, config, f"{task.name}_tower", dropout=False)
    width = heads.head_width(task, num_classes.get(task.name))
    return tf.keras.layers.Dense(width, name=f"{task.name}_head")(x)


def expert(x, config: ArchitectureConfig, prefix: str) -> tuple[tf.keras.KerasTensor, str]:
    """One expert MLP of ``hidden_units``: (output, name of its last Dense)."""
    return (hidden_stack(x, config.hidden_units, config, prefix),
            f"{prefix}_{len(config.hidden_units) - 1}")


def gated_mixture(gate_input, experts: Sequence, name: str) -> tf.keras.KerasTensor:
    """Softmax gate ``<name>_gate`` over ``experts`` and their weighted sum ``<name>_mix``."""
    gate = tf.keras.layers.Dense(len(experts), activation="softmax", name=f"{name}_gate")(gate_input)
    return MixExperts(name=f"{name}_mix")([gate, *experts])


@tf.keras.utils.register_keras_serializable(package="tfx_mtl")
class MixExperts(tf.keras.layers.Layer):
    """``[gate [batch, E], expert_1 .. expert_E [batch, d]] -> sum_e gate[:, e] * expert_e``.

    A sum of E broadcast products, not ``einsum("be,bed->bd")`` over the stacked
    experts: same numbers (to float rounding), but the einsum's batched matmul and
    the stack cost about twice as much per step, forward and backward
    (docs/BENCHMARKS.md, "MMoE and PLE").
    """

    def call(self, inputs):
        gate, experts = inputs[0], inputs[1:]
        return tf.add_n([gate[:, e:e + 1] * expert for e, expert in enumerate(experts)])


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
