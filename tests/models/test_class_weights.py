"""Class weights: resolution (scikit-learn's balanced), the weighted loss by hand, training
with them, the report (with the family that trained), and TFMA staying unweighted."""
import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl import naming, task_spec
from tfx_mtl.errors import InputError
from tfx_mtl.models import class_weights, eval_metrics, heads, synthetic_input
from tfx_mtl.models.trainer import resolve_class_weights
from tfx_mtl.pipeline import eval_config

from loop_support import data as _data, loop as _loop, params as _params


def _task(name="t", type_="binary", **fields):
    return task_spec.Task(name=name, type=type_, label="y", loss=task_spec.LOSSES[type_][0],
                          metrics=(), **fields)


# -- resolution ----------------------------------------------------------------------

def test_balanced_is_scikit_learns_on_a_worked_example():
    # counts 6, 3, 1: n = 10, 3 classes; w_c = 10 / (3 * n_c).
    assert class_weights.balanced([6, 3, 1]) == pytest.approx((10 / 18, 10 / 9, 10 / 3))
    weights = class_weights.resolve(_task(type_="multiclass", class_weights="balanced"),
                                    ["a", "b", "c"], [6, 3, 1])
    assert weights.weights == pytest.approx((0.5555556, 1.1111111, 3.3333333))
    assert weights.report() == {"source": "balanced", "counts": {"a": 6, "b": 3, "c": 1},
                                "weights": dict(zip("abc", weights.weights))}


def test_balanced_pos_weight_is_negatives_over_positives():
    weights = class_weights.resolve(_task(pos_weight="balanced"), class_weights.BINARY_CLASSES,
                                    [8, 2])
    assert weights.weights == (1.0, 4.0)
    assert weights.report()["pos_weight"] == 4.0
    # scikit-learn's two balanced weights (10/16, 10/4) have the same ratio.
    low, high = class_weights.balanced([8, 2])
    assert high / low == pytest.approx(4.0)


def test_spec_numbers_apply_by_class_and_unlisted_classes_weigh_one():
    task = _task(type_="multiclass", class_weights=(("c", 2.5), ("3", 0.5)))
    # A numeric label column's classes are written by Transform as 3.000000.
    weights = class_weights.resolve(task, ["a", "3.000000", "c"])
    assert weights.weights == (1.0, 0.5, 2.5) and weights.counts is None
    assert class_weights.resolve(_task(pos_weight=3.0), ("0", "1")).weights == (1.0, 3.0)
    assert class_weights.resolve(_task(), ("0", "1")) is None


def test_an_unknown_class_is_refused_naming_the_field():
    task = _task(name="species", type_="multiclass", class_weights=(("Adelei", 2.0),))
    with pytest.raises(InputError, match=r"tasks\.species\.class_weights\.Adelei: 'Adelei' is "
                                         r"not a class .*classes: Adelie, Gentoo"):
        class_weights.resolve(task, ["Adelie", "Gentoo"])


def test_a_scan_of_the_raw_data_can_check_the_classes_before_anything_runs():
    task = _task(name="n", type_="multiclass", class_weights=(("3", 2.0), ("x", 1.0)))
    class_weights.check_classes(task, ["x", "3.0", "4"], "the data")
    with pytest.raises(InputError, match=r"tasks\.n\.class_weights\.3: '3' is not a class of "
                                         r"the label on the data \(classes: x, 4\)"):
        class_weights.check_classes(task, ["x", "4"], "the data")
    class_weights.check_classes(_task(type_="multiclass", class_weights="balanced"), [])


def test_balanced_without_one_class_on_the_train_split_is_refused():
    with pytest.raises(InputError, match=r"tasks\.t\.pos_weight: .* none of 1"):
        class_weights.resolve(_task(pos_weight="balanced"), ("0", "1"), [5, 0])


