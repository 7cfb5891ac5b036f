"""BlessingGate: the per-task blessings, combined by the spec's policy into one.

Each task has its own Evaluator, comparing the multi-task model with that
task's single-task baseline. Pusher takes one ``ModelBlessing``; this component
makes it: blessed when every task the policy names is blessed (``all`` tasks,
or only the ``primary`` ones, so auxiliary tasks may regress). It also writes
the transfer report (``TransferReport`` artifact, ``transfer_report.json``):
per task, the multi-task and baseline metrics, their difference, the bounds,
the verdict and, for a refused task, each failed bound in words. The report is
strict JSON: a NaN or infinite metric is ``null`` there, with its reason under the
task's ``not_finite`` (:mod:`tfx_mtl.finite`).

A task whose spec compares it with its baseline but whose Evaluator had no
baseline model (TFMA then skips change bounds, "rubber stamp") is refused:
a missing baseline must not pass as a passed comparison.

The inputs are one evaluation and one blessing per task of the spec, so the
component spec is made per pipeline (:func:`_spec_class`); the executor reads
the task list from its ``spec`` parameter.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_mtl import finite, naming
from tfx_mtl.results import evaluation
from tfx_mtl.task_spec import TaskSpec

_BLESSED_FILE, _NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"  # as the Evaluator writes them


class TransferReport(types.Artifact):
    """Per task: multi-task vs single-task metrics, differences and verdicts (JSON).

    Named ``<namespace>.<Type>``, the form Kubeflow Pipelines v2 requires of a
    custom artifact type's schema title."""

    TYPE_NAME = naming.TRANSFER_REPORT_TYPE


def evaluation_key(task: str) -> str:
    return f"{task}_evaluation"


def blessing_key(task: str) -> str:
    return f"{task}_blessing"


@dataclasses.dataclass(frozen=True)
class Decision:
    blessed: bool
    blocking: tuple[str, ...]  # tasks the policy needs that were not blessed

    def describe(self, policy: str) -> str:
        if self.blessed:
            return f"blessed under policy {policy!r}"
        needed = "every task" if policy == "all" else "every primary task"
        return (f"refused under policy {policy!r} ({needed} must be blessed): "
                f"not blessed: {', '.join(self.blocking)}")


def decide(spec: TaskSpec, blessed: Mapping[str, bool]) -> Decision:
    """The model is blessed when every task the policy names is blessed."""
    blocking = tuple(t.name for t in spec.tasks
                     if spec.evaluation.must_bless(t) and not blessed[t.name])
    return Decision(blessed=not blocking, blocking=blocking)


def task_report(spec: TaskSpec, task_name: str, eval_uri: str, blessing) -> dict[str, Any]:
    """One task's entry of the transfer report, from its Evaluator's outputs."""
    task = spec.task(task_name)
    overall = evaluation.overall(evaluation.load(eval_uri, task))
    failures = evaluation.failures(eval_uri, task, overall)
    blessed = blessing.get_int_custom_property("blessed") == 1
    baseline_id = (blessing.get_int_custom_property("baseline_model_id")
                   if blessing.has_custom_property("baseline_model_id") else None)
    compared = any(m.max_regression is not None for m in task.metrics)
    if compared and baseline_id is None:
        blessed = False
        failures.append("no baseline model was evaluated, so the comparison with the "
                        "single-task baseline was not made")
    if not blessed and not failures:
        failures.append("the Evaluator did not bless it (see its validation result)")
    metric_names = [m.name for m in task.metrics]
    values = {"metrics": overall.candidate, "baseline_metrics": overall.baseline,
              "changes": {k: v for k, v in overall.changes.items() if k in metric_names}}
    return {
        "type": task.type,
        "role": task.role,
        "must_bless": spec.evaluation.must_bless(task),
        "blessed": blessed,
        **finite.sections(values),
        "bounds": evaluation.bounds(task),
        "failures": failures,
        "evaluation": eval_uri,
        "baseline_model": {
            "id": baseline_id,
            "uri": (blessing.get_string_custom_property("baseline_model")
                    if baseline_id is not None else None)},
    }


