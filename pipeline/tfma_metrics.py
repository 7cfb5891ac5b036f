"""TFMA metrics this project adds, where TFMA's own is missing or wrong.

* ``RootMeanSquaredError``: sqrt of TFMA's weighted MSE (TFMA 0.52 ships MSE and MAE only).
* ``LogLoss``: binary or sparse categorical cross-entropy with the probabilities clipped
  to ``[eps, 1 - eps]`` (eps = 1e-7, as Keras does): TFMA's ``BinaryCrossEntropy`` is
  NaN when a prediction is exactly 0 or 1, which a saturated sigmoid gives.
* ``TopKAccuracy``: the label is among the ``k`` most probable classes.
* ``MacroAUC``: the mean one-vs-rest ROC AUC over the classes (TFMA's macro average
  needs the class ids in the EvalConfig, unknown before Transform has run).
* ``ClassPrecision`` / ``ClassRecall``: of one class named as its label column holds it
  (TFMA binarizes by class id, unknown before Transform).

Every formula is in :mod:`tfx_mtl.metric_formulas`, shared with :mod:`tfx_mtl.comparison`
(whose tests run these metrics in TFMA on the same examples). Referenced from an EvalConfig by ``class_name``
with ``module: tfx_mtl.pipeline.tfma_metrics`` and a ``config`` carrying the
module's ``code_version`` so that the Evaluator's cache key follows this code (see
:mod:`tfx_mtl.pipeline.eval_config`); ``code_version`` changes nothing else.
"""
from __future__ import annotations

import math
from typing import Callable

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import mean_regression_error, metric_types, metric_util

from tfx_mtl import metric_formulas as formulas

ROOT_MEAN_SQUARED_ERROR_NAME = "root_mean_squared_error"


class RootMeanSquaredError(metric_types.Metric):
    """sqrt(weighted mean of (label - prediction)^2)."""

    def __init__(self, name: str = ROOT_MEAN_SQUARED_ERROR_NAME, code_version: str = "",
                 **kwargs):
        super().__init__(metric_util.merge_per_key_computations(_rmse_computations),
                         name=name, **kwargs)


def _rmse_computations(name: str = ROOT_MEAN_SQUARED_ERROR_NAME, eval_config=None,
                       model_name: str = "", output_name: str = "",
                       sub_key=None, aggregation_type=None, class_weights=None,
                       example_weighted: bool = False, preprocessors=None):
    mse = mean_regression_error.MeanSquaredError(name=f"_{name}_mse")
    mse_computations = mse.computations(
        eval_config=eval_config, model_names=[model_name], output_names=[output_name],
        sub_keys=[sub_key], aggregation_type=aggregation_type, class_weights=class_weights,
        example_weighted=example_weighted)
    mse_key = mse_computations[-1].keys[-1]
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)

    def result(metrics):
        value = metrics[mse_key]
        return {key: math.sqrt(value) if value is not None else float("nan")}

    return mse_computations + [metric_types.DerivedMetricComputation(keys=[key], result=result)]


# --- metrics over (label, prediction, weight) examples ---------------------------------

class _Combiner(beam.CombineFn):
    """Feeds every labelled example (weight != 0) of one model and output to an
    accumulator that ``ops`` defines: ``ops.create()``, ``ops.add(acc, label, prediction,
    weight, features)``, ``ops.merge(a, b)`` and ``ops.value(acc)``."""

    def __init__(self, key, eval_config, example_weighted, ops):
        self._key, self._eval_config = key, eval_config
        self._example_weighted, self._ops = example_weighted, ops

    def create_accumulator(self):
        return self._ops.create()

    def add_input(self, accumulator, element):
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, example_weighted=self._example_weighted,
                flatten=False, require_single_example_weight=True):
            weight = float(metric_util.safe_to_scalar(weight))
            if weight != 0:
                accumulator = self._ops.add(accumulator, np.asarray(label).reshape(-1),
                                            np.asarray(prediction).reshape(-1), weight,
                                            element.features)
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        result = next(accumulators)
        for other in accumulators:
            result = self._ops.merge(result, other)
        return result

    def extract_output(self, accumulator):
        return {self._key: self._ops.value(accumulator)}


class _MeanOps:
    """Weighted mean of a per-example term (NaN when no example has weight)."""

    def __init__(self, term: Callable[[np.ndarray, np.ndarray], float]):
        self.term = term

    def create(self):
        return [0.0, 0.0]

    def add(self, acc, label, prediction, weight, features):
        acc[0] += weight * self.term(label, prediction)
        acc[1] += weight
        return acc

    def merge(self, a, b):
        return [a[0] + b[0], a[1] + b[1]]

    def value(self, acc):
        return acc[0] / acc[1] if acc[1] else math.nan


def _log_loss_term(label, prediction):
    y, p = label.astype(np.float64), prediction.astype(np.float64)
    if p.size == 1:
        return float(formulas.binary_log_loss_terms(y, p)[0])
    return float(formulas.categorical_log_loss_terms(y, p[None, :])[0])


