"""Candidate vs baseline on the test split: metrics as TFMA computes them, a paired
bootstrap interval for every change, and Δm, in numpy only.

Why not TFMA's own intervals: a TFX Evaluator takes at most two models, so it can
neither pool several training seeds nor resample the same examples for every task
at once, which Δm's interval needs. This module gets every model's predictions on
the same test examples (gathered by the ``ModelComparison`` component) and does both.

**Metrics** (:func:`metric_value`) are the Evaluator's, reproduced formula for formula:
TFMA 0.52's own, and the project's (``pipeline/tfma_metrics.py``, which calls the
helpers here). Weighted means for ``mse``/``mae`` (an example whose error is NaN is
skipped, as TFMA does), ``rmse`` = sqrt(weighted mse), ``log_loss`` = weighted mean of
``-(y log p) - (1-y) log(1-p)`` (multiclass: ``-log p[label]``) with p clipped to
``[1e-7, 1-1e-7]`` as Keras does, so a saturated prediction costs at most
-log(1e-7) ≈ 16.1 instead of TFMA's NaN; ``binary_accuracy``/``precision``/``recall``
from the confusion matrix at 0.5 ("prediction > 0.5" is positive), ``auc``/``auc_pr``
from TFMA's 10,000-bucket calibration histogram rebinned onto its interpolated
thresholds (ROC: trapezoids; PR: the Davis & Goadrich interpolation). Multiclass
(labels are the label vocabulary's ids): ``accuracy`` = Keras' weighted argmax match (0
when no example has weight, Keras' ``divide_no_nan``), ``top_k_accuracy@k`` (the label
among the k most probable classes, ties counting in), ``auc_micro`` (the histogram ROC
AUC over every (example, class) pair, as TFMA's micro average), ``auc_macro`` (the
mean per-class one-vs-rest histogram ROC AUC over the classes with a positive and a
negative example), and ``precision[c]``/``recall[c]`` of class ``c`` by argmax (the
class's id is learnt from the examples whose label column holds ``c``:
:func:`tfx_mtl.metric_formulas.class_ids`).

**Interval** (:func:`compare`): a paired bootstrap. Each replicate draws example
counts (multinomial: n draws with replacement) shared by every model, task and
metric, so the candidate and the baseline are judged on the same resample and Δm
gets a joint interval; with several seeds it also draws seed indices with
replacement, separately for the candidate and the baselines (their seeds are not
paired). Candidate and baseline values in a replicate are means over the drawn
seeds. The interval is the percentile interval of the replicates at ``confidence``.
Replicates are processed in chunks so memory stays bounded for ~1e5 test rows.

Known limitations: with N = 2-3 seeds, resampling seeds understates the
between-seed variance (the bootstrap variance of a mean of N values is (N-1)/N of
the usual s²/N, and N values say little about the spread anyway); the interval covers
test-example and seed noise, not the choice of test split. A metric undefined in
some resample (e.g. precision with no predicted positive) makes the interval NaN,
and such a bound cannot be judged.

**Δm** (Maninis et al., "Attentive Single-Tasking of Multiple Tasks", CVPR 2019;
Vandenhende et al., "Multi-Task Learning for Dense Prediction Tasks: A Survey",
TPAMI 2021): ``100/K · Σ_k s_k (c_k - b_k) / b_k`` over the K tasks' gated metrics,
``s_k = +1`` if higher is better else -1, so positive means better than the
single-task baselines on average, in percent.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from tfx_mtl import finite
from tfx_mtl.errors import InputError
from tfx_mtl.metric_formulas import (NUM_THRESHOLDS, REBIN, pr_auc, roc_auc,
                                     binary_log_loss_terms, categorical_log_loss_terms,
                                     histogram_buckets, top_k_hits)
from tfx_mtl.task_spec import METRICS, MetricDef, parse_metric_key

READINGS = ("significant", "strict")
SPLIT = "test"
# Elements of one [replicates, examples] chunk (float64: 4 MB).
CHUNK_ELEMENTS = 1 << 19



@dataclasses.dataclass(frozen=True)
class TaskData:
    """One task's labels, mask and every model's test predictions, in one example order."""

    type: str                        # "binary" | "multiclass" | "regression"
    label: np.ndarray                # [n]: 0/1, class index, or value
    weight: np.ndarray               # [n]: the task's example weight (0 = unlabelled)
    candidate: Sequence[np.ndarray]  # one per seed: [n], or [n, C] class probabilities
    baseline: Sequence[np.ndarray]   # one per seed, same shapes
    # multiclass: each class name's label id (class_ids), for per-class metrics
    classes: Mapping[str, int] = dataclasses.field(default_factory=dict)


# --- metrics: prepared once per model, then evaluated on any example counts ----------

class _Prepared:
    """One model's predictions on one task, reduced to what a metric needs, so that a
    replicate (a [b, n] matrix of example counts) is a few matrix products."""

    def values(self, counts: np.ndarray) -> np.ndarray:  # [b, n] -> [b]
        raise NotImplementedError


def _weighted_sums(counts: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """``counts @ terms`` where an example drawn 0 times contributes nothing, even a
    non-finite term (it is absent from that resample, as from TFMA's input)."""
    finite = np.isfinite(terms)
    total = counts @ np.where(finite, terms, 0.0)
    bad = np.flatnonzero(~finite)
    if bad.size:
        drawn = counts[:, bad]
        with np.errstate(invalid="ignore"):
            total = total + np.where(drawn > 0, drawn * terms[bad], 0.0).sum(axis=1)
    return total


class _Mean(_Prepared):
    """sum(count·numerator) / sum(count·denominator), then ``finish``."""

    def __init__(self, numerator, denominator, empty=math.nan, finish=None):
        self.numerator, self.denominator = numerator, denominator
        self.empty, self.finish = empty, finish

    def values(self, counts):
        num = _weighted_sums(counts, self.numerator)
        den = _weighted_sums(counts, self.denominator)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den != 0, num / np.where(den != 0, den, 1.0), self.empty)
            return self.finish(value) if self.finish else value


