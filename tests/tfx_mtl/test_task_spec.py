import textwrap

import pytest

from tfx_mtl import data, task_spec

TAXI_COLUMNS = ["fare", "tips", "trip_miles", "trip_seconds", "payment_type", "company"]


def _spec(**overrides):
    raw = {
        "name": "t",
        "features": [{"name": "trip_miles", "kind": "numeric"},
                     {"name": "payment_type", "kind": "categorical"}],
        "tasks": [
            {"name": "big_tipper", "type": "binary", "label": "tips > 0.2 * fare",
             "metrics": [{"name": "auc", "lower_bound": 0.6}]},
            {"name": "fare", "type": "regression", "label": "fare", "role": "auxiliary"},
        ],
    }
    raw.update(overrides)
    return raw


def _problems(raw, columns=TAXI_COLUMNS):
    with pytest.raises(task_spec.TaskSpecError) as err:
        task_spec.parse(raw, source="spec.yaml", columns=columns)
    return dict(err.value.problems), str(err.value)


def test_valid_spec_and_defaults():
    spec = task_spec.parse(_spec(), columns=TAXI_COLUMNS)
    assert spec.task_names == ("big_tipper", "fare")
    assert spec.label_columns == ("tips", "fare")
    fare = spec.task("fare")
    assert (fare.loss, fare.role, fare.weight, fare.standardize) == ("mse", "auxiliary", 1.0, True)
    assert [m.name for m in fare.metrics] == ["mse"]  # the type's first metric by default
    assert spec.task("big_tipper").metrics[0].threshold.lower_bound == 0.6


def test_round_trips_through_a_json_able_dict():
    spec = task_spec.parse(_spec())
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec


def test_unknown_column_names_the_field_and_lists_the_columns():
    raw = _spec()
    raw["tasks"][1]["label"] = "fair"
    problems, message = _problems(raw)
    assert "unknown column 'fair'" in problems["tasks.fare.label"]
    assert "spec.yaml" in message and "trip_miles" in problems["tasks.fare.label"]


def test_unknown_feature_column():
    raw = _spec()
    raw["features"].append({"name": "speed", "kind": "numeric"})
    problems, _ = _problems(raw)
    assert "unknown column 'speed'" in problems["features[2].name"]


def test_unknown_task_type():
    raw = _spec()
    raw["tasks"][0]["type"] = "ranking"
    problems, _ = _problems(raw)
    assert "unknown task type 'ranking'" in problems["tasks.big_tipper.type"]


def test_duplicate_task():
    raw = _spec()
    raw["tasks"].append(dict(raw["tasks"][1]))
    problems, _ = _problems(raw)
    assert "duplicate task 'fare'" in problems["tasks.fare.name"]


def test_label_column_listed_as_a_feature_is_refused():
    raw = _spec()
    raw["features"].append({"name": "tips", "kind": "numeric"})
    problems, _ = _problems(raw)
    assert "also listed as a feature" in problems["tasks.big_tipper.label"]


def test_every_problem_is_reported_at_once():
    raw = _spec()
    raw["tasks"][0]["loss"] = "hinge"
    raw["tasks"][1]["metrics"] = ["auc"]  # a binary metric on a regression task
    raw["features"][0]["kind"] = "text"
    problems, _ = _problems(raw)
    assert set(problems) >= {"tasks.big_tipper.loss", "tasks.fare.metrics[0].name",
                             "features[0].kind"}


@pytest.mark.parametrize("task, field, needle", [
    ({"name": "Bad-Name", "type": "binary", "label": "tips > 1"}, "tasks.Bad-Name.name", "not a valid task name"),
    ({"name": "serving_default", "type": "binary", "label": "tips > 1"}, "tasks.serving_default.name", "reserved"),
    ({"name": "evaluation", "type": "binary", "label": "tips > 1"}, "tasks.evaluation.name", "reserved"),
    ({"name": "x", "type": "regression", "label": "tips > 1"}, "tasks.x.label", "regression label"),
    ({"name": "x", "type": "binary", "label": "tips * 2"}, "tasks.x.label", "binary label"),
    ({"name": "x", "type": "multiclass", "label": "tips + 1"}, "tasks.x.label", "single column"),
    ({"name": "x", "type": "binary", "label": "tips >"}, "tasks.x.label", "cannot parse"),
    ({"name": "x", "type": "binary"}, "tasks.x.label", "required"),
    ({"name": "x", "type": "binary", "label": "tips > 1", "role": "helper"}, "tasks.x.role", "primary"),
    ({"name": "x", "type": "binary", "label": "tips > 1", "weight": -1}, "tasks.x.weight", "non-negative"),
    ({"name": "x", "type": "binary", "label": "tips > 1", "colour": 1}, "tasks.x.colour", "unknown field"),
    ({"name": "x", "type": "binary", "label": "tips > 1",
      "metrics": [{"name": "auc", "lower_bound": 0.9, "upper_bound": 0.1}]}, "tasks.x.metrics[0]", "above"),
])
def test_task_field_errors(task, field, needle):
    raw = _spec()
    raw["tasks"].append(task)
    problems, _ = _problems(raw)
    assert needle in problems[field], problems


def test_needs_a_primary_task():
    raw = _spec()
    for task in raw["tasks"]:
        task["role"] = "auxiliary"
    problems, _ = _problems(raw)
    assert "primary" in problems["tasks"]


def test_load_reads_yaml_and_resolves_the_schema_path(tmp_path):
    (tmp_path / "schema.pbtxt").write_text("")
    path = tmp_path / "tasks.yaml"
    path.write_text(textwrap.dedent("""\
        name: demo
        schema: schema.pbtxt
        features: [trip_miles]
        tasks:
          - {name: fare, type: regression, label: fare}
        """))
    spec = task_spec.load(path, columns=TAXI_COLUMNS)
    assert spec.schema == str(tmp_path / "schema.pbtxt")
    assert spec.features[0].kind == "numeric"


def test_load_names_the_file_on_bad_yaml_and_missing_schema(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed")
    with pytest.raises(task_spec.TaskSpecError, match="bad.yaml"):
        task_spec.load(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text("schema: nope.pbtxt\nfeatures: [a]\ntasks: [{name: b, type: regression, label: c}]\n")
    with pytest.raises(task_spec.TaskSpecError) as err:
        task_spec.load(missing)
    assert "file not found" in dict(err.value.problems)["schema"]


def test_bundled_spec_is_valid_for_the_bundled_data():
    spec = task_spec.load(data.bundled_spec(), columns=data.csv_columns(data.bundled_taxi_csv()))
    kinds = {t.type for t in spec.tasks}
    assert len(spec.tasks) >= 3 and {"binary", "regression"} <= kinds
    assert not set(spec.label_columns) & set(spec.feature_names)


def test_restricted_to_keeps_the_named_tasks_in_spec_order():
    raw = _spec()
    raw["tasks"].append({"name": "far", "type": "binary", "label": "fare > 50"})
    spec = task_spec.parse(raw)
    kept = spec.restricted_to(["far", "big_tipper"])
    assert kept.task_names == ("big_tipper", "far")  # spec order, not argument order
    assert (kept.features, kept.name, kept.source) == (spec.features, spec.name, spec.source)
    only_aux = spec.restricted_to("fare")  # a lone auxiliary task is fine
    assert only_aux.tasks == (spec.task("fare"),)
    with pytest.raises(ValueError, match=r"names: 'fair' is not a task .*big_tipper, fare, far"):
        spec.restricted_to(["fair"])
    with pytest.raises(ValueError, match="names: give at least one task"):
        spec.restricted_to([])
