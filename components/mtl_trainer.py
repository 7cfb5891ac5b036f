"""MtlTrainer: TFX's Trainer with the knobs users vary per run as parameters of their own.

Kubeflow sets run-time parameters only on a component's top-level execution
parameters, while a Trainer's options live inside ``train_args`` and the
``custom_config`` JSON. MtlTrainer adds the knobs a user changes between runs
(steps, architecture, weighting, gradient combination) as execution parameters:
plain values in a local run, ``RuntimeParameter``s in a compiled one. Its
executor folds them into ``train_args``/``custom_config`` (:func:`fold_run_options`)
and is otherwise TFX's ``GenericExecutor``, calling the same ``run_fn``.

A single-task baseline takes ``architecture`` too, so it follows the multi-task
model's family; it gets no weighting or combine parameter (one task has nothing
to balance), which also keeps its cache when only those change.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, proto_utils

from tfx_mtl import run_parameters
from tfx_mtl.errors import InputError
from tfx_mtl.models.trainer_config import TRAINER_CONFIG_KEY, TrainerConfig
from tfx_mtl.run_parameters import ARCHITECTURE, COMBINE, TRAIN_STEPS, TRAINER_OPTIONS, WEIGHTING


class RunOptionError(InputError):
    """A run-time parameter's value does not fit; ``field`` names the parameter."""


class MtlTrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = {
        **standard_component_specs.TrainerSpec.PARAMETERS,
        TRAIN_STEPS: ExecutionParameter(type=int, optional=True),
        ARCHITECTURE: ExecutionParameter(type=str, optional=True),
        WEIGHTING: ExecutionParameter(type=str, optional=True),
        COMBINE: ExecutionParameter(type=str, optional=True),
    }


def fold_run_options(exec_properties: Mapping[str, Any]) -> dict[str, Any]:
    """``exec_properties`` with the run options written into ``train_args`` and the
    Trainer config in ``custom_config`` (both JSON strings, as executors get them).

    The options are set over the compiled config as the command line sets its own
    over the spec (:meth:`TrainerConfig.with_options`). Raises :class:`RunOptionError`
    naming the parameter when a value does not fit.
    """
    result = dict(exec_properties)
    custom_config = json.loads(result.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
    options = {}
    if result.get(ARCHITECTURE) is not None:
        options["architecture"] = {"name": result[ARCHITECTURE]}
    for key in (WEIGHTING, COMBINE):
        if result.get(key) is not None:
            options[key] = result[key]
    try:
        config = TrainerConfig.from_dict(custom_config.get(TRAINER_CONFIG_KEY)).with_options(options)
    except InputError as e:
        raise RunOptionError(f"run-time parameters {_set(result)}", str(e)) from None
    custom_config[TRAINER_CONFIG_KEY] = config.to_dict()
    result[standard_component_specs.CUSTOM_CONFIG_KEY] = json_utils.dumps(custom_config)

    steps = result.get(TRAIN_STEPS)
    if steps is not None:
        try:
            run_parameters.check_train_steps(steps)
        except InputError as e:
            raise RunOptionError(e.field, e.message) from None
        train_args = trainer_pb2.TrainArgs()
        proto_utils.json_to_proto(result.get(standard_component_specs.TRAIN_ARGS_KEY) or "{}",
                                  train_args)
        train_args.num_steps = steps
        result[standard_component_specs.TRAIN_ARGS_KEY] = proto_utils.proto_to_json(train_args)
    return result


def _set(exec_properties: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={exec_properties[k]!r}" for k in TRAINER_OPTIONS
                     if exec_properties.get(k) is not None) or "(none set)"


class Executor(trainer_executor.GenericExecutor):
    """TFX's GenericExecutor after :func:`fold_run_options`."""

    def Do(self, input_dict, output_dict, exec_properties):
        return super().Do(input_dict, output_dict, fold_run_options(exec_properties))


class MtlTrainer(base_component.BaseComponent):
    """The Trainer of tfx-mtl: ``run_fn`` by import path, run options as parameters."""

    SPEC_CLASS = MtlTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, *, examples: types.BaseChannel, transform_graph: types.BaseChannel,
                 run_fn: str, train_args: trainer_pb2.TrainArgs,
                 eval_args: trainer_pb2.EvalArgs, custom_config: Mapping[str, Any],
                 run_options: Mapping[str, Any] | None = None):
        """``run_options``: values (or RuntimeParameters) for :data:`TRAINER_OPTIONS`."""
        run_options = dict(run_options or {})
        unknown = sorted(set(run_options) - set(TRAINER_OPTIONS))
        if unknown:
            raise ValueError(f"run_options: unknown {', '.join(unknown)} "
                             f"(known: {', '.join(TRAINER_OPTIONS)})")
        spec = MtlTrainerSpec(
            examples=examples, transform_graph=transform_graph,
            train_args=train_args, eval_args=eval_args, run_fn=run_fn,
            custom_config=json_utils.dumps(dict(custom_config)),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
            **run_options)
        super().__init__(spec=spec)

