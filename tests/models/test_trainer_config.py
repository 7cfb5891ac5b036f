"""TrainerConfig: every registered method reachable, with its parameters, from the command
line, the spec's trainer section and TrainerConfig itself; how the three combine; the one
rule for a single task."""
import dataclasses

import pytest

from tfx_mtl import synth, task_spec
from tfx_mtl.cli import options as cli_options
from tfx_mtl.models import combination, families, synthetic_input, weighting
from tfx_mtl.models.loop import TrainingLoop
from tfx_mtl.models.trainer_config import (TrainerConfig, TrainerConfigError,
                                           checked_trainer_config)

SYNTH = synth.SynthConfig(rows=64, tasks=2, features=4, task_types=("regression", "binary"))
SPEC = synthetic_input.spec(SYNTH)
KINDS = {"weighting": weighting, "combine": combination}


def _changed(field):
    """A valid value other than ``field``'s default, so that reaching the method shows."""
    value = field.default + 1 if isinstance(field.default, int) else field.default * 1.5 + 0.25
    assert field.metadata["check"](value), field.name
    return value


def _methods():
    for kind, package in KINDS.items():
        for name in package.names():
            params = {f.name: _changed(f)
                      for f in dataclasses.fields(package.REGISTRY.get(name).Params)}
            yield pytest.param(kind, name, params, id=f"{kind}-{name}")


def _from_cli(kind, name, params):
    argv = ["run", f"--{kind}", name]
    for key, value in params.items():
        argv += [f"--{kind}-param", f"{key}={value!r}"]
    from tfx_mtl import cli
    args = cli.build_parser().parse_args(argv)
    return checked_trainer_config(cli_options.trainer_options(args), SPEC)


def _from_spec(kind, name, params):
    spec = task_spec.parse({**_yaml_spec(), "trainer": {kind: name, f"{kind}_params": params}},
                           source="tasks.yaml")
    return checked_trainer_config({}, spec)


def _yaml_spec():
    return {"name": SPEC.name, "features": [f.name for f in SPEC.features],
            "tasks": [{"name": t.name, "type": t.type, "label": t.label} for t in SPEC.tasks]}


def _built_method(config, kind):
    """The method object the Trainer's loop makes from ``config``."""
    network = families.build(SPEC, {}, None, config.architecture)
    loop = TrainingLoop(network, SPEC, {t.name: (0.0, 1.0) for t in SPEC.tasks}, config)
    return loop.weighting if kind == "weighting" else loop.step.combination


@pytest.mark.parametrize("kind,name,params", list(_methods()))
def test_every_registered_method_is_reachable_with_its_parameters(kind, name, params):
    expected = KINDS[kind].REGISTRY.params(name, params)
    direct = TrainerConfig(**{kind: name, f"{kind}_params": params})
    for source, config in (("TrainerConfig", direct), ("command line", _from_cli(kind, name, params)),
                           ("spec", _from_spec(kind, name, params))):
        assert (getattr(config, kind), dict(getattr(config, f"{kind}_params"))) == (
            name, params), source
        method = _built_method(config, kind)
        assert (method.name, method.params) == (name, expected), source


def test_command_line_options_go_over_the_spec_s_trainer_section():
    spec = task_spec.parse({**_yaml_spec(), "trainer": {
        "weighting": "gradnorm", "weighting_params": {"alpha": 2.0},
        "combine": "cagrad", "combine_params": {"c": 0.2},
        "architecture": {"name": "mmoe", "experts": 3}, "learning_rate": 0.01}})
    same = checked_trainer_config({"weighting_params": {"learning_rate": 0.1}}, spec)
    assert dict(same.weighting_params) == {"alpha": 2.0, "learning_rate": 0.1}
    assert (same.combine, dict(same.combine_params), same.learning_rate) == ("cagrad",
                                                                             {"c": 0.2}, 0.01)
    other = checked_trainer_config({"weighting": "dwa", "architecture": {"experts": 5}}, spec)
    assert (other.weighting, dict(other.weighting_params)) == ("dwa", {})  # alpha is GradNorm's
    assert (other.architecture.name, other.architecture.experts) == ("mmoe", 5)


