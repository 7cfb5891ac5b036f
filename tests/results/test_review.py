"""The review notebooks' helpers, on hand-made records (the notebooks' test runs them for real)."""
import math

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from tfx_mtl import task_spec
from tfx_mtl.results import metadata, review
from tfx_mtl.results.evaluation import SliceMetrics

SPEC = task_spec.parse({
    "features": ["trip_miles"],
    "tasks": [
        {"name": "big_tipper", "type": "binary", "label": "tips > 0.2 * fare",
         "metrics": [{"name": "auc", "lower_bound": 0.6, "max_regression": 0.005},
                     "binary_accuracy"]},
        {"name": "fare", "type": "regression", "label": "fare", "role": "auxiliary",
         "metrics": ["mae", {"name": "rmse", "max_regression": "1%"}]},
    ],
    "evaluation": {"slices": ["trip_start_hour"]}})

REPORT = {
    "policy": "all", "blessed": False, "decision": "refused", "blocking": ["fare"],
    "tasks": {
        "big_tipper": {
            "type": "binary", "role": "primary", "must_bless": True, "blessed": True,
            "metrics": {"example_count": 10.0, "labelled_count": 10.0, "auc": 0.9,
                        "binary_accuracy": 0.8},
            "baseline_metrics": {"example_count": 10.0, "labelled_count": 10.0, "auc": 0.85,
                                 "binary_accuracy": 0.8},
            "changes": {"auc": 0.05, "binary_accuracy": 0.0},
            "bounds": {"auc": [">= 0.6", "may fall by at most 0.005 vs the baseline"]},
            "failures": [], "evaluation": "/nowhere/evaluate_big_tipper/evaluation/1"},
        "fare": {
            "type": "regression", "role": "auxiliary", "must_bless": True, "blessed": False,
            "metrics": {"example_count": 10.0, "labelled_count": 8.0, "rmse": 4.4, "mae": 2.0},
            "baseline_metrics": {"example_count": 10.0, "labelled_count": 8.0, "rmse": 4.0,
                                 "mae": 2.5},
            "changes": {"rmse": 0.4, "mae": -0.5},
            "intervals": {"rmse": {"relative": 0.1, "change_low": 0.1, "change_high": 0.7,
                                   "relative_low": 0.025, "relative_high": None}},
            "bounds": {"rmse": ["may rise by at most 1% vs the baseline"]},
            "failures": ["rmse ..."], "evaluation": "/nowhere/evaluate_fare/evaluation/2"},
    },
}


def _slice(key, rmse, baseline_rmse, labelled):
    return SliceMetrics(key, candidate={"example_count": labelled + 1.0,
                                        "labelled_count": labelled, "rmse": rmse},
                        baseline={"rmse": baseline_rmse}, changes={"rmse": rmse - baseline_rmse})


SLICES = [
    _slice((), 4.4, 4.0, 8.0),
    _slice((("payment_type", "Cash"),), 5.0, 4.0, 3.0),
    _slice((("trip_start_hour", 10),), 3.0, 2.0, 2.0),
    _slice((("trip_start_hour", 2),), 4.0, 4.5, 4.0),
    _slice((("trip_start_hour", 1),), 1.0, 1.5, 1.0),
    _slice((("company", "A"), ("payment_type", "Cash")), 6.0, 5.0, 1.0),
]


def _run(report=REPORT, spec=SPEC, components=None):
    return metadata.Run(pipeline="p", run_id="r1", metadata="/runs/metadata.sqlite",
                        pipeline_root="/runs/pipeline_root", components=components or (),
                        outputs={}, spec=spec, report=report, pushed=None)


def test_overall_table_has_a_row_per_task_and_spec_metric_in_spec_order():
    frame = review.overall_table(_run())
    assert list(frame.columns) == ["task", "role", "examples", "labelled", "metric",
                                   "multi_task", "baseline", "change", "change_pct",
                                   "change_low", "change_high", "change_pct_low",
                                   "change_pct_high", "bound", "blessed"]
    assert list(zip(frame["task"], frame["metric"])) == [
        ("big_tipper", "auc"), ("big_tipper", "binary_accuracy"), ("fare", "mae"),
        ("fare", "rmse")]
    rmse = frame.iloc[3]
    assert (rmse["role"], rmse["examples"], rmse["labelled"]) == ("auxiliary", 10, 8)
    assert (rmse["multi_task"], rmse["baseline"], rmse["change"]) == (4.4, 4.0, 0.4)
    assert rmse["change_pct"] == pytest.approx(10.0)
    assert (rmse["change_low"], rmse["change_high"]) == (0.1, 0.7)
    assert rmse["change_pct_low"] == pytest.approx(2.5) and math.isnan(rmse["change_pct_high"])
    assert math.isnan(frame.iloc[2]["change_low"])  # mae: not compared
    assert rmse["bound"] == "may rise by at most 1% vs the baseline"
    assert not rmse["blessed"] and frame.iloc[0]["blessed"]
    assert frame.iloc[0]["bound"] == ">= 0.6; may fall by at most 0.005 vs the baseline"
    assert frame.iloc[1]["bound"] == ""