class _Confusion(_Prepared):
    """TFMA's confusion matrix at threshold 0.5 (fractional labels: a label y counts
    y·w as positive and (1-y)·w as negative; "prediction > 0.5" is predicted positive)."""

    def __init__(self, label, prediction, weight, metric):
        positive = prediction > 0.5  # NaN: not positive, as in TFMA
        self.parts = {"tp": weight * label * positive, "fn": weight * label * ~positive,
                      "fp": weight * (1 - label) * positive,
                      "tn": weight * (1 - label) * ~positive}
        self.metric = metric

    def values(self, counts):
        m = {k: _weighted_sums(counts, v) for k, v in self.parts.items()}
        num, den = {"binary_accuracy": (m["tp"] + m["tn"], m["tp"] + m["tn"] + m["fp"] + m["fn"]),
                    "precision": (m["tp"], m["tp"] + m["fp"]),
                    "recall": (m["tp"], m["tp"] + m["fn"])}[self.metric]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), math.nan)


class _Curve(_Prepared):
    """TFMA's histogram AUC (ROC or PR). The positive and the negative weights are each
    sorted by rebinned bucket (an example with a 0/1 label is in one of them only), so
    the true/false positives above each threshold are suffix sums of the drawn weights.
    Only thresholds where a count can change are kept (every skipped step adds exactly
    0 to TFMA's sums: a zero-width trapezoid, or a 0/0 PR term that ``nansum`` drops)."""

    def __init__(self, label, prediction, weight, curve):
        self.curve = curve
        present = weight != 0
        nan = np.isnan(prediction)
        self.bad = np.flatnonzero(nan & present)  # TFMA cannot bucket NaN: no value
        rebinned = REBIN[histogram_buckets(np.where(nan, 0.0, prediction))]
        w = np.where(present, weight, 0.0)
        sides = []
        for side_weight in (w * label, w * (1 - label)):
            rows = np.flatnonzero(side_weight != 0)
            rows = rows[np.argsort(rebinned[rows], kind="stable")]
            sides.append((rows, side_weight[rows], rebinned[rows]))
        last = NUM_THRESHOLDS - 1
        points = np.unique(np.concatenate(
            [[0, last]] + [np.minimum(ranked + 1, last) for _, _, ranked in sides]))
        self.at_end = points == last
        self.sides = [(rows, weights, np.searchsorted(ranked, points, side="left"))
                      for rows, weights, ranked in sides]

    def values(self, counts):
        (tp, p_total), (fp, n_total) = (self._above(counts, *side) for side in self.sides)
        fn, tn = p_total[:, None] - tp, n_total[:, None] - fp
        value = pr_auc(tp, fp, fn) if self.curve == "PR" else roc_auc(tp, fp, fn, tn)
        if self.bad.size:
            value = np.where(counts[:, self.bad].sum(axis=1) > 0, math.nan, value)
        return value

    def _above(self, counts, rows, weights, starts):
        """Per replicate: the drawn weight at or above each kept threshold, and in all."""
        if not rows.size:
            return np.zeros((len(counts), len(starts))), np.zeros(len(counts))
        prefix = np.cumsum(counts[:, rows] * weights, axis=1)
        total = prefix[:, -1]
        below = np.where(starts > 0, prefix[:, np.maximum(starts - 1, 0)], 0.0)
        above = total[:, None] - below
        above[:, self.at_end] = 0.0  # TFMA: nothing is above the 1+eps threshold
        return above, total



