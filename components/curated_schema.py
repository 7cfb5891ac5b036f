"""CuratedSchemaGen: the spec's curated schema, carried in the pipeline by value.

TFX's ImportSchemaGen reads a file path when it runs and keys its cache on that
path. A pipeline compiled for Kubeflow cannot point at the compiling machine's
disk, and staging a copy would mean writing to the remote pipeline root while
compiling. Carrying the schema's text as an execution parameter makes the
compiled spec self-contained, and makes the content itself the cache key: an
edited schema is a new input, a moved or copied one is not.

TFX reads the component's type annotations at import time, so this module must
not use ``from __future__ import annotations``.
"""
import os

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx

from tfx_mtl.errors import InputError

SCHEMA_FILE = "schema.pbtxt"  # the name SchemaGen and ImportSchemaGen write


class SchemaFileError(InputError):
    """The curated schema cannot be read or is not a Schema text proto; names the file."""


def read_schema_text(path: str) -> str:
    """The text of the schema file at ``path``, checked to parse as a Schema."""
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
    except (tf.errors.OpError, OSError) as e:
        raise SchemaFileError(path, f"cannot read it ({e})") from None
    try:
        text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise SchemaFileError(path, f"not a tensorflow_metadata Schema text proto: {e}") from None
    return text


@tfx.dsl.components.component
def CuratedSchemaGen(
    schema_text: tfx.dsl.components.Parameter[str],
    schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
    """Writes ``schema_text`` (a Schema text proto) as the output Schema artifact."""
    text_format.Parse(schema_text, schema_pb2.Schema())  # refuse a bad schema here too
    tf.io.gfile.makedirs(schema.uri)
    with tf.io.gfile.GFile(os.path.join(schema.uri, SCHEMA_FILE), "w") as f:
        f.write(schema_text)
