"""Input data: the bundled dataset and reading a CSV source's columns.

The bundled data is the Chicago taxi sample that ships inside the tfx wheel
(15,002 rows); the bundled task spec for it lives in ``schemas/chicago_taxi``.
"""
from __future__ import annotations

import csv
import glob
import importlib.util
import os

from tfx_mtl.errors import InputError


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


def csv_files(path: str) -> list[str]:
    """The CSV files a --data argument names: one file, or a directory's *.csv."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.csv")))
        if not files:
            raise DataError(path, "the directory holds no *.csv file")
        return files
    if not os.path.isfile(path):
        raise DataError(path, "no such file or directory")
    return [path]


def csv_columns(path: str) -> list[str]:
    """The header shared by every CSV file under ``path``; refuses mismatches."""
    header: list[str] | None = None
    first = None
    for file in csv_files(path):
        with open(file, newline="") as f:
            row = next(csv.reader(f), None)
        if not row:
            raise DataError(file, "empty file, expected a header row")
        if header is None:
            header, first = row, file
        elif row != header:
            raise DataError(file, f"header differs from {first}'s; all files must share one")
    assert header is not None
    return header
