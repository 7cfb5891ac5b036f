"""How the task losses are weighted: one module per method, registered by name.

Registered (in this order): ``uniform``, ``uncertainty`` (Kendall et al., 2018),
``gradnorm`` (Chen et al., 2018), ``dwa`` (Liu et al., 2019), ``famo`` (Liu et al.,
2023), ``rlw`` (Lin et al., 2022), ``gls`` (Chennupati et al., 2019), ``imtl_l`` (Liu
et al., 2021), ``db_mtl`` (the loss part of Lin et al., 2023). Adding one is a
module beside these, its import below, and its test: docs/development.md.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

# Importing a method's module registers it; names() lists them in this order.
from tfx_mtl.models.weighting import uniform  # noqa: F401,I001
from tfx_mtl.models.weighting import uncertainty  # noqa: F401
from tfx_mtl.models.weighting import gradnorm  # noqa: F401
from tfx_mtl.models.weighting import dwa  # noqa: F401
from tfx_mtl.models.weighting import famo  # noqa: F401
from tfx_mtl.models.weighting import rlw  # noqa: F401
from tfx_mtl.models.weighting import gls  # noqa: F401
from tfx_mtl.models.weighting import imtl_l  # noqa: F401
from tfx_mtl.models.weighting import db_mtl  # noqa: F401
from tfx_mtl.models.weighting.base import REGISTRY, Weighting
from tfx_mtl.task_spec import TASK_TYPES


def names() -> tuple[str, ...]:
    return REGISTRY.names()


def make(name: str, task_names: Sequence[str], task_types: Sequence[str],
         static_weights: Sequence[float] | Mapping[str, float] | None = None,
         params: Mapping[str, Any] | None = None, seed: int = 0,
         **more_params) -> Weighting:
    """The weighting ``name`` for these tasks, with its parameters (a mapping, or keywords).

    ``static_weights``: the spec's per-task weights, a sequence aligned with
    ``task_names`` or a mapping name -> weight (missing: 1.0; None: all 1.0).
    ``seed``: the run seed, which random weightings (``rlw``) draw from.
    """
    method = REGISTRY.get(name)
    task_names, task_types = tuple(task_names), tuple(task_types)
    if not task_names:
        raise ValueError("task_names is empty: a weighting needs at least one task")
    if len(set(task_names)) != len(task_names):
        raise ValueError(f"task_names has duplicates: {list(task_names)}")
    if len(task_types) != len(task_names):
        raise ValueError(f"task_types has {len(task_types)} entries for {len(task_names)} tasks")
    for task, task_type in zip(task_names, task_types):
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_types: task {task!r} has unknown type {task_type!r} "
                             f"(one of: {', '.join(TASK_TYPES)})")
    weights = _static_weights(static_weights, task_names)
    return method(task_names, task_types, weights,
                  REGISTRY.params(name, {**dict(params or {}), **more_params}), seed=seed)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == value and abs(value) != float("inf"))


def _static_weights(static_weights, task_names: tuple[str, ...]) -> tuple[float, ...]:
    if static_weights is None:
        return (1.0,) * len(task_names)
    if isinstance(static_weights, Mapping):
        unknown = sorted(set(static_weights) - set(task_names))
        if unknown:
            raise ValueError(f"static_weights: unknown task(s) {', '.join(map(repr, unknown))} "
                             f"(tasks: {', '.join(task_names)})")
        static_weights = [static_weights.get(task, 1.0) for task in task_names]
    static_weights = tuple(static_weights)
    if len(static_weights) != len(task_names):
        raise ValueError(f"static_weights has {len(static_weights)} entries "
                         f"for {len(task_names)} tasks")
    for task, weight in zip(task_names, static_weights):
        if not _number(weight) or weight < 0:
            raise ValueError(f"static_weights: task {task!r} has weight {weight!r}; "
                             "must be a finite number >= 0")
    return tuple(float(w) for w in static_weights)
