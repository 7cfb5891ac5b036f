"""SchemaGate: stops the run on data anomalies, before anything is trained.

ExampleValidator only records anomalies; nothing downstream reads them. This
component reads them and either refuses the run, naming every split, feature
and anomaly, or passes the schema through unchanged. Transform takes its schema
from here, so the dependency is data (visible in MLMD lineage), not ordering.

TFX reads the component's type annotations at import time, so this module must
not use ``from __future__ import annotations``.
"""
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

from tfx_mtl.errors import InputError

_ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomaliesError(InputError):
    """The data does not match the schema."""

    def __init__(self, message: str):
        super().__init__("data", message)


def read_anomalies(anomalies_uri: str, split_names: str) -> "dict[str, anomalies_pb2.Anomalies]":
    """The Anomalies proto of each split of an ExampleAnomalies artifact."""
    result = {}
    for split in artifact_utils.decode_split_names(split_names):
        path = os.path.join(anomalies_uri, f"Split-{split}", _ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        result[split] = anomalies
    return result


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


@tfx.dsl.components.component
def SchemaGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
    """Raises DataAnomaliesError on any anomaly; else outputs the schema as validated."""
    problems = describe(read_anomalies(anomalies.uri, anomalies.split_names))
    if problems:
        raise DataAnomaliesError(
            "the data does not match the schema; fix the data or the schema "
            "(schemas/), then run again:\n  " + "\n  ".join(problems))
    for name in tf.io.gfile.listdir(schema.uri):
        tf.io.gfile.copy(os.path.join(schema.uri, name),
                         os.path.join(validated_schema.uri, name), overwrite=True)
