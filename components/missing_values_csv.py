"""CsvExampleGen that reads the spec's missing-value tokens (``data.missing_values``) as
empty cells.

Only an empty cell is missing to TFX's CsvExampleGen: a penguins ``NA`` or an Adult ``?``
is a value, which makes the whole column a string column (CsvExampleGen infers one type
per column) and Transform then fails to cast it to a number, naming no column. Mapping the
tokens here, where the cells are read and before the column types are inferred, makes
such a cell missing everywhere downstream, as an empty one is: the column keeps its
numeric type, StatisticsGen counts the cell as missing, Transform imputes a feature and
masks a label, and a served row sends the number it means.

The executor is the streaming CSV one (components/streaming_csv.py), which empties
the tokens between parsing the lines and inferring the types; the tokens travel in the
component's ``custom_config`` (a packed ``ListValue``), so a changed list is a new ExampleGen execution, not a cache hit.
"""
from __future__ import annotations

from typing import Any, Sequence

from google.protobuf import struct_pb2
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from tfx_mtl.components import streaming_csv


def custom_config(missing_values: Sequence[str]) -> example_gen_pb2.CustomConfig:
    """The ExampleGen ``custom_config`` carrying ``missing_values``."""
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(struct_pb2.ListValue(
        values=[struct_pb2.Value(string_value=token) for token in missing_values]))
    return config


def missing_values(exec_properties: dict[str, Any]) -> tuple[str, ...]:
    """The tokens :func:`custom_config` packed, from an executor's properties."""
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return ()
    config = proto_utils.json_to_proto(raw, example_gen_pb2.CustomConfig())
    tokens = struct_pb2.ListValue()
    config.custom_config.Unpack(tokens)
    return tuple(value.string_value for value in tokens.values)


class Executor(streaming_csv.Executor):
    """The streaming CSV executor (components/streaming_csv.py), reading the
    missing-value tokens of ``custom_config`` as empty cells."""

    def tokens(self, exec_properties: dict[str, Any]) -> frozenset:
        return frozenset(t.encode("utf-8") for t in missing_values(exec_properties))


class MissingValuesCsvExampleGen(example_gen_component.FileBasedExampleGen):
    """The project's CSV ExampleGen (every CSV run): TFX's CsvExampleGen, streaming
    (memory flat in rows), with missing-value tokens when given
    ``custom_config=custom_config(tokens)``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
