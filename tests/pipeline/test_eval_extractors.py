"""The Evaluators run each model once: same metrics, plots and verdict as TFMA's default
two passes (``transform_features``, then ``<task>__evaluation``) on real models."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from tfx_mtl.bench import evaluator_bench
from tfx_mtl import task_spec
from tfx_mtl.pipeline import eval_config, eval_extractors

SPEC = task_spec.parse({
    "name": "mini",
    "features": [{"name": "miles", "kind": "numeric"},
                 {"name": "pay", "kind": "categorical", "oov_buckets": 1}],
    "tasks": [
        {"name": "big", "type": "binary", "label": "tips > 0.2 * fare",
         "metrics": [{"name": "auc", "lower_bound": 0.01}, "binary_accuracy"]},
        {"name": "fare", "type": "regression", "label": "fare", "role": "auxiliary",
         "metrics": [{"name": "rmse", "upper_bound": 1e6}]},
        {"name": "kind", "type": "multiclass", "label": "pay2", "role": "auxiliary"},
    ],
    "evaluation": {"slices": ["pay"]}})


def test_one_pass_config_reads_prediction_label_and_weight_from_the_labelled_signature():
    config = eval_config.for_task(SPEC, "fare")
    one_pass = eval_extractors.one_pass_config(config)
    for before, after in zip(config.model_specs, one_pass.model_specs):
        assert list(after.preprocessing_function_names) == ["fare__evaluation_labelled"]
        assert after.prediction_key == "fare"  # the labelled signature's score output
        assert (after.label_key, after.example_weight_key) == ("fare__label", "fare__mask")
        assert (after.name, after.is_baseline) == (before.name, before.is_baseline)
    # The EvalConfig itself (the Evaluator's cache key, what its metrics read) is untouched.
    assert config == eval_config.for_task(SPEC, "fare")
    assert list(one_pass.metrics_specs) == list(config.metrics_specs)


def _saved_model(path, signatures):
    module = tf.Module()
    functions = {}
    for name in signatures:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def score(examples):
            return {"fare": tf.zeros_like(examples, tf.float32)}
        functions[name] = score
    tf.saved_model.save(module, str(path), signatures=functions)
    return str(path)


def _shared_models(config, paths):
    return [tfma.default_eval_shared_model(path, model_name=spec.name, eval_config=config)
            for spec, path in zip(config.model_specs, paths)]


def _unbatch_function(extractors):
    """The function the unbatching stage maps over batches (a FlatMap's callable)."""
    (stage,) = [e for e in extractors if e.stage_name == "ExtractUnbatchedInputs"]
    return stage.ptransform.fn._fn


def test_models_with_the_labelled_signature_are_run_once(tmp_path):
    config = eval_config.for_task(SPEC, "fare")
    both = ["fare__evaluation", "fare__evaluation_labelled", "transform_features"]
    paths = [_saved_model(tmp_path / name, both) for name in ("candidate", "baseline")]
    extractors = eval_extractors.custom_extractors(_shared_models(config, paths), config)
    stages = [e.stage_name for e in extractors]
    assert "ExtractPredictions" not in stages and "ExtractMaterializedPredictions" in stages
    assert stages.index("ExtractTransformedFeatures") < stages.index("ExtractLabels")
    assert _unbatch_function(extractors) is eval_extractors.unbatch


def test_a_model_without_it_gets_tfma_s_model_passes_and_still_the_releasing_unbatch(tmp_path):
    """A baseline reused from an older export has no labelled signature: both models run
    TFMA's two passes, and the unbatching step still frees each batch's examples."""
    config = eval_config.for_task(SPEC, "fare")
    paths = [_saved_model(tmp_path / "candidate", ["fare__evaluation_labelled"]),
             _saved_model(tmp_path / "baseline", ["fare__evaluation", "transform_features"])]
    models = _shared_models(config, paths)
    extractors = eval_extractors.custom_extractors(models, config)
    defaults = tfma.default_extractors(eval_shared_model=models, eval_config=config)
    assert [e.stage_name for e in extractors] == [e.stage_name for e in defaults]
    assert "ExtractPredictions" in [e.stage_name for e in extractors]
    assert _unbatch_function(extractors) is eval_extractors.unbatch


def _examples(n=120, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        feature = {}
        floats = {"miles": rng.gamma(2.0), "fare": 5 + 10 * rng.random(), "tips": 3 * rng.random()}
        for name, value in floats.items():
            if rng.random() > 0.1:  # some values missing
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        strings = {"pay": [b"cash", b"card", b"other"][i % 3], "pay2": [b"a", b"b", b"c"][i % 3]}
        for name, value in strings.items():
            if rng.random() > 0.1:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("evaluator"))
    sample = evaluator_bench.write_test_split(root, _examples())
    evaluator_bench.write_models(root, SPEC, sample, SPEC.task_names)
    return root


def _close(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))
    return a == b


