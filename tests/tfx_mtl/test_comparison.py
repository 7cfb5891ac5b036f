"""The comparison's statistics: TFMA's metrics, the paired bootstrap over examples and
seeds, Δm and the verdicts, on numbers worked out by hand."""
import ast
import json
import math

import numpy as np
import pytest

from tfx_mtl import comparison, finite, metric_formulas, module_graph
from tfx_mtl.comparison import TaskData, compare, metric_value, verdict
from tfx_mtl.errors import InputError

NAN = float("nan")


def _regression(label, candidate, baseline, weight=None):
    label = np.asarray(label, dtype=float)
    weight = np.ones(len(label)) if weight is None else np.asarray(weight, dtype=float)
    return TaskData("regression", label, weight, [np.asarray(p, dtype=float) for p in candidate],
                    [np.asarray(p, dtype=float) for p in baseline])


def _one(task, metric, *, seeds=(42,), **kwargs):
    record = compare({"t": task}, {"t": [metric]}, {"t": metric}, list(seeds), **kwargs)
    return record, record["tasks"]["t"]["metrics"][metric]


def test_the_statistics_import_neither_tensorflow_nor_tfma_nor_beam():
    modules = module_graph.project_modules()
    imported = set()
    for module in module_graph.closure(module_graph.import_graph(), ["tfx_mtl.comparison"]):
        with open(modules[module]) as f:
            for node in ast.walk(ast.parse(f.read())):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    imported.add(node.module.split(".")[0])
    assert "numpy" in imported
    assert not imported & {"tensorflow", "tensorflow_model_analysis", "tf_keras", "tfx",
                           "apache_beam", "scipy", "sklearn"}


# --- metrics, by hand ----------------------------------------------------------------

def test_regression_metrics_are_weighted_means_and_skip_nan_errors():
    y, p, w = [1, 2, 3, 4], [2, 2, 5, 0], [1, 1, 2, 0]
    # errors -1, 0, -2, 4 with weights 1, 1, 2, 0
    assert metric_value("regression", "mse", y, p, w) == pytest.approx((1 + 0 + 2 * 4) / 4)
    assert metric_value("regression", "mae", y, p, w) == pytest.approx((1 + 0 + 2 * 2) / 4)
    assert metric_value("regression", "rmse", y, p, w) == pytest.approx(1.5)
    # TFMA's mean_regression_error drops an example whose error is NaN, weight included
    assert metric_value("regression", "mse", y, [2, NAN, 5, 0], w) == pytest.approx(9 / 3)
    assert math.isnan(metric_value("regression", "mae", y, p, [0, 0, 0, 0]))


def test_confusion_metrics_at_one_half_count_fractional_weights():
    y = [1, 1, 0, 0, 1]
    p = [0.9, 0.4, 0.6, 0.2, 0.5]  # 0.5 is not above the threshold
    w = [1, 2, 1, 1, 1]
    # tp = 1, fn = 2 + 1, fp = 1, tn = 1
    assert metric_value("binary", "binary_accuracy", y, p, w) == pytest.approx(2 / 6)
    assert metric_value("binary", "precision", y, p, w) == pytest.approx(1 / 2)
    assert metric_value("binary", "recall", y, p, w) == pytest.approx(1 / 4)
    assert math.isnan(metric_value("binary", "precision", y, [0.1] * 5, w))  # no positive


# -ln(1e-7) = 7 ln 10: the cost of a saturated wrong prediction once clipped (Keras' eps)
WORST = 7 * math.log(10)  # 16.1181
# -ln(1 - 1e-7) = 1e-7 + 1e-14/2 + ...: a saturated right prediction
BEST = 1e-7 + 0.5e-14


def test_log_loss_clips_saturated_predictions_so_it_stays_finite():
    value = metric_value("binary", "log_loss", [1, 0], [0.8, 0.25], [1, 3])
    assert value == pytest.approx((-math.log(0.8) - 3 * math.log(0.75)) / 4)
    # right at 1, wrong at 1, right at 0, wrong at 0
    y, p = [1, 0, 0, 1], [1.0, 1.0, 0.0, 0.0]
    assert WORST == pytest.approx(16.118095650958)
    # (1 - eps in float64 is not exact: agreement to 1e-9)
    assert metric_value("binary", "log_loss", y, p, [1, 1, 1, 1]) == pytest.approx(
        (2 * BEST + 2 * WORST) / 4, rel=1e-9)
    assert metric_value("binary", "log_loss", y, p, [1, 0, 1, 0]) == pytest.approx(
        BEST, rel=1e-9)
    # an unlabelled example (weight 0) adds nothing, whatever its prediction
    assert metric_value("binary", "log_loss", [1, 0], [NAN, 0.5], [0, 1]) == pytest.approx(
        math.log(2))


