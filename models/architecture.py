"""Which multi-task architecture to build, checked before anything runs.

One :class:`ArchitectureConfig` describes every family; each family reads the
fields it needs (see the field comments); :mod:`tfx_mtl.models.families` builds
the one it names. A single-task baseline is a family built for one task
(``TrainerConfig.tasks``), nothing of its own.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Mapping

import tensorflow as tf

from tfx_mtl.errors import InputProblems

ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "cross_stitch")


class ArchitectureError(InputProblems):
    """The architecture config is invalid. ``problems`` lists (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("architecture", problems)


@dataclasses.dataclass(frozen=True)
class ArchitectureConfig:
    """Checked when made: :class:`ArchitectureError` names every bad field."""

    hidden_units: tuple[int, ...] = (128, 64)  # shared trunk / each expert / each column
    tower_units: tuple[int, ...] = (32,)  # per task, before its head
    activation: str = "relu"  # of every hidden layer
    dropout: float = 0.0  # after every hidden Dense of trunks, experts and columns
    name: str = "shared_bottom"  # one of ARCHITECTURES
    experts: int = 4  # mmoe: experts; ple: shared experts per level
    task_experts: int = 1  # ple: experts of each task per level
    levels: int = 1  # ple: extraction levels (1 = CGC)

    def __post_init__(self):
        for field in ("hidden_units", "tower_units"):  # lists (from YAML/JSON) -> tuples
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        problems = self._problems()
        if problems:
            raise ArchitectureError(problems)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ArchitectureConfig":
        """From JSON/YAML data (lists become tuples)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ArchitectureError([("architecture", f"must be a mapping, got {data!r}")])
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [(f"architecture.{key}", f"unknown field (allowed: {', '.join(allowed)})")
                   for key in data if key not in allowed]
        if unknown:
            raise ArchitectureError(unknown)
        return cls(**data)

    def _problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []

        def add(field: str, message: str) -> None:
            problems.append((f"architecture.{field}", message))

        if self.name not in ARCHITECTURES:
            add("name", f"unknown architecture {self.name!r} (one of: {', '.join(ARCHITECTURES)})")
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
        return problems


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

