"""TFMA EvalConfig derived from the task spec: one output per task.

TFMA runs the model's ``transform_features`` signature first, so labels are the
Transform's ``<task>__label`` (derived labels included) and the example weight
is the task's ``<task>__mask``: examples without a label for a task weigh 0
and do not count in that task's metrics. Predictions come from the ``evaluation``
signature, keyed by task name (TFMA's output names). Thresholds are the spec's
bounds.
"""
from __future__ import annotations

from tensorflow_model_analysis.proto import config_pb2 as tfma

from tfx_mtl import naming
from tfx_mtl.task_spec import Metric, Task, TaskSpec


def build(spec: TaskSpec) -> tfma.EvalConfig:
    model_spec = tfma.ModelSpec(
        signature_name=naming.EVALUATION,
        preprocessing_function_names=[naming.TRANSFORM_FEATURES],
        label_keys={t.name: naming.label_key(t.name) for t in spec.tasks},
        example_weight_keys={t.name: naming.mask_key(t.name) for t in spec.tasks},
    )
    return tfma.EvalConfig(
        model_specs=[model_spec],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[s for task in spec.tasks for s in _metrics_specs(task)],
    )


def _metrics_specs(task: Task) -> list[tfma.MetricsSpec]:
    """Unweighted: every eval example; weighted by the mask: labelled count and metrics."""
    every_example = tfma.MetricsSpec(
        output_names=[task.name], metrics=[tfma.MetricConfig(class_name="ExampleCount")],
        example_weights=tfma.ExampleWeightOptions(unweighted=True))
    labelled = tfma.MetricsSpec(
        output_names=[task.name],
        metrics=[tfma.MetricConfig(class_name="ExampleCount")]
        + [_metric_config(task, metric) for metric in task.metrics],
        example_weights=tfma.ExampleWeightOptions(weighted=True))
    return [every_example, labelled]


def _metric_config(task: Task, metric: Metric) -> tfma.MetricConfig:
    definition = metric.definition(task.type)
    config = tfma.MetricConfig(class_name=definition.tfma_class, module=definition.module or "")
    if metric.threshold is not None:
        bounds = {k: {"value": v} for k, v in (("lower_bound", metric.threshold.lower_bound),
                                    ("upper_bound", metric.threshold.upper_bound))
                  if v is not None}
        config.threshold.CopyFrom(tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(**bounds)))
    return config