def test_overall_table_without_a_spec_takes_the_metrics_from_the_report():
    frame = review.overall_frame(REPORT, spec=None)
    assert list(frame[frame["task"] == "fare"]["metric"]) == ["rmse", "mae"]  # no counts


def test_change_pct_is_nan_without_a_baseline_value():
    report = {"tasks": {"fare": {**REPORT["tasks"]["fare"], "baseline_metrics": {}}}}
    frame = review.overall_frame(report, SPEC.restricted_to("fare"))
    assert math.isnan(frame.iloc[0]["change_pct"]) and frame.iloc[0]["baseline"] is None


def test_slice_frame_keeps_one_column_sorted_numerically():
    frame = review.slice_frame(SLICES, "trip_start_hour", ["rmse"], task="fare")
    assert list(frame.index) == [1, 2, 10]
    assert frame.index.name == "trip_start_hour"
    assert list(frame.columns) == ["example_count", "labelled_count", "rmse_multi_task",
                                   "rmse_baseline", "rmse_change"]
    assert list(frame["labelled_count"]) == [1, 4, 2]
    assert list(frame["rmse_multi_task"]) == [1.0, 4.0, 3.0]
    assert list(frame["rmse_change"]) == [-0.5, -0.5, 1.0]
    assert frame.attrs["task"] == "fare"


def test_slice_frame_of_a_cross_names_both_columns():
    frame = review.slice_frame(SLICES, ("payment_type", "company"), ["rmse"])
    assert list(frame.index) == ["Cash x A"]
    assert frame.index.name == "payment_type x company"


def test_slice_frame_of_an_unknown_column_is_empty():
    frame = review.slice_frame(SLICES, "nope", ["rmse"])
    assert frame.empty and "rmse_baseline" in frame.columns


def test_plot_slices_draws_multi_task_and_baseline_bars_per_slice_value():
    from matplotlib.figure import Figure

    frame = review.slice_frame(SLICES, "trip_start_hour", ["rmse"], task="fare")
    fig = review.plot_slices(frame, "rmse")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    multi_task, baseline = ax.containers
    assert [b.get_height() for b in multi_task] == [1.0, 4.0, 3.0]
    assert [b.get_height() for b in baseline] == [1.5, 4.5, 2.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["multi-task",
                                                                  "single-task baseline"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1\n(n=1)", "2\n(n=4)", "10\n(n=2)"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("trip_start_hour", "rmse")
    assert ax.get_title() == "fare: rmse by trip_start_hour"


def test_judged_metrics_are_the_bounded_ones_else_the_first():
    run = _run()
    assert review.judged_metrics(run, "fare") == ["rmse"]
    unbounded = {**REPORT, "tasks": {"fare": {**REPORT["tasks"]["fare"], "bounds": {}}}}
    assert review.judged_metrics(_run(report=unbounded), "fare") == ["mae"]


def test_a_run_without_the_gate_says_what_ran():
    run = _run(report=None, spec=None,
               components=(metadata.ComponentRun("SchemaGate", "FAILED", 1.0),
                           metadata.ComponentRun("Transform", "RUNNING", 2.0)))
    with pytest.raises(LookupError, match=r"no transfer report.*SchemaGate: FAILED"):
        review.overall_table(run)
    with pytest.raises(LookupError, match="pass spec_path"):
        run.slices


def test_an_unknown_task_lists_the_run_s_tasks():
    with pytest.raises(KeyError, match="tasks: big_tipper, fare"):
        _run().evaluation("tips")


def test_uris_follow_a_moved_run_directory(tmp_path):
    moved = tmp_path / "copy" / "pipeline_root"
    (moved / "evaluate_fare" / "evaluation" / "2").mkdir(parents=True)
    run = metadata.Run(pipeline="p", run_id="r", metadata="m", pipeline_root=str(moved),
                       components=(), outputs={}, spec=SPEC, report=REPORT, pushed=None)
    assert run.evaluation("fare") == str(moved / "evaluate_fare" / "evaluation" / "2")
    # Not found anywhere: the recorded uri, so the error names it.
    assert run.evaluation("big_tipper") == "/nowhere/evaluate_big_tipper/evaluation/1"


def _store(path, pipelines):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    store = metadata_store.MetadataStore(config)
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline"))
    store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=n) for n in pipelines])


