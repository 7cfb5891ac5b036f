"""Transform's analysis: one pass over train, a fixed number of analyzers, and the
numbers of that pass (present values only) worked out by hand."""
import math

import pytest

from tfx_mtl import task_spec


def _spec(numeric: int, bucketized: int = 1):
    return task_spec.parse({
        "features": [f"x{i}" for i in range(numeric)]
        + [{"name": f"b{i}", "kind": "bucketized", "buckets": 2 + i % 2}
           for i in range(bucketized)]
        + [{"name": "c", "kind": "categorical"}],
        "tasks": [{"name": "t", "type": "regression", "label": "y"},
                  {"name": "u", "type": "binary", "label": "y > 0"}]})


def _plan(spec) -> tuple[int, int]:
    """(analysis phases, analyzers) of ``transform`` for ``spec``, from TFT's own plan:
    the phases are its ApplySavedModel[PhaseN] steps (one pass over the data each), the
    analyzers its distinct analyzer scopes (each binds its outputs under
    ``<scope>/temporary_analyzer_output``)."""
    import tensorflow as tf
    from tensorflow_transform import analyzer_nodes, impl_helper
    from tensorflow_transform.beam import analysis_graph_builder

    from tfx_mtl.models import preprocessing

    feature_spec = {name: tf.io.VarLenFeature(tf.string if name == "c" else tf.float32)
                    for name in [*spec.feature_names, "y"]}
    graph, inputs, outputs = impl_helper.trace_preprocessing_function(
        lambda x: preprocessing.transform(x, spec),
        impl_helper.get_type_specs_from_feature_specs(feature_spec), use_tf_compat_v1=False)
    scopes = {sink.tensor.name.split("/temporary_analyzer_output")[0]
              for sink in graph.get_collection(analyzer_nodes.TENSOR_REPLACEMENTS)}
    plan, _, _ = analysis_graph_builder.build(graph, inputs, outputs)
    phases, seen, todo = set(), set(), [plan]
    while todo:
        operation = todo.pop().parent_operation
        if id(operation) not in seen:
            seen.add(id(operation))
            if type(operation.operation_def).__name__ == "ApplySavedModel":
                phases.add(operation.operation_def.phase)
            todo.extend(operation.inputs)
    return len(phases), len(scopes)


def test_one_analysis_phase_and_analyzers_that_do_not_grow_with_features():
    """Numeric and bucketized features are analysed in one pass over train (the imputed
    mean never feeds another analyzer), by one block analyzer, not one per feature:
    1 or 8 numeric features (and 1 or 3 bucketized, of two bucket counts) cost the same
    analyzers. The analyzers: the block's mean-and-variance, a quantiles per bucket count,
    the categorical vocabulary, the regression label's mean-and-variance."""
    small, large = _plan(_spec(1, bucketized=2)), _plan(_spec(8, bucketized=3))
    assert small == large == (1, 5)


def _run(spec, feature_spec, rows, tmp_path, extra=None):
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from tfx_mtl.models import preprocessing

    def fn(inputs):
        out = preprocessing.transform(inputs, spec)
        out.update(extra(inputs) if extra else {})
        return out

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {k: tf.io.VarLenFeature(t) for k, t in feature_spec.items()}))
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=False):
        (out, _), _ = ((rows, metadata) | tft_beam.AnalyzeAndTransformDataset(fn))
    return out


