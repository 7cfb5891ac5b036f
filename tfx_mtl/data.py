"""Input data: the bundled dataset, and the layout, format and columns of a ``--data`` source.

``--data`` names one file, or a directory of files of one format, which ExampleGen
hashes into the spec's splits; or a directory already split, holding one
sub-directory per split (``train/``, ``validation/``, ``test/``: :func:`split_layout`)
and no data file of its own, whose splits are used as given. The file names tell
the format (:data:`PATTERNS`), and ExampleGen reads the very same files:

- CSV files with a header row (CsvExampleGen);
- TFRecord files of serialized ``tf.Example`` (ImportExampleGen), gzip-compressed
  when the name ends in ``.gz``, as Beam's TFRecord reader decides it too.

The bundled data is the Chicago taxi sample that ships inside the tfx wheel
(15,002 rows); the bundled task spec for it lives in ``schemas/chicago_taxi``.
"""
from __future__ import annotations

import csv
import fnmatch
import glob
import gzip
import importlib.util
import itertools
import os
import struct
import zlib
from typing import Iterator

from tfx_mtl import naming
from tfx_mtl.errors import InputError

FORMATS = ("csv", "tfrecord")
# A format's files, as a glob on names. A TFRecord file's name has .tfrecord in it, so
# data.tfrecord, data.tfrecords, data.tfrecord.gz and Beam's shards
# data.tfrecord-00000-of-00004 all are one.
PATTERNS = {"csv": "*.csv", "tfrecord": "*.tfrecord*"}
# Examples of each TFRecord file whose keys are its columns (see _tfrecord_columns).
SAMPLE_RECORDS = 1_000
# Rows of each CSV file checked before the run for their number of cells (_csv_columns).
SAMPLE_ROWS = 1_000
BOM = "\ufeff"  # UTF-8's byte-order mark, as Python decodes it
# The error CsvExampleGen's CSV decoder (tfx_bsl) raises on a row of more or fewer cells
# than the header; it names neither the file nor the line (see ragged_row).
RAGGED_ERROR = "Columns do not match specified csv headers"
# How the data is laid out: one unsplit input that ExampleGen hashes into the splits, or
# a directory per split. A compiled (Kubeflow) pipeline cannot look at its data root,
# which is a run-time parameter, so there the layout is a compile option.
UNSPLIT, SPLIT_DIRS = "unsplit", "split-dirs"
LAYOUTS = (UNSPLIT, SPLIT_DIRS)


class DataError(InputError):
    """The input data cannot be used; ``field`` names the file or the option."""


def bundled_spec() -> str:
    """Path of the bundled taxi task spec (works installed or from a checkout)."""
    from tfx_mtl import schemas  # the package, wherever it is installed
    return os.path.join(schemas.__path__[0], "chicago_taxi", "tasks.yaml")


def bundled_taxi_csv() -> str:
    """The taxi sample CSV inside the installed tfx package (found without importing it)."""
    found = importlib.util.find_spec("tfx")
    if found is None or not found.submodule_search_locations:
        raise DataError("tfx", "the package is not installed; run `make run` to set up")
    path = os.path.join(found.submodule_search_locations[0], "examples",
                        "chicago_taxi_pipeline", "data", "simple", "data.csv")
    if not os.path.isfile(path):
        raise DataError(path, "the bundled taxi CSV is missing from the tfx package")
    return path


