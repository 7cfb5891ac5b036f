"""Checks of the data that its statistics answer: empty splits, unlabelled tasks, NaN,
infinite and overflowing labels.

SchemaGate runs them on the statistics StatisticsGen already computed (one
``DatasetFeatureStatisticsList`` per split), so they cost no pass over the data,
whatever its size. What TFDV records for a numeric column (checked on real
statistics in the tests): ``common_stats.tot_num_values`` counts the values (an empty
CSV cell is an example without one), the standard histogram's ``num_nan`` the NaNs,
and its buckets ``[-inf, -inf]`` and ``[inf, inf]`` the infinities exactly.

A label that is a bare column is counted exactly. A label expression reads several
columns, and the statistics are per column: its labelled examples are at most the
fewest usable values of any column it reads. So "no labelled example" is sound for
an expression (a column without a value leaves the task without a label), but not
complete: columns present on disjoint rows, or a division by zero, are not seen. Its
NaN and infinity count is the sum over its columns, which may count a row twice.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from tensorflow_metadata.proto.v0 import statistics_pb2

from tfx_mtl import naming

# What a task without a labelled example in a split would leave undone.
_NEEDS_LABELS = {naming.TRAIN: "nothing to train on",
                 naming.VALIDATION: "nothing to select the model on",
                 naming.TEST: "nothing to judge it on"}
# Beyond this magnitude a float32 square overflows to inf: an MSE loss or an RMSE of
# such a label is inf, and so is the variance its standardisation divides by.
FLOAT32_SQUARE_LIMIT = math.sqrt(3.4028234663852886e38)


@dataclasses.dataclass(frozen=True)
class ColumnCounts:
    """One column's values in one split, from its statistics."""

    values: int = 0  # examples with a value (NaN and inf included)
    nan: int = 0
    pos_inf: int = 0
    neg_inf: int = 0
    max_abs: float = 0.0  # the largest finite magnitude

    @property
    def non_finite(self) -> int:
        return self.nan + self.pos_inf + self.neg_inf

    @property
    def usable(self) -> int:
        return self.values - self.non_finite

    def __add__(self, other: "ColumnCounts") -> "ColumnCounts":
        return ColumnCounts(self.values + other.values, self.nan + other.nan,
                            self.pos_inf + other.pos_inf, self.neg_inf + other.neg_inf,
                            max(self.max_abs, other.max_abs))


def num_examples(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return sum(int(d.num_examples) for d in stats.datasets)


def column_counts(stats: statistics_pb2.DatasetFeatureStatisticsList,
                  column: str) -> ColumnCounts:
    """A column's counts in one split; a column the split never has is all zeros."""
    for dataset in stats.datasets:
        for feature in dataset.features:
            name = feature.path.step[0] if feature.path.step else feature.name
            if name == column:
                return _counts(feature)
    return ColumnCounts()


def _counts(feature: statistics_pb2.FeatureNameStatistics) -> ColumnCounts:
    kind = feature.WhichOneof("stats")
    if kind is None:
        return ColumnCounts()
    values = int(getattr(feature, kind).common_stats.tot_num_values)
    if kind != "num_stats":
        return ColumnCounts(values)
    standard = [h for h in feature.num_stats.histograms
                if h.type == statistics_pb2.Histogram.STANDARD]
    if not standard:
        return ColumnCounts(values)
    histogram = standard[0]
    inf = {math.inf: 0.0, -math.inf: 0.0}
    finite = [0.0]
    for bucket in histogram.buckets:
        if bucket.low_value == bucket.high_value and math.isinf(bucket.low_value):
            inf[bucket.low_value] += bucket.sample_count
        finite += [abs(v) for v in (bucket.low_value, bucket.high_value) if math.isfinite(v)]
    return ColumnCounts(values, int(histogram.num_nan), round(inf[math.inf]),
                        round(inf[-math.inf]), max(finite))


def empty_splits(per_split: Mapping[str, statistics_pb2.DatasetFeatureStatisticsList]
                 ) -> list[str]:
    return [split for split, stats in sorted(per_split.items()) if num_examples(stats) == 0]


def label_report(per_split: Mapping[str, statistics_pb2.DatasetFeatureStatisticsList],
                 tasks: Sequence[Mapping[str, Any]], max_non_finite: float
                 ) -> dict[str, Any]:
    """Per task, its label columns' counts over every split (``tasks``: {"name", "type",
    "label", "columns"} each, in spec order), as the run reports them (JSON-able)."""
    examples = {split: num_examples(stats) for split, stats in sorted(per_split.items())}
    report: dict[str, Any] = {"examples": examples, "max_non_finite_labels": max_non_finite,
                              "tasks": {}}
    for task in tasks:
        columns = {}
        for column in task["columns"]:
            total = sum((column_counts(s, column) for s in per_split.values()), ColumnCounts())
            columns[column] = {"values": total.values, "nan": total.nan, "inf": total.pos_inf,
                               "-inf": total.neg_inf, "max_abs": total.max_abs}
        non_finite = sum(c["nan"] + c["inf"] + c["-inf"] for c in columns.values())
        report["tasks"][task["name"]] = {
            "label": task["label"], "columns": columns, "non_finite": non_finite,
            "fraction": non_finite / max(1, sum(examples.values()))}
    return report


def label_problems(per_split: Mapping[str, statistics_pb2.DatasetFeatureStatisticsList],
                   tasks: Sequence[Mapping[str, Any]], report: Mapping[str, Any]
                   ) -> list[str]:
    """One line per task the data cannot train, select or judge: no labelled example in
    a split (train, validation or test), too many NaN or infinite label values, or a
    regression label whose square overflows."""
    problems = []
    limit = report["max_non_finite_labels"]
    for task in tasks:
        name = task["name"]
        for split in (s for s in naming.SPLITS if s in per_split):
            counts = {c: column_counts(per_split[split], c) for c in task["columns"]}
            empty = [c for c, column in counts.items() if column.usable == 0]
            if empty:
                problems.append(
                    f"task {name!r}: no labelled example in split {split!r} "
                    f"({num_examples(per_split[split])} examples): column {empty[0]!r} has no "
                    f"value there that is not empty, NaN or infinite; {_NEEDS_LABELS[split]}")
        counts = report["tasks"][name]
        if counts["fraction"] > limit:
            detail = ", ".join(
                f"column {c!r}: {v['nan']} NaN, {v['inf']} inf, {v['-inf']} -inf"
                for c, v in counts["columns"].items() if v["nan"] + v["inf"] + v["-inf"])
            problems.append(
                f"task {name!r}: {counts['non_finite']} NaN or infinite label values in "
                f"{sum(report['examples'].values())} examples ({counts['fraction']:.2%}; "
                f"{detail}), above evaluation.max_non_finite_labels = {limit:.2%}")
        if task["type"] == "regression" and task["columns"] == [task["label"]]:
            column = task["label"]
            largest = counts["columns"][column]["max_abs"]
            if largest > FLOAT32_SQUARE_LIMIT:
                problems.append(
                    f"task {name!r}: column {column!r} has a value of magnitude {largest:.3g}; "
                    f"above {FLOAT32_SQUARE_LIMIT:.3g} its square overflows float32, so the "
                    "loss and the RMSE would be inf")
    return problems
