"""What the review notebooks (``notebooks/``) read from a run, as tables and figures.

A notebook is given only a run's output directory: the latest pipeline run is
found in its MLMD store (:func:`tfx_mtl.results.metadata.find_run`),
and everything else comes from that run's own records -- the tasks, metric
names and slices from the blessing gate's ``spec`` parameter, the numbers from
its transfer report and each task's TFMA evaluation, the data views from
StatisticsGen, the schema and ExampleValidator. Nothing here hard-codes a task,
so a notebook works for any spec.
"""
from __future__ import annotations

import glob
import math
import os
from typing import Any, Iterable, Sequence

import pandas as pd

from tfx_mtl import naming
from tfx_mtl.results.metadata import Run
from tfx_mtl.task_spec import TaskSpec

# Where the schema the run used comes from, the first one present wins: the
# gate's validated copy, else the curated (CuratedSchemaGen) or inferred one.
SCHEMA_OUTPUTS = ((naming.SCHEMA_GATE, "validated_schema"), (naming.CURATED_SCHEMA_GEN, "schema"),
                  (naming.SCHEMA_GEN, "schema"))
MULTI_TASK, BASELINE, CHANGE = "multi_task", "baseline", "change"
COUNTS = ("example_count", "labelled_count")


# --- model analysis -------------------------------------------------------------------


def overall_table(run: Run) -> pd.DataFrame:
    """One row per task and metric: multi-task vs baseline on the overall slice, the
    bounds and the gate's verdict, as in the transfer report. ``examples`` counts every
    eval example, ``labelled`` those with the task's label (the metrics' weight)."""
    return overall_frame(run.require_report(), run.spec)


def overall_frame(report: dict[str, Any], spec: TaskSpec | None = None) -> pd.DataFrame:
    """The rows of :func:`overall_table`; ``change_low``/``change_high`` (and the ``pct``
    pair) are the paired interval of the change on the test split, NaN where the report
    has none (a metric that was not compared, or a report written before intervals)."""
    rows = []
    for task, info in report["tasks"].items():
        for metric in _metric_names(task, info, spec):
            candidate = info["metrics"].get(metric)
            baseline = info["baseline_metrics"].get(metric)
            change = info["changes"].get(metric)
            interval = info.get("intervals", {}).get(metric, {})
            rows.append({
                "task": task, "role": info["role"],
                "examples": info["metrics"].get("example_count"),
                "labelled": info["metrics"].get("labelled_count"), "metric": metric,
                MULTI_TASK: candidate, BASELINE: baseline, CHANGE: change,
                "change_pct": (change / baseline * 100
                               if change is not None and baseline else math.nan),
                **{column: _number(interval.get(key), scale)
                   for column, (key, scale) in _INTERVAL_COLUMNS.items()},
                "bound": "; ".join(info["bounds"].get(metric, [])),
                "blessed": info["blessed"]})
    frame = pd.DataFrame(rows, columns=["task", "role", "examples", "labelled", "metric",
                                        MULTI_TASK, BASELINE, CHANGE, "change_pct",
                                        *_INTERVAL_COLUMNS, "bound", "blessed"])
    return _counts_as_int(frame, ["examples", "labelled"])


_INTERVAL_COLUMNS = {"change_low": ("change_low", 1), "change_high": ("change_high", 1),
                     "change_pct_low": ("relative_low", 100),
                     "change_pct_high": ("relative_high", 100)}


def _number(value: float | None, scale: float) -> float:
    return math.nan if value is None else value * scale


def _counts_as_int(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """TFMA's counts are doubles; shown as 618.0 they read like a metric."""
    for column in columns:
        frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    return frame


def _metric_names(task: str, info: dict[str, Any], spec: TaskSpec | None) -> list[str]:
    if spec is not None and task in spec.task_names:
        return [m.key for m in spec.task(task).metrics]
    return [m for m in info["metrics"] if m not in COUNTS]


CLASS_THRESHOLD = 0.0  # TFMA's multiclass matrix at 0: the predicted class is the argmax
TRANSFORM = "Transform"  # TFX's node id of the Transform component


def class_table(run: Run, task: str) -> pd.DataFrame:
    """Every class of a multiclass ``task``: its labelled test weight, and precision and
    recall by argmax for the multi-task model and the baseline, from the confusion matrix
    TFMA computes for every class (the spec's ``precision[c]``/``recall[c]`` bound a few);
    classes are named from Transform's label vocabulary."""
    import tensorflow_transform as tft

    vocabulary = tft.TFTransformOutput(run.output(TRANSFORM, "transform_graph")
                                       ).vocabulary_by_name(naming.label_vocab_name(task))
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in vocabulary]
    return class_frame(confusion_matrices(run.evaluation(task)), names)


