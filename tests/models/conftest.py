"""A small real Transform output (TFT's Beam implementation) shared by model tests, and
its rows written as Transform materialises them, for run_fn in a process of its own."""
import os
import pathlib
import tempfile

import pytest
import tensorflow as tf

from tfx_mtl import task_spec

SPEC = task_spec.parse({
    "name": "mini",
    "features": [{"name": "miles", "kind": "numeric"},
                 {"name": "pay", "kind": "categorical", "oov_buckets": 1},
                 {"name": "lat", "kind": "bucketized", "buckets": 2}],
    "tasks": [
        {"name": "big", "type": "binary", "label": "tips > 0.2 * fare"},
        {"name": "fare", "type": "regression", "label": "fare", "role": "auxiliary"},
        {"name": "kind", "type": "multiclass", "label": "pay2", "role": "auxiliary"},
    ],
})
FEATURE_SPEC = {"miles": tf.float32, "pay": tf.string, "lat": tf.float32, "tips": tf.float32,
                "fare": tf.float32, "pay2": tf.string}
ROWS = [
    {"miles": [1.0], "pay": [b"cash"], "lat": [1.0], "tips": [3.0], "fare": [10.0], "pay2": [b"a"]},
    {"miles": [], "pay": [], "lat": [2.0], "tips": [0.0], "fare": [20.0], "pay2": [b"b"]},
    {"miles": [3.0], "pay": [b"card"], "lat": [], "tips": [], "fare": [30.0], "pay2": []},
]


@pytest.fixture(scope="session")
def transformed():
    """(transformed rows, TFTransformOutput) for SPEC on ROWS."""
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from tfx_mtl.models import preprocessing

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {k: tf.io.VarLenFeature(t) for k, t in FEATURE_SPEC.items()}))
    out_dir = tempfile.mkdtemp(prefix="tft-")
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (rows, _), transform_fn = ((ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.transform(inputs, SPEC)))
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    metadata_io.write_metadata(metadata, f"{out_dir}/{tft.TFTransformOutput.RAW_METADATA_DIR}")
    return rows, tft.TFTransformOutput(out_dir)


def _write_examples(path: pathlib.Path, rows, schema) -> None:
    """Transformed rows as TFX's Transform materialises them: gzipped tf.Example TFRecords."""
    import tensorflow_transform as tft
    coder = tft.coders.ExampleProtoCoder(schema)
    path.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for row in rows:
            w.write(coder.encode(row))


def trainer_job(transformed, directory: pathlib.Path, config, train_steps: int) -> dict:
    """The job of ``trainer_process.py run_fn`` (without its run and serving directories):
    ``transformed``'s rows x4 as the Examples (one file per split) in ``directory``, its
    Transform graph, SPEC and ``config`` (a TrainerConfig) in ``custom_config``."""
    from tfx_mtl.models.preprocessing import SPEC_CONFIG_KEY
    from tfx_mtl.models.trainer_config import TRAINER_CONFIG_KEY

    rows, tft_output = transformed
    schema = tft_output.transformed_metadata.schema
    for split in ("train", "validation"):  # one file per split: file sharding cannot work
        _write_examples(directory / "examples" / f"Split-{split}" / "data.gz", rows * 4, schema)
    return {"examples": str(directory / "examples"),
            "transform_graph": os.path.dirname(tft_output.transform_savedmodel_dir),
            "train_steps": train_steps,
            "custom_config": {SPEC_CONFIG_KEY: SPEC.to_dict(),
                              TRAINER_CONFIG_KEY: config.to_dict()}}