@pytest.mark.e2e
@pytest.mark.parametrize("task", SPEC.task_names)
def test_one_pass_gives_the_two_pass_metrics_plots_and_verdict(workdir, tmp_path, task):
    one = evaluator_bench.results(evaluator_bench.evaluate(
        workdir, str(tmp_path / "one"), task, one_pass=True))
    two = evaluator_bench.results(evaluator_bench.evaluate(
        workdir, str(tmp_path / "two"), task, one_pass=False))
    assert one["validation_ok"] == two["validation_ok"]
    assert one["metrics"].keys() == two["metrics"].keys()
    # every slice of pay, both models, the labelled and unlabelled counts
    assert len({slice_key for slice_key, _ in one["metrics"]}) == 4
    differ = {k: (one["metrics"][k], v) for k, v in two["metrics"].items()
              if not _close(one["metrics"][k], v)}
    assert not differ
    assert one["plots"].keys() == two["plots"].keys()
    assert all(_close(one["plots"][k], v) for k, v in two["plots"].items())
    if task == "kind":
        assert one["plots"]  # the confusion matrix


def test_unbatch_gives_tfmas_examples_and_frees_them_without_a_garbage_collection():
    """TFMA's unbatching keeps every batch's per-example extracts in a reference cycle
    until a full garbage collection (the Evaluators' memory grew with the eval rows);
    ``unbatch`` gives the same examples and frees them as soon as they are dropped."""
    import gc
    import weakref

    from tensorflow_model_analysis.extractors import unbatch_extractor

    def batch():
        return {"features": {"x": np.array([1.0, 2.0, 3.0]), "pay": np.array([b"a", b"b", b"a"])},
                "labels": np.array([1.0, 0.0, 1.0]), "predictions": np.array([0.9, 0.2, 0.6]),
                "example_weights": np.array([1.0, 1.0, 0.0]), "arrow_record_batch": object()}

    gc.disable()
    try:
        ours = eval_extractors.unbatch(batch())
        theirs = unbatch_extractor._extract_unbatched_inputs(batch())
        assert len(ours) == len(theirs) == 3
        for a, b in zip(ours, theirs):
            assert a.keys() == b.keys() and a["features"].keys() == b["features"].keys()
            for key in ("labels", "predictions", "example_weights"):
                np.testing.assert_array_equal(a[key], b[key])
            for key in ("x", "pay"):
                np.testing.assert_array_equal(a["features"][key], b["features"][key])
        ours_refs = [weakref.ref(e["labels"]) for e in ours]
        theirs_refs = [weakref.ref(e["labels"]) for e in theirs]
        del ours, theirs, a, b
        assert [r() for r in ours_refs] == [None] * 3
        assert all(r() is not None for r in theirs_refs)  # held by TFMA's cycle ...
        gc.collect()
        assert [r() for r in theirs_refs] == [None] * 3  # ... until a collection
    finally:
        gc.enable()