@pytest.mark.e2e  # the real Transform (TFT on Beam)
def test_z_score_and_buckets_come_from_the_present_values_and_missing_is_the_mean(tmp_path):
    """x: 1, -, 3, 5, NaN. Present 1, 3, 5: mean 3, population variance (4 + 0 + 4) / 3,
    std 1.63299; z = -2/1.633, 0, 0, 2/1.633, 0, 0, 0 = -1.2247, 0, 0, 1.2247, 0, 0, 0
    (imputing 3 in the four missing cells first gives std sqrt(8/7) = 1.0690, z -1.8708).
    b: 1, 2, 10, 11, 12 present, two missing; mean 7.2. Two buckets: the present values'
    median, 10, is the boundary: 1, 2 -> 0; 10, 11, 12 -> 1; missing (7.2) -> 0
    (imputing first puts two 7.2s in the quantiles: the median, so the boundary, is 7.2
    and a missing value would fall in bucket 1)."""
    import tensorflow as tf

    spec = task_spec.parse({
        "features": ["x", {"name": "b", "kind": "bucketized", "buckets": 2}],
        "tasks": [{"name": "t", "type": "binary", "label": "y > 0"}]})
    xs = [[1.0], [], [3.0], [5.0], [math.nan], [], []]
    bs = [[1.0], [2.0], [10.0], [11.0], [12.0], [], []]
    rows = [{"x": x, "b": b, "y": [1.0]} for x, b in zip(xs, bs)]
    out = _run(spec, {"x": tf.float32, "b": tf.float32, "y": tf.float32}, rows, tmp_path)
    z = 2 / math.sqrt(8 / 3)
    assert [r["x_xf"] for r in out] == pytest.approx([-z, 0, 0, z, 0, 0, 0], abs=1e-5)
    assert [r["b_xf"] for r in out] == [0, 0, 1, 1, 1, 0, 0]


@pytest.mark.e2e  # the real Transform (TFT on Beam)
def test_the_block_gives_tfts_own_numbers_when_nothing_is_missing(tmp_path):
    """Without missing values the one-block analyzers give what TFT's per-feature
    scale_to_z_score and bucketize give for each column: the same numbers, fewer
    analyzers."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    spec = _spec(3, bucketized=3)
    rng = np.random.default_rng(0)
    names = ["x0", "x1", "x2", "b0", "b1", "b2"]
    rows = [{**{n: [float(v)] for n, v in zip(names, rng.normal(size=6) * 10 + 40)},
             "c": [b"a"], "y": [float(i)]} for i in range(200)]

    def reference(inputs):
        dense = {n: tf.sparse.to_dense(inputs[n])[:, 0] for n in names}
        return {**{f"ref_{n}": tft.scale_to_z_score(dense[n]) for n in names[:3]},
                **{f"ref_{n}": tft.bucketize(dense[n], 2 + i % 2)
                   for i, n in enumerate(names[3:])}}

    out = _run(spec, {**{n: tf.float32 for n in names}, "c": tf.string, "y": tf.float32},
               rows, tmp_path, extra=reference)
    for n in names[:3]:
        assert [r[f"{n}_xf"] for r in out] == pytest.approx([r[f"ref_{n}"] for r in out],
                                                            abs=1e-5)
    for n in names[3:]:
        assert [r[f"{n}_xf"] for r in out] == [r[f"ref_{n}"] for r in out]
        assert len({r[f"{n}_xf"] for r in out}) > 1


@pytest.mark.e2e  # the real Transform (TFT on Beam)
def test_a_feature_never_present_in_train_is_zero_not_nan(tmp_path):
    """x and b have no present (finite) value in train: their mean and variance are
    undefined (NaN from the analyzer). Every cell is missing, so every output is what a
    missing cell gets, one constant, never NaN: x's z = 0 (mean and variance taken as 0);
    b's filled 0 against TFT's quantiles of no value, boundaries [0, 0], is bucket 2 (a
    value equal to a boundary goes above it). w, present, is unaffected:
    2, 4, 6, 8 has mean 5 and std sqrt(5), z = -3, -1, 1, 3 over sqrt(5)."""
    import tensorflow as tf

    spec = task_spec.parse({
        "features": ["x", "w", {"name": "b", "kind": "bucketized", "buckets": 3}],
        "tasks": [{"name": "t", "type": "binary", "label": "y > 0"}]})
    rows = [{"x": x, "w": [w], "b": b, "y": [1.0]}
            for x, w, b in zip([[], [math.nan], [], [math.inf]], [2.0, 4.0, 6.0, 8.0],
                               [[], [], [math.nan], []])]
    out = _run(spec, {"x": tf.float32, "w": tf.float32, "b": tf.float32, "y": tf.float32},
               rows, tmp_path)
    assert [r["x_xf"] for r in out] == [0.0] * 4
    assert [r["b_xf"] for r in out] == [2] * 4
    s = math.sqrt(5)
    assert [r["w_xf"] for r in out] == pytest.approx([-3 / s, -1 / s, 1 / s, 3 / s],
                                                     abs=1e-5)