def test_the_trainer_counts_only_labelled_examples_and_only_for_balanced():
    spec = task_spec.TaskSpec("s", (), (
        _task("b", pos_weight="balanced"), _task("m", "multiclass", class_weights="balanced"),
        _task("fixed", pos_weight=2.0), _task("plain")))

    def batch(b, b_mask, m, m_mask):
        arrays = {"b": b, "m": m, "fixed": [0], "plain": [0]}
        masks = {"b": b_mask, "m": m_mask, "fixed": [1], "plain": [1]}
        return {**{naming.label_key(t): np.array(v) for t, v in arrays.items()},
                **{naming.mask_key(t): np.array(v, np.float32) for t, v in masks.items()}}

    reads = []

    def train_data():
        reads.append(1)
        return [batch([1, 0, 1, 0], [1, 1, 0, 1], [2, 0, 1, 2], [1, 1, 1, 0]),
                batch([0, 0, 1, 0], [1, 1, 1, 0], [2, 2, 0, 1], [1, 1, 0, 1])]

    # b: labelled 1,0,0 and 0,0,1: 4 negatives, 2 positives. m: labelled 2,0,1 and 2,2,1.
    resolved = resolve_class_weights(spec, {"m": ["x", "y", "z"]}, train_data)
    assert reads == [1]
    assert resolved["b"].counts == (4, 2) and resolved["b"].weights == (1.0, 2.0)
    assert resolved["m"].counts == (1, 2, 3)
    assert resolved["m"].weights == pytest.approx((6 / 3, 6 / 6, 6 / 9))
    assert resolved["fixed"].weights == (1.0, 2.0) and "plain" not in resolved
    unbalanced = task_spec.TaskSpec("s", (), (_task("fixed", pos_weight=2.0),))
    assert set(resolve_class_weights(unbalanced, {}, lambda: reads.append(2))) == {"fixed"}
    assert reads == [1]  # no pass over the data without balanced


# -- the loss ------------------------------------------------------------------------

def _masked_mean(task, raw, label, mask, weights):
    loss = heads.per_example_loss(task, tf.constant(raw), tf.constant(label),
                                  class_weights=weights)
    return float(tf.reduce_sum(loss * mask) / tf.reduce_sum(mask))


def test_the_weighted_loss_on_a_tiny_batch_by_hand():
    # Binary, pos_weight 3: logits 0, 2, -1; labels 1, 0, 1; the third unlabelled.
    # l = 3 * ln 2 (positive at logit 0), ln(1 + e^2) (negative at 2); mean over the 2 labelled.
    binary = _masked_mean(_task(), [[0.0], [2.0], [-1.0]], [1, 0, 1], [1.0, 1.0, 0.0],
                          (1.0, 3.0))
    assert binary == pytest.approx((3 * math.log(2) + math.log(1 + math.e ** 2)) / 2)
    assert binary == pytest.approx(2.1031836)
    # Multiclass, weights (0.5, 1, 2): equal logits cost ln 3 each; labels 0 and 2.
    multi = _masked_mean(_task(type_="multiclass"), [[0.0, 0.0, 0.0]] * 2, [0, 2],
                         [1.0, 1.0], (0.5, 1.0, 2.0))
    assert multi == pytest.approx((0.5 + 2.0) * math.log(3) / 2) == pytest.approx(1.3732654)


def test_without_weights_the_loss_is_the_unweighted_one():
    raw, label = tf.constant([[0.3], [-1.2]]), tf.constant([1, 0])
    plain = heads.per_example_loss(_task(), raw, label).numpy()
    np.testing.assert_array_equal(plain, tf.nn.sigmoid_cross_entropy_with_logits(
        labels=[1.0, 0.0], logits=[0.3, -1.2]).numpy())
    np.testing.assert_array_equal(heads.per_example_loss(_task(), raw, label, class_weights=(
        1.0, 1.0)).numpy(), plain)


def _binary(arrays, spec, **fields):
    """``spec`` with its binary task (task_2) weighted by ``fields``."""
    tasks = tuple(dataclasses.replace(t, **fields) if t.type == "binary" else t
                  for t in spec.tasks)
    return dataclasses.replace(spec, tasks=tasks)