def test_multiclass_log_loss_is_minus_the_log_of_the_clipped_label_probability():
    p = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.25, 0.25]]
    value = metric_value("multiclass", "log_loss", [0, 0, 2], p, [1, 2, 1])
    assert value == pytest.approx((BEST + 2 * WORST + math.log(4)) / 4, rel=1e-9)
    assert math.isnan(metric_value("multiclass", "log_loss", [0, 0, 2], p, [0, 0, 0]))


def test_top_k_accuracy_counts_the_label_among_the_k_most_probable_ties_in():
    p = [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.4, 0.3, 0.3], [0.1, 0.2, 0.7]]
    label, w = [1, 2, 2, 0], [1, 1, 1, 2]
    # ranks (classes strictly more probable): 1, 2, 1 (tied with class 1), 2
    assert metric_value("multiclass", "top_k_accuracy@1", label, p, w) == 0.0
    assert metric_value("multiclass", "top_k_accuracy@2", label, p, w) == pytest.approx(2 / 5)
    assert metric_value("multiclass", "top_k_accuracy@3", label, p, w) == 1.0


def test_multiclass_auc_micro_pools_pairs_and_macro_averages_the_classes():
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5], [0.45, 0.35, 0.2]])
    label, w = [0, 1, 2, 1], [1, 1, 1, 1]
    # one-vs-rest: class 0 positives {0.7} vs {0.3, 0.2, 0.45}: 1; class 1 {0.6, 0.35} vs
    # {0.2, 0.3}: 1; class 2 {0.5} vs {0.1, 0.1, 0.2}: 1
    assert metric_value("multiclass", "auc_macro", label, p, w) == pytest.approx(1.0)
    # pooled: positives {0.7, 0.6, 0.5, 0.35} vs the 8 others; the negatives above a
    # positive: 0.45 beats 0.35 only -> 1 of 32 pairs is misordered
    assert metric_value("multiclass", "auc_micro", label, p, w) == pytest.approx(31 / 32)
    # class 2 has no labelled positive without the third example: the mean of two classes
    # (class 0: {0.7} vs {0.3, 0.45}: 1; class 1: {0.6, 0.35} vs {0.2}: 1)
    assert metric_value("multiclass", "auc_macro", label, p, [1, 1, 0, 1]) == 1.0
    p[3] = [0.2, 0.35, 0.45]  # example 3 (class 1) now ranks class 2 above class 1
    # class 2: {0.5} vs {0.1, 0.1, 0.45}: 1; class 1: {0.6, 0.35} vs {0.2, 0.3}: 1; class 0:
    # {0.7} vs {0.3, 0.2, 0.2}: 1
    assert metric_value("multiclass", "auc_macro", label, p, w) == pytest.approx(1.0)
    p[3] = [0.2, 0.25, 0.55]  # now 0.25 (class 1, positive) is below 0.3 (class 1 of ex 2)
    # class 1: positives {0.6, 0.25} vs negatives {0.2, 0.3}: 3 of 4 pairs; class 2: {0.5}
    # vs {0.1, 0.1, 0.55}: 2 of 3
    assert metric_value("multiclass", "auc_macro", label, p, w) == pytest.approx(
        (1 + 3 / 4 + 2 / 3) / 3)