def build_report(spec: TaskSpec, tasks: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    decision = decide(spec, {name: info["blessed"] for name, info in tasks.items()})
    return {
        "policy": spec.evaluation.policy,
        "blessed": decision.blessed,
        "decision": decision.describe(spec.evaluation.policy),
        "blocking": list(decision.blocking),
        "tasks": {name: tasks[name] for name in spec.task_names},
    }


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        spec = TaskSpec.from_dict(json.loads(exec_properties["spec"]))
        tasks = {}
        for name in spec.task_names:
            (evaluated,) = input_dict[evaluation_key(name)]
            (blessing,) = input_dict[blessing_key(name)]
            tasks[name] = task_report(spec, name, evaluated.uri, blessing)
        report = build_report(spec, tasks)

        (model,) = input_dict["model"]
        (out_blessing,) = output_dict["blessing"]
        (out_report,) = output_dict["report"]
        report["model"] = {"id": model.id, "uri": model.uri}
        report_file = os.path.join(out_report.uri, naming.TRANSFER_REPORT_FILE)
        with tf.io.gfile.GFile(report_file, "w") as f:
            f.write(finite.dumps(report, indent=2) + "\n")
        out_report.set_int_custom_property("blessed", int(report["blessed"]))
        out_report.set_string_custom_property("policy", report["policy"])

        out_blessing.set_string_custom_property("current_model", model.uri)
        out_blessing.set_int_custom_property("current_model_id", model.id)
        out_blessing.set_int_custom_property("blessed", int(report["blessed"]))
        out_blessing.set_string_custom_property("decision", report["decision"])
        marker = _BLESSED_FILE if report["blessed"] else _NOT_BLESSED_FILE
        with tf.io.gfile.GFile(os.path.join(out_blessing.uri, marker), "w") as f:
            f.write("")


class BlessingGateSpec(ComponentSpec):
    """The fixed part; :func:`_spec_class` adds one evaluation and blessing per task."""

    # code_version: a hash of the gate's code, so a change to it is not served from
    # TFX's cache (which keys on inputs and parameters, not on executor code).
    PARAMETERS = {"spec": ExecutionParameter(type=str),
                  "code_version": ExecutionParameter(type=str)}
    INPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
               "report": ChannelParameter(type=TransferReport)}


def _spec_class(task_names) -> type[BlessingGateSpec]:
    inputs = dict(BlessingGateSpec.INPUTS)
    for name in task_names:
        inputs[evaluation_key(name)] = ChannelParameter(type=standard_artifacts.ModelEvaluation)
        inputs[blessing_key(name)] = ChannelParameter(type=standard_artifacts.ModelBlessing)
    return type("BlessingGateSpec", (BlessingGateSpec,), {"INPUTS": inputs})


class BlessingGate(base_component.BaseComponent):
    """``BlessingGate(model, evaluations={task: ch}, blessings={task: ch}, spec=spec,
    code_version=...)``."""

    SPEC_CLASS = BlessingGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, evaluations: Mapping[str, types.BaseChannel],
                 blessings: Mapping[str, types.BaseChannel], spec: TaskSpec,
                 code_version: str = ""):
        for what, channels in (("evaluations", evaluations), ("blessings", blessings)):
            if set(channels) != set(spec.task_names):
                raise ValueError(f"BlessingGate {what}: need one per task of the spec "
                                 f"({', '.join(spec.task_names)}), got {', '.join(channels)}")
        inputs = {"model": model}
        for name in spec.task_names:
            inputs[evaluation_key(name)] = evaluations[name]
            inputs[blessing_key(name)] = blessings[name]
        component_spec = _spec_class(spec.task_names)(
            spec=json.dumps(spec.to_dict(), sort_keys=True),
            code_version=code_version,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            report=types.Channel(type=TransferReport),
            **inputs)
        super().__init__(spec=component_spec)
