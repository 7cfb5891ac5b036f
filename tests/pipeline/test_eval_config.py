"""The TFMA EvalConfig is derived from the spec, one output per task."""
from tfx_mtl import task_spec
from tfx_mtl.pipeline import eval_config

SPEC = task_spec.parse({
    "features": ["trip_miles"],
    "tasks": [
        {"name": "big_tipper", "type": "binary", "label": "tips > 0.2 * fare",
         "metrics": [{"name": "auc", "lower_bound": 0.6}, "binary_accuracy"]},
        {"name": "fare", "type": "regression", "label": "fare", "role": "auxiliary",
         "metrics": [{"name": "rmse", "upper_bound": 5.0}]},
    ]})


def test_model_spec_maps_each_task_to_its_label_prediction_and_mask():
    config = eval_config.build(SPEC)
    (model_spec,) = config.model_specs
    assert model_spec.signature_name == "evaluation"
    assert list(model_spec.preprocessing_function_names) == ["transform_features"]
    assert dict(model_spec.label_keys) == {"big_tipper": "big_tipper__label", "fare": "fare__label"}
    assert dict(model_spec.example_weight_keys) == {"big_tipper": "big_tipper__mask",
                                                    "fare": "fare__mask"}


def test_each_task_counts_all_examples_unweighted_and_scores_the_labelled_ones():
    specs = [s for s in eval_config.build(SPEC).metrics_specs if s.output_names == ["fare"]]
    unweighted, weighted = sorted(specs, key=lambda s: s.example_weights.weighted)
    assert [m.class_name for m in unweighted.metrics] == ["ExampleCount"]
    assert unweighted.example_weights.unweighted and not unweighted.example_weights.weighted
    assert [m.class_name for m in weighted.metrics] == ["ExampleCount", "RootMeanSquaredError"]
    assert weighted.example_weights.weighted and not weighted.example_weights.unweighted


def test_thresholds_come_from_the_spec():
    specs = {s.output_names[0]: s for s in eval_config.build(SPEC).metrics_specs
             if s.example_weights.weighted}
    auc = next(m for m in specs["big_tipper"].metrics if m.class_name == "AUC")
    assert auc.threshold.value_threshold.lower_bound.value == 0.6
    assert not auc.threshold.value_threshold.HasField("upper_bound")
    accuracy = next(m for m in specs["big_tipper"].metrics if m.class_name == "BinaryAccuracy")
    assert not accuracy.HasField("threshold")
    rmse = next(m for m in specs["fare"].metrics if m.class_name == "RootMeanSquaredError")
    assert rmse.module == "tfx_mtl.pipeline.tfma_metrics"
    assert rmse.threshold.value_threshold.upper_bound.value == 5.0
    assert all(s.example_weights.weighted for s in specs.values())