class _Flattened(_Prepared):
    """A metric over every (example, class) pair: an example's count repeated per class."""

    def __init__(self, prepared: _Prepared, classes: int):
        self.prepared, self.classes = prepared, classes

    def values(self, counts):
        return self.prepared.values(np.repeat(counts, self.classes, axis=1))


class _MacroCurve(_Prepared):
    """The mean one-vs-rest ROC AUC over the classes with a positive and a negative
    example drawn (NaN if none, or a drawn labelled example has a NaN probability)."""

    def __init__(self, label, probabilities, weight):
        w = np.where(weight != 0, weight, 0.0)
        self.bad = np.flatnonzero(np.isnan(probabilities).any(axis=1) & (w != 0))
        clean = np.where(np.isnan(probabilities), 0.0, probabilities)
        self.classes = []
        for c in range(probabilities.shape[1]):
            positive = (label == c).astype(np.float64)
            self.classes.append((_Curve(positive, clean[:, c], w, "ROC"), w * positive,
                                 w * (1 - positive)))

    def values(self, counts):
        total = np.zeros(len(counts))
        used = np.zeros(len(counts))
        for curve, positive, negative in self.classes:
            valid = ((_weighted_sums(counts, positive) > 0)
                     & (_weighted_sums(counts, negative) > 0))
            total += np.where(valid, curve.values(counts), 0.0)
            used += valid
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(used > 0, total / np.where(used > 0, used, 1.0), math.nan)
        if self.bad.size:
            value = np.where(counts[:, self.bad].sum(axis=1) > 0, math.nan, value)
        return value


class _ClassRate(_Prepared):
    """Precision or recall of one class id (argmax is the predicted class)."""

    def __init__(self, label, probabilities, weight, class_id, metric):
        w = np.where(weight != 0, weight, 0.0)
        predicted = np.argmax(probabilities, axis=1)
        if class_id is None:  # the class has no labelled example: no value
            self.hit = self.total = np.zeros_like(w)
        else:
            self.hit = w * ((label == class_id) & (predicted == class_id))
            self.total = w * ((predicted if metric == "precision" else label) == class_id)

    def values(self, counts):
        hit, total = _weighted_sums(counts, self.hit), _weighted_sums(counts, self.total)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, hit / np.where(total > 0, total, 1.0), math.nan)


