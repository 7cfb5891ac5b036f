"""Label sanity before the run: one pass over the label columns of the data.

A label that is constant on the data trains, scores (AUC 0.0000 vs 0.0000) and can be
blessed and pushed: nothing downstream tells a useless task from a hard one. So before
the DAG runs, every task's label is computed on every row as Transform will compute it
(:meth:`LabelExpr.evaluate` on NumPy arrays; a row whose label columns are empty, hold a
``data.missing_values`` token, or a NaN/infinite number is unlabelled) and the run is
refused (:func:`check`) when

- a binary label has one class (or none) on the data; when a comparison with a string
  literal matches no row, the message names the literal and the values the column does
  hold (case-insensitive near-misses first, then the most common);
- a multiclass label has fewer than two classes;
- a regression label has no labelled row or zero variance.

The same scan counts labelled examples per split and class, from which
:func:`small_split_warnings` and :func:`epoch_warning` warn about small data (the
thresholds and why: :data:`MIN_PER_CLASS`, :data:`MAX_EPOCHS`; docs/blessing.md).

The scan reads only the label columns, in chunks of :data:`CHUNK_ROWS` rows, so its
memory is bounded. A column is numeric when every present value parses as a number (as
CsvExampleGen infers it); should a later chunk show text in a column taken for numeric,
the split is read again with that column as text (at most once per column).
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from tfx_mtl import data as data_lib
from tfx_mtl import naming
from tfx_mtl.errors import InputProblems

CHUNK_ROWS = 10_000
# Distinct values counted per column compared with a string literal (for the message).
MAX_DISTINCT = 10_000
SHOWN_VALUES = 5  # values a message lists
# A verdict on a split is meaningful when it holds at least this many labelled examples
# of every class (binary, multiclass) or in all (regression). The verdict rests on a
# paired bootstrap interval (tfx_mtl.comparison); below ~30 examples per class the
# bootstrap's own interval is unreliable (it under-covers) and one example moves an
# AUC or accuracy by several points, more than any bound a spec sets.
MIN_PER_CLASS = 30
# Epochs (passes over the train split) a step budget may make before a warning. The
# default budget over the bundled taxi data is ~53 epochs and every Trainer there stops
# early long before; hundreds of epochs over a few hundred rows mean a model that can
# memorise its train split, selected on a validation split as small.
MAX_EPOCHS = 100

Row = Mapping[str, "str | None"]  # column -> cell text; None or "": missing


class LabelCheckError(InputProblems):
    """A task's label cannot be learned from the data; each problem names
    ``tasks.<name>.label``."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("labels", problems)


@dataclasses.dataclass
class TaskCounts:
    """One task's labels on one input: labelled rows, classes, a regression's range."""

    labelled: int = 0
    classes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    low: float = math.inf  # regression: the smallest and largest labelled value
    high: float = -math.inf

    def add(self, other: "TaskCounts") -> None:
        self.labelled += other.labelled
        self.classes.update(other.classes)
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)


@dataclasses.dataclass
class Scan:
    """What the scan found on one input (a split directory, or the unsplit data)."""

    rows: int = 0
    tasks: dict[str, TaskCounts] = dataclasses.field(default_factory=dict)
    # The values of each column a label compares with a string literal, as text.
    values: dict[str, collections.Counter] = dataclasses.field(default_factory=dict)

    def add(self, other: "Scan") -> None:
        self.rows += other.rows
        for name, counts in other.tasks.items():
            self.tasks.setdefault(name, TaskCounts()).add(counts)
        for column, values in other.values.items():
            mine = self.values.setdefault(column, collections.Counter())
            for value, count in values.items():
                if value in mine or len(mine) < MAX_DISTINCT:
                    mine[value] += count


class _Retype(Exception):
    """A column taken for numeric holds text: scan again with it as text."""

    def __init__(self, column: str):
        self.column = column