def test_the_step_and_the_evaluator_weigh_the_loss_by_class_over_labelled_examples():
    spec, arrays = _data(tasks=2, rows=64, task_types=("regression", "binary"),
                         missing={"task_2": range(0, 64, 4)})
    weighted = _binary(arrays, spec, pos_weight=3.0)
    resolved = {"task_2": class_weights.resolve(weighted.task("task_2"), ("0", "1"))}
    loop = _loop(weighted, arrays, class_weights=resolved)
    batch = {k: tf.constant(v) for k, v in arrays.items()}
    raw = loop.network.model({naming.feature_key(f): batch[naming.feature_key(f)]
                              for f in spec.feature_names})
    logits = raw["task_2"].numpy().reshape(-1)
    label = arrays[naming.label_key("task_2")]
    mask = arrays[naming.mask_key("task_2")].astype(np.float64)
    bce = np.log1p(np.exp(-np.abs(logits))) + np.maximum(logits, 0) - logits * label
    by_hand = float((bce * np.where(label == 1, 3.0, 1.0) * mask).sum() / mask.sum())
    counts = tf.constant([64.0, mask.sum()])
    losses = loop.step._task_losses(raw, batch, counts).numpy()
    assert losses[1] == pytest.approx(by_hand, rel=1e-5)
    assert loop.evaluator([batch])["task_2"][eval_metrics.LOSS] == pytest.approx(by_hand,
                                                                                rel=1e-5)
    # Its metrics stay unweighted: the unweighted loop's evaluator gives the same AUC.
    plain = _loop(spec, arrays).evaluator([batch])["task_2"]
    assert loop.evaluator([batch])["task_2"]["auc"] == plain["auc"]


def test_weights_of_one_train_exactly_as_no_weights():
    spec, arrays = _data(tasks=2, rows=128, task_types=("regression", "binary"))
    ones = _binary(arrays, spec, pos_weight=1.0)
    plain = _loop(spec, arrays)
    plain.fit(synthetic_input.dataset(arrays, 32), 4)
    weighted = _loop(ones, arrays, class_weights={
        "task_2": class_weights.resolve(ones.task("task_2"), ("0", "1"))})
    weighted.fit(synthetic_input.dataset(arrays, 32), 4)
    for a, b in zip(_params(plain), _params(weighted)):
        np.testing.assert_array_equal(a, b)


def _imbalanced(rows, seed):
    """One binary task, about 7% positive: y = 1 when x0 + 0.5 x1 + noise > 1.8."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.5 * rng.normal(size=rows) > 1.8).astype(np.int64)
    arrays = {naming.feature_key(f"f{i}"): x[:, i] for i in range(4)}
    arrays[naming.label_key("rare")] = y
    arrays[naming.mask_key("rare")] = np.ones(rows, np.int64)
    return arrays


def test_balanced_raises_the_recall_of_the_minority_class():
    spec = task_spec.parse({"name": "rare", "features": [f"f{i}" for i in range(4)], "tasks": [
        {"name": "rare", "type": "binary", "label": "y", "metrics": ["auc", "recall"]}]})
    train, test = _imbalanced(2048, 0), _imbalanced(4096, 1)
    assert 0.03 < train[naming.label_key("rare")].mean() < 0.12
    recalls = {}
    for weighting in (None, "balanced"):
        trained = _binary(train, spec, pos_weight=weighting)
        counts = class_weights.count_classes([train], trained.tasks, {})
        resolved = {t: w for t in ("rare",) if (w := class_weights.resolve(
            trained.task(t), ("0", "1"), counts[t])) is not None}
        loop = _loop(trained, train, class_weights=resolved, eval_every=0,
                     early_stopping_patience=0)
        result = loop.fit(synthetic_input.dataset(train, 64, shuffle_seed=0), 150)
        recalls[weighting] = loop.evaluator([{k: tf.constant(v) for k, v in test.items()}]
                                            )["rare"]["recall"]
        if weighting:
            n_pos = int(train[naming.label_key("rare")].sum())
            assert result.class_weights["rare"]["pos_weight"] == (2048 - n_pos) / n_pos
        else:
            assert result.class_weights == {}
    assert recalls["balanced"] > recalls[None] + 0.2, recalls


# -- TFMA ----------------------------------------------------------------------------

def test_tfma_configs_carry_no_class_weights():
    spec = task_spec.parse({"name": "w", "features": ["x"], "tasks": [
        {"name": "b", "type": "binary", "label": "y"},
        {"name": "m", "type": "multiclass", "label": "z"}]})
    weighted = dataclasses.replace(spec, tasks=(
        dataclasses.replace(spec.tasks[0], pos_weight="balanced"),
        dataclasses.replace(spec.tasks[1], class_weights=(("a", 3.0),))))
    for task in spec.task_names:
        config = eval_config.for_task(weighted, task)
        assert config == eval_config.for_task(spec, task)
        # The only example weight is the label mask (unlabelled examples do not count).
        assert {m.example_weight_key for m in config.model_specs} == {naming.mask_key(task)}


# -- run_fn on real Transform output --------------------------------------------------

def _run_fn(transformed, tmp_path, spec, config, steps=3):
    """trainer.run_fn in this process, over ``transformed``'s rows 0, 1, 2 six, two and two
    times as both splits (fn_args built by TFX's own get_common_fn_args)."""
    import json

    from tfx.components.trainer import fn_args_utils
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.types import standard_component_specs as keys

    from .conftest import _write_examples
    from tfx_mtl.models import trainer
    from tfx_mtl.models.preprocessing import SPEC_CONFIG_KEY
    from tfx_mtl.models.trainer_config import TRAINER_CONFIG_KEY

    rows, tft_output = transformed
    schema = tft_output.transformed_metadata.schema
    for split in ("train", "validation"):
        _write_examples(tmp_path / "examples" / f"Split-{split}" / "data.gz",
                        [rows[0]] * 6 + [rows[1]] * 2 + [rows[2]] * 2, schema)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "validation"])
    graph = standard_artifacts.TransformGraph()
    graph.uri = tft_output.transform_savedmodel_dir.rsplit("/", 1)[0]
    fn_args = fn_args_utils.get_common_fn_args(
        {keys.EXAMPLES_KEY: [examples], keys.TRANSFORM_GRAPH_KEY: [graph]},
        {keys.TRAIN_ARGS_KEY: json.dumps({"num_steps": steps, "splits": ["train"]}),
         keys.EVAL_ARGS_KEY: json.dumps({"num_steps": 1, "splits": ["validation"]}),
         keys.CUSTOM_CONFIG_KEY: json.dumps({SPEC_CONFIG_KEY: spec.to_dict(),
                                             TRAINER_CONFIG_KEY: config.to_dict()})})
    fn_args.transform_output = fn_args.transform_graph_path
    fn_args.serving_model_dir = str(tmp_path / "serving")
    fn_args.model_run_dir = str(tmp_path / "run")
    trainer.run_fn(fn_args)
    return json.loads((tmp_path / "run" / naming.TRAINING_REPORT_FILE).read_text())