def _labelled(terms, weight) -> _Mean:
    """The weighted mean of per-example terms over the labelled examples only."""
    with np.errstate(invalid="ignore"):
        return _Mean(np.where(weight != 0, terms * weight, 0.0), weight)


def _prepare(task_type: str, metric: str, label, prediction, weight,
             classes: Mapping[str, int] | None = None) -> _Prepared:
    name, k, label_class = parse_metric_key(metric)
    label = np.asarray(label, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if task_type == "multiclass":
        return _prepare_multiclass(name, k, label_class, label, prediction, weight,
                                   classes or {})
    metric = name
    if metric in ("mse", "rmse", "mae"):
        error = (label - prediction) ** 2 if metric != "mae" else np.abs(label - prediction)
        skipped = np.isnan(error)  # TFMA's mean_regression_error skips NaN errors
        with np.errstate(invalid="ignore"):
            numerator = np.where(skipped, 0.0, error * weight)
        return _Mean(numerator, np.where(skipped, 0.0, weight),
                     finish=np.sqrt if metric == "rmse" else None)
    if metric == "log_loss":
        return _labelled(binary_log_loss_terms(label, prediction), weight)
    if metric in ("binary_accuracy", "precision", "recall"):
        return _Confusion(label, prediction, weight, metric)
    if metric in ("auc", "auc_pr"):
        return _Curve(label, prediction, weight, "ROC" if metric == "auc" else "PR")
    raise ValueError(f"no formula for {metric!r}")  # METRICS gained a metric: add it here


def _prepare_multiclass(name, k, label_class, label, prediction, weight,
                        classes: Mapping[str, int]) -> _Prepared:
    """Labels are class ids, predictions [n, classes] probabilities."""
    if name == "accuracy":
        match = (np.argmax(prediction, axis=-1) == label).astype(np.float64)
        return _Mean(match * weight, weight, empty=0.0)  # Keras: divide_no_nan
    if name == "log_loss":
        return _labelled(categorical_log_loss_terms(label, prediction), weight)
    if name == "top_k_accuracy":
        return _labelled(top_k_hits(label, prediction, k), weight)
    if name == "auc_micro":
        n, width = prediction.shape
        one_hot = (np.arange(width)[None, :] == label[:, None]).astype(np.float64)
        return _Flattened(_Curve(one_hot.reshape(-1), prediction.reshape(-1),
                                 np.repeat(weight, width), "ROC"), width)
    if name == "auc_macro":
        return _MacroCurve(label, prediction, weight)
    if name in ("precision", "recall"):
        return _ClassRate(label, prediction, weight, classes.get(label_class), name)
    raise ValueError(f"no formula for {name!r}")  # METRICS gained a metric: add it here


def _check_metric(task_type: str, metric: str, field: str = "metric") -> MetricDef:
    """The definition of a metric key (``name``, ``name@k``, ``name[class]``)."""
    if task_type not in METRICS:
        raise InputError("type", f"unknown task type {task_type!r} "
                                 f"(one of: {', '.join(METRICS)})")
    try:
        name, k, label_class = parse_metric_key(metric)
    except ValueError:
        name = k = label_class = None
    if name not in METRICS[task_type]:
        raise InputError(field, f"{metric!r} is not a {task_type} metric "
                                f"(one of: {', '.join(METRICS[task_type])})")
    definition = METRICS[task_type][name]
    if ("k" in definition.params) != (k is not None) or (
            "class" in definition.params) != (label_class is not None):
        form = {"k": f"{name}@<k>", "class": f"{name}[<class>]"}
        raise InputError(field, f"{metric!r}: a {task_type} {name} is written "
                                f"{form.get(next(iter(definition.params), ''), name)}")
    return definition


def metric_value(task_type: str, metric: str, label, prediction, weight,
                 classes: Mapping[str, int] | None = None) -> float:
    """``metric`` (a metric key) of ``prediction`` against ``label`` with example weights
    ``weight``, as the Evaluator computes it (TFMA's formula, or the project's metric in
    ``pipeline/tfma_metrics.py``); ``classes`` maps class names to label ids."""
    _check_metric(task_type, metric)
    prepared = _prepare(task_type, metric, label, prediction, weight, classes)
    return float(prepared.values(np.ones((1, len(np.asarray(weight)))))[0])


# --- the comparison ----------------------------------------------------------------

def _validate(tasks, metrics, gated, seeds) -> int:
    if not tasks:
        raise InputError("tasks", "no task to compare")
    n_seeds = len(seeds)
    if n_seeds == 0:
        raise InputError("seeds", "at least one seed is needed")
    sizes = set()
    for name, data in tasks.items():
        field = f"tasks.{name}"
        names = list(metrics.get(name, ()))
        if not names:
            raise InputError(f"metrics.{name}", "no metric to compare")
        for metric in names:
            _check_metric(data.type, metric, f"metrics.{name}")
        if gated.get(name) not in names:
            raise InputError(f"gated.{name}", f"{gated.get(name)!r} is not one of the task's "
                                              f"metrics ({', '.join(names)})")
        n = len(np.asarray(data.label))
        sizes.add(n)
        if len(np.asarray(data.weight)) != n:
            raise InputError(f"{field}.weight", f"{len(data.weight)} weights for {n} labels")
        for side in ("candidate", "baseline"):
            predictions = getattr(data, side)
            if len(predictions) != n_seeds:
                raise InputError(f"{field}.{side}", f"{len(predictions)} predictions for "
                                                    f"{n_seeds} seeds")
            for i, p in enumerate(predictions):
                if len(np.asarray(p)) != n:
                    raise InputError(f"{field}.{side}[{i}]",
                                     f"{len(p)} predictions for {n} labels")
    if len(sizes) != 1:
        raise InputError("tasks", f"tasks have different example counts: {sorted(sizes)}")
    if set(gated) - set(tasks):
        raise InputError("gated", f"unknown tasks: {sorted(set(gated) - set(tasks))}")
    return sizes.pop()


def _counts(replicates: Sequence[np.random.SeedSequence], n: int) -> np.ndarray:
    """[replicates, n] example counts, each row one multinomial draw of n examples (n
    draws with replacement) from that replicate's own stream, so the result does not
    depend on how replicates are chunked."""
    counts = np.empty((len(replicates), n))
    for row, seed in enumerate(replicates):
        counts[row] = np.bincount(np.random.default_rng(seed).integers(0, n, size=n),
                                  minlength=n)
    return counts


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _relative(change, baseline):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(change, baseline)


def _delta_m(changes: Mapping[str, Any], baselines: Mapping[str, Any],
             signs: Mapping[str, float]):
    """100/K · Σ_k s_k (c_k - b_k) / b_k (percent; positive: better than the baselines)."""
    terms = [signs[t] * _relative(changes[t], baselines[t]) for t in changes]
    return 100.0 / len(terms) * sum(terms)


def compare(tasks: Mapping[str, TaskData], metrics: Mapping[str, Sequence[str]],
            gated: Mapping[str, str], seeds: Sequence[int], *, confidence: float = 0.95,
            samples: int = 2000, rng_seed: int = 0) -> dict:
    """The ``comparison.json`` record: per task and metric the candidate and baseline
    values (means over seeds, on every test example), the change and relative change
    with their paired-bootstrap percentile intervals, per-seed values, and Δm over
    each task's ``gated`` metric with its joint interval. Non-finite values stay NaN;
    write the record with :mod:`tfx_mtl.finite`."""
    n = _validate(tasks, metrics, gated, seeds)
    if not 0 < confidence < 1:
        raise InputError("confidence", f"must be between 0 and 1, not {confidence}")
    if samples < 1:
        raise InputError("samples", f"must be at least 1, not {samples}")
    n_seeds = len(seeds)
    pairs = [(t, m) for t in tasks for m in metrics[t]]
    prepared = {(t, m): {side: [_prepare(tasks[t].type, m, tasks[t].label, p, tasks[t].weight,
                                         tasks[t].classes)
                                for p in getattr(tasks[t], side)]
                         for side in ("candidate", "baseline")}
                for t, m in pairs}
    higher = {(t, m): _check_metric(tasks[t].type, m).higher_is_better for t, m in pairs}

    ones = np.ones((1, n))
    per_seed = {key: {side: [float(p.values(ones)[0]) for p in models]
                      for side, models in sides.items()} for key, sides in prepared.items()}
    point = {key: {side: float(np.mean(v)) for side, v in sides.items()}
             for key, sides in per_seed.items()}

    seed_stream, *replicates = np.random.SeedSequence(rng_seed).spawn(samples + 1)
    seed_rng = np.random.default_rng(seed_stream)
    # Seed indices drawn with replacement, separately for the candidate and the baselines.
    draws = {side: seed_rng.integers(0, n_seeds, size=(samples, n_seeds))
             for side in ("candidate", "baseline")}
    boot = {key: {"candidate": np.empty(samples), "baseline": np.empty(samples)}
            for key in pairs}
    rows = max(1, min(samples, CHUNK_ELEMENTS // n))
    for start in range(0, samples, rows):
        chunk = slice(start, min(start + rows, samples))
        counts = _counts(replicates[chunk], n)
        for key, sides in prepared.items():
            for side, models in sides.items():
                values = np.stack([model.values(counts) for model in models], axis=1)
                boot[key][side][chunk] = np.take_along_axis(
                    values, draws[side][chunk], axis=1).mean(axis=1)

    record_tasks: dict[str, Any] = {}
    for t in tasks:
        entries = {}
        for m in metrics[t]:
            key = (t, m)
            c, b = point[key]["candidate"], point[key]["baseline"]
            change = boot[key]["candidate"] - boot[key]["baseline"]
            relative = _relative(change, boot[key]["baseline"])
            change_low, change_high = _interval(change, confidence)
            relative_low, relative_high = _interval(relative, confidence)
            entries[m] = {
                "metric": m, "higher_is_better": higher[key], "confidence": confidence,
                "candidate": c, "baseline": b, "change": c - b,
                "change_low": change_low, "change_high": change_high,
                "relative": float(_relative(c - b, b)),
                "relative_low": relative_low, "relative_high": relative_high,
                "per_seed": [{"seed": int(s), "candidate": pc, "baseline": pb}
                             for s, pc, pb in zip(seeds, per_seed[key]["candidate"],
                                                  per_seed[key]["baseline"])]}
        record_tasks[t] = {"labelled": int(np.count_nonzero(np.asarray(tasks[t].weight) > 0)),
                           "metrics": entries}

    keys = {t: (t, gated[t]) for t in tasks}
    signs = {t: 1.0 if higher[k] else -1.0 for t, k in keys.items()}
    dm_point = _delta_m({t: point[k]["candidate"] - point[k]["baseline"] for t, k in keys.items()},
                        {t: point[k]["baseline"] for t, k in keys.items()}, signs)
    dm_boot = _delta_m({t: boot[k]["candidate"] - boot[k]["baseline"] for t, k in keys.items()},
                       {t: boot[k]["baseline"] for t, k in keys.items()}, signs)
    dm_low, dm_high = _interval(np.asarray(dm_boot, dtype=np.float64), confidence)
    method = ("paired bootstrap over test examples" + (" and seeds" if n_seeds > 1 else "")
              + ": each replicate resamples the test examples once for every model, task and "
                "metric" + (", and the seeds with replacement, separately for the candidate "
                            "and the baselines" if n_seeds > 1 else "")
              + "; percentile interval")
    return {"split": SPLIT, "examples": int(n), "method": method, "confidence": confidence,
            "samples": int(samples), "rng_seed": int(rng_seed),
            "seeds": [int(s) for s in seeds], "tasks": record_tasks,
            "delta_m": {"value": float(dm_point), "low": dm_low, "high": dm_high,
                        "metrics": {t: gated[t] for t in tasks}}}


# --- the verdict -------------------------------------------------------------------

def _number(value: Any) -> float:
    """A record value as a float; None (a NaN written as strict JSON) is NaN."""
    return math.nan if value is None else float(value)


def _fmt(value: float) -> str:
    return f"{value:#.5g}".rstrip(".") if math.isfinite(value) else str(value)


def _fmt_change(value: float, relative: bool) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value * 100:+.2f}%" if relative else f"{value:+#.4g}".rstrip(".")


def _undefined(who: str, value: float) -> str:
    return f"the {who} is {finite.reason(value)}"


def verdict(entry: Mapping, amount: float, relative: bool, reading: str) -> tuple[bool, str]:
    """Whether a change bound holds for one ``compare`` entry, and why, in words.

    The change becomes a worsening (negated when higher is better), relative to the
    baseline or in the metric's units. ``strict`` refuses when the point worsening
    exceeds ``amount`` (equality passes: TFMA's rule); ``significant`` refuses only when
    the whole interval lies beyond it (its best end's worsening exceeds ``amount``).
    A value it needs that is not a number refuses, saying so."""
    if reading not in READINGS:
        raise InputError("reading", f"{reading!r} is not one of: {', '.join(READINGS)}")
    name = entry.get("metric", "the metric")
    higher = bool(entry["higher_is_better"])
    kind = "relative" if relative else "change"
    point, low, high = (_number(entry.get(k)) for k in (kind, f"{kind}_low", f"{kind}_high"))
    candidate, baseline = _number(entry.get("candidate")), _number(entry.get("baseline"))
    sign = -1.0 if higher else 1.0
    worse, ends = sign * point, sorted((sign * low, sign * high))
    best = ends[0]
    verb = "fall" if higher else "rise"
    bound = f"may {verb} by at most {amount * 100:g}%" if relative else \
        f"may {verb} by at most {amount:g}"
    level = entry.get("confidence")
    interval = f"{level * 100:g}% interval" if level else "interval"

    needed = [worse] + (ends if reading == "significant" else [])
    if not all(math.isfinite(v) for v in needed):
        why = [_undefined(f"{who} value", v) for who, v in (("multi-task", candidate),
                                                            ("baseline", baseline))
               if not math.isfinite(v)]
        if not why and not math.isfinite(worse):
            why = [_undefined("relative change" if relative else "change", point)]
        if not why:
            why = ["the interval is not a number (the metric is undefined in some "
                   "resamples of the test examples)"]
        return False, (f"{name} cannot be judged: {' and '.join(why)}, so the bound fails "
                       f"({bound}; {reading})")

    ok = (worse <= amount) if reading == "strict" else (best <= amount)
    if reading == "strict":
        reason = "the change is within it" if ok else "the change is beyond it"
    else:
        reason = "the interval reaches within it" if ok else "the whole interval is beyond it"
    change = _fmt_change(point, relative)
    if reading == "significant" or math.isfinite(low):
        change += (f", {interval} {_fmt_change(low, relative)} to "
                   f"{_fmt_change(high, relative)}")
    return ok, (f"{name} = {_fmt(candidate)} vs baseline {_fmt(baseline)} ({change}) "
                f"{'passes' if ok else 'fails'}: {bound} ({reading}: {reason})")
