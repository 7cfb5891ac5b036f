"""A --data source: its format from the file names, its columns from the files themselves.

TFRecord files are written with TensorFlow's own writer, so the reader under test
(which does not import TensorFlow) is checked against the real format.
"""
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from tfx_mtl import data


def _example(**features):
    def feature(value):
        if isinstance(value, float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(
        feature={name: feature(value) for name, value in features.items()}))


def _tfrecord(path, examples, compression=None):
    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return path


def _error(path, match):
    with pytest.raises(data.DataError, match=match) as error:
        data.columns(str(path))
    return error.value


# -- format detection -------------------------------------------------------------

@pytest.mark.parametrize("name, fmt", [
    ("taxi.csv", "csv"), ("data.tfrecord", "tfrecord"), ("data.tfrecords", "tfrecord"),
    ("data.tfrecord.gz", "tfrecord"), ("data.tfrecord-00000-of-00004", "tfrecord")])
def test_a_file_name_tells_its_format(tmp_path, name, fmt):
    (tmp_path / name).write_bytes(b"")
    assert data.data_files(str(tmp_path / name)) == (fmt, [str(tmp_path / name)])


@pytest.mark.parametrize("name, fits", [("data.txt", "fits neither"),
                                        ("data.tfrecord.csv", "fits both")])
def test_a_file_name_of_no_format_or_of_both_is_refused(tmp_path, name, fits):
    (tmp_path / name).write_text("a,b\n1,2\n")
    error = _error(tmp_path / name, fits)
    assert error.field == str(tmp_path / name)


def test_a_directory_holds_one_format_other_files_aside(tmp_path):
    _tfrecord(tmp_path / "b.tfrecord", [_example(x=1.0)])
    _tfrecord(tmp_path / "a.tfrecord.gz", [_example(x=2.0)], "GZIP")
    (tmp_path / "tasks.yaml").write_text("name: spec\n")
    assert data.data_files(str(tmp_path)) == (
        "tfrecord", [str(tmp_path / "a.tfrecord.gz"), str(tmp_path / "b.tfrecord")])


def test_a_directory_mixing_csv_and_tfrecord_is_refused_by_name(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    _tfrecord(tmp_path / "b.tfrecord", [_example(x=1.0)])
    error = _error(tmp_path, "mixes CSV and TFRecord files")
    assert error.field == str(tmp_path) and "a.csv" in error.message


def test_a_directory_of_neither_format_is_refused_by_name(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    error = _error(tmp_path, r"holds neither a CSV \(\*\.csv\) nor a TFRecord")
    assert error.field == str(tmp_path)


# -- columns ------------------------------------------------------------------------

def test_csv_columns_are_the_shared_header(tmp_path):
    (tmp_path / "a.csv").write_text("fare,tips\n1,2\n")
    (tmp_path / "b.csv").write_text("fare,tips\n3,4\n")
    assert data.columns(str(tmp_path)) == ["fare", "tips"]
    (tmp_path / "c.csv").write_text("fare,tip\n1,2\n")
    assert _error(tmp_path, "header differs").field == str(tmp_path / "c.csv")


def test_tfrecord_columns_are_the_union_of_the_examples_keys(tmp_path):
    """tf.Example leaves a missing value out: a key missing from one example, or from
    every example of one file, is still a column. gzip files are read when .gz."""
    _tfrecord(tmp_path / "a.tfrecord", [_example(x=1.0, label=1), _example(x=2.0, city="a")])
    _tfrecord(tmp_path / "b.tfrecord.gz", [_example(x=3.0, fare=4.5)], "GZIP")
    _tfrecord(tmp_path / "c.tfrecord", [])  # an empty shard is fine
    assert data.columns(str(tmp_path)) == ["city", "fare", "label", "x"]
    assert data.columns(str(tmp_path / "b.tfrecord.gz")) == ["fare", "x"]


def test_tfrecord_columns_come_from_the_first_examples_of_each_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SAMPLE_RECORDS", 2)
    _tfrecord(tmp_path / "a.tfrecord", [_example(x=1.0), _example(x=2.0), _example(late=1.0)])
    assert data.columns(str(tmp_path)) == ["x"]


@pytest.mark.subprocess
def test_reading_tfrecord_columns_does_not_import_tensorflow(tmp_path):
    """The spec is checked against the data before anything heavy is imported."""
    _tfrecord(tmp_path / "a.tfrecord", [_example(x=1.0)])
    code = ("import sys; from tfx_mtl import data; "
            f"print(data.columns({str(tmp_path)!r}), 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split("\n")[0] == "['x'] False"


def _records_bytes(tmp_path):
    return _tfrecord(tmp_path / "good.tfrecord",
                     [_example(x=float(i)) for i in range(3)]).read_bytes()


def _flip_middle_byte(b):
    """One bit of the middle record's data (three records of the same size)."""
    return b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 1]) + b[len(b) // 2 + 1:]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"x,y\n1.0,2\n" + b, "not a TFRecord file"),  # e.g. a CSV named .tfrecord
    (lambda b: b[:-3], "record 2: truncated"),
    (_flip_middle_byte, r"record 1: corrupt \(checksum mismatch\)"),
])
def test_a_corrupt_tfrecord_file_is_refused_by_name(tmp_path, damage, message):
    bad = tmp_path / "data" / "part.tfrecord"
    bad.parent.mkdir()
    bad.write_bytes(damage(_records_bytes(tmp_path)))
    assert _error(bad.parent, message).field == str(bad)