# -- the scan -------------------------------------------------------------------------
def scan_rows(rows: Callable[[], Iterable[Row]], spec, missing_values: Iterable[str] = ()
              ) -> Scan:
    """Every task's label counts over ``rows()`` (called again if a column's type turns
    out to be text after a chunk read it as numbers)."""
    missing = frozenset(missing_values) | {""}
    text: set[str] = set()
    while True:
        try:
            return _scan_once(rows(), spec, missing, frozenset(text))
        except _Retype as e:
            text.add(e.column)


def _scan_once(rows: Iterable[Row], spec, missing: frozenset, text: frozenset) -> Scan:
    result = Scan(tasks={t.name: TaskCounts() for t in spec.tasks})
    compared = {column for task in spec.tasks for column, _ in task.label_expr.string_comparisons()}
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, CHUNK_ROWS)):
        result.rows += len(chunk)
        columns = {}
        for column in spec.label_columns:
            cells = [row.get(column) for row in chunk]
            columns[column] = _column(column, cells, missing, text)
            if column in compared:
                counter = result.values.setdefault(column, collections.Counter())
                for cell in cells:
                    if cell is not None and cell not in missing and (
                            cell in counter or len(counter) < MAX_DISTINCT):
                        counter[cell] += 1
        for task in spec.tasks:
            result.tasks[task.name].add(_task_counts(task, columns))
    return result


def _column(name: str, cells: list, missing: frozenset, text: frozenset
            ) -> tuple[np.ndarray, np.ndarray]:
    """A chunk of one column as (values, present): numbers (NaN where missing) unless
    the column is text; a NaN or infinite number is missing, as in Transform."""
    present = np.array([c is not None and c not in missing for c in cells], dtype=bool)
    if name in text:
        return np.array([c if p else "" for c, p in zip(cells, present)], dtype=object), present
    try:
        values = np.array([float(c) if p else math.nan for c, p in zip(cells, present)])
    except ValueError:
        raise _Retype(name) from None
    return values, present & np.isfinite(values)


def _task_counts(task, columns: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> TaskCounts:
    expr = task.label_expr
    present = np.logical_and.reduce([columns[c][1] for c in expr.columns])
    try:
        with np.errstate(all="ignore"):  # a division by a zero cell is a non-finite label
            value = np.asarray(expr.evaluate(
                {c: columns[c][0] for c in expr.columns}, logical_and=np.logical_and,
                logical_or=np.logical_or, logical_not=np.logical_not))
    except TypeError:
        kinds = ", ".join(f"{c!r} ({'text' if columns[c][0].dtype == object else 'numbers'})"
                          for c in expr.columns)
        raise LabelCheckError([(f"tasks.{task.name}.label", (
            f"task {task.name!r}: {task.label!r} mixes text and numbers: the data's "
            f"column(s) {kinds}; compare a text column only with a string, e.g. "
            f"{expr.columns[0]} == 'value'"))]) from None
    if task.type != "multiclass" and value.dtype == object:  # a bare column of text
        example = next((v for v in value[present]), "")
        raise LabelCheckError([(f"tasks.{task.name}.label", (
            f"task {task.name!r}: column {task.label!r} holds text (e.g. {example!r}), but a "
            f"{task.type} label reads numbers" + (" (0/1) or a comparison, e.g. "
                                                 f"{task.label} == {example!r}"
                                                 if task.type == "binary" else "")
            + "; a token that means missing belongs in data.missing_values"))])
    counts = TaskCounts()
    if task.type == "binary":
        positive = value if value.dtype == bool else value != 0
        counts.classes.update({1: int(np.sum(positive & present)),
                               0: int(np.sum(~positive & present))})
        counts.classes = +counts.classes  # drop classes with no row
    elif task.type == "regression":
        value = value.astype(float)
        present = present & np.isfinite(value)
        if present.any():
            counts.low, counts.high = float(value[present].min()), float(value[present].max())
    else:
        counts.classes.update(_class_name(v) for v in value[present])
    counts.labelled = int(present.sum())
    return counts


def _class_name(value: Any) -> str:
    """A multiclass value as its vocabulary entry: the text, or the number (1.0 -> '1')."""
    if isinstance(value, str):
        return value
    return f"{value:g}"


# -- reading the data -------------------------------------------------------------------
def scan(path: str, spec) -> dict[str, Scan]:
    """The scan of the data at ``path`` (a --data argument) per input split: ``{split:
    Scan}`` for a directory per split, else ``{"": Scan}``."""
    fmt, by_split = data_lib.split_files(path)
    read = _csv_rows if fmt == "csv" else _tfrecord_rows
    columns = spec.label_columns
    missing = getattr(spec.data, "missing_values", ())
    result = {}
    for split, files in by_split.items():
        result[split] = scan_rows(lambda files=files: read(files, columns), spec, missing)
    return result


def _csv_rows(files: list[str], columns: Iterable[str]) -> Iterator[Row]:
    """The label columns of each row of the CSV files (a short row's absent cells: None)."""
    for file in files:
        rows = data_lib.csv_rows(file)
        _, header = next(rows, (1, []))
        index = {c: header.index(c) for c in columns if c in header}
        for _, row in rows:
            yield {c: row[i] if i < len(row) else None for c, i in index.items()}


def _tfrecord_rows(files: list[str], columns: Iterable[str]) -> Iterator[Row]:
    """The label columns of each tf.Example, as text (a number as Python writes it); a
    feature the example leaves out, or an empty one, is None."""
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    columns = list(columns)
    for file in files:
        records = data_lib.tfrecords(file)
        while batch := list(itertools.islice(records, CHUNK_ROWS)):
            decoded = decoder.DecodeBatch(batch)
            cells = {}
            for column in columns:
                index = decoded.schema.get_field_index(column)
                lists = (decoded.column(index).to_pylist() if index >= 0
                         else [None] * decoded.num_rows)
                cells[column] = [_text(v[0]) if v else None for v in lists]
            for i in range(decoded.num_rows):
                yield {c: cells[c][i] for c in columns}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)


