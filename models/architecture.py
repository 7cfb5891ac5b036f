"""Which multi-task architecture to build, checked against the spec before anything runs.

One :class:`ArchitectureConfig` describes every family; each family reads the
fields it needs (see the field comments). :func:`build` is the registry: it
validates the config and calls ``build_network`` of the module named like the
architecture (``tfx_mtl.models.<name>``), so the family modules can import this
one without a cycle.
"""
from __future__ import annotations

import dataclasses
import importlib
import numbers
from typing import Any, Mapping

import tensorflow as tf

from tfx_mtl.errors import InputProblems
from tfx_mtl.models.network import Network
from tfx_mtl.task_spec import TaskSpec

FAMILIES = ("shared_bottom", "mmoe", "ple", "cross_stitch")
ARCHITECTURES = FAMILIES + ("single_task",)


class ArchitectureError(InputProblems):
    """The architecture config is invalid. ``problems`` lists (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("architecture", problems)


@dataclasses.dataclass(frozen=True)
class ArchitectureConfig:
    hidden_units: tuple[int, ...] = (128, 64)  # shared trunk / each expert / each column
    tower_units: tuple[int, ...] = (32,)  # per task, before its head
    activation: str = "relu"  # of every hidden layer
    dropout: float = 0.0  # after every hidden Dense of trunks, experts and columns
    name: str = "shared_bottom"  # one of ARCHITECTURES
    experts: int = 4  # mmoe: experts; ple: shared experts per level
    task_experts: int = 1  # ple: experts of each task per level
    levels: int = 1  # ple: extraction levels (1 = CGC)
    family: str = "shared_bottom"  # single_task: the family built with one head
    task: str | None = None  # single_task: the task (None if the spec has just one)

    def __post_init__(self):
        for field in ("hidden_units", "tower_units"):  # lists (from YAML/JSON) -> tuples
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ArchitectureConfig":
        """From JSON/YAML data (lists become tuples); spec-independent fields are checked."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ArchitectureError([("architecture", f"must be a mapping, got {data!r}")])
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [(f"architecture.{key}", f"unknown field (allowed: {', '.join(allowed)})")
                   for key in data if key not in allowed]
        if unknown:
            raise ArchitectureError(unknown)
        config = cls(**data)
        config._raise(config._problems(None))
        return config

    def validate(self, spec: TaskSpec) -> "ArchitectureConfig":
        """Raises :class:`ArchitectureError` naming every bad field; returns self."""
        self._raise(self._problems(spec))
        return self

    def _problems(self, spec: TaskSpec | None) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []

        def add(field: str, message: str) -> None:
            problems.append((f"architecture.{field}", message))

        if self.name not in ARCHITECTURES:
            add("name", f"unknown architecture {self.name!r} (one of: {', '.join(ARCHITECTURES)})")
        if self.family not in FAMILIES:
            add("family", f"unknown family {self.family!r} (one of: {', '.join(FAMILIES)})")
        for field, allow_empty in (("hidden_units", False), ("tower_units", True)):
            units = getattr(self, field)
            if (not isinstance(units, tuple) or not all(_positive_int(u) for u in units)
                    or (not units and not allow_empty)):
                add(field, f"must be a {'' if allow_empty else 'non-empty '}list of positive "
                           f"integers, got {units!r}")
        for field in ("experts", "task_experts", "levels"):
            if not _positive_int(getattr(self, field)):
                add(field, f"must be a positive integer, got {getattr(self, field)!r}")
        if not _is_activation(self.activation):
            add("activation", f"unknown Keras activation {self.activation!r}")
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real)
                or not 0 <= self.dropout < 1):
            add("dropout", f"must be a number in [0, 1), got {self.dropout!r}")
        if self.task is not None and not isinstance(self.task, str):
            add("task", f"must be a task name, got {self.task!r}")
        elif self.task is not None and self.name != "single_task":
            add("task", f"only single_task trains one task; drop it or set name: single_task "
                        f"(name is {self.name!r})")
        elif spec is not None and self.name == "single_task":
            tasks = ", ".join(spec.task_names)
            if self.task is None and len(spec.tasks) > 1:
                add("task", f"single_task needs the task to train (tasks: {tasks})")
            elif self.task is not None and self.task not in spec.task_names:
                add("task", f"{self.task!r} is not a task of the spec (tasks: {tasks})")
        return problems

    @staticmethod
    def _raise(problems: list[tuple[str, str]]) -> None:
        if problems:
            raise ArchitectureError(problems)


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _is_activation(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    try:
        tf.keras.activations.get(name)
    except (ValueError, TypeError):
        return False
    return True


def trained_spec(spec: TaskSpec, config: ArchitectureConfig) -> TaskSpec:
    """The tasks the network has heads for: all of them, or single_task's one task."""
    config.validate(spec)
    if config.name != "single_task":
        return spec
    return spec.restricted_to([config.task or spec.task_names[0]])


def build(spec: TaskSpec, cardinalities: Mapping[str, int],
          num_classes: Mapping[str, int] | None = None,
          config: ArchitectureConfig = ArchitectureConfig()) -> Network:
    """The network ``config`` names, for ``spec``; ``num_classes`` is needed for multiclass tasks."""
    config.validate(spec)
    module = importlib.import_module(f"tfx_mtl.models.{config.name}")
    return module.build_network(spec, cardinalities, num_classes, config)