def test_records_that_are_not_tf_examples_are_refused_by_name(tmp_path):
    path = tmp_path / "d" / "strings.tfrecord"
    path.parent.mkdir()
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"\xff\xff not a proto")
    assert _error(path.parent, "not serialized tf.Examples").field == str(path)


def test_a_feature_of_two_types_is_refused_naming_the_file_and_feature(tmp_path):
    path = _tfrecord(tmp_path / "a.tfrecord", [_example(x=1.0), _example(x=2)])
    error = _error(path, "not serialized tf.Examples")
    assert error.field == str(path) and '"x"' in error.message


def test_a_gz_name_on_an_uncompressed_file_is_refused_by_name(tmp_path):
    path = tmp_path / "a.tfrecord.gz"
    path.write_bytes(_records_bytes(tmp_path))
    assert _error(path, r"cannot read it as gzip").field == str(path)


def test_tfrecord_files_without_any_feature_are_refused_naming_the_data(tmp_path):
    _tfrecord(tmp_path / "a.tfrecord", [])
    assert _error(tmp_path, "no tf.Example with any feature").field == str(tmp_path)


# -- CSV rows: checked before the run, bounded ---------------------------------------

def test_a_header_only_csv_is_refused_naming_the_file(tmp_path):
    """ExampleGen would write two empty splits that pass the schema; the Trainer then
    dies with a bare StopIteration."""
    path = tmp_path / "d.csv"
    path.write_text("fare,tips\n\n")
    assert _error(path, "no data rows, only a header").field == str(path)


def test_a_directory_of_header_only_csv_files_is_refused_but_one_such_file_is_fine(tmp_path):
    (tmp_path / "a.csv").write_text("fare,tips\n")
    (tmp_path / "b.csv").write_text("fare,tips\n")
    error = _error(tmp_path, "each of the 2 CSV files holds only a header")
    assert error.field == str(tmp_path)
    (tmp_path / "c.csv").write_text("fare,tips\n1,2\n")
    assert data.columns(str(tmp_path)) == ["fare", "tips"]


def test_a_bom_on_the_header_is_refused_naming_the_file_and_column(tmp_path):
    """CsvExampleGen keeps the BOM in the first column's name (seen in its statistics),
    so the file is refused rather than its BOM stripped on one side only."""
    path = tmp_path / "d.csv"
    path.write_text("\ufefffare,tips\n1,2\n", encoding="utf-8")
    error = _error(path, re.escape("byte-order mark (BOM): CsvExampleGen would name the "
                                   "first column '\\ufefffare', not 'fare'"))
    assert error.field == str(path)


def test_a_non_utf8_csv_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("caf\u00e9,tips\n1,2\n".encode("latin-1"))
    assert _error(path, "not UTF-8 text").field == str(path)


@pytest.mark.parametrize("row", ["3,4,5", "3"])
def test_a_ragged_row_is_refused_naming_the_file_and_line(tmp_path, row):
    path = tmp_path / "d.csv"
    path.write_text(f'fare,tips\n1,"a\nb"\n\n{row}\n6,7\n')  # a quoted newline, a blank line
    error = _error(path, f"{len(row.split(','))} cells, but the header has 2 columns")
    assert error.field == f"{path}:5"
    assert str(data.ragged_row(str(path))) == str(error)