def test_a_bad_trainer_section_is_the_spec_s_error_naming_file_and_field():
    spec = task_spec.parse({**_yaml_spec(), "trainer": {"combine": "cagrad",
                                                        "combine_params": {"c": -1}}},
                           source="/data/tasks.yaml")
    with pytest.raises(task_spec.TaskSpecError) as err:
        checked_trainer_config({}, spec)
    assert err.value.field == "/data/tasks.yaml"
    assert "trainer.combine_params.c: gradient combination 'cagrad': parameter 'c' must be" in (
        err.value.message)
    with pytest.raises(task_spec.TaskSpecError, match="trainer: must be a mapping"):
        task_spec.parse({**_yaml_spec(), "trainer": ["gradnorm"]})


def test_tasks_must_be_the_spec_s_and_one_task_means_uniform_and_sum():
    with pytest.raises(TrainerConfigError, match="trainer.tasks: 'x' is not a task"):
        checked_trainer_config({"tasks": ["task_1", "x"]}, SPEC)
    with pytest.raises(TrainerConfigError, match="trainer.tasks: names a task twice"):
        TrainerConfig(tasks=("task_1", "task_1"))
    config = TrainerConfig(weighting="gradnorm", weighting_params={"alpha": 2.0},
                           combine="pcgrad", tasks=["task_2"])
    assert config.tasks == ("task_2",) and config.trained_spec(SPEC).task_names == ("task_2",)
    single = config.for_task_count(1)
    assert (single.weighting, dict(single.weighting_params), single.combine) == (
        "uniform", {}, "sum")
    assert config.for_task_count(2) is config
    baseline = TrainerConfig(weighting="gradnorm", combine="pcgrad").baseline_for("task_1")
    assert (baseline.tasks, baseline.weighting, baseline.combine) == (("task_1",), "uniform",
                                                                      "sum")


def test_to_dict_round_trips():
    config = TrainerConfig(tasks=("task_1",), combine="cagrad", combine_params={"c": 0.3})
    assert TrainerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("field", ["early_stopping_task", "early_stopping_metric"])
def test_the_removed_selection_fields_are_refused_naming_them(field):
    message = (f"trainer.{field}: is no longer an option: every model, the multi-task one and "
               "each single-task baseline, is now selected on its normalised validation loss")
    with pytest.raises(TrainerConfigError, match=message):
        TrainerConfig.from_dict({field: "fare"})
    with pytest.raises(TrainerConfigError, match=message):  # e.g. a Kubeflow run-time option
        TrainerConfig().with_options({field: "fare"})
    spec = task_spec.parse({**_yaml_spec(), "trainer": {field: "task_1"}}, source="tasks.yaml")
    with pytest.raises(task_spec.TaskSpecError) as err:
        checked_trainer_config({}, spec)
    assert err.value.field == "tasks.yaml" and f"trainer.{field}: is no longer" in str(err.value)


def test_selection_is_on_by_default_and_the_baseline_selects_alike():
    config = TrainerConfig()
    assert config.eval_every > 0 and config.early_stopping_patience > 0
    custom = TrainerConfig(eval_every=50, early_stopping_patience=4,
                           early_stopping_min_delta=0.01)
    baseline = custom.baseline_for("task_1")
    assert (baseline.eval_every, baseline.early_stopping_patience,
            baseline.early_stopping_min_delta) == (50, 4, 0.01)
    # No evaluation: patience has nothing to count.
    with pytest.raises(TrainerConfigError, match="early_stopping_patience: needs "
                                                 "trainer.eval_every > 0"):
        TrainerConfig(eval_every=0)
    TrainerConfig(eval_every=0, early_stopping_patience=0)
    with pytest.raises(TrainerConfigError, match="early_stopping_min_delta: must be a non-neg"):
        TrainerConfig(early_stopping_min_delta=-0.1)


