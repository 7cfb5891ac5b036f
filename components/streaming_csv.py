"""A CSV ExampleGen executor whose memory does not grow with the rows.

TFX's CsvExampleGen holds the whole data in memory on Beam's local (FnApiRunner) runner,
which materialises a PCollection at every fusion break: its parsed rows feed both the
column-type inference and, with the inferred types as a side input, the conversion to
tf.Example, so every parsed row waits in memory until the types are known; and its
WriteSplit reshuffles every serialized example before writing (8-9 KB per row measured,
issue 18). Here no data-sized collection crosses a fusion break:

1. a first streaming pass reads the files and infers the column types (a
   CombineGlobally whose output is one small list);
2. a second pass reads the files again and, in one fused stage, converts each row to a
   tf.Example (the types as a side input), hashes it into its split and writes it.
   There is no reshuffle: each split is written in the order its rows are read.

The split of a row is TFX's: the same hash (``_PartitionFn``) of the same key, the
example's deterministic serialization, so a row lands in the split TFX's CsvExampleGen
puts it in; the output layout (``Split-<name>/data_tfrecord-*.gz``, gzipped TFRecords of
serialized tf.Example) is TFX's. Each file is one element after a redistributing
reshuffle of the (tiny) list of file names, so a parallel runner reads many files at
once; one file is read serially, as TFX reads it (a quoted cell may span lines).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import apache_beam as beam
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx_bsl.coders import csv_decoder

from tfx_mtl.components import streaming_write


def blank_missing(cells: list, tokens: frozenset) -> list:
    """A parsed CSV line with every cell equal to one of ``tokens`` (bytes) emptied."""
    return [b"" if cell in tokens else cell for cell in cells]


def csv_files(csv_pattern: str) -> list[str]:
    """The files ``csv_pattern`` matches, checked to share one header (as TFX checks)."""
    files = sorted(fileio.glob(csv_pattern))
    if not files:
        raise RuntimeError(f"Split pattern {csv_pattern} does not match any files.")
    column_names = io_utils.load_csv_column_names(files[0])
    for path in files[1:]:
        if io_utils.load_csv_column_names(path) != column_names:
            raise RuntimeError(f"Files in same split {csv_pattern} have different header.")
    return files


class _SerializeExample(beam.DoFn):
    """tf.Example -> its deterministic serialization: the bytes written, and the key
    TFX's ``_PartitionFn`` hashes (it serializes an Example the same way)."""

    def process(self, example) -> Iterable[bytes]:
        yield example.SerializeToString(deterministic=True)


class CsvToSerializedExamples(beam.PTransform):
    """The CSV files of ``csv_pattern`` -> serialized tf.Examples, in two streaming passes
    (types, then rows); cells equal to one of ``tokens`` (bytes) are read as empty."""

    def __init__(self, csv_pattern: str, tokens: frozenset = frozenset()):
        super().__init__()
        self._csv_pattern = csv_pattern
        self._tokens = tokens

    def _parsed(self, pipeline: beam.Pipeline, files: list[str], label: str):
        # Each pass starts from its own Create, so the passes are separate fused stages
        # and the second one never waits for the side input with rows in hand.
        return (pipeline
                | f"CreateFilenames[{label}]" >> beam.Create(files)
                | f"ReadFromText[{label}]" >> beam.ParDo(
                    csv_executor._ReadCsvRecordsFromTextFile())
                | f"ParseCSVLine[{label}]" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
                | f"ExtractParsedCSVLines[{label}]" >> beam.Keys()
                | f"BlankMissingValues[{label}]" >> beam.Map(blank_missing, self._tokens))

    def expand(self, pipeline: beam.Pipeline):
        files = csv_files(self._csv_pattern)
        column_names = io_utils.load_csv_column_names(files[0])
        column_infos = beam.pvalue.AsSingleton(
            self._parsed(pipeline, files, "Types")
            | "InferColumnTypes" >> beam.CombineGlobally(
                csv_decoder.ColumnTypeInferrer(column_names, skip_blank_lines=True)))
        return (self._parsed(pipeline, files, "Rows")
                | "ToTFExample" >> beam.ParDo(csv_executor._ParsedCsvToTfExample(), column_infos)
                | "Serialize" >> beam.ParDo(_SerializeExample()))


class Executor(streaming_write.WriteWithoutReshuffle, csv_executor.Executor):
    """CsvExampleGen's executor with :class:`CsvToSerializedExamples` as its reader and
    no reshuffle before writing. :meth:`tokens` gives the missing-value tokens."""

    def tokens(self, exec_properties: dict[str, Any]) -> frozenset:
        """Cells read as empty (bytes); none here."""
        del exec_properties
        return frozenset()

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        def to_records(exec_properties: dict[str, Any], split_pattern: str):
            pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                                   split_pattern)
            return CsvToSerializedExamples(pattern, self.tokens(exec_properties))
        return to_records
