"""Hard parameter sharing: one shared MLP trunk, one tower + head per task.

Layers: the input layer (:mod:`tfx_mtl.models.features`), trunk Dense layers
``shared_<i>``, then per task ``<task>_tower_<i>`` and ``<task>_head``.
representation = the trunk output (every shared variable is upstream of it,
each task reads only it); last_shared_layers = the last trunk Dense.
"""
from __future__ import annotations

from typing import Mapping

from tfx_mtl.models import blocks, features
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.models.network import Network
from tfx_mtl.task_spec import TaskSpec

NAME = "shared_bottom"


def build_network(spec: TaskSpec, cardinalities: Mapping[str, int],
                  num_classes: Mapping[str, int] | None = None,
                  config: ArchitectureConfig = ArchitectureConfig()) -> Network:
    inputs, x = features.input_layer(spec, cardinalities)
    trunk = blocks.hidden_stack(x, config.hidden_units, config, "shared")
    outputs = {task.name: blocks.tower_and_head(trunk, task, config, num_classes or {})
               for task in spec.tasks}
    return Network.from_tensors(NAME, inputs, outputs, [trunk],
                                [f"shared_{len(config.hidden_units) - 1}"])

