"""MtlTrainer's run options: folded into train_args / the Trainer config, checked by name."""
import json

import pytest

from tfx_mtl.components import mtl_trainer
from tfx_mtl.components.mtl_trainer import RunOptionError, fold_run_options
from tfx_mtl.models.trainer_config import TrainerConfig


def _props(config: TrainerConfig, steps=1000, **run_options):
    return {"custom_config": json.dumps({"task_spec": {"name": "s"}, "code_version": "abc",
                                         "trainer": config.to_dict()}),
            "train_args": json.dumps({"num_steps": steps}), "run_fn": "m.run_fn",
            **run_options}


def _config(props) -> TrainerConfig:
    return TrainerConfig.from_dict(json.loads(props["custom_config"])["trainer"])


COMPILED = TrainerConfig.from_dict({"architecture": {"name": "shared_bottom", "experts": 3},
                                    "weighting": "gradnorm", "weighting_params": {"alpha": 0.5},
                                    "combine": "sum", "batch_size": 64})


def test_run_options_override_the_compiled_config():
    folded = fold_run_options(_props(COMPILED, train_steps=30, architecture="mmoe",
                                     weighting="uncertainty", combine="pcgrad"))
    config = _config(folded)
    assert config.architecture.name == "mmoe" and config.architecture.experts == 3
    assert (config.weighting, dict(config.weighting_params), config.combine) == (
        "uncertainty", {}, "pcgrad")  # GradNorm's alpha means nothing to uncertainty
    assert config.batch_size == 64 and config.seed == COMPILED.seed
    assert json.loads(folded["train_args"]) == {"num_steps": 30}
    # Everything else passes through untouched.
    assert folded["run_fn"] == "m.run_fn"
    assert json.loads(folded["custom_config"])["code_version"] == "abc"


def test_the_same_weighting_keeps_its_parameters():
    config = _config(fold_run_options(_props(COMPILED, weighting="gradnorm")))
    assert dict(config.weighting_params) == {"alpha": 0.5}


def test_values_equal_to_the_compiled_ones_change_nothing():
    props = _props(COMPILED, train_steps=1000, architecture="shared_bottom",
                   weighting="gradnorm", combine="sum")
    assert _config(fold_run_options(props)) == COMPILED
    assert json.loads(fold_run_options(props)["train_args"]) == {"num_steps": 1000}


def test_a_baseline_follows_the_architecture_and_keeps_its_one_task():
    baseline = COMPILED.baseline_for("fare")
    config = _config(fold_run_options(_props(baseline, architecture="ple", train_steps=7)))
    assert (config.architecture.name, config.tasks) == ("ple", ("fare",))
    assert (config.weighting, config.combine) == ("uniform", "sum")
    assert dict(config.weighting_params) == {}


@pytest.mark.parametrize("options, message", [
    ({"architecture": "single_task"}, "unknown architecture 'single_task'"),
    ({"architecture": "transformer"}, "unknown architecture 'transformer'"),
    ({"weighting": "nope"}, "trainer.weighting: unknown weighting 'nope' (one of: uniform"),
    ({"combine": "average"}, "trainer.combine: unknown gradient combination 'average'"),
    ({"train_steps": 0}, "train_steps: must be a positive integer, got 0"),
])
def test_bad_values_name_the_parameter(options, message):
    with pytest.raises(RunOptionError, match=message.replace("(", r"\(")):
        fold_run_options(_props(COMPILED, **options))


def test_unknown_run_options_are_refused_when_the_component_is_built():
    with pytest.raises(ValueError, match="run_options: unknown learning_rate"):
        mtl_trainer.MtlTrainer(examples=None, transform_graph=None, run_fn="m.f",
                               train_args=None, eval_args=None, custom_config={},
                               run_options={"learning_rate": 0.1})