def test_per_class_precision_and_recall_by_argmax_of_a_named_class():
    p = [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]]
    label, w = [0, 1, 1, 1], [1, 2, 1, 1]
    classes = {"Adelie": 0, "Gentoo": 1}
    # class 0 predicted for examples 0 (right, w 1) and 1 (wrong, w 2): precision 1/3
    assert metric_value("multiclass", "precision[Adelie]", label, p, w, classes) == \
        pytest.approx(1 / 3)
    assert metric_value("multiclass", "recall[Adelie]", label, p, w, classes) == 1.0
    # class 1 labelled on 1, 2, 3 (weights 2, 1, 1), predicted on 2 only
    assert metric_value("multiclass", "recall[Gentoo]", label, p, w, classes) == \
        pytest.approx(1 / 4)
    assert metric_value("multiclass", "precision[Gentoo]", label, p, w, classes) == 1.0
    # a class with no labelled example has no id: no value
    assert math.isnan(metric_value("multiclass", "recall[Chinstrap]", label, p, w, classes))


def test_class_ids_are_learnt_from_the_label_column_of_labelled_examples():
    names = [b"Adelie", b"Gentoo", b"Adelie", None, 3, np.float32(1.5)]
    values = [metric_formulas.class_name(v) for v in names]
    assert values == ["Adelie", "Gentoo", "Adelie", None, "3", "1.500000"]
    assert metric_formulas.class_ids(values, [0, 1, 0, 2, 2, 1], [1, 1, 1, 1, 1, 0]) == {
        "Adelie": 0, "Gentoo": 1, "3": 2}
    # two ids for one name: the column and the label disagree, so no id
    assert metric_formulas.class_ids(["a", "a"], [0, 1], [1, 1]) == {}


def test_a_metric_key_must_carry_its_parameter():
    with pytest.raises(InputError, match="written top_k_accuracy@<k>"):
        metric_value("multiclass", "top_k_accuracy", [0], [[1.0, 0.0]], [1])
    with pytest.raises(InputError, match=r"written recall\[<class>\]"):
        metric_value("multiclass", "recall", [0], [[1.0, 0.0]], [1])


def test_auc_is_the_pair_ordering_when_predictions_fall_in_distinct_buckets():
    y, w = [0, 0, 1, 1], [1, 1, 1, 1]
    # positive 0.35 beats negative 0.1 only; positive 0.8 beats both: 3 of 4 pairs
    assert metric_value("binary", "auc", y, [0.1, 0.4, 0.35, 0.8], w) == pytest.approx(0.75)
    # one bucket for everything: the trapezoid gives a tied pair half credit
    assert metric_value("binary", "auc", y, [0.5] * 4, w) == pytest.approx(0.5)
    # TFMA's nansum: no positive label gives 0, not NaN
    assert metric_value("binary", "auc", [0, 0], [0.2, 0.7], [1, 1]) == 0.0


def test_auc_pr_interpolates_true_positives_not_precision():
    assert metric_value("binary", "auc_pr", [0, 1], [0.2, 0.8], [1, 1]) == pytest.approx(1.0)
    # (tp, p) goes (1, 2) -> (0, 1) -> (0, 0): slope 1, intercept -1, so 1 - ln 2
    assert metric_value("binary", "auc_pr", [1, 0], [0.2, 0.8], [1, 1]) == pytest.approx(
        1 - math.log(2))


def test_auc_cannot_bucket_nan_unless_its_weight_is_zero():
    assert math.isnan(metric_value("binary", "auc", [0, 1, 1], [0.1, 0.9, NAN], [1, 1, 1]))
    assert metric_value("binary", "auc", [0, 1, 1], [0.1, 0.9, NAN], [1, 1, 0]) == 1.0


def test_multiclass_accuracy_is_the_weighted_argmax_match_and_zero_without_weight():
    p = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]
    assert metric_value("multiclass", "accuracy", [1, 2, 2], p, [1, 1, 2]) == pytest.approx(0.75)
    assert metric_value("multiclass", "accuracy", [1, 2, 2], p, [0, 0, 0]) == 0.0


def test_an_unknown_metric_names_the_task_type_and_its_metrics():
    with pytest.raises(InputError, match="rmse.*not a binary metric.*auc"):
        metric_value("binary", "rmse", [1], [1], [1])


@pytest.mark.parametrize("task_type,metric", [
    ("regression", "mse"), ("regression", "mae"), ("regression", "rmse"),
    ("binary", "log_loss"), ("binary", "binary_accuracy"), ("binary", "precision"),
    ("binary", "recall"), ("binary", "auc"), ("binary", "auc_pr"),
    ("multiclass", "accuracy"), ("multiclass", "log_loss"), ("multiclass", "top_k_accuracy@2"),
    ("multiclass", "auc_micro"), ("multiclass", "auc_macro"), ("multiclass", "precision[b]"),
    ("multiclass", "recall[c]")])