def confusion_matrices(eval_uri: str) -> dict[str, Any]:
    """TFMA's multiclass confusion matrices of an evaluation's overall slice, by model
    (:data:`MULTI_TASK`, :data:`BASELINE`)."""
    import tensorflow_model_analysis as tfma

    matrices = {}
    for plots in tfma.load_plots(eval_uri):
        if plots.slice_key.single_slice_keys:
            continue  # the overall slice only
        for kv in plots.plot_keys_and_values:
            if kv.value.HasField("multi_class_confusion_matrix_at_thresholds"):
                matrices[kv.key.model_name] = kv.value.multi_class_confusion_matrix_at_thresholds
    return {MULTI_TASK: matrices.get(naming.CANDIDATE), BASELINE: matrices.get(naming.BASELINE)}


def class_frame(matrices: dict[str, Any], names: Sequence[str]) -> pd.DataFrame:
    """One row per class (the label vocabulary's order, which is its id): ``labelled``
    (weight), then ``precision_<model>`` and ``recall_<model>`` per model of ``matrices``
    (TFMA ``MultiClassConfusionMatrixAtThresholds``, or None: NaN), at threshold 0."""
    frame = pd.DataFrame(index=pd.Index(list(names), name="class"))
    for model, matrix in matrices.items():
        cells = {}
        if matrix is not None:
            (at_zero,) = [m for m in matrix.matrices if m.threshold == CLASS_THRESHOLD]
            cells = {(e.actual_class_id, e.predicted_class_id): e.num_weighted_examples
                     for e in at_zero.entries}
        labelled = [sum(w for (a, _), w in cells.items() if a == c) for c in range(len(names))]
        predicted = [sum(w for (_, p), w in cells.items() if p == c) for c in range(len(names))]
        hits = [cells.get((c, c), 0.0) for c in range(len(names))]
        if "labelled" not in frame and matrix is not None:
            frame["labelled"] = labelled
        frame[f"precision_{model}"] = [h / n if n else math.nan for h, n in zip(hits, predicted)]
        frame[f"recall_{model}"] = [h / n if n else math.nan for h, n in zip(hits, labelled)]
    return frame


def slice_table(run: Run, task: str, column: str | Sequence[str]) -> pd.DataFrame:
    """``task``'s metrics per value of ``column`` (or a cross of columns), multi-task
    vs baseline, from its TFMA evaluation."""
    from tfx_mtl.results import evaluation

    spec_task = run.require_spec().task(task)
    slices = evaluation.load(run.evaluation(task), spec_task)
    return slice_frame(slices, column, [m.key for m in spec_task.metrics], task=task)


def slice_frame(slices: Iterable, column: str | Sequence[str], metrics: Sequence[str],
                task: str | None = None) -> pd.DataFrame:
    """One row per slice value, sorted (numbers numerically): the counts, then per
    metric ``<metric>_multi_task``, ``<metric>_baseline`` and ``<metric>_change``."""
    columns = (column,) if isinstance(column, str) else tuple(column)
    rows = []
    for entry in slices:
        values = dict(entry.slice)
        if sorted(values) != sorted(columns):
            continue
        row = {c: entry.candidate.get(c) for c in COUNTS}
        for metric in metrics:
            row[f"{metric}_{MULTI_TASK}"] = entry.candidate.get(metric)
            row[f"{metric}_{BASELINE}"] = entry.baseline.get(metric)
            row[f"{metric}_{CHANGE}"] = entry.changes.get(metric)
        rows.append((tuple(values[c] for c in columns), row))
    rows.sort(key=lambda r: [_sort_key(v) for v in r[0]])
    index = pd.Index([v[0] if len(v) == 1 else " x ".join(map(str, v)) for v, _ in rows],
                     name=" x ".join(columns))
    value_columns = list(COUNTS) + [f"{m}_{s}" for m in metrics for s in (MULTI_TASK, BASELINE,
                                                                          CHANGE)]
    frame = _counts_as_int(pd.DataFrame([r for _, r in rows], index=index,
                                        columns=value_columns), COUNTS)
    frame.attrs.update(task=task, metrics=list(metrics))
    return frame


