"""A safe key for each data column: how a CSV header's name appears inside the model.

A spec names columns exactly as the data's header writes them (``hours-per-week``,
``marital status``). tf.Examples carry those names as they are, but the keys derived from
a column (Transform outputs ``<key>_xf``, vocabulary files ``<key>_vocab``, Keras layer
names) are file names and graph names, so each column gets a key of ASCII letters and
digits in words joined by single underscores: every other run of characters becomes one
``_``, leading and trailing ones are dropped, a key starting with a digit gets ``c_`` in
front, and a name with no letter or digit becomes ``column``. A name already of that form
is its own key (``trip_miles`` stays ``trip_miles``).

No key contains ``__``, which the keys derived from a task's name all do
(:mod:`tfx_mtl.naming`), so a column's keys never collide with a task's. Two columns whose
keys would be equal (``hours-per-week`` and ``hours per week``) are told apart
deterministically, whatever order the spec lists them in: a column whose name is already
the key keeps it; the others, in sorted order of their names, take ``<key>_2``, ``<key>_3``,
... (the first not taken).
"""
from __future__ import annotations

import re
from typing import Iterable

_NON_WORD = re.compile(r"[^A-Za-z0-9]+")
_FALLBACK = "column"  # the key of a name with no ASCII letter or digit
_DIGIT_PREFIX = "c_"


def safe_key(column: str) -> str:
    """The key of one column on its own (before collisions are told apart)."""
    key = "_".join(part for part in _NON_WORD.split(column) if part) or _FALLBACK
    return _DIGIT_PREFIX + key if key[0].isdigit() else key


def column_keys(columns: Iterable[str]) -> dict[str, str]:
    """Each of ``columns`` -> a distinct safe key (the module docstring gives the rule)."""
    columns = list(dict.fromkeys(columns))
    base = {column: safe_key(column) for column in columns}
    keys = {column: column for column in columns if base[column] == column}
    taken = set(keys.values())
    for column in sorted(c for c in columns if c not in keys):
        key, n = base[column], 2
        while key in taken:
            key, n = f"{base[column]}_{n}", n + 1
        keys[column] = key
        taken.add(key)
    return {column: keys[column] for column in columns}
