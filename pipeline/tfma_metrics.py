"""TFMA metrics this project adds: RMSE, derived from TFMA's own weighted MSE.

RMSE is the regression metric people set thresholds on ("may not rise by more
than 1%"), in the label's units; TFMA 0.52 only ships MSE and MAE natively.
Referenced from an EvalConfig as ``class_name: RootMeanSquaredError`` with
``module: tfx_mtl.pipeline.tfma_metrics``, and a ``config`` with the module's
``code_version`` so that the Evaluator's cache key follows this code (see
:mod:`tfx_mtl.pipeline.eval_config`).
"""
from __future__ import annotations

import math

from tensorflow_model_analysis.metrics import mean_regression_error, metric_types, metric_util

ROOT_MEAN_SQUARED_ERROR_NAME = "root_mean_squared_error"


class RootMeanSquaredError(metric_types.Metric):
    """sqrt(weighted mean of (label - prediction)^2).

    ``code_version`` is only there for the Evaluator's cache key; it changes nothing.
    """

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


metric_types.register_metric(RootMeanSquaredError)