def _sort_key(value) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def plot_slices(frame: pd.DataFrame, metric: str, title: str | None = None):
    """Grouped bars per slice value, multi-task vs single-task baseline: a static
    figure (no widget), so it also shows where the notebook is only viewed."""
    from matplotlib.figure import Figure

    labels = [str(v) for v in frame.index]
    if "labelled_count" in frame:
        labels = [f"{v}\n(n={_count(n)})" for v, n in zip(labels, frame["labelled_count"])]
    x = range(len(frame))
    width = 0.4
    fig = Figure(figsize=(min(16.0, max(6.0, 0.5 * len(frame) + 2)), 4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar([i - width / 2 for i in x], frame[f"{metric}_{MULTI_TASK}"], width,
           label="multi-task")
    ax.bar([i + width / 2 for i in x], frame[f"{metric}_{BASELINE}"], width,
           label="single-task baseline")
    ax.set_xticks(list(x), labels, fontsize=8, rotation=0 if len(frame) <= 8 else 90)
    column = frame.index.name or "slice"
    ax.set_xlabel(column)
    ax.set_ylabel(metric)
    task = frame.attrs.get("task")
    ax.set_title(title or (f"{task}: " if task else "") + f"{metric} by {column}")
    ax.legend()
    return fig


def _count(value) -> str:
    return "?" if pd.isna(value) else f"{value:.0f}"


def judged_metrics(run: Run, task: str) -> list[str]:
    """The metrics the gate bounds for ``task`` (else its first): the ones worth a plot."""
    info = run.require_report()["tasks"][task]
    names = _metric_names(task, info, run.spec)
    return [m for m in names if info["bounds"].get(m)] or names[:1]


def eval_result(run: Run, task: str):
    """The multi-task model's TFMA result of ``task``, for ``tfma.view`` widgets."""
    import tensorflow_model_analysis as tfma

    return tfma.load_eval_result(run.evaluation(task), model_name="candidate")


# --- data -----------------------------------------------------------------------------


def statistics(run: Run) -> dict[str, Any]:
    """StatisticsGen's statistics per split (``DatasetFeatureStatisticsList``)."""
    import tensorflow_data_validation as tfdv

    uri = run.output(naming.STATISTICS_GEN, "statistics")
    return {split: tfdv.load_stats_binary(os.path.join(path, "FeatureStats.pb"))
            for split, path in _splits(uri)}


def statistics_table(stats: dict[str, Any]) -> pd.DataFrame:
    """A static summary per feature and split (Facets needs a browser and a network):
    the share of examples with a value, and the mean/std/range or the distinct values."""
    rows = []
    for split, stats_list in stats.items():
        dataset = stats_list.datasets[0]
        for feature in dataset.features:
            kind = feature.WhichOneof("stats")
            values = getattr(feature, kind) if kind else None
            common = values.common_stats if values is not None else None
            row = {"feature": ".".join(feature.path.step) or feature.name, "split": split}
            if common is not None and dataset.num_examples and common.max_num_values <= 1:
                row["present_pct"] = (100 * common.num_non_missing * common.avg_num_values
                                      / dataset.num_examples)
            if kind == "num_stats":
                row.update(mean=values.mean, std=values.std_dev, min=values.min, max=values.max)
            elif kind == "string_stats":
                row.update(unique=values.unique, top=values.top_values[0].value
                           if values.top_values else None)
            rows.append(row)
    columns = ["feature", "split", "present_pct", "mean", "std", "min", "max", "unique", "top"]
    frame = pd.DataFrame(rows, columns=columns).sort_values(["feature", "split"], kind="stable")
    return frame.set_index(["feature", "split"])


def schema(run: Run):
    """The schema the run used (``schema_pb2.Schema``) and where it was read."""
    import tensorflow_data_validation as tfdv

    for node, key in SCHEMA_OUTPUTS:
        if key in run.outputs.get(node, {}):
            path = os.path.join(run.outputs[node][key], "schema.pbtxt")
            return tfdv.load_schema_text(path), path
    raise LookupError(f"the latest run of {run.pipeline!r} in {run.metadata} has no schema "
                      f"({run.describe_states()})")


def anomalies(run: Run) -> dict[str, Any]:
    """ExampleValidator's anomalies per split (``anomalies_pb2.Anomalies``)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    result = {}
    for split, path in _splits(run.output(naming.EXAMPLE_VALIDATOR, "anomalies")):
        result[split] = anomalies_pb2.Anomalies()
        with open(os.path.join(path, "SchemaDiff.pb"), "rb") as f:
            result[split].ParseFromString(f.read())
    return result


def _splits(uri: str) -> list[tuple[str, str]]:
    found = [(os.path.basename(p)[len("Split-"):], p)
             for p in sorted(glob.glob(os.path.join(uri, "Split-*")))]
    if not found:
        raise FileNotFoundError(f"no Split-* directory in {uri}")
    return found
