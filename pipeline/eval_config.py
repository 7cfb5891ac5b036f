"""TFMA EvalConfigs derived from the task spec: one per task, candidate vs baseline.

Each task's Evaluator compares two models on the same eval split: the
multi-task model (``candidate``) and that task's single-task baseline
(``baseline``). Both are scored through their ``<task>__evaluation``
signature, whose one output is the task's score; TFMA first runs each model's
``transform_features`` signature, so the label is the Transform's
``<task>__label`` and the example weight the task's ``<task>__mask``: examples
without a label for the task weigh 0 and do not count in its metrics. That is
the config's meaning; the Evaluators run it with the extractors of
:mod:`eval_extractors` (``EXTRACTORS_MODULE``), which read the same score, label
and mask from one signature, so each model runs once per example.

The Evaluators read the ``test`` split. TFMA checks the value bounds
(``lower_bound``/``upper_bound``) on the overall slice only (a rare
``payment_type`` must not block a push); the spec's slices, and the baseline's
values and differences on each, are computed for review. Change bounds
(``max_regression``) are not TFMA's: they are judged by BlessingGate on
ModelComparison's paired interval, since TFMA's own intervals are not paired and
it compares two models only (components/model_comparison.py). Every task also
carries one bound TFMA always checks: at least one labelled test example, so an
Evaluator always validates (TFX skips validation, and writes no verdict, without
bounds).

The only project code an Evaluator runs is a metric this project implements
(``MetricConfig.module``, e.g. RMSE). TFX keys its cache on the component's
parameters, the EvalConfig among them, not on that module's code; so such a
metric's ``config`` carries the module's code version
(:func:`tfx_mtl.module_graph.code_version`): TFMA passes ``config`` to the
metric's constructor as keyword arguments, and the metric accepts and ignores
``code_version``. An Evaluator with no such metric keys on no project code.
"""
from __future__ import annotations

import json

from tensorflow_model_analysis.proto import config_pb2 as tfma

from tfx_mtl import module_graph, naming
from tfx_mtl.task_spec import Metric, Task, TaskSpec

_OVERALL = tfma.SlicingSpec()
# The Evaluators' ``module_path``: one pass of each model (see that module).
EXTRACTORS_MODULE = "tfx_mtl.pipeline.eval_extractors"


def for_task(spec: TaskSpec, task_name: str) -> tfma.EvalConfig:
    """The EvalConfig of ``task_name``'s Evaluator (raises KeyError for an unknown task)."""
    task = spec.task(task_name)
    return tfma.EvalConfig(
        model_specs=[_model_spec(task, naming.CANDIDATE, is_baseline=False),
                     _model_spec(task, naming.BASELINE, is_baseline=True)],
        slicing_specs=slicing_specs(spec),
        metrics_specs=_metrics_specs(task),
    )


def slicing_specs(spec: TaskSpec) -> list[tfma.SlicingSpec]:
    """The overall slice, then one per spec slice (several columns make a cross)."""
    return [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=list(columns))
                                   for columns in spec.evaluation.slices]


def _model_spec(task: Task, name: str, is_baseline: bool) -> tfma.ModelSpec:
    return tfma.ModelSpec(
        name=name,
        is_baseline=is_baseline,
        signature_name=naming.evaluation_signature(task.name),
        preprocessing_function_names=[naming.TRANSFORM_FEATURES],
        label_key=naming.label_key(task.name),
        example_weight_key=naming.mask_key(task.name),
    )


def _metrics_specs(task: Task) -> list[tfma.MetricsSpec]:
    """Unweighted: every eval example; weighted by the mask: labelled count and metrics.
    A metric TFMA aggregates over the classes (``auc_micro``) has a spec of its own; a
    multiclass task also gets TFMA's confusion matrix of every class (a plot, for review)."""
    every_example = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="ExampleCount")],
        example_weights=tfma.ExampleWeightOptions(unweighted=True))
    labelled_count = tfma.MetricConfig(class_name="ExampleCount")
    _bound_overall(labelled_count, tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 1})))
    plain = [m for m in task.metrics if not m.definition(task.type).aggregate]
    plots = ([tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot")]
             if task.type == "multiclass" else [])
    labelled = tfma.MetricsSpec(
        metrics=[labelled_count] + [_metric_config(task, m) for m in plain] + plots,
        example_weights=tfma.ExampleWeightOptions(weighted=True))
    aggregated = [tfma.MetricsSpec(
        metrics=[_metric_config(task, m)],
        aggregate=tfma.AggregationOptions(micro_average=True),
        example_weights=tfma.ExampleWeightOptions(weighted=True))
        for m in task.metrics if m.definition(task.type).aggregate == "micro"]
    return [every_example, labelled] + aggregated


def _metric_config(task: Task, metric: Metric) -> tfma.MetricConfig:
    definition = metric.definition(task.type)
    config = tfma.MetricConfig(class_name=definition.tfma_class)
    arguments = {}
    if metric.tfma_name(task.type) != definition.tfma_name or definition.aggregate:
        arguments["name"] = metric.tfma_name(task.type)
    if definition.aggregate:
        arguments["name"] = definition.tfma_name
    if metric.k is not None:
        arguments["k"] = metric.k
    if metric.label_class is not None:
        # The class's id is learnt from the examples' label column (tfma_metrics).
        arguments.update(label_class=metric.label_class, column=task.label_columns[0])
    if definition.module:
        config.module = definition.module
        arguments["code_version"] = module_graph.code_version([definition.module])
    if arguments:
        config.config = json.dumps(arguments, sort_keys=True)
    if metric.threshold is not None:
        bounds = {k: {"value": v} for k, v in (("lower_bound", metric.threshold.lower_bound),
                                               ("upper_bound", metric.threshold.upper_bound))
                  if v is not None}
        _bound_overall(config, tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(**bounds)))
    return config


def _bound_overall(config: tfma.MetricConfig, threshold: tfma.MetricThreshold) -> None:
    config.per_slice_thresholds.add(slicing_specs=[_OVERALL], threshold=threshold)
