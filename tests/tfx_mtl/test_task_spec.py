import re
import textwrap

import pytest

from tfx_mtl import data, naming, task_spec

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
    ({"name": "tip__rate", "type": "binary", "label": "tips > 1"}, "tasks.tip__rate.name", "single underscores"),
    ({"name": "tip_", "type": "binary", "label": "tips > 1"}, "tasks.tip_.name", "not a valid task name"),
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


def test_a_yaml_tag_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n"
                       "features: [a]\ntasks: [{name: b, type: regression, label: c}]\n")
    with pytest.raises(task_spec.TaskSpecError, match="hostile.yaml") as err:
        task_spec.load(hostile)
    assert "not valid YAML" in dict(err.value.problems)["<file>"]
    assert not marker.exists()


def test_bundled_spec_is_valid_for_the_bundled_data():
    spec = task_spec.load(data.bundled_spec(), columns=data.columns(data.bundled_taxi_csv()))
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


def test_max_regression_is_absolute_or_a_percentage_of_the_baseline():
    raw = _spec()
    raw["tasks"][0]["metrics"] = [{"name": "auc", "lower_bound": 0.6, "max_regression": 0.005}]
    raw["tasks"][1]["metrics"] = [{"name": "mse", "max_regression": "1.5%"}, "mae"]
    spec = task_spec.parse(raw, columns=TAXI_COLUMNS)
    auc = spec.task("big_tipper").metrics[0]
    assert auc.max_regression == task_spec.MaxRegression(0.005, relative=False)
    mse, mae = spec.task("fare").metrics
    assert mse.max_regression == task_spec.MaxRegression(0.015, relative=True)
    assert mae.max_regression is None
    assert auc.max_regression.describe(True) == "may fall by at most 0.005 vs the baseline"
    assert mse.max_regression.describe(False) == "may rise by at most 1.5% vs the baseline"
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("value", [-0.1, "1", "-1%", "one percent", True, [1]])
def test_bad_max_regression_names_the_field(value):
    raw = _spec()
    raw["tasks"][0]["metrics"] = [{"name": "auc", "max_regression": value}]
    problems, _ = _problems(raw)
    assert "non-negative number" in problems["tasks.big_tipper.metrics[0].max_regression"]


def test_evaluation_section_defaults_and_round_trip():
    spec = task_spec.parse(_spec())
    assert spec.evaluation == task_spec.Evaluation("all", "train", ())
    raw = _spec(evaluation={"policy": "primary", "baselines": "reuse",
                            "slices": ["payment_type", ["payment_type", "company"]]})
    spec = task_spec.parse(raw, columns=TAXI_COLUMNS)
    assert spec.evaluation.policy == "primary" and spec.evaluation.baselines == "reuse"
    assert spec.evaluation.slices == (("payment_type",), ("payment_type", "company"))
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec
    # A slice column need not be a model feature (company is not one here).
    assert "company" not in spec.feature_names


def test_the_policy_decides_which_tasks_must_be_blessed():
    spec = task_spec.parse(_spec())  # big_tipper primary, fare auxiliary
    every = task_spec.Evaluation(policy="all")
    primary = task_spec.Evaluation(policy="primary")
    assert [every.must_bless(t) for t in spec.tasks] == [True, True]
    assert [primary.must_bless(t) for t in spec.tasks] == [True, False]


def test_bad_evaluation_section_names_every_field():
    raw = _spec(evaluation={"policy": "most", "baselines": "latest", "slices": [
        "payment_type", "speed", ["company", "company"], 3, "payment_type"], "gate": 1})
    problems, _ = _problems(raw)
    assert "got 'most'" in problems["evaluation.policy"]
    assert "got 'latest'" in problems["evaluation.baselines"]
    assert "unknown column 'speed'" in problems["evaluation.slices[1]"]
    assert "repeats a column" in problems["evaluation.slices[2]"]
    assert "column name" in problems["evaluation.slices[3]"]
    assert "duplicate slice" in problems["evaluation.slices[4]"]
    assert "unknown field" in problems["evaluation.gate"]


# -- nothing in a spec can climb out of the run's folders -------------------------------