def split_layout(path: str) -> tuple[str, ...]:
    """The splits a --data directory is already split into: :data:`naming.SPLITS` when it
    holds a sub-directory per split and no data file of its own, else ``()`` (ExampleGen
    hashes the input into the splits). Some of the split directories but not all, or split
    directories beside data files, are refused naming what is missing or in the way."""
    if not os.path.isdir(path):
        return ()
    present = [s for s in naming.SPLITS if os.path.isdir(os.path.join(path, s))]
    if not present:
        return ()
    found = ", ".join(f"{s}/" for s in present)
    own = [files[0] for files in _format_files(path).values() if files]
    if own:
        raise DataError(path, f"the directory holds both data files ({os.path.basename(own[0])})"
                        f" and split directories ({found}): keep either one input that "
                        "ExampleGen splits, or one directory per split and no data file beside")
    missing = [s for s in naming.SPLITS if s not in present]
    if missing:
        others = sorted(d for d in os.listdir(path) if d not in naming.SPLITS
                        and os.path.isdir(os.path.join(path, d)))
        aside = f"; other directories: {', '.join(f'{d}/' for d in others)}" if others else ""
        raise DataError(os.path.join(path, missing[0]), "no such directory: the data is split by "
                        f"directory ({found} found{aside}), and a split input needs one per "
                        f"split: {', '.join(f'{s}/' for s in naming.SPLITS)}")
    return naming.SPLITS


def describe_splits(path: str, buckets) -> str:
    """How the data at ``path`` becomes the splits, for the run's header: its split
    directories, or ``buckets`` ((split, hash buckets) pairs: the spec's data.splits)."""
    if split_layout(path):
        return ", ".join(f"{s}/" for s in naming.SPLITS) + " as given"
    total = sum(count for _, count in buckets)
    return ", ".join(f"{s} {count}/{total}" for s, count in buckets) + " of the rows, hashed"


def _format_files(directory: str) -> dict[str, list[str]]:
    """Each format's files directly in ``directory``."""
    return {fmt: sorted(glob.glob(os.path.join(directory, pattern)))
            for fmt, pattern in PATTERNS.items()}


def _directory_files(path: str) -> tuple[str, list[str]]:
    """The format of a directory's data files and the files (one format per directory)."""
    found = _format_files(path)
    if all(found.values()):
        raise DataError(path, f"the directory mixes CSV and TFRecord files "
                        f"({os.path.basename(found['csv'][0])}, "
                        f"{os.path.basename(found['tfrecord'][0])}); "
                        "keep one format per directory")
    for fmt, files in found.items():
        if files:
            return fmt, files
    raise DataError(path, "the directory holds neither a CSV (*.csv) nor a TFRecord "
                          "(*.tfrecord*) file")


def split_files(path: str) -> tuple[str, dict[str, list[str]]]:
    """The format of a --data argument and the files ExampleGen reads, by input split:
    ``{split: files}`` for a directory per split (one format for all), else
    ``{"": files}``, the one file or the directory's files of its one format (other
    files, e.g. a tasks.yaml, are left)."""
    splits = split_layout(path)
    if splits:
        found = {s: _directory_files(os.path.join(path, s)) for s in splits}
        formats: dict[str, str] = {}  # format -> the first split holding it
        for split, (fmt, _) in found.items():
            formats.setdefault(fmt, split)
        if len(formats) > 1:
            raise DataError(path, "the split directories hold different formats ("
                            + ", ".join(f"{s}/: {fmt}" for fmt, s in formats.items())
                            + "); keep one format for every split")
        (fmt,) = formats
        return fmt, {s: files for s, (_, files) in found.items()}
    if os.path.isdir(path):
        fmt, files = _directory_files(path)
        return fmt, {"": files}
    if not os.path.isfile(path):
        raise DataError(path, "no such file or directory")
    name = os.path.basename(path)
    formats = [fmt for fmt, pattern in PATTERNS.items() if fnmatch.fnmatchcase(name, pattern)]
    if len(formats) != 1:
        fits = "both *.csv and *.tfrecord*" if formats else "neither *.csv nor *.tfrecord*"
        raise DataError(path, f"the name tells the format, and it fits {fits}: a CSV file is "
                        "*.csv, a TFRecord file of tf.Example *.tfrecord* (gzip: *.tfrecord*.gz)")
    return formats[0], {"": [path]}


def data_files(path: str) -> tuple[str, list[str]]:
    """The format of a --data argument and every file ExampleGen reads (:func:`split_files`,
    every split's)."""
    fmt, by_split = split_files(path)
    return fmt, [file for files in by_split.values() for file in files]