def _weighted_mini(**kind_fields):
    from .conftest import SPEC
    return dataclasses.replace(SPEC, tasks=tuple(
        dataclasses.replace(t, pos_weight="balanced") if t.name == "big"
        else dataclasses.replace(t, **kind_fields) if t.name == "kind" else t
        for t in SPEC.tasks))


@pytest.mark.e2e
def test_run_fn_counts_the_train_split_and_reports_the_weights(transformed, tmp_path):
    from tfx_mtl.models.trainer_config import TrainerConfig

    # Row 0: big 1 (tips 3 > 0.2 * 10), kind a; row 1: big 0, kind b; row 2: neither labelled.
    # Six, two and two of them: big 2 negatives, 6 positives; kind a 6, b 2 (n = 8).
    spec = _weighted_mini(class_weights="balanced")
    config = TrainerConfig.from_dict({"batch_size": 4, "architecture": {
        "name": "mmoe", "hidden_units": [4], "tower_units": [], "experts": 2}})
    report = _run_fn(transformed, tmp_path / "model", spec, config)
    assert report["family"] == "mmoe"
    assert report["class_weights"]["big"] == {
        "source": "balanced", "counts": {"0": 2, "1": 6}, "pos_weight": 2 / 6,
        "weights": {"0": 1.0, "1": 2 / 6}}
    assert report["class_weights"]["kind"]["counts"] == {"a": 6, "b": 2}
    assert report["class_weights"]["kind"]["weights"] == pytest.approx(
        {"a": 8 / (2 * 6), "b": 8 / (2 * 2)})
    # A baseline weighs its task as the multi-task model does, and names its family.
    baseline = _run_fn(transformed, tmp_path / "baseline", spec, config.baseline_for("kind"))
    assert (baseline["family"], baseline["tasks"]) == ("mmoe", ["kind"])
    assert baseline["class_weights"] == {"kind": report["class_weights"]["kind"]}


@pytest.mark.e2e
def test_run_fn_refuses_a_class_the_label_does_not_have(transformed, tmp_path):
    from tfx_mtl.models.trainer_config import TrainerConfig

    spec = _weighted_mini(class_weights=(("c", 2.0),))
    with pytest.raises(InputError, match=r"tasks\.kind\.class_weights\.c: 'c' is not a class "
                                         r"of the label on the train split \(classes: (a, b|b, a)\)"):
        _run_fn(transformed, tmp_path, spec, TrainerConfig(batch_size=4))