@pytest.mark.parametrize("name", [
    "../escaped", "a/../../b", "/tmp/x", "runs/x", "..", "Chicago", "chicago-taxi", "taxi__v2",
    "t" * (naming.MAX_SPEC_NAME_LENGTH + 1), "", 3, None])
def test_spec_name_must_be_a_short_safe_identifier(name):
    problems, _ = _problems(_spec(name=name))
    assert list(problems) == ["name"], problems
    assert "not a valid spec name" in problems["name"]


def test_longest_spec_name_makes_a_pipeline_name_tfx_accepts():
    name = "t" * naming.MAX_SPEC_NAME_LENGTH
    assert task_spec.parse(_spec(name=name)).name == name
    assert len(naming.pipeline_name(name)) == naming.MAX_PIPELINE_NAME_LENGTH


def test_task_names_that_could_become_paths_are_refused():
    problems, _ = _problems(_spec(tasks=[{"name": "../x", "type": "regression",
                                          "label": "fare"}]), columns=None)
    assert "not a valid" in problems["tasks.../x.name"], problems


def test_columns_are_named_as_the_header_writes_them_and_derive_safe_keys():
    """A feature or slice column may be any header text; what is derived from it (the
    Transform output, the vocabulary file) comes from its safe key, one path segment."""
    spec = task_spec.parse(_spec(
        features=[{"name": "../x", "kind": "categorical"}, "hours-per-week",
                  {"name": "marital status", "kind": "categorical"}],
        evaluation={"slices": [["marital status", "a/b"]]}))
    assert spec.feature_names == ("../x", "hours-per-week", "marital status")
    assert spec.column_keys == {"../x": "x", "hours-per-week": "hours_per_week",
                                "marital status": "marital_status"}
    assert spec.feature_keys == ("x_xf", "hours_per_week_xf", "marital_status_xf")
    assert spec.evaluation.slices == (("marital status", "a/b"),)
    # It survives the trip through a component's custom_config.
    assert task_spec.TaskSpec.from_dict(spec.to_dict()).feature_keys == spec.feature_keys


@pytest.mark.parametrize("name", ["", 3, None])
def test_a_feature_must_name_a_column(name):
    problems, _ = _problems(_spec(features=[{"name": name, "kind": "numeric"}]), columns=None)
    assert "not a column name" in problems["features[0].name"], problems


def test_a_hyphenated_label_column_unquoted_is_unknown_with_a_hint_to_quote_it():
    columns = [*TAXI_COLUMNS, "marital-status"]
    tasks = [{"name": "single", "type": "binary", "label": "marital-status == 'Never-married'"}]
    _, text = _problems(_spec(tasks=tasks), columns=columns)
    assert "tasks.single.label: unknown column 'marital'" in text
    assert "quote a column whose name is not a plain name in backticks" in text
    tasks[0]["label"] = "`marital-status` == 'Never-married'"
    spec = task_spec.parse(_spec(tasks=tasks), columns=columns)
    assert spec.task("single").label_columns == ("marital-status",)


def test_a_quoted_label_column_not_in_the_data_is_named():
    tasks = [{"name": "single", "type": "binary", "label": "`marital-statu` == 'x'"}]
    problems, _ = _problems(_spec(tasks=tasks), columns=[*TAXI_COLUMNS, "marital-status"])
    assert "unknown column 'marital-statu'" in problems["tasks.single.label"], problems


def test_missing_values_default_to_none_and_parse_as_cell_texts():
    assert task_spec.parse(_spec()).data.missing_values == ()
    spec = task_spec.parse(_spec(data={"missing_values": ["NA", "?", -1, "NA"]}))
    assert spec.data.missing_values == ("NA", "?", "-1")
    assert spec.data.splits == task_spec.DataConfig().splits
    assert task_spec.TaskSpec.from_dict(spec.to_dict()).data == spec.data


@pytest.mark.parametrize("raw, field", [
    ("NA", "data.missing_values"), (["NA", ""], "data.missing_values[1]"),
    ([True], "data.missing_values[0]"), ([None], "data.missing_values[0]")])
