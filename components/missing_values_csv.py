"""CsvExampleGen that reads the spec's missing-value tokens (``data.missing_values``) as
empty cells.

Only an empty cell is missing to TFX's CsvExampleGen: a penguins ``NA`` or an Adult ``?``
is a value, which makes the whole column a string column (CsvExampleGen infers one type
per column) and Transform then fails to cast it to a number, naming no column. Mapping the
tokens here, where the cells are read and before the column types are inferred, makes
such a cell missing everywhere downstream, as an empty one is: the column keeps its
numeric type, StatisticsGen counts the cell as missing, Transform imputes a feature and
masks a label, and a served row sends the number it means.

The executor is TFX's, with one step added between parsing the lines and inferring
the types; the tokens travel in the component's ``custom_config`` (a packed
``ListValue``), so a changed list is a new ExampleGen execution, not a cache hit.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import apache_beam as beam
from google.protobuf import struct_pb2
from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx_bsl.coders import csv_decoder


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


def blank_missing(cells: list, tokens: frozenset) -> list:
    """A parsed CSV line with every cell equal to one of ``tokens`` (bytes) emptied."""
    return [b"" if cell in tokens else cell for cell in cells]


class _CsvToExample(beam.PTransform):
    """TFX's CSV -> tf.Example PTransform (csv_executor._CsvToExample), with the cells
    equal to a missing-value token emptied before the column types are inferred."""

    def __init__(self, exec_properties: dict[str, Any], split_pattern: str):
        super().__init__()
        self._csv_pattern = os.path.join(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
        self._tokens = frozenset(t.encode("utf-8") for t in missing_values(exec_properties))

    def expand(self, pipeline: beam.Pipeline):
        csv_files = fileio.glob(self._csv_pattern)
        if not csv_files:
            raise RuntimeError(f"Split pattern {self._csv_pattern} does not match any files.")
        column_names = io_utils.load_csv_column_names(csv_files[0])
        for csv_file in csv_files[1:]:
            if io_utils.load_csv_column_names(csv_file) != column_names:
                raise RuntimeError(
                    f"Files in same split {self._csv_pattern} have different header.")
        parsed = (pipeline
                  | "CreateFilenames" >> beam.Create(csv_files)
                  | "ReadFromText" >> beam.ParDo(csv_executor._ReadCsvRecordsFromTextFile())
                  | "ParseCSVLine" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
                  | "ExtractParsedCSVLines" >> beam.Keys()
                  | "BlankMissingValues" >> beam.Map(blank_missing, self._tokens))
        column_infos = beam.pvalue.AsSingleton(
            parsed | "InferColumnTypes" >> beam.CombineGlobally(
                csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)))
        return parsed | "ToTFExample" >> beam.ParDo(csv_executor._ParsedCsvToTfExample(),
                                                    column_infos)


class Executor(csv_executor.Executor):
    """CsvExampleGen's executor, reading the missing-value tokens as empty cells."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvToExample


class MissingValuesCsvExampleGen(example_gen_component.FileBasedExampleGen):
    """CsvExampleGen for data with missing-value tokens; pass
    ``custom_config=custom_config(tokens)``."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