# -- what the scan means ------------------------------------------------------------------
def total(scans: Mapping[str, Scan]) -> Scan:
    """The scans of every input split added up."""
    result = Scan()
    for one in scans.values():
        result.add(one)
    return result


def check(scans: Mapping[str, Scan], spec) -> None:
    """Refuses (:class:`LabelCheckError`, one problem per task) a label that cannot be
    learned or judged on the data: see the module docstring."""
    whole = total(scans)
    problems = []
    for task in spec.tasks:
        problem = task_problem(task, whole.tasks[task.name], whole.values)
        if problem:
            problems.append((f"tasks.{task.name}.label", f"task {task.name!r}: {problem}"))
    if problems:
        raise LabelCheckError(problems)


def task_problem(task, counts: TaskCounts, values: Mapping[str, collections.Counter]
                 ) -> str | None:
    """Why ``task``'s label (``counts``, over all the data) cannot be learned, or None."""
    expr = task.label_expr
    if not counts.labelled:
        return (f"no row has a label: {task.label!r} reads "
                f"{', '.join(map(repr, expr.columns))}, and every row misses one of them "
                "(empty, a data.missing_values token, or not a finite number)")
    if task.type == "regression":
        if counts.low == counts.high:
            return (f"every one of the {counts.labelled:,} labelled rows has the value "
                    f"{counts.low:g}: a regression label with zero variance cannot be "
                    "learned or judged")
        return None
    if len(counts.classes) >= 2:
        return None
    (only,) = counts.classes
    if task.type == "multiclass":
        return (f"one class on the data ({only!r}, all {counts.labelled:,} labelled rows): "
                "a multiclass label needs at least two")
    misses = [literal_miss(column, literal, values.get(column, collections.Counter()))
              for column, literal in task.label_expr.string_comparisons()]
    misses = [m for m in misses if m]
    return (f"{task.label!r} is {'true' if only else 'false'} on every one of the "
            f"{counts.labelled:,} labelled rows: a binary label needs both classes"
            + "".join(f"; {m}" for m in misses))


