"""Each task's TFMA EvalConfig is derived from the spec: candidate vs baseline, bounds, slices."""
import json

import pytest
from tensorflow_model_analysis.proto import config_pb2

from tfx_mtl import module_graph, task_spec
from tfx_mtl.pipeline import eval_config

SPEC = task_spec.parse({
    "features": ["trip_miles"],
    "tasks": [
        {"name": "big_tipper", "type": "binary", "label": "tips > 0.2 * fare",
         "metrics": [{"name": "auc", "lower_bound": 0.6, "max_regression": 0.005},
                     "binary_accuracy"]},
        {"name": "fare", "type": "regression", "label": "fare", "role": "auxiliary",
         "metrics": [{"name": "rmse", "upper_bound": 5.0, "max_regression": "1%"}]},
    ],
    "evaluation": {"slices": ["payment_type", ["payment_type", "company"]]}})


def _metric(config, class_name):
    (labelled,) = [s for s in config.metrics_specs if s.example_weights.weighted]
    return next(m for m in labelled.metrics if m.class_name == class_name)


def test_candidate_and_baseline_score_the_task_through_its_own_signature():
    config = eval_config.for_task(SPEC, "fare")
    candidate, baseline = config.model_specs
    assert (candidate.name, candidate.is_baseline) == ("candidate", False)
    assert (baseline.name, baseline.is_baseline) == ("baseline", True)
    for spec in (candidate, baseline):
        assert spec.signature_name == "fare__evaluation"
        assert list(spec.preprocessing_function_names) == ["transform_features"]
        assert (spec.label_key, spec.example_weight_key) == ("fare__label", "fare__mask")


def test_counts_every_example_unweighted_and_scores_the_labelled_ones():
    config = eval_config.for_task(SPEC, "big_tipper")
    unweighted, weighted = sorted(config.metrics_specs, key=lambda s: s.example_weights.weighted)
    assert [m.class_name for m in unweighted.metrics] == ["ExampleCount"]
    assert unweighted.example_weights.unweighted and not unweighted.example_weights.weighted
    assert [m.class_name for m in weighted.metrics] == ["ExampleCount", "AUC", "BinaryAccuracy"]
    # At least one labelled example: a bound every task has, so TFX always validates.
    (count,) = _metric(config, "ExampleCount").per_slice_thresholds
    assert count.threshold.value_threshold.lower_bound.value == 1


def test_value_bounds_come_from_the_spec_and_apply_to_the_overall_slice_only():
    auc = _metric(eval_config.for_task(SPEC, "big_tipper"), "AUC")
    assert not auc.HasField("threshold")  # would apply to every slice
    (value,) = auc.per_slice_thresholds
    assert list(value.slicing_specs) == [config_pb2.SlicingSpec()]
    assert value.threshold.value_threshold.lower_bound.value == 0.6
    assert not value.threshold.value_threshold.HasField("upper_bound")

    rmse = _metric(eval_config.for_task(SPEC, "fare"), "RootMeanSquaredError")
    assert rmse.module == "tfx_mtl.pipeline.tfma_metrics"
    (value,) = rmse.per_slice_thresholds
    assert value.threshold.value_threshold.upper_bound.value == 5.0
    accuracy = _metric(eval_config.for_task(SPEC, "big_tipper"), "BinaryAccuracy")
    assert not accuracy.per_slice_thresholds and not accuracy.HasField("threshold")


def test_change_bounds_are_not_tfma_s_they_are_judged_on_the_paired_comparison():
    """TFMA's change threshold compares two point values; the gate reads the paired
    interval instead (components/blessing_gate.py), so no EvalConfig carries one."""
    for task in SPEC.task_names:
        config = eval_config.for_task(SPEC, task)
        for metrics_spec in config.metrics_specs:
            for metric in metrics_spec.metrics:
                for bound in metric.per_slice_thresholds:
                    assert not bound.threshold.HasField("change_threshold"), metric.class_name
    # The baseline stays a model of the EvalConfig: its values and differences per slice
    # are what the review notebook shows.
    assert [m.is_baseline for m in config.model_specs] == [False, True]


def test_a_custom_metric_carries_its_module_code_version_for_the_evaluator_cache_key():
    """RMSE runs this project's module inside the Evaluator: its config holds that module's
    code version (TFMA passes it to the metric, which ignores it). AUC & co. carry none."""
    rmse = _metric(eval_config.for_task(SPEC, "fare"), "RootMeanSquaredError")
    assert json.loads(rmse.config) == {
        "code_version": module_graph.code_version(["tfx_mtl.pipeline.tfma_metrics"])}
    assert "code_version" not in str(eval_config.for_task(SPEC, "big_tipper"))


def test_slices_come_from_the_spec():
    config = eval_config.for_task(SPEC, "fare")
    assert [list(s.feature_keys) for s in config.slicing_specs] == [
        [], ["payment_type"], ["payment_type", "company"]]


def test_an_unknown_task_is_refused_by_name():
    with pytest.raises(KeyError, match="no task 'tip'"):
        eval_config.for_task(SPEC, "tip")


MULTICLASS = task_spec.parse({"features": ["x"], "tasks": [
    {"name": "kind", "type": "multiclass", "label": "species", "metrics": [
        "accuracy", "log_loss", {"name": "top_k_accuracy", "k": 3}, "auc_macro",
        {"name": "auc_micro", "lower_bound": 0.7},
        {"name": "recall", "class": "Adelie", "lower_bound": 0.8}]}]})


def test_multiclass_metrics_name_their_parameters_and_micro_auc_is_tfma_s_aggregate():
    config = eval_config.for_task(MULTICLASS, "kind")
    every, labelled, micro = config.metrics_specs
    by_class = {m.class_name: m for m in labelled.metrics}
    assert list(by_class) == ["ExampleCount", "SparseCategoricalAccuracy", "LogLoss",
                              "TopKAccuracy", "MacroAUC", "ClassRecall",
                              "MultiClassConfusionMatrixPlot"]  # every class, for review
    version = module_graph.code_version(["tfx_mtl.pipeline.tfma_metrics"])
    assert json.loads(by_class["TopKAccuracy"].config) == {
        "name": "top_k_accuracy@3", "k": 3, "code_version": version}
    # the class's id is learnt from the label column (TFMA binarizes by id, unknown here)
    recall = by_class["ClassRecall"]
    assert json.loads(recall.config) == {"name": "recall[Adelie]", "label_class": "Adelie",
                                         "column": "species", "code_version": version}
    assert recall.per_slice_thresholds[0].threshold.value_threshold.lower_bound.value == 0.8
    assert micro.aggregate.micro_average and micro.example_weights.weighted
    (auc,) = micro.metrics
    assert (auc.class_name, json.loads(auc.config)) == ("AUC", {"name": "auc_micro"})
    assert auc.per_slice_thresholds[0].threshold.value_threshold.lower_bound.value == 0.7


def test_binary_log_loss_is_the_project_s_clipped_metric():
    spec = task_spec.parse({"features": ["x"], "tasks": [
        {"name": "b", "type": "binary", "label": "y > 0", "metrics": ["log_loss"]}]})
    log_loss = _metric(eval_config.for_task(spec, "b"), "LogLoss")
    assert log_loss.module == "tfx_mtl.pipeline.tfma_metrics"