def _top_k_term(k):
    return lambda label, prediction: float(
        formulas.top_k_hits(label.astype(np.float64), prediction[None, :], k)[0])


class _MacroAUCOps:
    """Per class, TFMA's calibration histograms of the positives' and the negatives'
    weights (one-vs-rest), widened as classes appear."""

    def create(self):
        return None

    def add(self, acc, label, prediction, weight, features):
        p = prediction.astype(np.float64)
        if acc is None:
            acc = np.zeros((2, len(p), formulas.HISTOGRAM_BUCKETS))
        if np.isnan(p).any():
            acc[0, 0, 0] = math.nan  # TFMA cannot bucket NaN: no value
            return acc
        rows = np.arange(len(p))
        buckets = formulas.histogram_buckets(p)
        positive = rows == int(label[0])
        acc[0, rows[positive], buckets[positive]] += weight
        acc[1, rows[~positive], buckets[~positive]] += weight
        return acc

    def merge(self, a, b):
        return b if a is None else a if b is None else a + b

    def value(self, acc):
        if acc is None:
            return math.nan
        return formulas.macro_auc_of_histograms(acc[0], acc[1])


class _ClassOps:
    """The weighted confusion of (label id, most probable class id); the named class's id
    is the label id of the examples whose ``column`` holds that name."""

    def __init__(self, metric: str, label_class: str, column: str):
        self.metric, self.label_class, self.column = metric, label_class, column

    def create(self):
        return {"confusion": {}, "ids": set()}

    def add(self, acc, label, prediction, weight, features):
        label_id = int(label[0])
        predicted = int(np.argmax(prediction))
        pair = (label_id, predicted)
        acc["confusion"][pair] = acc["confusion"].get(pair, 0.0) + weight
        if formulas.class_name(features.get(self.column)) == self.label_class:
            acc["ids"].add(label_id)
        return acc

    def merge(self, a, b):
        for pair, w in b["confusion"].items():
            a["confusion"][pair] = a["confusion"].get(pair, 0.0) + w
        a["ids"] |= b["ids"]
        return a

    def value(self, acc):
        if len(acc["ids"]) != 1:
            return math.nan  # the class has no labelled example (or the column disagrees)
        (class_id,) = acc["ids"]
        return formulas.class_rate(acc["confusion"], class_id, self.metric)


def _computations(ops_factory, preprocessors=None):
    def computations(name, eval_config=None, model_name="", output_name="", sub_key=None,
                     aggregation_type=None, class_weights=None, example_weighted=False,
                     **kwargs):
        key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                     sub_key=sub_key, example_weighted=example_weighted)
        return [metric_types.MetricComputation(
            keys=[key], preprocessors=preprocessors,
            combiner=_Combiner(key, eval_config, example_weighted, ops_factory()))]
    return computations


class LogLoss(metric_types.Metric):
    """Weighted mean cross-entropy of clipped probabilities: binary (one probability per
    example) or sparse categorical (a label id and a probability per class)."""

    def __init__(self, name: str = "log_loss", code_version: str = "", **kwargs):
        super().__init__(metric_util.merge_per_key_computations(
            _computations(lambda: _MeanOps(_log_loss_term))), name=name, **kwargs)


class TopKAccuracy(metric_types.Metric):
    """Weighted share of examples whose label is among the ``k`` most probable classes
    (ties at the k-th probability count as in: ``tf.math.in_top_k``)."""

    def __init__(self, name: str = "top_k_accuracy", k: int = 2, code_version: str = "",
                 **kwargs):
        super().__init__(metric_util.merge_per_key_computations(
            _computations(lambda: _MeanOps(_top_k_term(int(k))))), name=name, **kwargs)


class MacroAUC(metric_types.Metric):
    """Mean over the classes of TFMA's one-vs-rest ROC AUC (its histogram AUC), over the
    classes with a positive and a negative labelled example."""

    def __init__(self, name: str = "auc_macro", code_version: str = "", **kwargs):
        super().__init__(metric_util.merge_per_key_computations(
            _computations(_MacroAUCOps)), name=name, **kwargs)


class _ClassMetric(metric_types.Metric):
    _METRIC = ""

    def __init__(self, name: str = "", label_class: str = "", column: str = "",
                 code_version: str = "", **kwargs):
        preprocessors = [metric_types.FeaturePreprocessor(feature_keys=[column])]
        super().__init__(metric_util.merge_per_key_computations(_computations(
            lambda: _ClassOps(self._METRIC, label_class, column), preprocessors)),
            name=name or self._METRIC, **kwargs)


class ClassPrecision(_ClassMetric):
    """Of the examples whose most probable class is ``label_class``, the weighted share
    labelled ``label_class``."""
    _METRIC = "precision"


class ClassRecall(_ClassMetric):
    """Of the examples labelled ``label_class``, the weighted share whose most probable
    class is it."""
    _METRIC = "recall"


for _metric in (RootMeanSquaredError, LogLoss, TopKAccuracy, MacroAUC, ClassPrecision,
                ClassRecall):
    metric_types.register_metric(_metric)
