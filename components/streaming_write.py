"""ExampleGen's write step without TFX's reshuffle, and ImportExampleGen with it.

TFX's WriteSplit reshuffles every serialized example before writing it, and Beam's local
(FnApiRunner) runner holds a reshuffled collection in memory whole, so an ExampleGen's
memory grows with the rows. :class:`WriteWithoutReshuffle` writes each split where TFX
writes it (``Split-<name>/data_tfrecord-*.gz``, gzipped TFRecords), in the order the
records come, fused with reading and hashing. The split hash and its key are TFX's
(``GenerateExamplesByBeam``), so each record lands in the split TFX puts it in.
"""
from __future__ import annotations

import os

import apache_beam as beam
from absl import logging
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.import_example_gen import component as import_example_gen_component
from tfx.components.example_gen import write_split
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils


def write_records(records, split_uri: str, label: str):
    """Writes records (protos, or already serialized) where TFX's WriteSplit writes them,
    serialized as it serializes them, without its reshuffle."""
    return (records
            | f"MaybeSerialize[{label}]" >> beam.ParDo(write_split.MaybeSerialize())
            | f"WriteSplit[{label}]" >> beam.io.WriteToTFRecord(
                os.path.join(split_uri, write_split.DEFAULT_TF_RECORD_FILE_NAME),
                file_name_suffix=".gz"))


class WriteWithoutReshuffle:
    """Mixin for a BaseExampleGenExecutor whose records are protos or serialized protos
    (not Parquet): TFX's ``Do``, writing each split without a reshuffle."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        if (exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
                == example_gen_pb2.PayloadFormat.FORMAT_PARQUET):
            raise ValueError("this ExampleGen writes serialized protos, not Parquet")
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(examples).split_names = (
            artifact_utils.encode_split_names(
                example_gen_utils.generate_output_split_names(input_config, output_config)))
        output_file_format = exec_properties.get(
            standard_component_specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED)
        logging.info("Generating examples (written without a reshuffle).")
        with self._make_beam_pipeline() as pipeline:
            for split_name, records in self.GenerateExamplesByBeam(
                    pipeline, exec_properties).items():
                write_records(records, artifact_utils.get_split_uri(examples, split_name),
                              split_name)
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        for output in examples:
            if payload_format:
                examples_utils.set_payload_format(output, payload_format)
            if output_file_format:
                examples_utils.set_file_format(
                    output, write_split.to_file_format_str(output_file_format))


class ImportExecutor(WriteWithoutReshuffle, import_executor.Executor):
    """ImportExampleGen's executor (TFRecord input read as splittable files), writing
    without a reshuffle."""


class StreamingImportExampleGen(import_example_gen_component.ImportExampleGen):
    """TFX's ImportExampleGen with :class:`ImportExecutor`; give it TFX's id
    (``with_id(naming.EXAMPLE_GEN["tfrecord"])``)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(ImportExecutor)