def test_bad_missing_values_are_refused(raw, field):
    problems, _ = _problems(_spec(data={"missing_values": raw}))
    assert list(problems) == [field], problems


def test_every_name_derived_from_a_valid_spec_is_one_path_segment():
    """Pipeline, node ids (TFX's output folders), vocabulary files: one plain segment each."""
    spec = task_spec.load(data.bundled_spec())
    derived = [naming.pipeline_name(spec.name)]
    for task in spec.task_names:
        derived += [naming.baseline_node(task), naming.latest_baseline_node(task),
                    naming.evaluator_node(task), naming.label_vocab_name(task)]
    derived += [naming.feature_vocab_name(k) for k in spec.column_keys.values()]
    for name in derived:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name), name


def test_schema_path_is_relative_to_the_spec_and_may_name_a_shared_file(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "schema.pbtxt").write_text("")
    folder = tmp_path / "dataset"
    folder.mkdir()
    path = folder / "tasks.yaml"
    path.write_text("schema: ../shared/schema.pbtxt\nfeatures: [trip_miles]\n"
                    "tasks: [{name: fare, type: regression, label: fare}]\n")
    assert task_spec.load(path).schema == str(shared / "schema.pbtxt")  # normalized
    path.write_text("schema: ../shared\nfeatures: [trip_miles]\n"
                    "tasks: [{name: fare, type: regression, label: fare}]\n")
    with pytest.raises(task_spec.TaskSpecError) as err:
        task_spec.load(path)
    assert f"file not found: {shared}" in dict(err.value.problems)["schema"]


# -- labels that could blow up name their task -------------------------------------------

@pytest.mark.parametrize("label, needle", [
    (" + ".join(["fare"] * 20000), "characters long"),
    ("'a' * 100000000000", "a string may only be compared"),
    ("1", "reads no column"),
    ("2 > 1", "reads no column"),
])
def test_label_that_could_blow_up_or_is_constant_names_its_task(label, needle):
    raw = _spec()
    raw["tasks"].append({"name": "x", "type": "binary" if ">" in label else "regression",
                         "label": label})
    problems, _ = _problems(raw)
    assert list(problems) == ["tasks.x.label"], problems
    message = problems["tasks.x.label"]
    assert needle in message and not message.startswith("label:"), message


# -- only the real problems --------------------------------------------------------------

@pytest.mark.parametrize("bad, field", [
    ({"type": "ranking"}, "tasks.big_tipper.type"),
    ({"loss": "hinge"}, "tasks.big_tipper.loss"),
    ({"role": "primery"}, "tasks.big_tipper.role"),
])
def test_a_broken_primary_task_is_not_also_reported_as_missing(bad, field):
    raw = _spec()  # big_tipper is the only primary task; fare is auxiliary
    raw["tasks"][0].update(bad)
    problems, _ = _problems(raw)
    assert list(problems) == [field], problems


def test_all_auxiliary_is_still_reported_beside_another_problem():
    raw = _spec()
    raw["tasks"][0].update(role="auxiliary", loss="hinge")
    problems, _ = _problems(raw)
    assert set(problems) == {"tasks.big_tipper.loss", "tasks"}
    assert "primary" in problems["tasks"]


@pytest.mark.parametrize("value, expected", [(None, 0.01), (0, 0.0), (0.2, 0.2), ("5%", 0.05)])
def test_the_non_finite_label_limit_is_a_fraction_or_a_percentage(value, expected):
    evaluation = {} if value is None else {"max_non_finite_labels": value}
    spec = task_spec.parse(_spec(evaluation=evaluation))
    assert spec.evaluation.max_non_finite_labels == expected
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("value", [1.5, -0.1, "lots", True])
def test_a_bad_non_finite_label_limit_is_refused_by_field(value):
    problems, _ = _problems(_spec(evaluation={"max_non_finite_labels": value}))
    assert f"got {value!r}" in problems["evaluation.max_non_finite_labels"]


# -- every task is judged against its baseline (issue 15) ---------------------------------