def columns(path: str) -> list[str]:
    """The data's column names: the CSV header (every file's, in every split, must be the
    same) or the feature keys of the TFRecord files' examples."""
    fmt, by_split = split_files(path)
    if fmt == "csv":
        return _csv_columns(list(by_split.values()))
    return _tfrecord_columns(path, [file for files in by_split.values() for file in files])


def _csv_columns(groups: list[list[str]]) -> list[str]:
    """The header every file of every group (a split's files) shares, after a bounded
    check of each file's first rows.

    CsvExampleGen reads the header itself and keeps a UTF-8 byte-order mark as part of
    the first column's name, so a BOM is refused by name here (stripping it here alone
    would make the spec check pass and ExampleGen's columns differ). The first
    SAMPLE_ROWS rows of each file must have as many cells as the header (a row beyond
    them is located when CsvExampleGen fails on it: :func:`ragged_row`), and at least one
    file of each group must have a row: a header-only input (or split) would pass the
    schema and fail training. Blank lines are skipped, as CsvExampleGen skips them.
    """
    header: list[str] | None = None
    first = None
    for files in groups:
        rows_seen = False
        for file in files:
            rows = _csv_rows(file)
            _, row = next(rows, (1, None))
            if not row:
                raise DataError(file, "empty file, expected a header row")
            if row[0].startswith(BOM):
                raise DataError(file, f"the header starts with a UTF-8 byte-order mark (BOM): "
                                f"CsvExampleGen would name the first column {row[0]!r}, not "
                                f"{row[0][len(BOM):]!r}; save the file as UTF-8 without a BOM")
            if header is None:
                header, first = row, file
            elif row != header:
                raise DataError(file, f"header differs from {first}'s; all files must share one")
            problem = _first_ragged(file, rows, len(header), SAMPLE_ROWS)
            if isinstance(problem, DataError):
                raise problem
            rows_seen = rows_seen or problem
        if not rows_seen:
            where = files[0] if len(files) == 1 else os.path.dirname(files[0])
            raise DataError(where, "no data rows, only a header" if len(files) == 1 else
                            f"no data rows: each of the {len(files)} CSV files holds only a header")
    assert header is not None
    return header


