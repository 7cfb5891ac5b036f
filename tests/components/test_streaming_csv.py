"""The streaming CSV ExampleGen: TFX's CsvExampleGen's examples, splits and output layout,
from a pipeline shape whose memory does not grow with the rows."""
import pytest

from tfx_mtl.components import streaming_csv, streaming_write


def _examples(csv_pattern, out_dir, tokens=frozenset()):
    """Runs CsvToSerializedExamples and write_records alone on Beam's in-memory runner:
    the tf.Examples written."""
    import apache_beam as beam
    import tensorflow as tf

    with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--direct_num_workers=1"]) as p:
        streaming_write.write_records(p | streaming_csv.CsvToSerializedExamples(csv_pattern, tokens),
                                    str(out_dir), "all")
    files = [str(f) for f in out_dir.iterdir()]
    assert files and all(f.endswith(".gz") for f in files)
    return [tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(files, "GZIP")]


def test_types_are_inferred_over_every_file_before_any_row_is_converted(tmp_path):
    """A column that is int in one file and float in another is float in both; a
    column with a word anywhere is a string column; a token cell is empty."""
    (tmp_path / "a.csv").write_text("i,f,s\n1,2,x\n3,NA,y\n")
    (tmp_path / "b.csv").write_text('i,f,s\n4,5.5,"multi\nline"\n\n6,,7\n')
    examples = _examples(str(tmp_path / "*.csv"), tmp_path / "out", frozenset({b"NA"}))
    rows = sorted((list(e.features.feature["i"].int64_list.value),
                   list(e.features.feature["f"].float_list.value),
                   list(e.features.feature["s"].bytes_list.value)) for e in examples)
    assert rows == [([1], [2.0], [b"x"]), ([3], [], [b"y"]), ([4], [5.5], [b"multi\nline"]),
                    ([6], [], [b"7"])]


def test_files_of_different_headers_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("y,x\n1,2\n")
    with pytest.raises(RuntimeError, match="different header"):
        streaming_csv.csv_files(str(tmp_path / "*.csv"))


def _serialized_per_split(per_split):
    return {split: sorted(e.SerializeToString(deterministic=True) for e in examples)
            for split, examples in per_split.items()}


def _taxi_rows(rows):
    from tfx_mtl import data
    with open(data.bundled_taxi_csv()) as f:
        return [next(f) for _ in range(rows + 1)]


@pytest.mark.e2e
def test_splits_and_examples_equal_tfx_csv_example_gen_on_real_data(tmp_path):
    """On the bundled taxi data (ints, floats, strings, empty cells), each split holds
    exactly the examples TFX's CsvExampleGen puts in it (same hash, same key); the same
    rows as three files give the same splits."""
    from example_gen_support import run_example_gen
    from tfx import v1 as tfx

    from tfx_mtl.pipeline import pipeline as pipeline_lib

    lines = _taxi_rows(1500)
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    (one / "data.csv").write_text("".join(lines))
    for part in range(3):
        (many / f"part-{part:05d}-of-00003.csv").write_text(
            lines[0] + "".join(lines[1 + part * 500:1 + (part + 1) * 500]))
    source = pipeline_lib.DataSource.from_path(str(one))
    ours = pipeline_lib.create_example_gen(source)
    assert type(ours).__name__ == "MissingValuesCsvExampleGen"
    tfx_gen = tfx.components.CsvExampleGen(input_base=source.directory,
                                           input_config=ours.exec_properties["input_config"],
                                           output_config=ours.exec_properties["output_config"])
    expected = _serialized_per_split(run_example_gen(tmp_path / "tfx", tfx_gen))
    got = _serialized_per_split(run_example_gen(tmp_path / "ours", ours))
    assert set(got) == {"train", "validation", "test"}
    assert sum(map(len, got.values())) == 1500
    assert got == expected
    from_many = pipeline_lib.create_example_gen(pipeline_lib.DataSource.from_path(str(many)))
    assert _serialized_per_split(run_example_gen(tmp_path / "many", from_many)) == expected


def test_a_ragged_row_fails_with_the_error_the_run_looks_for(tmp_path):
    """runners/local.py names the file and line when ExampleGen fails with RAGGED_ERROR."""
    from tfx_mtl import data

    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4,5\n")
    with pytest.raises(Exception, match=data.RAGGED_ERROR):
        _examples(str(tmp_path / "a.csv"), tmp_path / "out")


@pytest.mark.subprocess
def test_many_files_are_read_by_several_workers_on_a_parallel_runner(tmp_path):
    """Beam's multi-processing runner with 2 workers: 4 files are shared between the
    workers (each writes its own shard of the whole files it read), one file is read by
    one worker."""
    import glob

    import apache_beam as beam
    import tensorflow as tf

    for part in range(4):
        (tmp_path / f"p{part}.csv").write_text(
            "x,y\n" + "".join(f"{part}{i},{i}.5\n" for i in range(100)))
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "all.csv").write_text(
        "x,y\n" + "".join(f"{p}{i},{i}.5\n" for p in range(4) for i in range(100)))

    def shard_rows(pattern, out):
        argv = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                "--direct_num_workers=2"]
        with beam.Pipeline(argv=argv) as p:
            streaming_write.write_records(p | streaming_csv.CsvToSerializedExamples(pattern),
                                          str(out), "all")
        return sorted(sum(1 for _ in tf.data.TFRecordDataset(f, "GZIP"))
                      for f in glob.glob(str(out / "*")))
    many = shard_rows(str(tmp_path / "p*.csv"), tmp_path / "many")
    assert len(many) == 2 and sum(many) == 400 and all(n % 100 == 0 for n in many), many
    assert shard_rows(str(tmp_path / "one" / "*.csv"), tmp_path / "single") == [400]
