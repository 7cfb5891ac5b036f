"""Runs one ExampleGen alone, as the pipeline builds it, and reads back what it wrote."""
import pathlib


def run_example_gen(tmp_path: pathlib.Path, example_gen) -> dict[str, list]:
    """Runs ``example_gen`` in a one-node pipeline under ``tmp_path``: its tf.Examples
    per output split."""
    import tensorflow as tf
    from tfx import v1 as tfx

    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="example-gen", pipeline_root=str(tmp_path / "root"),
        components=[example_gen],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite"))))
    (examples_dir,) = (tmp_path / "root" / example_gen.id / "examples").iterdir()
    return {split_dir.name.removeprefix("Split-"): [
        tf.train.Example.FromString(r.numpy())
        for r in tf.data.TFRecordDataset([str(f) for f in split_dir.iterdir()], "GZIP")]
        for split_dir in examples_dir.iterdir()}
