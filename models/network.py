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

``gates`` declare the softmax gates of a mixture-of-experts family (MMoE, PLE) for
the expert and gate diagnostics (:mod:`tfx_mtl.models.gate_diagnostics`); other
families have none.

``last_shared_layers`` name the layers whose weights GradNorm (Chen et al., 2018)
measures per-task gradient norms on. Which variables are shared and which
belong to one task is read off the graph when training starts
(:mod:`tfx_mtl.models.ownership`), not declared here.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Gate:
    """A softmax gate: its layer, the task it mixes for (None: PLE's shared gate), the
    experts its columns weigh (in column order, by layer prefix) and its level (PLE)."""

    layer: str
    task: str | None
    experts: tuple[str, ...]
    level: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    model: tf.keras.Model  # inputs -> {task: raw head output}
    representation_model: tf.keras.Model  # inputs -> {"outputs": ..., "representation": [..]}
    last_shared_layers: tuple[str, ...]
    gates: tuple[Gate, ...] = ()

    @classmethod
    def from_tensors(cls, name: str, inputs: Mapping[str, tf.keras.KerasTensor],
                     outputs: Mapping[str, tf.keras.KerasTensor],
                     representation: Sequence[tf.keras.KerasTensor],
                     last_shared_layers: Iterable[str],
                     gates: Iterable[Gate] = ()) -> "Network":
        """Both models over the same graph of layers, so they share every variable."""
        model = tf.keras.Model(inputs=inputs, outputs=dict(outputs), name=name)
        representation_model = tf.keras.Model(
            inputs=inputs, outputs={"outputs": dict(outputs), "representation": list(representation)},
            name=f"{name}_representation")
        return cls(model, representation_model, tuple(last_shared_layers), tuple(gates))

    def last_shared_variables(self) -> list[tf.Variable]:
        """The trainable variables of ``last_shared_layers`` (GradNorm's W)."""
        return [v for name in self.last_shared_layers
                for v in self.model.get_layer(name).trainable_variables]
