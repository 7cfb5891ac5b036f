"""Which parameters are shared between tasks, and which belong to one task.

Gradient surgery and loss weighting act on the *shared* parameters only; a
task-specific parameter (a tower, a head, an MMoE gate) gets its own task's
gradient and nothing else. Rather than trusting layer names, the split is read
off the graph: a variable is owned by every task whose output it can reach.
That is right for every architecture, including PLE's lower-level task experts
(which reach all tasks through the shared gate) and cross-stitch columns.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Partition:
    shared: tuple  # variables reaching two or more tasks
    owned: Mapping[str, tuple]  # task -> variables reaching that task only
    last_shared: tuple  # the shared variables GradNorm measures

    @property
    def task_specific(self) -> tuple:
        return tuple(v for variables in self.owned.values() for v in variables)


class OwnershipError(ValueError):
    """A parameter reaches no task, or the declared last shared layer is not shared."""


def sample_inputs(model: tf.keras.Model, rows: int = 2) -> dict[str, tf.Tensor]:
    """Zeros shaped and typed like the model's inputs (enough to trace connectivity)."""
    inputs = model.inputs if isinstance(model.inputs, (list, tuple)) else [model.inputs]
    return {tensor.name: tf.zeros([rows] + list(tensor.shape[1:]), dtype=tensor.dtype)
            for tensor in inputs}


def partition(model: tf.keras.Model, last_shared: Sequence, task_names: Sequence[str],
              strategy: tf.distribute.Strategy | None = None) -> Partition:
    """Splits ``model.trainable_variables`` by the tasks each one reaches.

    Runs one tiny forward and backward pass in a replica context of ``strategy``
    (mirrored variables have no gradient outside one).
    """
    variables = list(model.trainable_variables)
    reaches: dict[str, list[bool]] = {}

    def trace():
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(sample_inputs(model), training=False)
            targets = {task: tf.reduce_sum(outputs[task]) for task in task_names}
        for task in task_names:  # every replica finds the same; keep one
            reaches[task] = [g is not None for g in tape.gradient(targets[task], variables)]

    (strategy or tf.distribute.get_strategy()).run(trace)
    shared, owned = [], {task: [] for task in task_names}
    for i, variable in enumerate(variables):
        tasks = [task for task in task_names if reaches[task][i]]
        if not tasks:
            raise OwnershipError(f"parameter {variable.name} reaches no task's output")
        if len(tasks) == 1:
            owned[tasks[0]].append(variable)
        else:
            shared.append(variable)
    shared_ids = {id(v) for v in shared}
    not_shared = [v.name for v in last_shared if id(v) not in shared_ids]
    if not_shared and len(task_names) > 1:
        raise OwnershipError(f"the last shared layer's parameters {not_shared} do not reach "
                             "every task")
    return Partition(shared=tuple(shared), owned={t: tuple(v) for t, v in owned.items()},
                     last_shared=tuple(last_shared))