def test_rows_past_the_sample_are_left_to_example_gen_and_then_located(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SAMPLE_ROWS", 2)
    (tmp_path / "a.csv").write_text("fare,tips\n1,2\n3,4\n5,6\n")
    (tmp_path / "b.csv").write_text("fare,tips\n1,2\n3,4\n5,6,7\n")
    assert data.columns(str(tmp_path)) == ["fare", "tips"]
    assert data.ragged_row(str(tmp_path)).field == f"{tmp_path / 'b.csv'}:4"
    assert data.ragged_row(str(tmp_path / "a.csv")) is None


# -- the spec's columns ---------------------------------------------------------------

def _spec(label="fare", slices=()):
    from tfx_mtl import task_spec
    return task_spec.parse({"features": ["trip_miles"],
                            "tasks": [{"name": "big", "type": "binary", "label": label}],
                            "evaluation": {"slices": list(slices)}})


def test_a_column_the_spec_reads_and_the_data_lacks_names_the_file_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("trip_miles,fare\n1,2\n")
    data.require_columns(str(path), _spec("fare > 1"))
    with pytest.raises(data.DataError) as error:
        data.require_columns(str(path), _spec("tips > 0.2 * fare", slices=["company"]))
    assert error.value.field == str(path)
    assert error.value.message == (
        "the data lacks 2 column(s) the spec reads:\n"
        "  no column 'tips' (the label of task 'big' reads it)\n"
        "  no column 'company' (evaluation.slices reads it)\n"
        "  its header has: trip_miles, fare")


# -- a directory per split --------------------------------------------------------------

def _split_dirs(root, splits=("train", "validation", "test"), header="fare,tips", rows=1):
    for split in splits:
        (root / split).mkdir(parents=True)
        (root / split / "part.csv").write_text(f"{header}\n" + "1,2\n" * rows)
    return root


def test_a_directory_per_split_is_one_input_read_as_given(tmp_path):
    root = _split_dirs(tmp_path / "data")
    (root / "README.txt").write_text("not data\n")
    assert data.split_layout(str(root)) == ("train", "validation", "test")
    assert data.data_files(str(root)) == (
        "csv", [str(root / s / "part.csv") for s in ("train", "validation", "test")])
    assert data.columns(str(root)) == ["fare", "tips"]
    assert data.split_layout(str(tmp_path / "elsewhere.csv")) == ()
    (tmp_path / "flat").mkdir()
    assert data.split_layout(str(tmp_path / "flat")) == ()


def test_a_missing_split_directory_is_refused_naming_it(tmp_path):
    root = _split_dirs(tmp_path / "data", ("train", "test"))
    (root / "eval").mkdir()
    for check in (data.split_layout, data.columns):
        with pytest.raises(data.DataError) as error:
            check(str(root))
        assert error.value.field == str(root / "validation")
        assert error.value.message == (
            "no such directory: the data is split by directory (train/, test/ found; other "
            "directories: eval/), and a split input needs one per split: train/, "
            "validation/, test/")


def test_split_directories_beside_data_files_are_refused(tmp_path):
    root = _split_dirs(tmp_path / "data")
    (root / "all.csv").write_text("fare,tips\n1,2\n")
    error = _error(root, "holds both data files")
    assert error.field == str(root) and "all.csv" in error.message


def test_every_split_shares_one_header_and_one_format(tmp_path):
    root = _split_dirs(tmp_path / "a")
    (root / "test" / "part.csv").write_text("fare,tip\n1,2\n")
    error = _error(root, "header differs")
    assert error.field == str(root / "test" / "part.csv")
    root = _split_dirs(tmp_path / "b", ("train", "validation"))
    (root / "test").mkdir()
    _tfrecord(root / "test" / "part.tfrecord", [_example(fare=1.0, tips=2.0)])
    error = _error(root, re.escape("the split directories hold different formats (train/: "
                                   "csv, test/: tfrecord)"))
    assert error.field == str(root)


def test_an_empty_split_directory_is_refused_naming_it(tmp_path):
    root = _split_dirs(tmp_path / "a")
    (root / "validation" / "part.csv").unlink()
    assert _error(root, "holds neither a CSV").field == str(root / "validation")
    root = _split_dirs(tmp_path / "b")
    (root / "test" / "part.csv").write_text("fare,tips\n")  # a header, no row
    assert _error(root, "no data rows, only a header").field == str(root / "test" / "part.csv")


def test_split_tfrecord_columns_and_ragged_rows_cover_every_split(tmp_path):
    root = tmp_path / "records"
    for split, example in (("train", _example(x=1.0)), ("validation", _example(y=2.0)),
                           ("test", _example(z=3.0))):
        (root / split).mkdir(parents=True)
        _tfrecord(root / split / "part.tfrecord", [example])
    assert data.columns(str(root)) == ["x", "y", "z"]
    root = _split_dirs(tmp_path / "csv", rows=3)
    (root / "test" / "part.csv").write_text("fare,tips\n1,2\n3\n")
    assert data.ragged_row(str(root)).field == f"{root / 'test' / 'part.csv'}:3"


def test_a_column_split_data_lacks_names_the_data_directory(tmp_path):
    root = _split_dirs(tmp_path / "data", header="trip_miles,fare")
    with pytest.raises(data.DataError) as error:
        data.require_columns(str(root), _spec("tips > 0.2 * fare"))
    assert error.value.field == str(root)
    assert error.value.message.endswith("the header of its 3 CSV files has: trip_miles, fare")


def test_the_run_says_how_the_data_becomes_the_splits(tmp_path):
    buckets = (("train", 8), ("validation", 1), ("test", 1))
    (tmp_path / "d.csv").write_text("fare\n1\n")
    assert data.describe_splits(str(tmp_path / "d.csv"), buckets) == (
        "train 8/10, validation 1/10, test 1/10 of the rows, hashed")
    assert data.describe_splits(str(_split_dirs(tmp_path / "split")), buckets) == (
        "train/, validation/, test/ as given")


# -- text where the spec reads numbers ------------------------------------------------

def _penguins_spec(missing_values=()):
    from tfx_mtl import task_spec
    return task_spec.parse({
        "features": ["bill length (mm)", {"name": "flipper-mm", "kind": "bucketized"},
                     {"name": "island", "kind": "categorical"}],
        "tasks": [{"name": "mass", "type": "regression", "label": "`body mass`"},
                  {"name": "male", "type": "binary", "label": "sex == 'male'"}],
        "data": {"missing_values": list(missing_values)}})


PENGUINS = ("island,bill length (mm),flipper-mm,body mass,sex\n"
            "Torgersen,39.1,181,3750,male\n"
            "Torgersen,NA,NA,NA,NA\n"
            "Biscoe,,1e2,4000,female\n"
            "Biscoe,40.5,190,?,female\n")


def test_text_in_a_numeric_column_is_refused_naming_column_file_row_and_value(tmp_path):
    path = tmp_path / "penguins.csv"
    path.write_text(PENGUINS)
    with pytest.raises(data.DataError) as error:
        data.require_columns(str(path), _penguins_spec())
    assert error.value.field == str(path)
    assert error.value.message == (
        "3 column(s) the spec reads as numbers hold text:\n"
        f"  column 'bill length (mm)' (numeric feature 'bill length (mm)') holds 'NA', not a "
        f"number: {path}, line 3 (data row 2)\n"
        f"  column 'flipper-mm' (bucketized feature 'flipper-mm') holds 'NA', not a number: "
        f"{path}, line 3 (data row 2)\n"
        f"  column 'body mass' (the label of regression task 'mass') holds 'NA', not a "
        f"number: {path}, line 3 (data row 2)\n"
        "  if 'NA' means a missing value, list it in the spec: data: {missing_values: ['NA']}")


def test_listed_missing_values_are_not_text_and_each_column_names_its_first_bad_cell(tmp_path):
    path = tmp_path / "penguins.csv"
    path.write_text(PENGUINS)
    with pytest.raises(data.DataError) as error:
        data.require_columns(str(path), _penguins_spec(["NA"]))
    assert error.value.message.splitlines()[1:] == [
        f"  column 'body mass' (the label of regression task 'mass') holds '?', not a "
        f"number: {path}, line 5 (data row 4)",
        "  if '?' means a missing value, list it in the spec: data: {missing_values: ['?']}"]
    data.require_columns(str(path), _penguins_spec(["NA", "?"]))  # a categorical NA is fine


def test_text_that_is_no_missing_token_suggests_a_categorical_feature(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("island,bill length (mm),flipper-mm,body mass,sex\n"
                    "Biscoe,long,181,3750,male\n")
    with pytest.raises(data.DataError, match="holds 'long'.*\n.*categorical feature"):
        data.require_columns(str(path), _penguins_spec())


@pytest.mark.parametrize("cell, number", [("1e2", True), ("-3", True), (" 4.5 ", True),
                                          ("nan", True), ("NA", False), ("1,5", False),
                                          (str(2 ** 63), False)])
def test_a_number_is_what_csv_example_gen_reads_as_one(cell, number):
    """tfx_bsl's type inference: int64, else Python float(); a longer int is a string."""
    from tfx_bsl.coders import csv_decoder
    inferred = csv_decoder._InferValueType(cell.encode())
    assert (inferred in (csv_decoder.ColumnType.INT, csv_decoder.ColumnType.FLOAT)) == number
    assert data._is_number(cell) == number