def test_a_replicate_is_the_metric_on_the_resampled_rows(task_type, metric):
    rng = np.random.default_rng(7)
    n = 40
    if task_type == "multiclass":
        label, prediction = rng.integers(0, 3, n), rng.dirichlet([1, 1, 1], n)
        prediction[0] = [np.nan, 0.5, 0.5]  # an undefined term...
    elif task_type == "binary":
        label = (rng.random(n) < 0.4).astype(float)
        prediction = np.clip(rng.random(n) * 0.8 + 0.2 * label, 0, 1)
        prediction[0] = 1.0 if label[0] == 0 else 0.0  # an infinite log loss term...
    else:
        label, prediction = rng.normal(size=n), rng.normal(size=n)
        prediction[0] = np.inf
    weight = (rng.random(n) < 0.8).astype(float)
    classes = {"a": 0, "b": 1, "c": 2}
    prepared = comparison._prepare(task_type, metric, label, prediction, weight, classes)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(5)])
    counts[:3, 0] = 0  # ...that only the resamples which draw it may see
    for row, value in zip(counts, prepared.values(counts.astype(float))):
        rows = np.repeat(np.arange(n), row)
        expected = metric_value(task_type, metric, label[rows], prediction[rows], weight[rows],
                                classes)
        assert value == pytest.approx(expected, rel=1e-12, nan_ok=True)


def _run_tfma(metric, label, prediction, weight, features=None, **computations_args):
    """A TFMA metric's own computations (combiners and derived results), run in-process
    without Beam, one example per input as TFMA's extractors give them."""
    from tensorflow_model_analysis.metrics import metric_types
    values = {}
    for computation in metric.computations(example_weighted=True, **computations_args):
        if isinstance(computation, metric_types.DerivedMetricComputation):
            values.update(computation.result(values))
            continue
        combiner = computation.combiner
        accumulator = combiner.create_accumulator()
        for i, (y, p, w) in enumerate(zip(label, prediction, weight)):
            accumulator = combiner.add_input(accumulator, metric_types.StandardMetricInputs(
                labels=np.array([y]), predictions=np.atleast_1d(np.asarray(p)),
                example_weights=np.array([w]),
                features={k: v[i] for k, v in (features or {}).items()}))
        values.update(combiner.extract_output(accumulator))
    return next(v for k, v in values.items()
                if isinstance(k, metric_types.MetricKey) and k.name == metric.name)


def test_every_metric_equals_tfma_on_a_few_hundred_random_examples():
    tfma = pytest.importorskip("tensorflow_model_analysis")
    tf_keras = pytest.importorskip("tf_keras")
    from tfx_mtl.pipeline import tfma_metrics  # noqa: F401  (registers RMSE)
    from tfx_mtl.task_spec import METRICS

    rng = np.random.default_rng(0)
    n = 300
    weight = (rng.random(n) < 0.8).astype(float)
    y = (rng.random(n) < 0.3).astype(float)
    p = np.clip(rng.beta(2, 3, n) + 0.2 * y, 0, 1).astype(np.float32)
    p[:6] = [0.0, 1.0, 0.5, 0.25, 0.9999, 0.5 + 1e-7]  # bucket edges
    p[6:10] = [1.0, 1.0, 0.0, 0.0]  # saturated, right and wrong
    y[6:10], weight[6:10] = [1, 0, 0, 1], 1.0
    value = rng.normal(10, 3, n)
    fitted = (value + rng.normal(0, 2, n)).astype(np.float32)
    cases = [("binary", m, y, p) for m in METRICS["binary"]]
    cases += [("regression", m, value, fitted) for m in METRICS["regression"]]
    for task_type, metric, label, prediction in cases:
        definition = METRICS[task_type][metric]
        module = tfma.metrics if definition.module is None else tfma_metrics
        expected = _run_tfma(getattr(module, definition.tfma_class)(), label, prediction, weight)
        assert math.isfinite(expected), metric
        assert metric_value(task_type, metric, label, prediction, weight) == pytest.approx(
            expected, rel=1e-12, abs=1e-12), metric

    classes = rng.integers(0, 4, n)
    probabilities = rng.dirichlet([1, 1, 1, 1], n).astype(np.float32)
    keras = tf_keras.metrics.SparseCategoricalAccuracy()  # what TFMA wraps for accuracy
    keras.update_state(classes, probabilities, sample_weight=weight)
    assert metric_value("multiclass", "accuracy", classes, probabilities, weight) == \
        pytest.approx(float(keras.result()), rel=1e-6)