def test_the_command_line_help_states_the_selection_defaults():
    import argparse

    from tfx_mtl import cli
    commands = next(a for a in cli.build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    helps = {o: a.help for a in commands.choices["run"]._actions for o in a.option_strings}
    defaults = TrainerConfig()
    assert helps["--eval-every"].endswith(f"(default: {defaults.eval_every})")
    assert helps["--early-stopping"].endswith(f"(default: {defaults.early_stopping_patience})")


def test_trained_tasks_all_of_weight_zero_are_refused_naming_the_fields():
    tasks = [{"name": t.name, "type": t.type, "label": t.label, "weight": 0} for t in SPEC.tasks]
    spec = task_spec.parse({**_yaml_spec(), "tasks": tasks})
    with pytest.raises(TrainerConfigError) as err:
        checked_trainer_config({}, spec)
    assert err.value.field == "tasks.task_1.weight, tasks.task_2.weight"
    assert "every trained task has weight 0" in err.value.message
    # One task (a baseline) has nothing to weigh against; without evaluation, no criterion.
    checked_trainer_config({"tasks": ["task_1"]}, spec)
    checked_trainer_config({"eval_every": 0, "early_stopping_patience": 0}, spec)


def test_an_epoch_budget_becomes_steps_rounded_up():
    """2.5 epochs over 1,001 examples in batches of 100: 2,502.5 examples, 26 steps."""
    config = TrainerConfig(batch_size=100, train_epochs=2.5)
    assert config.steps_for(1001) == 26 and config.steps_for(1000) == 25
    assert config.steps_for(0) == 1
    assert config.baseline_for("fare").train_epochs == 2.5  # the baselines' budget too


@pytest.mark.parametrize("value", [0, -1, float("inf"), True, "2"])
def test_a_bad_epoch_budget_is_refused_naming_the_field(value):
    with pytest.raises(TrainerConfigError, match="trainer.train_epochs: must be a positive number"):
        TrainerConfig(train_epochs=value)


def test_the_surgery_level_comes_from_every_source_and_reaches_the_step():
    from tfx_mtl import cli
    args = cli.build_parser().parse_args(["run", "--combine", "pcgrad",
                                          "--surgery-level", "representation"])
    options = cli_options.trainer_options(args)
    assert options["surgery_level"] == "representation"
    spec = task_spec.parse({**_yaml_spec(), "trainer": {"combine": "pcgrad",
                                                        "surgery_level": "representation"}})
    for config in (checked_trainer_config(options, SPEC), checked_trainer_config({}, spec)):
        assert config.surgery_level == "representation"
        network = families.build(SPEC, {}, None, config.architecture)
        loop = TrainingLoop(network, SPEC, {t.name: (0.0, 1.0) for t in SPEC.tasks}, config)
        assert loop.step.level == combination.REPRESENTATION
    assert TrainerConfig().surgery_level == combination.PARAMETERS  # the default
    # mgda_ub forces its level; sum forms no per-task gradients at either level.
    network = families.build(SPEC, {}, None, TrainerConfig().architecture)
    loop = TrainingLoop(network, SPEC, {t.name: (0.0, 1.0) for t in SPEC.tasks},
                        TrainerConfig(combine="mgda_ub"))
    assert loop.step.level == combination.REPRESENTATION
    assert TrainerConfig(combine="sum", surgery_level="representation").combine == "sum"


def test_a_bad_surgery_level_is_refused_naming_the_field_and_the_method(monkeypatch):
    with pytest.raises(TrainerConfigError, match="trainer.surgery_level: must be one of "
                                                 "parameters, representation, got 'layer'"):
        TrainerConfig(surgery_level="layer")

    class ParametersOnly(combination.GradientCombination):
        name = "parameters_only"
        representation_level = False

        def combine(self, G, seed=None):
            return G[0]

    monkeypatch.setitem(combination.REGISTRY._methods, ParametersOnly.name, ParametersOnly)
    assert TrainerConfig(combine="parameters_only").surgery_level == "parameters"
    with pytest.raises(TrainerConfigError, match="trainer.surgery_level: gradient combination "
                                                 "'parameters_only' cannot run at "
                                                 "representation level"):
        TrainerConfig(combine="parameters_only", surgery_level="representation")
    # An unknown method is reported once, as the method's problem.
    with pytest.raises(TrainerConfigError) as err:
        TrainerConfig(combine="nope", surgery_level="representation")
    assert [field for field, _ in err.value.problems] == ["trainer.combine"]


def test_a_baseline_trains_at_the_default_surgery_level():
    # One task: the plain sum, the same at either level; so the baseline's config (and
    # its checkpoint key and cache) does not change with the multi-task model's level.
    config = TrainerConfig(combine="pcgrad", surgery_level="representation")
    assert config.baseline_for("task_1") == TrainerConfig(combine="pcgrad").baseline_for("task_1")
    assert TrainerConfig.from_dict(config.to_dict()) == config
