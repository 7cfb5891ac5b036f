"""The spec's class weights: binary pos_weight, multiclass class_weights, or balanced."""
import json

import pytest

from tfx_mtl import task_spec


def _spec(*tasks):
    return {"name": "w", "features": ["x"], "tasks": list(tasks)}


def _problems(*tasks):
    with pytest.raises(task_spec.TaskSpecError) as e:
        task_spec.parse(_spec(*tasks))
    return dict(e.value.problems)


def test_weights_parse_and_survive_the_trip_through_json():
    spec = task_spec.parse(_spec(
        {"name": "b", "type": "binary", "label": "y", "pos_weight": 3},
        {"name": "c", "type": "binary", "label": "y2", "pos_weight": "balanced"},
        {"name": "m", "type": "multiclass", "label": "z", "class_weights": {"Adelie": 2, 3: 0.5}},
        {"name": "n", "type": "multiclass", "label": "z2", "class_weights": "balanced"},
        {"name": "r", "type": "regression", "label": "v"}))
    b, c, m, n, r = spec.tasks
    assert (b.pos_weight, c.pos_weight, r.pos_weight, r.class_weights) == (3.0, "balanced",
                                                                          None, None)
    assert m.class_weights == (("Adelie", 2.0), ("3", 0.5)) and n.class_weights == "balanced"
    assert task_spec.TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.training_view().task("m").class_weights == m.class_weights  # the Trainer's


def test_bad_weights_are_refused_naming_the_field():
    problems = _problems(
        {"name": "b", "type": "binary", "label": "y", "pos_weight": 0,
         "class_weights": {"a": 1}},
        {"name": "c", "type": "binary", "label": "y", "pos_weight": float("inf")},
        {"name": "d", "type": "binary", "label": "y", "pos_weight": "Balanced"},
        {"name": "m", "type": "multiclass", "label": "z", "pos_weight": 2,
         "class_weights": {"A": float("nan"), "B": -1, "C": True, "D": "2"}},
        {"name": "n", "type": "multiclass", "label": "z", "class_weights": ["A"]},
        {"name": "o", "type": "multiclass", "label": "z", "class_weights": {1.5: 2.0}},
        {"name": "r", "type": "regression", "label": "v", "pos_weight": "balanced"})
    assert "only a multiclass task" in problems["tasks.b.class_weights"]
    assert "(use pos_weight)" in problems["tasks.b.class_weights"]
    for field in ("tasks.b.pos_weight", "tasks.c.pos_weight", "tasks.d.pos_weight"):
        assert "positive finite number" in problems[field], field
    assert "(use class_weights)" in problems["tasks.m.pos_weight"]
    for cls in "ABCD":
        assert "positive finite number" in problems[f"tasks.m.class_weights.{cls}"]
    assert "must map classes" in problems["tasks.n.class_weights"]
    assert "a value of the label column" in problems["tasks.o.class_weights.1.5"]
    assert "only a binary task" in problems["tasks.r.pos_weight"]