def test_every_multiclass_metric_equals_its_tfma_run_with_saturated_predictions():
    """The project's metrics (tfma_metrics) and TFMA's micro-averaged AUC, run by TFMA's
    own metric code, against the numpy formulas; macro AUC also against TFMA's own
    per-class AUC (binarized by class id, which a test may know)."""
    tfma = pytest.importorskip("tensorflow_model_analysis")
    from tensorflow_model_analysis.metrics import metric_types
    from tfx_mtl.pipeline import tfma_metrics

    rng = np.random.default_rng(3)
    n, width = 300, 4
    names = np.array(["Adelie", "Chinstrap", "Gentoo", "7"])
    label = rng.integers(0, width, n)
    weight = (rng.random(n) < 0.8).astype(float)
    p = rng.dirichlet([1, 1, 1, 1], n).astype(np.float32)
    p[:4] = np.eye(width, dtype=np.float32)[[0, 1, 0, 3]]  # saturated
    label[:4], weight[:4] = [0, 0, 3, 3], 1.0  # right, wrong, wrong, right
    # the label column as TFMA's features hold it: strings, and an integer class
    column = {"species": [np.array([7]) if name == "7" else np.array([name.encode()])
                          for name in names[label]]}
    ids = metric_formulas.class_ids([metric_formulas.class_name(v) for v in column["species"]], label,
                               weight)
    assert ids == {"Adelie": 0, "Chinstrap": 1, "Gentoo": 2, "7": 3}
    runs = {
        "log_loss": _run_tfma(tfma_metrics.LogLoss(), label, p, weight),
        "top_k_accuracy@2": _run_tfma(tfma_metrics.TopKAccuracy(name="top_k_accuracy@2", k=2),
                                      label, p, weight),
        "auc_macro": _run_tfma(tfma_metrics.MacroAUC(), label, p, weight),
        "auc_micro": _run_tfma(tfma.metrics.AUC(name="auc_micro"), label, p, weight,
                               aggregation_type=metric_types.AggregationType(
                                   micro_average=True))}
    for metric, cls in (("precision", tfma_metrics.ClassPrecision),
                        ("recall", tfma_metrics.ClassRecall)):
        for name in ("Adelie", "7"):
            key = f"{metric}[{name}]"
            runs[key] = _run_tfma(cls(name=key, label_class=name, column="species"), label, p,
                                  weight, features=column)
    for key, expected in runs.items():
        assert math.isfinite(expected), key
        assert metric_value("multiclass", key, label, p, weight, ids) == pytest.approx(
            expected, rel=1e-12, abs=1e-12), key
    per_class = [_run_tfma(tfma.metrics.AUC(), label, p, weight,
                           sub_keys=[metric_types.SubKey(class_id=c)]) for c in range(width)]
    assert runs["auc_macro"] == pytest.approx(np.mean(per_class), rel=1e-12)


# --- the bootstrap -------------------------------------------------------------------

def test_two_examples_give_four_equally_likely_resamples():
    # MAE, y = [0, 0]: the candidate's errors are (2, 0), the baseline's (1, 1), so the
    # resamples {0,0}, {0,1}, {1,0}, {1,1} change the MAE by +1, 0, 0, -1
    task = _regression([0, 0], [[2, 0]], [[1, 1]])
    record, entry = _one(task, "mae", samples=20000, confidence=0.98)
    assert (entry["candidate"], entry["baseline"], entry["change"]) == (1.0, 1.0, 0.0)
    assert (entry["change_low"], entry["change_high"]) == (-1.0, 1.0)
    assert (entry["relative_low"], entry["relative_high"]) == (-1.0, 1.0)
    _, middle = _one(task, "mae", samples=20000, confidence=0.4)  # P(0) = 1/2
    assert (middle["change_low"], middle["change_high"]) == (0.0, 0.0)
    assert record["tasks"]["t"]["labelled"] == 2 and record["examples"] == 2