def test_find_run_names_the_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "metadata.sqlite")):
        metadata.find_run(tmp_path)


def test_find_run_needs_a_pipeline_name_when_the_store_holds_several(tmp_path):
    _store(tmp_path / "metadata.sqlite", ["a", "b"])
    with pytest.raises(LookupError, match=r"several pipelines \(a, b\): pass pipeline_name"):
        metadata.find_run(tmp_path)
    with pytest.raises(LookupError, match=r"'a' has no run.*metadata.sqlite"):
        metadata.find_run(tmp_path, pipeline_name="a")


def test_find_run_in_an_empty_store(tmp_path):
    _store(tmp_path / "m.sqlite", [])
    with pytest.raises(LookupError, match="no pipeline run recorded in .*m.sqlite"):
        metadata.find_run(pipeline_root=tmp_path, metadata=tmp_path / "m.sqlite")
    with pytest.raises(ValueError, match="output_dir, or both"):
        metadata.find_run(pipeline_root=tmp_path)


def test_statistics_table_summarises_each_feature_per_split():
    def stats(num_examples, present, mean, top):
        dataset = statistics_pb2.DatasetFeatureStatistics(num_examples=num_examples)
        number = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.FLOAT)
        number.path.step.append("fare")
        number.num_stats.common_stats.num_non_missing = num_examples
        number.num_stats.common_stats.max_num_values = 1
        number.num_stats.common_stats.avg_num_values = present / num_examples
        number.num_stats.mean = mean
        text = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
        text.path.step.append("payment_type")
        text.string_stats.unique = 3
        text.string_stats.top_values.add(value=top, frequency=5)
        return statistics_pb2.DatasetFeatureStatisticsList(datasets=[dataset])

    frame = review.statistics_table({"train": stats(100, 90, 12.5, "Cash"),
                                     "eval": stats(10, 10, 11.0, "Credit Card")})
    assert list(frame.index) == [("fare", "eval"), ("fare", "train"),
                                 ("payment_type", "eval"), ("payment_type", "train")]
    assert frame.loc[("fare", "train"), "present_pct"] == pytest.approx(90.0)
    assert frame.loc[("fare", "eval"), "mean"] == 11.0
    assert frame.loc[("payment_type", "train"), "top"] == "Cash"
    assert frame.loc[("payment_type", "eval"), "unique"] == 3


def test_class_frame_gives_every_class_precision_and_recall_by_argmax():
    from tensorflow_model_analysis.proto import metrics_for_slice_pb2

    matrix = metrics_for_slice_pb2.MultiClassConfusionMatrixAtThresholds()
    at_zero = matrix.matrices.add(threshold=0.0)
    # (actual, predicted): weight; class 2 is never labelled nor predicted
    for (actual, predicted), weight in {(0, 0): 3.0, (0, 1): 1.0, (1, 1): 2.0,
                                        (1, 0): 2.0}.items():
        at_zero.entries.add(actual_class_id=actual, predicted_class_id=predicted,
                            num_weighted_examples=weight)
    matrix.matrices.add(threshold=0.5)  # other thresholds are not the argmax
    frame = review.class_frame({review.MULTI_TASK: matrix, review.BASELINE: None},
                               ["Adelie", "Gentoo", "Chinstrap"])
    assert list(frame.index) == ["Adelie", "Gentoo", "Chinstrap"]
    assert list(frame["labelled"]) == [4.0, 4.0, 0.0]
    assert frame.loc["Adelie", "precision_multi_task"] == pytest.approx(3 / 5)
    assert frame.loc["Adelie", "recall_multi_task"] == pytest.approx(3 / 4)
    assert frame.loc["Gentoo", "precision_multi_task"] == pytest.approx(2 / 3)
    assert frame.loc["Gentoo", "recall_multi_task"] == pytest.approx(2 / 4)
    assert math.isnan(frame.loc["Chinstrap", "recall_multi_task"])
    assert frame["recall_baseline"].isna().all()  # no matrix for that model
