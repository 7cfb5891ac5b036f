"""Single-task baselines: one of the multi-task families with one head.

Builds ``config.family`` on ``spec.restricted_to([config.task])`` (see
:func:`architecture.trained_spec`), so a baseline has exactly the layers, widths
and representation of the family it is compared with, minus the other tasks.
Train, evaluate and export it against the restricted spec too.
"""
from __future__ import annotations

import importlib
from typing import Mapping

from tfx_mtl.models import architecture
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.models.network import Network
from tfx_mtl.task_spec import TaskSpec

NAME = "single_task"


def build_network(spec: TaskSpec, cardinalities: Mapping[str, int],
                  num_classes: Mapping[str, int] | None = None,
                  config: ArchitectureConfig = ArchitectureConfig(name=NAME)) -> Network:
    """``config.task`` may be None only when the spec has exactly one task."""
    if config.name != NAME:
        raise architecture.ArchitectureError(
            [("architecture.name", f"single_task.build_network needs name: single_task, "
                                   f"got {config.name!r}")])
    one_task = architecture.trained_spec(spec, config)  # validates
    family = importlib.import_module(f"tfx_mtl.models.{config.family}")
    return family.build_network(one_task, cardinalities, num_classes, config)
