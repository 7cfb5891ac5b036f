"""The project's TFMA metrics, computed by TFMA itself from the EvalConfig the pipeline builds."""
import math

import pandas as pd
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2

from tfx_mtl import task_spec
from tfx_mtl.pipeline import eval_config

pytestmark = pytest.mark.e2e  # a real TFMA evaluation on Beam

SPEC = task_spec.parse({"features": ["trip_miles"], "tasks": [
    {"name": "fare", "type": "regression", "label": "fare", "metrics": ["rmse"]}]})


def _analyze(rows, metrics_spec, name):
    """TFMA's overall value of ``name`` on raw (label, prediction, weight) rows."""
    result = tfma.analyze_raw_data(rows, config_pb2.EvalConfig(
        model_specs=[config_pb2.ModelSpec(label_key="label", prediction_key="prediction",
                                          example_weight_key="weight")],
        metrics_specs=[metrics_spec]))
    ((_, metrics),) = result.slicing_metrics
    return metrics[""][""][name]["doubleValue"]


def test_rmse_is_the_weighted_root_mean_squared_error_with_its_code_version_in_the_config():
    """The task's weighted MetricsSpec as for_task builds it (RMSE's config carries the
    code version, passed by TFMA to the metric's constructor), on raw predictions."""
    (weighted,) = [s for s in eval_config.for_task(SPEC, "fare").metrics_specs
                   if s.example_weights.weighted]
    (rmse,) = [m for m in weighted.metrics if m.class_name == "RootMeanSquaredError"]
    assert "code_version" in rmse.config
    rows = pd.DataFrame({"label": [1.0, 2.0, 3.0, 4.0], "prediction": [1.5, 2.0, 9.0, 5.0],
                         "weight": [1.0, 1.0, 0.0, 2.0]})  # weight 0: an unlabelled example
    value = _analyze(rows, weighted, "root_mean_squared_error")
    assert value == pytest.approx(math.sqrt((0.5 ** 2 + 0 + 2 * 1.0 ** 2) / 4))


def test_log_loss_of_saturated_predictions_is_finite_in_a_real_tfma_run():
    """TFMA's own BinaryCrossEntropy is NaN here; the project's metric clips as Keras does:
    a right saturated prediction costs -ln(1 - 1e-7), a wrong one -ln(1e-7) = 7 ln 10."""
    spec = task_spec.parse({"features": ["x"], "tasks": [
        {"name": "b", "type": "binary", "label": "y > 0", "metrics": ["log_loss"]}]})
    (weighted,) = [s for s in eval_config.for_task(spec, "b").metrics_specs
                   if s.example_weights.weighted]
    rows = pd.DataFrame({"label": [1.0, 0.0, 0.0, 1.0, 1.0],
                         "prediction": [1.0, 1.0, 0.0, 0.0, 0.5],
                         "weight": [1.0, 1.0, 1.0, 1.0, 0.0]})
    value = _analyze(rows, weighted, "log_loss")
    assert value == pytest.approx((2 * 7 * math.log(10) + 2 * 1e-7) / 4, rel=1e-9)