def test_a_task_with_no_change_bound_gets_the_default_on_its_first_metric():
    raw = _spec()
    raw["tasks"][1]["metrics"] = ["mse", "mae"]
    spec = task_spec.parse(raw)
    auc = spec.task("big_tipper").metrics[0]  # a value bound only: still compared
    assert auc.max_regression == task_spec.MaxRegression(0.01, relative=True, default=True)
    mse, mae = spec.task("fare").metrics
    assert mse.max_regression == task_spec.MaxRegression(0.01, relative=True, default=True)
    assert mae.max_regression is None
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec


def test_the_default_bound_is_set_in_the_spec_and_an_explicit_bound_replaces_it():
    raw = _spec(evaluation={"default_max_regression": 0.02})
    raw["tasks"][1]["metrics"] = ["mse", {"name": "mae", "max_regression": "3%"}]
    spec = task_spec.parse(raw)
    assert spec.task("big_tipper").metrics[0].max_regression == task_spec.MaxRegression(
        0.02, relative=False, default=True)
    mse, mae = spec.task("fare").metrics
    assert mse.max_regression is None  # the task has a bound of its own, on mae
    assert mae.max_regression == task_spec.MaxRegression(0.03, relative=True)


def test_max_regression_none_needs_a_reason_and_relaxes_the_default():
    raw = _spec()
    raw["tasks"][1]["metrics"] = [{"name": "mse", "max_regression": "none",
                                   "reason": " informational auxiliary task "}]
    spec = task_spec.parse(raw)
    (mse,) = spec.task("fare").metrics
    assert mse.max_regression is None
    assert mse.unbounded_reason == "informational auxiliary task"
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec

    raw["tasks"][1]["metrics"] = [{"name": "mse", "max_regression": "none"},
                                  {"name": "mae", "max_regression": "1%", "reason": "why"}]
    problems, _ = _problems(raw)
    assert "needs a reason" in problems["tasks.fare.metrics[0].reason"]
    assert "only goes with max_regression: none" in problems["tasks.fare.metrics[1].reason"]


def test_how_verdicts_are_read_defaults_and_round_trip():
    evaluation = task_spec.parse(_spec()).evaluation
    assert (evaluation.reading, evaluation.confidence, evaluation.bootstrap_samples,
            evaluation.seeds) == ("significant", 0.95, 2000, 1)
    raw = _spec(evaluation={"reading": "strict", "confidence": 0.9, "bootstrap_samples": 500,
                            "seeds": 3, "default_max_regression": "2%"})
    spec = task_spec.parse(raw)
    assert (spec.evaluation.reading, spec.evaluation.confidence,
            spec.evaluation.bootstrap_samples, spec.evaluation.seeds) == ("strict", 0.9, 500, 3)
    assert spec.evaluation.default_max_regression == task_spec.MaxRegression(0.02, True)
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec
    # How runs are judged is not what Transform and the Trainers key on.
    assert spec.training_view() == task_spec.parse(_spec()).training_view()


def test_bad_verdict_settings_name_their_fields():
    raw = _spec(evaluation={"reading": "lenient", "confidence": 1.0, "bootstrap_samples": 10,
                            "seeds": 0, "default_max_regression": "-1%"})
    problems, _ = _problems(raw)
    assert "got 'lenient'" in problems["evaluation.reading"]
    assert "got 1.0" in problems["evaluation.confidence"]
    assert "at least 100" in problems["evaluation.bootstrap_samples"]
    assert "positive integer" in problems["evaluation.seeds"]
    assert "non-negative number" in problems["evaluation.default_max_regression"]


def test_data_splits_default_to_8_1_1_hash_buckets_and_can_be_set():
    assert task_spec.parse(_spec()).data.splits == (("train", 8), ("validation", 1), ("test", 1))
    spec = task_spec.parse(_spec(data={"splits": {"test": 2, "train": 6, "validation": 2}}))
    assert spec.data.splits == (("train", 6), ("validation", 2), ("test", 2))
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec
    assert spec.training_view() == task_spec.parse(_spec()).training_view()


