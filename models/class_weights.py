"""Class weights of a task's training loss, resolved for the classes the data has.

The spec gives a binary task's ``pos_weight`` and a multiclass task's
``class_weights`` as numbers or as ``balanced`` (:mod:`tfx_mtl.task_spec`). The
Trainer resolves them here into one weight per class id, the order of the head's
outputs: ``("0", "1")`` for a binary label, Transform's label vocabulary for a
multiclass one. A class the spec names that the train split does not have is
refused here, naming the field: only now are the classes known.

``balanced`` follows scikit-learn (``sklearn.utils.class_weight.compute_class_weight``
with ``class_weight="balanced"``): ``w_c = n / (n_classes * n_c)`` over the train
split's labelled examples. For a binary task it resolves to
``pos_weight = n_neg / n_pos`` with the negative class at 1, as PyTorch's
``BCEWithLogitsLoss(pos_weight=...)`` documents it: the ratio of scikit-learn's two
balanced weights, so the same minimiser, with the loss scaled by ``2 n_neg / n``.
The counts are the Trainer's own pass over the train split (:func:`count_classes`),
made only when a task asks for ``balanced``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tfx_mtl import naming
from tfx_mtl.errors import InputError
from tfx_mtl.task_spec import BALANCED, Task

BINARY_CLASSES = ("0", "1")


@dataclasses.dataclass(frozen=True)
class ClassWeights:
    """A task's resolved weights: ``weights[i]`` multiplies the loss of class id ``i``."""

    classes: tuple[str, ...]  # by class id
    weights: tuple[float, ...]  # by class id
    balanced: bool  # resolved from ``counts`` (else the spec's numbers)
    counts: tuple[int, ...] | None = None  # labelled train examples per class id

    def report(self) -> dict[str, Any]:
        """For ``training_report.json``: every class's effective weight, by class."""
        result: dict[str, Any] = {
            "source": BALANCED if self.balanced else "spec",
            "weights": dict(zip(self.classes, self.weights)),
            "counts": dict(zip(self.classes, self.counts)) if self.counts else None}
        if self.classes == BINARY_CLASSES:
            result["pos_weight"] = self.weights[1]
        return result


def is_weighted(task: Task) -> bool:
    return task.pos_weight is not None or task.class_weights is not None


def needs_counts(task: Task) -> bool:
    return BALANCED in (task.pos_weight, task.class_weights)


def balanced(counts: Sequence[int]) -> tuple[float, ...]:
    """scikit-learn's balanced weights: n / (n_classes * n_c)."""
    n = float(sum(counts))
    return tuple(n / (len(counts) * c) for c in counts)


def resolve(task: Task, classes: Sequence[str], counts: Sequence[int] | None = None
            ) -> ClassWeights | None:
    """``task``'s weights by class id for ``classes`` (the head's order); ``counts`` (the
    train split's labelled examples per class) is needed for ``balanced``. None: the
    task is unweighted. Raises :class:`InputError` naming the spec field."""
    if not is_weighted(task):
        return None
    classes = tuple(classes)
    if needs_counts(task):
        field = f"tasks.{task.name}." + ("pos_weight" if task.type == "binary" else "class_weights")
        counts = tuple(int(c) for c in counts)
        missing = [cls for cls, c in zip(classes, counts) if c == 0]
        if missing:
            raise InputError(field, f"{BALANCED} needs labelled train examples of every class; "
                                    f"the train split has none of {', '.join(missing)}")
        if task.type == "binary":
            weights = (1.0, counts[0] / counts[1])
        else:
            weights = balanced(counts)
        return ClassWeights(classes, weights, True, counts)
    if task.type == "binary":
        return ClassWeights(classes, (1.0, float(task.pos_weight)), False)
    check_classes(task, classes)
    weights = [1.0] * len(classes)
    for name, weight in task.class_weights:
        weights[_class_index(name, classes)] = weight
    return ClassWeights(classes, tuple(weights), False)


def check_classes(task: Task, classes: Sequence[str], where: str = "the train split") -> None:
    """Refuses a class ``task.class_weights`` names that is not among ``classes`` (the
    label's values on ``where``), naming the field. Needs no TensorFlow: a scan of the
    raw data before the pipeline runs can call it too."""
    if not isinstance(task.class_weights, tuple):
        return
    for name, _ in task.class_weights:
        if _class_index(name, classes) is None:
            raise InputError(f"tasks.{task.name}.class_weights.{name}",
                             f"{name!r} is not a class of the label on {where} "
                             f"(classes: {', '.join(classes)})")


def _class_index(name: str, classes: Sequence[str]) -> int | None:
    """Where ``name`` is among ``classes``: as written, or as the same number (Transform
    writes a numeric label column's classes as ``3.000000``)."""
    if name in classes:
        return classes.index(name)
    number = _number(name)
    if number is None:
        return None
    for i, cls in enumerate(classes):
        if _number(cls) == number:
            return i
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def count_classes(batches: Iterable[Mapping[str, Any]], tasks: Sequence[Task],
                  num_classes: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Labelled examples per class id of each of ``tasks`` over ``batches`` (Transform's
    output: a label and a 0/1 mask per task), e.g. one pass over the train split."""
    totals = {t.name: np.zeros(num_classes.get(t.name, 2), np.int64) for t in tasks}
    for batch in batches:
        for task in tasks:
            label = np.reshape(np.asarray(batch[naming.label_key(task.name)]), [-1])
            mask = np.reshape(np.asarray(batch[naming.mask_key(task.name)]), [-1]) > 0
            totals[task.name] += np.bincount(label[mask].astype(np.int64),
                                             minlength=len(totals[task.name]))
    return {name: tuple(int(c) for c in total) for name, total in totals.items()}
