"""CuratedSchemaGen: the schema by value, written as TFX's Schema artifact; bad files named."""
import pytest
from tfx.types import standard_artifacts
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from tfx_mtl.components.curated_schema import (CuratedSchemaGen, SchemaFileError,
                                               read_schema_text)

TEXT = 'feature { name: "fare" type: FLOAT }\nfeature { name: "company" type: BYTES }\n'


def test_the_executor_writes_the_text_as_the_schema_artifact(tmp_path):
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "out")
    executor = CuratedSchemaGen.EXECUTOR_SPEC.executor_class()
    executor.Do({}, {"schema": [schema]}, {"schema_text": TEXT})
    written = io_utils.SchemaReader().read(str(tmp_path / "out" / "schema.pbtxt"))
    assert [f.name for f in written.feature] == ["fare", "company"]
    assert written.feature[0].type == schema_pb2.FLOAT


def test_a_bad_schema_file_is_named(tmp_path):
    bad = tmp_path / "schema.pbtxt"
    bad.write_text("feature { nme: 'x' }\n")
    with pytest.raises(SchemaFileError, match=f"{bad}: not a tensorflow_metadata Schema"):
        read_schema_text(str(bad))
    with pytest.raises(SchemaFileError, match="cannot read it"):
        read_schema_text(str(tmp_path / "missing.pbtxt"))
    assert read_schema_text(str(_good(tmp_path))) == TEXT


def _good(tmp_path):
    path = tmp_path / "good.pbtxt"
    path.write_text(TEXT)
    return path
