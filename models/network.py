"""What an architecture builder returns: the model plus the handles multi-task optimisers need.

``model`` is what is trained and exported. ``representation_model`` runs the
same layers (the same variables) and also returns the *representation*: the
tensors at the boundary between the shared part and the task-specific part.
Every parameter shared by several tasks acts only upstream of it, and each
task's output is a function of the representation and that task's own
parameters, so ``d loss_k / d shared = (d loss_k / d representation) . (d
representation / d shared)``; MGDA-UB (Sener & Koltun, 2018) solves its min-norm
problem on the cheap ``d loss_k / d representation``. No representation tensor is
computed from another one, so that vector-Jacobian product counts every path once.

``last_shared_layers`` name the layers whose weights GradNorm (Chen et al., 2018)
measures per-task gradient norms on. ``task_layers[task]`` name the layers
downstream of the representation that belong to ``task`` alone; every other
variable of the model acts upstream of the representation.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import tensorflow as tf


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    model: tf.keras.Model  # inputs -> {task: raw head output}
    representation_model: tf.keras.Model  # inputs -> {"outputs": ..., "representation": [..]}
    last_shared_layers: tuple[str, ...]
    task_layers: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_tensors(cls, name: str, inputs: Mapping[str, tf.keras.KerasTensor],
                     outputs: Mapping[str, tf.keras.KerasTensor],
                     representation: Sequence[tf.keras.KerasTensor],
                     last_shared_layers: Iterable[str],
                     task_layers: Mapping[str, Iterable[str]]) -> "Network":
        """Both models over the same graph of layers, so they share every variable."""
        model = tf.keras.Model(inputs=inputs, outputs=dict(outputs), name=name)
        representation_model = tf.keras.Model(
            inputs=inputs, outputs={"outputs": dict(outputs), "representation": list(representation)},
            name=f"{name}_representation")
        return cls(model, representation_model, tuple(last_shared_layers),
                   {task: tuple(names) for task, names in task_layers.items()})

    def layer_variables(self, names: Iterable[str] | None = None) -> list[tf.Variable]:
        """Trainable variables of the named layers of ``model`` (default: last_shared_layers)."""
        names = self.last_shared_layers if names is None else names
        if isinstance(names, str):
            names = [names]
        variables = []
        for name in names:
            try:
                layer = self.model.get_layer(name)
            except ValueError:
                raise ValueError(f"names: no layer {name!r} in model {self.model.name!r}") from None
            variables.extend(layer.trainable_variables)
        return variables

    def task_variables(self, task: str) -> list[tf.Variable]:
        """The variables only ``task`` uses, downstream of the representation."""
        if task not in self.task_layers:
            raise ValueError(f"task: {task!r} is not an output of this network "
                             f"(tasks: {', '.join(self.task_layers)})")
        return self.layer_variables(self.task_layers[task])

    def shared_variables(self) -> list[tf.Variable]:
        """Every trainable variable upstream of the representation, in model order."""
        specific = {id(v) for task in self.task_layers for v in self.task_variables(task)}
        return [v for v in self.model.trainable_variables if id(v) not in specific]
