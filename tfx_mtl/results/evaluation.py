"""Reads one task's TFMA evaluation (candidate vs baseline) in the spec's terms.

TFMA keys every value by model (``candidate``/``baseline``), metric,
example weighting and whether it is a difference. This module turns that into
per-slice dicts keyed by the spec's metric names (plus ``example_count``, every
eval example, and ``labelled_count``, those with the task's label) and
describes each failed value bound in words: which metric, its value and the
bound (change bounds are judged on ModelComparison's paired interval). The blessing gate, the run summary and the review
notebook all read evaluations through it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from tfx_mtl import finite
from tfx_mtl.naming import BASELINE, CANDIDATE
from tfx_mtl.task_spec import Task

EXAMPLE_COUNT = "example_count"
LABELLED_COUNT = "labelled_count"

SliceKey = tuple[tuple[str, Any], ...]  # () is the overall slice


@dataclasses.dataclass
class SliceMetrics:
    slice: SliceKey
    candidate: dict[str, float] = dataclasses.field(default_factory=dict)
    baseline: dict[str, float] = dataclasses.field(default_factory=dict)
    changes: dict[str, float] = dataclasses.field(default_factory=dict)  # candidate - baseline

    @property
    def name(self) -> str:
        """``Overall`` or ``col=value`` pairs joined by ``, ``."""
        return ", ".join(f"{c}={v}" for c, v in self.slice) or "Overall"


def _names(task: Task) -> dict[str, str]:
    return {m.tfma_name(task.type): m.key for m in task.metrics}


def _slice_key(proto) -> SliceKey:
    key = []
    for single in proto.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind) if kind else None
        key.append((single.column, value.decode() if isinstance(value, bytes) else value))
    return tuple(key)


def load(eval_uri: str, task: Task) -> list[SliceMetrics]:
    """Every slice's metrics of ``task``'s evaluation, the overall slice first."""
    import tensorflow_model_analysis as tfma  # heavy (TensorFlow): only when reading

    names = _names(task)
    slices = []
    for metrics_for_slice in tfma.load_metrics(eval_uri):
        if metrics_for_slice.HasField("cross_slice_key"):
            continue
        entry = SliceMetrics(_slice_key(metrics_for_slice.slice_key))
        for kv in metrics_for_slice.metric_keys_and_values:
            key = kv.key
            if not kv.value.HasField("double_value"):
                continue
            if key.name == EXAMPLE_COUNT:
                name = LABELLED_COUNT if key.example_weighted.value else EXAMPLE_COUNT
            elif key.name in names:
                name = names[key.name]
            else:
                continue
            value = kv.value.double_value.value
            if key.is_diff:
                entry.changes[name] = value
            elif key.model_name == BASELINE:
                entry.baseline[name] = value
            elif key.model_name in (CANDIDATE, ""):
                entry.candidate[name] = value
        slices.append(entry)
    slices.sort(key=lambda s: (len(s.slice), s.name))
    return slices


def overall(slices: list[SliceMetrics]) -> SliceMetrics:
    for entry in slices:
        if not entry.slice:
            return entry
    return SliceMetrics(())


def failures(eval_uri: str, task: Task) -> list[str]:
    """Each value bound the candidate failed on the overall slice, in words (change
    bounds are judged on the paired comparison: tfx_mtl.comparison.verdict)."""
    names = _names(task)
    import tensorflow_model_analysis as tfma

    result = []
    validation = tfma.load_validation_result(eval_uri)
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            key = failure.metric_key
            if key.name == EXAMPLE_COUNT:
                result.append(f"{LABELLED_COUNT} = {failure.metric_value.double_value.value:g} "
                              "fails the bound >= 1: no test example has this task's label")
                continue
            name = names.get(key.name, key.name)
            result.append(describe_value_failure(
                name, failure.metric_value.double_value.value,
                _value_bound(failure.metric_threshold.value_threshold)))
    return result


def describe_value_failure(name: str, value: float, bound: str) -> str:
    """E.g. ``auc = 0.48 fails the bound >= 0.5``; a NaN value says why it fails."""
    if math.isnan(value):
        return (f"{name} cannot be judged: its value is {finite.UNDEFINED}, and a bound "
                f"({bound}) fails on a value that is not a number")
    return f"{name} = {value:.6g} fails the bound {bound}"


def _value_bound(value) -> str:
    parts = []
    if value.HasField("lower_bound"):
        parts.append(f">= {value.lower_bound.value:g}")
    if value.HasField("upper_bound"):
        parts.append(f"<= {value.upper_bound.value:g}")
    return " and ".join(parts) or "(none)"


def bounds(task: Task) -> dict[str, list[str]]:
    """The spec's bounds of each metric of ``task``, in words (for reports)."""
    result = {}
    for metric in task.metrics:
        words = []
        if metric.threshold is not None:
            if metric.threshold.lower_bound is not None:
                words.append(f">= {metric.threshold.lower_bound:g}")
            if metric.threshold.upper_bound is not None:
                words.append(f"<= {metric.threshold.upper_bound:g}")
        if metric.max_regression is not None:
            words.append(metric.max_regression.describe(
                metric.definition(task.type).higher_is_better)
                + (" (default)" if metric.max_regression.default else ""))
        if metric.unbounded_reason:
            words.append(f"no change bound: {metric.unbounded_reason}")
        if words:
            result[metric.key] = words
    return result
