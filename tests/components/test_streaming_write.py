"""ImportExampleGen writing without TFX's reshuffle: TFX's splits and output layout."""
import pytest


def test_the_pipeline_reads_tfrecord_with_import_example_gen_writing_without_reshuffle(tmp_path):
    from tfx import v1 as tfx

    from tfx_mtl import naming
    from tfx_mtl.components import streaming_write
    from tfx_mtl.pipeline import pipeline as pipeline_lib

    (tmp_path / "d.tfrecord").write_bytes(b"")
    example_gen = pipeline_lib.create_example_gen(
        pipeline_lib.DataSource.from_path(str(tmp_path)))
    assert isinstance(example_gen, tfx.components.ImportExampleGen)
    assert example_gen.id == naming.EXAMPLE_GEN["tfrecord"]
    assert example_gen.executor_spec.executor_class is streaming_write.ImportExecutor


@pytest.mark.e2e
def test_import_splits_equal_tfx_import_example_gen(tmp_path):
    """synth TFRecord data in two files: each split holds exactly the records TFX's
    ImportExampleGen puts in it."""
    from example_gen_support import run_example_gen
    from tfx import v1 as tfx

    from tfx_mtl import synth
    from tfx_mtl.pipeline import pipeline as pipeline_lib

    synth.write(synth.SynthConfig(rows=600, tasks=2, correlation=0.5, features=3),
                tmp_path / "data", fmt="tfrecord", files=2)
    source = pipeline_lib.DataSource.from_path(str(tmp_path / "data"))
    ours = pipeline_lib.create_example_gen(source)
    theirs = tfx.components.ImportExampleGen(
        input_base=source.directory, input_config=ours.exec_properties["input_config"],
        output_config=ours.exec_properties["output_config"])

    def serialized(per_split):
        return {split: sorted(e.SerializeToString(deterministic=True) for e in examples)
                for split, examples in per_split.items()}
    expected = serialized(run_example_gen(tmp_path / "tfx", theirs))
    got = serialized(run_example_gen(tmp_path / "ours", ours))
    assert set(got) == {"train", "validation", "test"} and sum(map(len, got.values())) == 600
    assert got == expected