@pytest.mark.parametrize("data, field, needle", [
    ({"splits": {"train": 4, "eval": 1}}, "data.splits", "exactly these splits"),
    ({"splits": {"train": 8, "validation": 0, "test": 1}}, "data.splits.validation",
     "positive integer"),
    ({"split": {}}, "data.split", "unknown field"),
    ([1], "data", "must be a mapping"),
])
def test_bad_data_section_names_the_field(data, field, needle):
    problems, _ = _problems(_spec(data=data))
    assert needle in problems[field]


def test_seeded_node_ids_keep_seed_zero_plain_and_parse_back():
    assert naming.trainer_node() == naming.trainer_node(0) == naming.TRAINER
    assert naming.trainer_node(2) == "Trainer__seed2"
    assert naming.baseline_node("fare_seed1") == "baseline_fare_seed1"
    assert naming.baseline_node("fare_seed1", 1) == "baseline_fare_seed1__seed1"
    for task in ("fare", "fare_seed1"):
        for i in (0, 1, 12):
            node = naming.baseline_node(task, i)
            assert naming.baseline_task(node) == task and naming.seed_index(node) == i
    assert naming.baseline_task(naming.trainer_node(1)) is None
    assert naming.seed_index(naming.TRAINER) == 0
    with pytest.raises(ValueError):
        naming.trainer_node(-1)


# --- multiclass metrics and their parameters -----------------------------------------

def _multiclass(metrics):
    return _spec(tasks=[{"name": "kind", "type": "multiclass", "label": "payment_type",
                         "metrics": metrics}],
                 features=[{"name": "trip_miles", "kind": "numeric"}])


def test_multiclass_metrics_take_k_and_a_class_and_are_keyed_by_them():
    spec = task_spec.parse(_multiclass([
        "accuracy", "log_loss", "auc_micro", "auc_macro", "top_k_accuracy",
        {"name": "top_k_accuracy", "k": 3, "lower_bound": 0.9},
        {"name": "recall", "class": "Cash", "lower_bound": 0.8},
        {"name": "precision", "class": 3, "max_regression": "2%"}]), columns=TAXI_COLUMNS)
    metrics = spec.task("kind").metrics
    assert [m.key for m in metrics] == [
        "accuracy", "log_loss", "auc_micro", "auc_macro",
        f"top_k_accuracy@{task_spec.DEFAULT_TOP_K}", "top_k_accuracy@3", "recall[Cash]",
        "precision[3]"]  # an integer class as Transform's vocabulary writes it
    assert metrics[6].label_class == "Cash" and metrics[6].threshold.lower_bound == 0.8
    assert metrics[5].tfma_name("multiclass") == "top_k_accuracy@3"
    assert metrics[1].tfma_name("multiclass") == "log_loss"
    assert task_spec.TaskSpec.from_dict(spec.to_dict()) == spec
    # the Trainer's view keeps what the loop computes (k, class), not the bounds
    trained = spec.training_view().task("kind").metrics
    assert [m.key for m in trained] == [m.key for m in metrics]
    assert all(m.threshold is None and m.max_regression is None for m in trained)
    assert task_spec.parse_metric_key("recall[Cash]") == ("recall", None, "Cash")
    assert task_spec.parse_metric_key("top_k_accuracy@3") == ("top_k_accuracy", 3, None)


def test_a_multiclass_precision_needs_a_class_and_params_go_where_they_belong():
    problems, _ = _problems(_multiclass([
        "precision", {"name": "top_k_accuracy", "k": 0}, {"name": "accuracy", "k": 2},
        {"name": "recall", "class": "a"}, {"name": "recall", "class": "a"},
        {"name": "recall", "class": True}]))
    assert "name one class of the label" in problems["tasks.kind.metrics[0].class"]
    assert "positive integer" in problems["tasks.kind.metrics[1].k"]
    assert "takes no 'k'" in problems["tasks.kind.metrics[2].k"]
    assert "duplicate metric 'recall[a]'" in problems["tasks.kind.metrics[4].name"]
    assert "got True" in problems["tasks.kind.metrics[5].class"]
    raw = _spec()
    raw["tasks"][0]["metrics"] = [{"name": "recall", "class": "yes"}]
    problems, _ = _problems(raw)
    assert "takes no 'class'" in problems["tasks.big_tipper.metrics[0].class"]
