"""CsvExampleGen with missing-value tokens: the cells are emptied before the column types
are inferred, so a numeric column with NA stays numeric."""
import pytest
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from tfx_mtl import naming
from tfx_mtl.components import missing_values_csv, streaming_csv
from tfx_mtl.pipeline import pipeline as pipeline_lib


def test_tokens_travel_in_custom_config_as_tfx_passes_it_to_the_executor():
    config = missing_values_csv.custom_config(["NA", "?", "n/a"])
    exec_properties = {standard_component_specs.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(config)}
    assert missing_values_csv.missing_values(exec_properties) == ("NA", "?", "n/a")
    assert missing_values_csv.missing_values({}) == ()


def test_only_whole_cells_equal_to_a_token_are_emptied():
    tokens = frozenset({b"NA", b"?"})
    assert streaming_csv.blank_missing([b"NA", b"NAN", b"?", b"", b"1.5", b" NA"],
                                            tokens) == [b"", b"NAN", b"", b"", b"1.5", b" NA"]


def test_every_csv_run_uses_the_streaming_executor_under_tfx_id(tmp_path):
    (tmp_path / "d.csv").write_text("x\n1\n")
    source = pipeline_lib.DataSource.from_path(str(tmp_path / "d.csv"))
    for tokens, expected in (((), ()), (("NA",), ("NA",))):
        example_gen = pipeline_lib.create_example_gen(source, missing_values=tokens)
        assert example_gen.id == naming.EXAMPLE_GEN["csv"]
        assert isinstance(example_gen, missing_values_csv.MissingValuesCsvExampleGen)
        assert issubclass(example_gen.EXECUTOR_SPEC.executor_class, streaming_csv.Executor)
        assert missing_values_csv.missing_values(example_gen.exec_properties) == expected


@pytest.mark.e2e
def test_example_gen_reads_tokens_as_missing_and_keeps_numeric_columns_numeric(tmp_path):
    from example_gen_support import run_example_gen

    data = tmp_path / "data"
    data.mkdir()
    rows = ["x,kind,y"] + [f"{i}.5,{'?' if i % 4 == 0 else 'a'},{'NA' if i % 5 == 0 else i}"
                           for i in range(1, 41)]
    (data / "d.csv").write_text("\n".join(rows) + "\n")
    source = pipeline_lib.DataSource.from_path(str(data / "d.csv"))
    example_gen = pipeline_lib.create_example_gen(source, missing_values=("NA", "?"))
    examples = [e for split in run_example_gen(tmp_path, example_gen).values() for e in split]
    assert len(examples) == 40
    y = {int(e.features.feature["x"].float_list.value[0]): e.features.feature["y"]
         for e in examples}
    kind = {int(e.features.feature["x"].float_list.value[0]): e.features.feature["kind"]
            for e in examples}
    for i in range(1, 41):
        assert y[i].HasField("int64_list"), y[i]  # NA did not make y a string column
        assert list(y[i].int64_list.value) == ([] if i % 5 == 0 else [i])
        assert list(kind[i].bytes_list.value) == ([] if i % 4 == 0 else [b"a"])