def _csv_rows(file: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row of a CSV file, the header first."""
    try:
        with open(file, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for row in reader:
                if row:
                    yield reader.line_num, row
    except UnicodeDecodeError as e:
        raise DataError(file, f"not UTF-8 text ({e})") from None


def _first_ragged(file: str, rows: Iterator[tuple[int, list[str]]], width: int,
                  limit: int | None) -> DataError | bool:
    """The first of ``rows`` (at most ``limit``) whose cell count is not ``width``, as a
    DataError naming the file and line; else whether there was a row at all."""
    any_row = False
    for line, row in itertools.islice(rows, limit):
        any_row = True
        if len(row) != width:
            return DataError(f"{file}:{line}", f"{len(row)} cells, but the header has {width} "
                             "columns; every row needs one cell per column (an empty cell "
                             "is a missing value)")
    return any_row


def ragged_row(path: str) -> DataError | None:
    """The first row of the CSV data at ``path`` with more or fewer cells than its header,
    as a DataError naming the file and line, or None.

    A full read of the data, so it is only called once CsvExampleGen has failed with
    :data:`RAGGED_ERROR` (which names neither file nor line): the check before the run
    reads SAMPLE_ROWS rows per file only, whatever the data's size.
    """
    fmt, files = data_files(path)
    if fmt != "csv":
        return None
    for file in files:
        rows = _csv_rows(file)
        _, header = next(rows, (1, []))
        problem = _first_ragged(file, rows, len(header), None)
        if isinstance(problem, DataError):
            return problem
    return None


def require_columns(path: str, spec) -> None:
    """Refuses data that lacks a column the spec (a valid
    :class:`~tfx_mtl.task_spec.TaskSpec`) reads, naming the data file and each missing
    column with what reads it: a data problem (a dropped or renamed column), not a spec
    one; then data with text where the spec reads numbers (:func:`require_numbers`)."""
    have = columns(path)
    needed = spec_columns(spec)
    missing = [column for column in needed if column not in have]
    if not missing:
        require_numbers(path, spec)
        return
    fmt, files = data_files(path)
    where, what = ((files[0], "its header") if fmt == "csv" and len(files) == 1 else
                   (path, f"the header of its {len(files)} CSV files") if fmt == "csv" else
                   (path, f"its tf.Examples (the first {SAMPLE_RECORDS:,} of each file)"))
    lines = "".join(f"\n  no column {c!r} ({needed[c]} reads it)" for c in missing)
    raise DataError(where, f"the data lacks {len(missing)} column(s) the spec reads:{lines}\n"
                    f"  {what} has: {', '.join(have)}")


# Cells that look like a missing-value token rather than a value: the hint to list them.
_MISSING_LOOKING = frozenset({"na", "n/a", "#n/a", "null", "none", "missing", "nil", "-",
                              "--", "?", ".", "unknown"})
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_NUMBERS_SEEN = 100_000  # distinct numeric cells remembered (a column repeats its values)


def numeric_columns(spec) -> dict[str, str]:
    """Each column the spec reads as a number -> what reads it: numeric and bucketized
    features, and every column of a regression task's label."""
    needed: dict[str, str] = {}
    for feature in spec.features:
        if feature.kind in ("numeric", "bucketized"):
            needed.setdefault(feature.name, f"{feature.kind} feature {feature.name!r}")
    for task in spec.tasks:
        if task.type == "regression":
            for column in task.label_columns:
                needed.setdefault(column, f"the label of regression task {task.name!r}")
    return needed


def _is_number(cell: str) -> bool:
    """Whether CsvExampleGen reads ``cell`` as a number (tfx_bsl's _InferValueType)."""
    try:
        return _INT64[0] <= int(cell) <= _INT64[1]
    except ValueError:
        pass
    try:
        float(cell)
    except ValueError:
        return False
    return True


def require_numbers(path: str, spec) -> None:
    """Refuses CSV data in which a column the spec reads as a number
    (:func:`numeric_columns`) holds a cell that is not one, once the empty cells and the
    spec's ``data.missing_values`` are left out: CsvExampleGen would make the column a
    string column and Transform fail on it naming nothing. Names each such column with
    the file, line and row of its first such cell and the cell, and suggests
    ``data.missing_values`` when the cell looks like a missing-value token. Reads every
    row (the check before the run reads a sample only for the header's shape: a text
    cell anywhere changes the whole column's type). TFRecord data carries its types."""
    fmt, files = data_files(path)
    needed = numeric_columns(spec)
    if fmt != "csv" or not needed:
        return
    skip = {""} | set(spec.data.missing_values)  # and numbers seen, up to _NUMBERS_SEEN
    found: dict[str, tuple[str, int, int, str]] = {}  # column -> file, line, row, cell
    for file in files:
        rows = _csv_rows(file)
        _, header = next(rows, (1, []))
        todo = [(c, i) for i, c in enumerate(header) if c in needed and c not in found]
        for row_number, (line, row) in enumerate(rows, start=1):
            if not todo:
                break
            for column, i in todo:
                cell = row[i] if i < len(row) else ""
                if cell in skip:
                    continue
                if not _is_number(cell):
                    found[column] = (file, line, row_number, cell)
                    todo = [(c, j) for c, j in todo if c != column]
                elif len(skip) < _NUMBERS_SEEN:
                    skip.add(cell)
    if not found:
        return
    lines, hints = [], []
    for column, (file, line, row_number, cell) in found.items():
        lines.append(f"\n  column {column!r} ({needed[column]}) holds {cell!r}, not a number: "
                     f"{file}, line {line} (data row {row_number})")
        if cell.strip().casefold() in _MISSING_LOOKING and cell not in hints:
            hints.append(cell)
    hint = (f"\n  if {', '.join(map(repr, hints))} means a missing value, list it in the spec: "
            f"data: {{missing_values: [{', '.join(map(repr, hints))}]}}" if hints else
            "\n  make the column a categorical feature, or fix the data")
    first = next(iter(found.values()))[0]
    raise DataError(first if len(files) == 1 else path,
                    f"{len(found)} column(s) the spec reads as numbers hold text:"
                    + "".join(lines) + hint)


def spec_columns(spec) -> dict[str, str]:
    """Each column a :class:`~tfx_mtl.task_spec.TaskSpec` reads -> what reads it."""
    needed: dict[str, str] = {}
    for feature in spec.features:
        needed.setdefault(feature.name, f"feature {feature.name!r}")
    for task in spec.tasks:
        for column in task.label_columns:
            needed.setdefault(column, f"the label of task {task.name!r}")
    for slice_columns in spec.evaluation.slices:
        for column in slice_columns:
            needed.setdefault(column, "evaluation.slices")
    return needed


def _tfrecord_columns(path: str, files: list[str]) -> list[str]:
    """The feature keys of the first SAMPLE_RECORDS examples of every file, sorted.

    A union, because a ``tf.Example`` leaves a missing value's key out: one
    example's keys need not be every column. Of a sample, because this is a check
    before the run, bounded whatever the data's size (ExampleGen then reads it
    all): a column absent from the first examples of every file is taken for
    unknown. Every file is opened and its sample read as ExampleGen and
    StatisticsGen read it (checksums, ``tf.Example`` parsing, one type per
    feature), so a corrupt or foreign file is refused by name before the run.
    TensorFlow is not imported: tfx_bsl's decoder parses the examples.
    """
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    keys: set[str] = set()
    for file in files:
        sample = list(itertools.islice(_tfrecords(file), SAMPLE_RECORDS))
        try:
            keys.update(decoder.DecodeBatch(sample).schema.names)
        except RuntimeError as e:
            raise DataError(file, f"its records are not serialized tf.Examples: {e}") from None
    if not keys:
        raise DataError(path, "no tf.Example with any feature in the TFRecord files")
    return sorted(keys)


def _tfrecords(file: str) -> Iterator[bytes]:
    """The records of a TFRecord file, gzip-compressed when its name ends in .gz.

    Each record is an 8-byte little-endian length, its masked CRC32C, the data and
    the data's masked CRC32C; both checksums are verified, as TensorFlow and Beam do.
    """
    import google_crc32c

    def masked_crc(data: bytes) -> bytes:
        crc = google_crc32c.value(data)
        return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)

    compressed = file.endswith(".gz")
    try:
        with (gzip.open if compressed else open)(file, "rb") as f:
            for index in itertools.count():
                header = f.read(12)
                if not header:
                    return
                if len(header) < 12 or masked_crc(header[:8]) != header[8:]:
                    raise DataError(file, f"record {index}: corrupt or truncated" if index else
                                    "not a TFRecord file (it does not start with a record)")
                (length,) = struct.unpack("<Q", header[:8])
                data, data_crc = f.read(length), f.read(4)
                if len(data) < length or len(data_crc) < 4:
                    raise DataError(file, f"record {index}: truncated")
                if masked_crc(data) != data_crc:
                    raise DataError(file, f"record {index}: corrupt (checksum mismatch)")
                yield data
    except (OSError, EOFError, zlib.error) as e:  # the file's, or gzip's
        how = " as gzip (the name ends in .gz)" if compressed else ""
        raise DataError(file, f"cannot read it{how}: {e}") from None


def csv_rows(file: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row of a CSV file, the header first; a
    file that is not UTF-8 is refused by name (for readers of the whole data, e.g.
    :mod:`tfx_mtl.label_checks`)."""
    return _csv_rows(file)


def tfrecords(file: str) -> Iterator[bytes]:
    """The records of a TFRecord file, checksums verified (gzip when named .gz)."""
    return _tfrecords(file)
