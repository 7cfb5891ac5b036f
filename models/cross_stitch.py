"""Cross-stitch networks (Misra et al., CVPR 2016).

One column per task (``<task>_column_<i>``, an MLP of ``hidden_units`` on the
feature vector); after each hidden layer a cross-stitch unit (``cross_stitch_<i>``)
replaces column k's activation by ``sum_j alpha[k, j] * column_j`` with a
learnable K x K ``alpha``, initialised as the paper recommends: 0.9 on the
diagonal, the other 0.1 split evenly among the other columns. Then each task's
tower + head reads its own stitched column.

Representation = the K outputs of the last cross-stitch unit (one per task):
everything before them mixes all columns, and task k reads only output k.
last_shared_layers = the last Dense of *every* column: no Dense layer is shared
in the usual sense, but each last column layer reaches every task through the
last stitch, so they are the last layers whose weights all tasks' losses move
(the stitch matrix itself, a scalar per pair, is too small to measure gradient
norms on).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

from tfx_mtl.models import blocks, features
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.models.network import Network
from tfx_mtl.task_spec import TaskSpec

NAME = "cross_stitch"
SELF_WEIGHT = 0.9


def initial_matrix(columns: int, self_weight: float = SELF_WEIGHT) -> np.ndarray:
    """``self_weight`` on the diagonal, ``1 - self_weight`` split over each row's others."""
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns: must be a positive integer, got {columns!r}")
    if columns == 1:
        return np.ones((1, 1), np.float32)
    other = (1.0 - self_weight) / (columns - 1)
    matrix = np.full((columns, columns), other, np.float32)
    np.fill_diagonal(matrix, self_weight)
    return matrix


@tf.keras.utils.register_keras_serializable(package="tfx_mtl")
class CrossStitch(tf.keras.layers.Layer):
    """``[h_1 .. h_K]`` (each [batch, d]) -> ``[sum_j alpha[k, j] h_j for k]``."""

    def build(self, input_shape):
        columns = len(input_shape)
        self.alpha = self.add_weight(
            name="alpha", shape=(columns, columns),
            initializer=lambda shape, dtype=None: tf.constant(initial_matrix(columns), dtype=dtype))

    def call(self, inputs):
        stacked = tf.stack(list(inputs), axis=1)  # [batch, K, d]
        mixed = tf.einsum("kj,bjd->bkd", self.alpha, stacked)
        return tf.unstack(mixed, num=len(inputs), axis=1)


def build_network(spec: TaskSpec, cardinalities: Mapping[str, int],
                  num_classes: Mapping[str, int] | None = None,
                  config: ArchitectureConfig = ArchitectureConfig(name=NAME)) -> Network:
    inputs, x = features.input_layer(spec, cardinalities)
    columns = [x] * len(spec.tasks)
    for i, width in enumerate(config.hidden_units):
        layer_out = [blocks.hidden_dense(column, width, config, f"{task.name}_column_{i}")
                     for task, column in zip(spec.tasks, columns)]
        columns = CrossStitch(name=f"cross_stitch_{i}")(layer_out)
    outputs = {task.name: blocks.tower_and_head(column, task, config, num_classes or {})
               for task, column in zip(spec.tasks, columns)}
    last = len(config.hidden_units) - 1
    return Network.from_tensors(NAME, inputs, outputs, list(columns),
                                [f"{task.name}_column_{last}" for task in spec.tasks])
