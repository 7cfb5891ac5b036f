"""MMoE, Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

``experts`` expert MLPs (``expert_<e>_<i>``) read the feature vector; each task
has a softmax gate ``<task>_gate`` (Dense(experts) on the feature vector) whose
weights mix the expert outputs (``<task>_mix``) into the task's tower + head.

Representation: the expert outputs *and* the gates' input. The gates are
task-specific but read the feature vector, which depends on the shared
embeddings, so the expert outputs alone are not a boundary: output_k is a
function of (expert outputs, gate input; task k's gate, tower, head). The gates
read a copy of the feature vector (``gate_input``, a :class:`blocks.Fork`) so the
representation ``[expert_0 .. expert_{E-1}, gate_input]`` has no tensor computed
from another one (with only numeric features nothing upstream of ``gate_input``
is trainable and its gradient contributes nothing).
last_shared_layers = the last Dense of every expert. gates = each task's gate over
``expert_0 .. expert_{E-1}``.
"""
from __future__ import annotations

from typing import Mapping

from tfx_mtl.models import blocks, features
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.models.network import Gate, Network
from tfx_mtl.task_spec import TaskSpec

NAME = "mmoe"


def build_network(spec: TaskSpec, cardinalities: Mapping[str, int],
                  num_classes: Mapping[str, int] | None = None,
                  config: ArchitectureConfig = ArchitectureConfig(name=NAME)) -> Network:
    inputs, x = features.input_layer(spec, cardinalities)
    experts, last_dense = [], []
    for e in range(config.experts):
        out, last = blocks.expert(x, config, f"expert_{e}")
        experts.append(out)
        last_dense.append(last)
    gate_input = blocks.Fork(name="gate_input")(x)
    outputs = {}
    for task in spec.tasks:
        mixed = blocks.gated_mixture(gate_input, experts, task.name)
        outputs[task.name] = blocks.tower_and_head(mixed, task, config, num_classes or {})
    names = tuple(f"expert_{e}" for e in range(config.experts))
    gates = [Gate(f"{task.name}_gate", task.name, names) for task in spec.tasks]
    return Network.from_tensors(NAME, inputs, outputs, experts + [gate_input], last_dense, gates)