def literal_miss(column: str, literal: str, values: collections.Counter) -> str | None:
    """That ``literal`` never occurs in ``column`` and what does (near-misses first:
    the same text but for case and surrounding spaces), or None when it occurs."""
    if values.get(literal):
        return None
    folded = literal.strip().casefold()
    near = [v for v, _ in values.most_common() if v.strip().casefold() == folded]
    rest = [v for v, _ in values.most_common(SHOWN_VALUES + len(near)) if v not in near]
    shown = (near + rest)[:max(SHOWN_VALUES, len(near))]
    listed = ", ".join(f"{v!r} ({values[v]:,})" for v in shown)
    more = len(values) - len(shown)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return (f"{literal!r} never occurs in column {column!r}{hint}; it holds "
            + (f"{listed}{f' and {more:,} more' if more > 0 else ''}" if values
               else "no value"))


def expected_split_counts(scans: Mapping[str, Scan], buckets) -> dict[str, Scan]:
    """Each split's scan: the split directory's own, or, for an unsplit input, the
    whole scan scaled by the split's share of the hash buckets (``buckets``: the spec's
    data.splits), which is what ExampleGen's hashing leaves in it on average."""
    if "" not in scans:
        return dict(scans)
    whole, shares = scans[""], dict(buckets)
    all_buckets = sum(shares.values())
    result = {}
    for split, count in shares.items():
        share = count / all_buckets
        result[split] = Scan(
            rows=round(whole.rows * share),
            tasks={name: TaskCounts(labelled=round(c.labelled * share),
                                    classes=collections.Counter(
                                        {k: round(v * share) for k, v in c.classes.items()}),
                                    low=c.low, high=c.high)
                   for name, c in whole.tasks.items()})
    return result


def small_split_warnings(scans: Mapping[str, Scan], spec) -> list[dict[str, Any]]:
    """A warning per (task, eval split) with fewer labelled examples than a verdict
    needs (:data:`MIN_PER_CLASS` of every class, or in all for regression);
    ``scans``: per split (:func:`expected_split_counts`)."""
    warnings = []
    for split in (naming.VALIDATION, naming.TEST):
        if split not in scans:
            continue
        for task in spec.tasks:
            counts = scans[split].tasks[task.name]
            if task.type == "regression":
                small = counts.labelled < MIN_PER_CLASS
                detail = f"{counts.labelled:,} labelled examples"
            else:
                rarest, fewest = min(counts.classes.items(), key=lambda kv: kv[1],
                                     default=(None, 0))
                small = fewest < MIN_PER_CLASS
                detail = (f"{counts.labelled:,} labelled examples, {fewest:,} of its rarest "
                          f"class ({rarest!r})")
            if small:
                warnings.append({
                    "kind": "small_split", "task": task.name, "split": split,
                    "message": f"task {task.name!r}: the {split} split holds about {detail}: "
                               f"fewer than {MIN_PER_CLASS} per "
                               f"{'class' if task.type != 'regression' else 'split'}, too "
                               "few for a meaningful "
                               + ("selection" if split == naming.VALIDATION else "verdict")})
    return warnings


def epoch_warning(scans: Mapping[str, Scan], batch_size: int, steps: int | None = None,
                  epochs: float | None = None) -> dict[str, Any] | None:
    """A warning when the budget (``steps`` of ``batch_size``, or ``epochs``) is more
    than :data:`MAX_EPOCHS` passes over the train split; ``scans`` per split."""
    rows = scans[naming.TRAIN].rows if naming.TRAIN in scans else 0
    if not rows:
        return None
    passes = epochs if epochs is not None else steps * batch_size / rows
    if passes <= MAX_EPOCHS:
        return None
    budget = (f"--train-epochs {epochs:g}" if epochs is not None
              else f"{steps:,} steps of batch {batch_size}")
    return {"kind": "many_epochs", "task": None, "split": naming.TRAIN,
            "message": f"the budget, {budget}, is {passes:,.0f} epochs over a train split of "
                       f"about {rows:,} examples (more than {MAX_EPOCHS}): early stopping "
                       "still selects on validation, but each train example is seen that often "
                       "and can be memorised; consider --train-epochs"}

