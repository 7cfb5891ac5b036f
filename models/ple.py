"""PLE, Progressive Layered Extraction (Tang et al., RecSys 2020); ``levels: 1`` is CGC.

Each level ``l`` (0-based) has ``experts`` shared experts
(``level_<l>_shared_expert_<e>_<i>``) reading the level's shared input and, per
task, ``task_experts`` experts (``<task>_level_<l>_expert_<e>_<i>``) reading the
task's input. Task k's gate (``<task>_level_<l>_gate``, softmax over its own and
the shared experts, computed from task k's input) mixes them into task k's input
of the next level (``<task>_level_<l>_mix``). In every level but the last a shared
gate (``level_<l>_shared_gate``, softmax over *all* experts of the level, from the
shared input) mixes the shared input of the next level. Level 0 feeds the
feature vector to every branch; the tasks read it through a copy,
``task_input`` (a :class:`blocks.Fork`). The last level's task inputs go to the
towers and heads.

Representation (the shared / task-specific boundary). Write ``T_k`` for task k's
input of the last level and ``S`` for the outputs of the last level's shared
experts. Task k's output depends only on ``T_k``, ``S`` and task k's own
last-level experts, gate, tower and head, so the representation is
``[T_k for each task] + S`` (task inputs in spec order, then shared experts):
- levels = 1: every ``T_k`` is the feature vector; the tasks' copy
  ``task_input`` is the one tensor listed (the shared experts read the original,
  so it is not an ancestor of ``S``): ``[task_input] + S``.
- levels >= 2: ``T_k`` is task k's mix of level L-2. Everything else of the
  earlier levels is shared: a task's experts at level l < L-1 feed the shared
  gate, hence the shared experts of level l+1 and every task. (Task k's gate of
  level L-2 is upstream of the boundary yet reaches task k alone; that is
  allowed, it simply counts among the upstream variables.) ``T_k`` is not an
  ancestor of ``S``: the level L-2 shared gate reads the shared input and the
  level's expert outputs, not the task mixes.
last_shared_layers = the last Dense of the last level's shared experts. gates = every
task gate and shared gate, each with the experts its columns weigh and its level.
"""
from __future__ import annotations

from typing import Mapping

from tfx_mtl.models import blocks, features
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.models.network import Gate, Network
from tfx_mtl.task_spec import TaskSpec

NAME = "ple"


def build_network(spec: TaskSpec, cardinalities: Mapping[str, int],
                  num_classes: Mapping[str, int] | None = None,
                  config: ArchitectureConfig = ArchitectureConfig(name=NAME)) -> Network:
    inputs, x = features.input_layer(spec, cardinalities)
    shared_in = x
    task_input = blocks.Fork(name="task_input")(x)
    task_in = {task.name: task_input for task in spec.tasks}
    gates = []
    for level in range(config.levels):
        last = level == config.levels - 1
        shared_out, last_dense = [], []
        shared_names = tuple(f"level_{level}_shared_expert_{e}" for e in range(config.experts))
        for name in shared_names:
            out, last_name = blocks.expert(shared_in, config, name)
            shared_out.append(out)
            last_dense.append(last_name)
        next_task_in, level_task_experts, level_task_names = {}, [], ()
        for task in spec.tasks:
            names = tuple(f"{task.name}_level_{level}_expert_{e}"
                          for e in range(config.task_experts))
            own = [blocks.expert(task_in[task.name], config, name)[0] for name in names]
            level_task_experts += own
            level_task_names += names
            next_task_in[task.name] = blocks.gated_mixture(
                task_in[task.name], own + shared_out, f"{task.name}_level_{level}")
            gates.append(Gate(f"{task.name}_level_{level}_gate", task.name,
                              names + shared_names, level))
        if last:
            boundary = list({id(t): t for t in task_in.values()}.values()) + shared_out
        else:
            shared_in = blocks.gated_mixture(shared_in, level_task_experts + shared_out,
                                             f"level_{level}_shared")
            gates.append(Gate(f"level_{level}_shared_gate", None,
                              level_task_names + shared_names, level))
        task_in = next_task_in
    outputs = {task.name: blocks.tower_and_head(task_in[task.name], task, config,
                                                num_classes or {})
               for task in spec.tasks}
    return Network.from_tensors(NAME, inputs, outputs, boundary, last_dense, gates)