def _scripted(scale, n=1500, seed=3):
    """A candidate whose RMSE is exactly ``scale`` times the baseline's, its errors
    correlated 0.8 with the baseline's (as two models of the same data are)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 4, n)
    eb, e2 = rng.normal(0, 4, n), rng.normal(0, 4, n)
    ec = 0.8 * eb + 0.6 * e2
    ec = ec / np.sqrt(np.mean(ec ** 2)) * np.sqrt(np.mean(eb ** 2)) * scale
    return _regression(y, [y + ec], [y + eb])


def test_slightly_worse_within_the_noise_is_blessed_only_when_read_as_significant():
    _, entry = _one(_scripted(1.015), "rmse")
    assert entry["relative"] == pytest.approx(0.015)
    assert entry["relative_low"] < 0 < 0.01 < entry["relative_high"]
    assert verdict(entry, 0.01, True, "significant")[0] is True
    assert verdict(entry, 0.01, True, "strict")[0] is False


def test_clearly_worse_is_refused_whatever_the_reading():
    _, entry = _one(_scripted(1.10), "rmse")
    assert 0.01 < entry["relative_low"] < entry["relative"] == pytest.approx(0.10)
    ok, words = verdict(entry, 0.01, True, "significant")
    assert not ok and "the whole interval is beyond it" in words
    assert verdict(entry, 0.01, True, "strict")[0] is False


def test_the_interval_matches_a_plain_paired_bootstrap():
    task = _scripted(1.015)
    y, pc, pb = task.label, task.candidate[0], task.baseline[0]
    rng = np.random.default_rng(12345)  # another generator, another way of drawing
    relative = []
    for _ in range(4000):
        rows = rng.choice(len(y), size=len(y), replace=True)
        rmse_c = np.sqrt(np.mean((y[rows] - pc[rows]) ** 2))
        rmse_b = np.sqrt(np.mean((y[rows] - pb[rows]) ** 2))
        relative.append(rmse_c / rmse_b - 1)
    low, high = np.quantile(relative, [0.025, 0.975])
    _, entry = _one(task, "rmse")
    assert entry["relative_low"] == pytest.approx(low, abs=0.005)
    assert entry["relative_high"] == pytest.approx(high, abs=0.005)


def test_chunking_the_replicates_changes_nothing(monkeypatch):
    task = _scripted(1.05, n=200)
    ends = ("change_low", "change_high", "relative_low", "relative_high")
    whole, entry = _one(task, "rmse", samples=300)
    monkeypatch.setattr(comparison, "CHUNK_ELEMENTS", 200 * 7)  # 7 replicates a chunk
    chunked, chunked_entry = _one(task, "rmse", samples=300)
    assert [chunked_entry[k] for k in ends] == pytest.approx([entry[k] for k in ends],
                                                            rel=1e-12)
    assert [chunked["delta_m"][k] for k in ("low", "high")] == pytest.approx(
        [whole["delta_m"][k] for k in ("low", "high")], rel=1e-12)


def test_seeds_are_listed_averaged_and_resampled_for_each_side_apart():
    # No example noise (every error constant), so only the seeds vary: candidate seeds
    # score 4 and 5, baseline seeds 4 and 4. A replicate's candidate is the mean of two
    # seeds drawn with replacement: 4, 4.5 or 5 with probabilities 1/4, 1/2, 1/4.
    zeros = np.zeros(50)
    task = _regression(zeros, [zeros + 4, zeros + 5], [zeros + 4, zeros - 4])
    record, entry = _one(task, "rmse", seeds=(42, 43), samples=4000)
    assert entry["per_seed"] == [{"seed": 42, "candidate": 4.0, "baseline": 4.0},
                                 {"seed": 43, "candidate": 5.0, "baseline": 4.0}]
    assert (entry["candidate"], entry["baseline"], entry["change"]) == (4.5, 4.0, 0.5)
    assert (entry["change_low"], entry["change_high"]) == (0.0, 1.0)
    assert record["seeds"] == [42, 43] and "seeds" in record["method"]
    _, middle = _one(task, "rmse", seeds=(42, 43), samples=4000, confidence=0.4)
    assert (middle["change_low"], middle["change_high"]) == (0.5, 0.5)


# --- Δm --------------------------------------------------------------------------------

def _auc_task():
    """10 negatives at 0.10, 0.11, ..., 0.19 and 10 positives, so AUC = right pairs / 100.
    Candidate: 9 positives above every negative, one below all: 0.90. Baseline: 8 above
    every negative, two above 4 negatives each: (80 + 8) / 100 = 0.88."""
    negatives = 0.10 + np.arange(10) / 100
    candidate = np.concatenate([negatives, np.full(9, 0.9), [0.05]])
    baseline = np.concatenate([negatives, np.full(8, 0.9), [0.135, 0.135]])
    label = np.concatenate([np.zeros(10), np.ones(10)])
    return TaskData("binary", label, np.ones(20), [candidate], [baseline])


def test_delta_m_by_hand_is_the_signed_mean_relative_change_in_percent():
    tasks = {"tips": _auc_task(),
             "fare": _regression(np.zeros(20), [np.full(20, 4.0)], [np.full(20, 3.9)])}
    for model, auc in ((tasks["tips"].candidate[0], 0.90), (tasks["tips"].baseline[0], 0.88)):
        assert metric_value("binary", "auc", tasks["tips"].label, model, np.ones(20)) == \
            pytest.approx(auc)
    record = compare(tasks, {"tips": ["auc"], "fare": ["mae", "rmse"]},
                     {"tips": "auc", "fare": "rmse"}, [42], samples=200)
    # AUC +0.02 on 0.88 is better, RMSE +0.1 on 3.9 is worse
    assert record["delta_m"]["value"] == pytest.approx(100 / 2 * (0.02 / 0.88 - 0.1 / 3.9))
    assert record["delta_m"]["value"] == pytest.approx(-0.146, abs=5e-4)
    assert record["delta_m"]["metrics"] == {"tips": "auc", "fare": "rmse"}
    assert record["delta_m"]["low"] <= record["delta_m"]["value"] <= record["delta_m"]["high"]


def test_delta_m_resamples_every_task_with_the_same_examples():
    # Two copies of one task: if each task were resampled on its own the mean of the two
    # would vary less; sharing the resample, Δm is exactly -100·relative change.
    task = _scripted(1.05, n=300)
    record = compare({"a": task, "b": task}, {"a": ["rmse"], "b": ["rmse"]},
                     {"a": "rmse", "b": "rmse"}, [42], samples=500)
    entry = record["tasks"]["a"]["metrics"]["rmse"]
    assert record["delta_m"]["low"] == pytest.approx(-100 * entry["relative_high"])
    assert record["delta_m"]["high"] == pytest.approx(-100 * entry["relative_low"])


# --- the record ------------------------------------------------------------------------

def test_the_record_keeps_nan_and_is_strict_json_through_finite():
    task = TaskData("binary", np.array([1.0, 0.0, 1.0]), np.ones(3),
                    [np.array([NAN, 0.5, 0.7])], [np.array([0.6, 0.5, 0.7])])
    record = compare({"t": task}, {"t": ["log_loss", "auc"]}, {"t": "auc"}, [42], samples=50)
    entry = record["tasks"]["t"]["metrics"]["log_loss"]
    assert math.isnan(entry["candidate"]) and math.isnan(entry["change_low"])
    assert entry["higher_is_better"] is False
    assert record["tasks"]["t"]["metrics"]["auc"]["higher_is_better"] is True
    nulled, reasons = finite.nulled(record)
    loaded = json.loads(finite.dumps(nulled))
    assert loaded["tasks"]["t"]["metrics"]["log_loss"]["candidate"] is None
    assert reasons["tasks.t.metrics.log_loss.candidate"] == finite.UNDEFINED
    assert set(loaded) == {"split", "examples", "method", "confidence", "samples", "rng_seed",
                           "seeds", "tasks", "delta_m"}
    assert loaded["split"] == "test" and loaded["samples"] == 50
    ok, words = verdict(loaded["tasks"]["t"]["metrics"]["log_loss"], 0.01, True, "strict")
    assert not ok and "log_loss cannot be judged: the multi-task value is undefined (NaN)" in words


@pytest.mark.parametrize("change,field", [
    ({"metrics": {"t": ["rmse"]}, "gated": {"t": "mae"}}, "gated.t"),
    ({"metrics": {"t": ["auc"]}, "gated": {"t": "auc"}}, "metrics.t"),
    ({"seeds": [1, 2]}, "tasks.t.candidate")])
def test_bad_input_names_the_field(change, field):
    args = {"tasks": {"t": _regression([0, 1], [[0, 1]], [[1, 1]])}, "metrics": {"t": ["rmse"]},
            "gated": {"t": "rmse"}, "seeds": [1]}
    args.update(change)
    with pytest.raises(InputError) as raised:
        compare(**args)
    assert raised.value.field == field


# --- the verdict ----------------------------------------------------------------------

def _entry(metric, candidate, baseline, low, high, higher_is_better):
    change = candidate - baseline
    return {"metric": metric, "higher_is_better": higher_is_better, "confidence": 0.95,
            "candidate": candidate, "baseline": baseline, "change": change,
            "change_low": low * baseline, "change_high": high * baseline,
            "relative": change / baseline, "relative_low": low, "relative_high": high}


def test_the_verdict_says_the_values_the_interval_the_bound_and_the_reading():
    entry = _entry("rmse", 4.00, 3.90, 0.011, 0.040, False)
    assert verdict(entry, 0.01, True, "significant") == (False, (
        "rmse = 4.0000 vs baseline 3.9000 (+2.56%, 95% interval +1.10% to +4.00%) fails: may rise "
        "by at most 1% (significant: the whole interval is beyond it)"))
    ok, words = verdict(entry, 0.2, False, "strict")
    assert ok and words.endswith("(+0.1000, 95% interval +0.04290 to +0.1560) passes: may rise "
                                 "by at most 0.2 (strict: the change is within it)")


def test_higher_is_better_turns_a_fall_into_the_worsening():
    fell = _entry("auc", 0.80, 0.82, -0.05, -0.015, True)  # fell 2.4%, at least 1.5%
    assert verdict(fell, 0.01, True, "significant")[0] is False
    assert verdict(fell, 0.03, True, "strict")[0] is True
    rose = _entry("auc", 0.84, 0.82, 0.015, 0.05, True)
    assert verdict(rose, 0.01, True, "significant")[0] is True
    assert verdict(rose, 0.0, True, "strict")[0] is True
    # the same numbers on a lower-is-better metric: a rise is the worsening
    assert verdict(dict(rose, higher_is_better=False), 0.01, True, "significant")[0] is False


def test_strict_passes_a_worsening_equal_to_the_bound_and_significant_its_best_end():
    entry = {"metric": "mae", "higher_is_better": False, "candidate": 1.5, "baseline": 1.0,
             "change": 0.5, "change_low": 0.25, "change_high": 0.75}
    assert verdict(entry, 0.5, False, "strict")[0] is True
    assert verdict(entry, 0.25, False, "significant")[0] is True
    assert verdict(entry, 0.24, False, "significant")[0] is False


@pytest.mark.parametrize("reading", ["significant", "strict"])
def test_a_nan_baseline_cannot_be_judged_and_fails(reading):
    entry = _entry("rmse", 4.0, NAN, NAN, NAN, False)
    ok, words = verdict(entry, 0.01, True, reading)
    assert not ok
    assert words.startswith("rmse cannot be judged: the baseline value is undefined (NaN)")
    absolute = dict(entry, change=None, change_low=None, change_high=None)  # strict JSON
    assert verdict(absolute, 1.0, False, reading)[0] is False
    on_zero = {"metric": "mae", "higher_is_better": False, "candidate": 0.5, "baseline": 0.0,
               "relative": math.inf, "relative_low": 2.0, "relative_high": math.inf}
    ok, words = verdict(on_zero, 0.01, True, reading)  # a relative bound on a 0 baseline
    assert not ok and "the relative change is infinite" in words


def test_an_undefined_interval_fails_only_the_significant_reading():
    entry = _entry("precision", 0.5, 0.5, NAN, NAN, True)
    ok, words = verdict(entry, 0.01, True, "significant")
    assert not ok and "undefined in some resamples" in words
    assert verdict(entry, 0.01, True, "strict")[0] is True
    with pytest.raises(InputError):
        verdict(entry, 0.01, True, "lenient")
