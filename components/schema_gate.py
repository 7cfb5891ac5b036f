"""SchemaGate: stops the run on bad data, before anything is trained.

ExampleValidator only records anomalies; nothing downstream reads them. This
component reads them and the statistics, and refuses the run, naming the data and
every split, feature, task and column at fault, when a split has no example, the
data does not match the schema, or a task's labels cannot be trained on (none in
the train, validation or test split, too many NaN or infinite values, values whose
square overflows:
:mod:`data_checks`). Otherwise it passes the schema through unchanged, and writes
the count of each task's label values (``LabelReport``, ``label_report.json``),
which the run prints. Transform takes its schema from here, so the dependency is
data (visible in MLMD lineage), not ordering.

TFX reads the component's type annotations at import time, so this module must
not use ``from __future__ import annotations``.
"""
import json
import os
from typing import Sequence

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils

from tfx_mtl import naming
from tfx_mtl.components import data_checks
from tfx_mtl.errors import InputError

_ANOMALIES_FILE = "SchemaDiff.pb"


class LabelReport(types.Artifact):
    """Per task: its label columns' values, NaNs and infinities over every split (JSON)."""

    TYPE_NAME = naming.LABEL_REPORT_TYPE


class DataAnomaliesError(InputError):
    """The data does not match the schema."""

    def __init__(self, message: str):
        super().__init__("data", message)


class EmptySplitError(InputError):
    """A split of the data has no example; ``field`` names the data."""


class LabelDataError(InputError):
    """A task's labels in the data cannot be trained on; ``field`` names the data."""


def read_anomalies(anomalies_uri: str, split_names: str) -> "dict[str, anomalies_pb2.Anomalies]":
    """The Anomalies proto of each split of an ExampleAnomalies artifact."""
    result = {}
    for split in artifact_utils.decode_split_names(split_names):
        path = os.path.join(anomalies_uri, f"Split-{split}", _ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        result[split] = anomalies
    return result


def read_statistics(statistics) -> dict:
    """The DatasetFeatureStatisticsList of each split of an ExampleStatistics artifact."""
    return {split: stats_artifact_utils.load_statistics(statistics, split).proto()
            for split in artifact_utils.decode_split_names(statistics.split_names)}


def describe(per_split: dict[str, anomalies_pb2.Anomalies]) -> list[str]:
    """One line per anomaly: split, feature, short and long description."""
    lines = []
    for split, anomalies in sorted(per_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"split {split!r}, feature {feature!r}: "
                         f"{info.short_description} ({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"split {split!r}, dataset: {info.short_description} ({info.description})")
    return lines


def checks_parameter(pattern: str, tasks, max_non_finite_labels: float,
                     split_dirs: Sequence[str] = ()) -> str:
    """The ``checks`` parameter: the data's file pattern and, for an input already split,
    its split directories (for messages), and per task
    (:class:`~tfx_mtl.task_spec.Task`), what its label reads."""
    return json.dumps({
        "pattern": pattern, "split_dirs": list(split_dirs),
        "max_non_finite_labels": max_non_finite_labels,
        "tasks": [{"name": t.name, "type": t.type, "label": t.label,
                   "columns": list(t.label_columns)} for t in tasks]}, sort_keys=True)


def empty_split_error(data_root: str, pattern: str, split_dirs: Sequence[str],
                      per_split: dict, empty: Sequence[str]) -> EmptySplitError:
    """The refusal of splits without examples, naming the data (an input ExampleGen
    hashed into splits) or the first empty split's directory (an input already split)."""
    counts = ", ".join(f"{s} {data_checks.num_examples(v)}" for s, v in sorted(per_split.items()))
    what = (f"split(s) {', '.join(map(repr, empty))} of the data have no example "
            f"(examples per split: {counts}); ")
    if split_dirs:
        return EmptySplitError(os.path.join(data_root, empty[0]), what + "the data is split by "
                               "directory, and each split's directory needs at least one row")
    return EmptySplitError(os.path.join(data_root, pattern), what + "ExampleGen hashes each row "
                           "into a split (the spec's data.splits), and every split needs at "
                           "least one row")


@tfx.dsl.components.component
def SchemaGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    data_root: tfx.dsl.components.Parameter[str],
    checks: tfx.dsl.components.Parameter[str],
    validated_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
    label_report: tfx.dsl.components.OutputArtifact[LabelReport],
) -> None:
    """Raises an InputError on empty splits, anomalies or untrainable labels; else outputs
    the schema as validated and the label report."""
    checks = json.loads(checks)
    split_dirs = checks.get("split_dirs", [])
    data = data_root if split_dirs else os.path.join(data_root, checks["pattern"])
    per_split = read_statistics(statistics)
    empty = data_checks.empty_splits(per_split)
    if empty:
        raise empty_split_error(data_root, checks["pattern"], split_dirs, per_split, empty)
    problems = describe(read_anomalies(anomalies.uri, anomalies.split_names))
    if problems:
        raise DataAnomaliesError(
            "the data does not match the schema; fix the data or the schema "
            "(schemas/), then run again:\n  " + "\n  ".join(problems))
    report = data_checks.label_report(per_split, checks["tasks"], checks["max_non_finite_labels"])
    problems = data_checks.label_problems(per_split, checks["tasks"], report)
    if problems:
        raise LabelDataError(data, "the labels cannot be trained on:\n  " + "\n  ".join(problems))
    tf.io.gfile.makedirs(label_report.uri)
    with tf.io.gfile.GFile(os.path.join(label_report.uri, naming.LABEL_REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    for name in tf.io.gfile.listdir(schema.uri):
        tf.io.gfile.copy(os.path.join(schema.uri, name),
                         os.path.join(validated_schema.uri, name), overwrite=True)
