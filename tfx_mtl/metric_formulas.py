"""The metric formulas the Evaluator's project metrics and the paired comparison share.

Numpy only, and independent of the task spec, so the Evaluator's cache key
(``pipeline/tfma_metrics.py`` and what it imports: :mod:`tfx_mtl.module_graph`) moves
only when a formula does. TFMA's histogram AUC is reproduced bit for bit (its bucket
boundaries, its rebinning onto interpolated thresholds, its ROC and PR sums);
the rest are this project's definitions (see :mod:`tfx_mtl.comparison`).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

# TFMA's AUC: a calibration histogram of 10,000 buckets on [0, 1] (plus one below and
# one above), rebinned onto 10,000 interpolated thresholds [-eps, i/9999..., 1+eps]
# (calibration_histogram.py, binary_confusion_matrices.py).
_NUM_BUCKETS = 10000
NUM_THRESHOLDS = 10000
_EPSILON = 1e-7


def _rebin_table() -> np.ndarray:
    """Rebinned bucket of each histogram bucket id 0..10001, as TFMA's ``rebin`` walks
    them (Python floats in TFMA's order, so the boundaries are bit-identical)."""
    thresholds = ([-_EPSILON] + [(i + 1) * 1.0 / (NUM_THRESHOLDS - 1)
                                 for i in range(NUM_THRESHOLDS - 2)] + [1.0 + _EPSILON])
    rebin = np.array([t + _EPSILON if t != 0 else t for t in thresholds])
    ids = np.arange(_NUM_BUCKETS + 2)
    pred = (ids - 1) / _NUM_BUCKETS * (1.0 - 0.0) + 0.0
    pred[0], pred[-1] = -np.inf, np.inf
    return np.searchsorted(rebin[1:], pred, side="right")


REBIN = _rebin_table()


HISTOGRAM_BUCKETS = _NUM_BUCKETS + 2


def histogram_buckets(prediction: np.ndarray) -> np.ndarray:
    """TFMA's calibration-histogram bucket (0..HISTOGRAM_BUCKETS-1) of each probability."""
    index = (np.asarray(prediction, dtype=np.float64) - 0.0) / 1.0 * _NUM_BUCKETS + 1
    bucket = np.where(index < 0, 0, np.where(index >= _NUM_BUCKETS + 1, _NUM_BUCKETS + 1,
                                             np.clip(index, 0, _NUM_BUCKETS + 1)))
    return bucket.astype(np.int64)


def _histogram_roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """TFMA's ROC AUC from the positives' and negatives' weight per histogram bucket."""
    above = []
    for hist in (positive, negative):
        rebinned = np.bincount(REBIN, weights=hist, minlength=NUM_THRESHOLDS)
        suffix = np.cumsum(rebinned[::-1])[::-1]  # weight at or above each threshold
        suffix[-1] = 0.0  # TFMA: nothing is above the 1+eps threshold
        above.append(suffix[None, :])
    (tp, fp), totals = above, (positive.sum(), negative.sum())
    return float(roc_auc(tp, fp, totals[0] - tp, totals[1] - fp)[0])


def macro_auc_of_histograms(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC from per-class histograms [classes, HISTOGRAM_BUCKETS],
    over the classes with positive and negative weight (NaN if none, or a NaN weight)."""
    if np.isnan(positive).any() or np.isnan(negative).any():
        return math.nan
    values = [_histogram_roc_auc(p, n) for p, n in zip(positive, negative)
              if p.sum() > 0 and n.sum() > 0]
    return float(np.mean(values)) if values else math.nan


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def roc_auc(tp, fp, fn, tn):
    """confusion_matrix_metrics.AUC._metric_value, ROC with interpolation."""
    recall, fpr = _ratio(tp, tp + fn), _ratio(fp, fp + tn)
    heights = (recall[:, :-1] + recall[:, 1:]) / 2.0
    return np.nansum((fpr[:, :-1] - fpr[:, 1:]) * heights, axis=1)


def pr_auc(tp, fp, fn):
    """confusion_matrix_metrics.AUC._metric_value, PR with interpolation."""
    with np.errstate(divide="ignore", invalid="ignore"):
        dtp = tp[:, :-1] - tp[:, 1:]
        p = tp + fp
        dp = p[:, :-1] - p[:, 1:]
        prec_slope = dtp / np.maximum(dp, 0)
        intercept = tp[:, 1:] - prec_slope * p[:, 1:]
        safe_p_ratio = np.divide(p[:, :-1], p[:, 1:], out=np.ones_like(p[:, 1:]),
                                 where=p[:, 1:] != 0)
        increment = (prec_slope * (dtp + intercept * np.log(safe_p_ratio))
                     / np.maximum(tp[:, 1:] + fn[:, 1:], 0))
    return np.nansum(increment, axis=1)


LOG_LOSS_EPSILON = 1e-7  # Keras' backend epsilon: probabilities are clipped to [eps, 1-eps]


def binary_log_loss_terms(label, prediction) -> np.ndarray:
    """-(y log p) - (1-y) log(1-p) with p clipped to [eps, 1-eps], in float64."""
    p = np.clip(np.asarray(prediction, dtype=np.float64), LOG_LOSS_EPSILON,
                1 - LOG_LOSS_EPSILON)
    y = np.asarray(label, dtype=np.float64)
    return -(y * np.log(p)) - (1 - y) * np.log(1 - p)


def _label_probability(label, probabilities) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    return p[np.arange(len(p)), np.asarray(label).astype(np.int64)]


def categorical_log_loss_terms(label, probabilities) -> np.ndarray:
    """-log p[label] with p clipped to [eps, 1-eps] (labels: class ids; [n, classes])."""
    return -np.log(np.clip(_label_probability(label, probabilities), LOG_LOSS_EPSILON,
                           1 - LOG_LOSS_EPSILON))


def top_k_hits(label, probabilities, k: int) -> np.ndarray:
    """1 where fewer than ``k`` classes are strictly more probable than the label (ties
    at the k-th place count as in, as ``tf.math.in_top_k``), NaN where a probability is."""
    p = np.asarray(probabilities, dtype=np.float64)
    own = _label_probability(label, p)
    hits = ((p > own[:, None]).sum(axis=1) < k).astype(np.float64)
    return np.where(np.isnan(p).any(axis=1), math.nan, hits)


def class_name(value) -> str | None:
    """A label column's value as the label vocabulary holds it (Transform writes numbers
    with ``tf.strings.as_string``), or None when the example has not one value."""
    if value is None:
        return None
    values = np.asarray(value).reshape(-1)
    if values.size != 1:
        return None
    v = values[0]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):f}"
    return str(v)


def class_ids(names: Sequence[str | None], label, weight) -> dict[str, int]:
    """Each class name's label id, learnt from the labelled examples (weight != 0): the
    id of the examples whose label column holds the name, if they agree on one."""
    seen: dict[str, set[int]] = {}
    for name, y, w in zip(names, np.asarray(label), np.asarray(weight)):
        if w != 0 and name is not None:
            seen.setdefault(name, set()).add(int(y))
    return {name: next(iter(ids)) for name, ids in seen.items() if len(ids) == 1}


def class_rate(confusion: Mapping[tuple[int, int], float], class_id: int,
               metric: str) -> float:
    """Precision or recall of ``class_id`` from {(label id, predicted id): weight}."""
    hit = confusion.get((class_id, class_id), 0.0)
    side = 1 if metric == "precision" else 0
    total = sum(w for pair, w in confusion.items() if pair[side] == class_id)
    return hit / total if total > 0 else math.nan
