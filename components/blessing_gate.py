"""BlessingGate: the per-task verdicts, combined by the spec's policy into one.

A task is blessed when its Evaluator blessed it (TFMA checks the value bounds
and that the test split has a labelled example, on the multi-task model that
would be pushed) and every change bound (``max_regression``) holds on
ModelComparison's paired comparison with the task's single-task baseline, read
as the spec's ``evaluation.reading`` says (:func:`tfx_mtl.comparison.verdict`:
``significant`` refuses when the whole interval is beyond the bound, ``strict``
when the point estimate is). Pusher takes one ``ModelBlessing``; this component
makes it: blessed when every task the policy names is blessed (``all`` tasks,
or only the ``primary`` ones, so auxiliary tasks may regress). It also writes
the transfer report (``TransferReport`` artifact, ``transfer_report.json``):
per task, the multi-task and baseline metrics (means over seeds), their
difference and its interval, the bounds (defaults marked), the verdict and,
for a refused task, each failed bound in words; for the model, Δm with its
interval. The report is strict JSON: a NaN or infinite metric is ``null`` there,
with its reason under the task's ``not_finite`` (:mod:`tfx_mtl.finite`).

A task with a change bound whose comparison is missing (no baseline model was
evaluated, or the comparison lacks the metric) is refused: a missing baseline
must not pass as a passed comparison ("rubber stamp").

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

from tfx_mtl import comparison, finite, naming
from tfx_mtl.components import model_comparison
from tfx_mtl.results import evaluation
from tfx_mtl.task_spec import Task, TaskSpec

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


COMPARISON = "comparison"  # ModelComparison's record: every task's paired comparison
_NOT_COMPARED = ("no baseline model was evaluated, so the comparison with the "
                 "single-task baseline was not made")


def task_report(spec: TaskSpec, task_name: str, eval_uri: str, blessing,
                compared: Mapping[str, Any] | None) -> dict[str, Any]:
    """One task's entry of the transfer report, from its Evaluator's outputs and its
    entry of ModelComparison's record (``compared``; None: the task was not compared)."""
    task = spec.task(task_name)
    overall = evaluation.overall(evaluation.load(eval_uri, task))
    failures = evaluation.failures(eval_uri, task)  # value bounds, labelled count
    blessed = blessing.get_int_custom_property("blessed") == 1
    baseline_id = (blessing.get_int_custom_property("baseline_model_id")
                   if blessing.has_custom_property("baseline_model_id") else None)
    if any(m.max_regression is not None for m in task.metrics) and (
            baseline_id is None or not compared):
        blessed = False
        failures.append(_NOT_COMPARED)
    verdicts = _verdicts(task, spec.evaluation.reading, compared)
    for verdict in verdicts.values():
        if not verdict["passed"]:
            blessed = False
            if _NOT_COMPARED not in failures:
                failures.append(verdict["words"])
    if not blessed and not failures:
        failures.append("the Evaluator did not bless it (see its validation result)")
    values = _values(task, overall, compared)
    return {
        "type": task.type,
        "role": task.role,
        "must_bless": spec.evaluation.must_bless(task),
        "blessed": blessed,
        **finite.sections(values),
        "intervals": _intervals(task, compared),
        "seeds": _per_seed(task, compared),
        "verdicts": verdicts,
        "bounds": evaluation.bounds(task),
        "bound_defaults": [m.key for m in task.metrics
                           if m.max_regression is not None and m.max_regression.default],
        "unbounded": {m.key: m.unbounded_reason for m in task.metrics if m.unbounded_reason},
        "failures": failures,
        "evaluation": eval_uri,
        "baseline_model": {
            "id": baseline_id,
            "uri": (blessing.get_string_custom_property("baseline_model")
                    if baseline_id is not None else None)},
    }


def _compared_metrics(task: Task, compared: Mapping[str, Any] | None) -> dict[str, Any]:
    metrics = (compared or {}).get("metrics", {})
    return {m.key: metrics[m.key] for m in task.metrics if m.key in metrics}


def _values(task: Task, overall: evaluation.SliceMetrics,
            compared: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The table's values: the paired comparison's (means over seeds, on the same test
    examples as the interval); TFMA's (seed 0) where a metric was not compared. The
    example counts are TFMA's."""
    names = [m.key for m in task.metrics]
    values = {"metrics": dict(overall.candidate), "baseline_metrics": dict(overall.baseline),
              "changes": {k: v for k, v in overall.changes.items() if k in names}}
    for name, entry in _compared_metrics(task, compared).items():
        values["metrics"][name] = entry["candidate"]
        values["baseline_metrics"][name] = entry["baseline"]
        values["changes"][name] = entry["change"]
    return values


_INTERVAL_FIELDS = ("relative", "change_low", "change_high", "relative_low", "relative_high")


def _intervals(task: Task, compared: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per compared metric: the relative change and the interval of the change (null
    where not a number: a bootstrap end over a NaN metric)."""
    return {name: {k: finite.nulled(entry.get(k))[0] for k in _INTERVAL_FIELDS}
            for name, entry in _compared_metrics(task, compared).items()}


def _per_seed(task: Task, compared: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each seed's multi-task and baseline values, as ``[{seed, metrics, baseline_metrics}]``."""
    seeds: dict[int, dict[str, Any]] = {}
    for name, entry in _compared_metrics(task, compared).items():
        for row in entry.get("per_seed", []):
            seen = seeds.setdefault(row["seed"], {"seed": row["seed"], "metrics": {},
                                                  "baseline_metrics": {}})
            seen["metrics"][name] = finite.nulled(row["candidate"])[0]
            seen["baseline_metrics"][name] = finite.nulled(row["baseline"])[0]
    return list(seeds.values())


def _verdicts(task: Task, reading: str,
              compared: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each change bound of ``task`` judged on the comparison, under ``reading``."""
    entries = _compared_metrics(task, compared)
    verdicts = {}
    for metric in task.metrics:
        bound = metric.max_regression
        if bound is None:
            continue
        if metric.key in entries:
            passed, words = comparison.verdict(entries[metric.key], bound.amount,
                                               bound.relative, reading)
        else:
            passed, words = False, (f"{metric.key}: the comparison with the single-task "
                                    "baseline on the test split was not made")
        verdicts[metric.key] = {"passed": passed, "reading": reading,
                                 "default": bound.default, "words": words}
    return verdicts


def build_report(spec: TaskSpec, tasks: Mapping[str, dict[str, Any]],
                 record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The transfer report; ``record`` is ModelComparison's (Δm, the interval's settings)."""
    decision = decide(spec, {name: info["blessed"] for name, info in tasks.items()})
    record = record or {}
    return {
        "policy": spec.evaluation.policy,
        "blessed": decision.blessed,
        "decision": decision.describe(spec.evaluation.policy),
        "blocking": list(decision.blocking),
        "tasks": {name: tasks[name] for name in spec.task_names},
        "split": record.get("split"),
        "reading": spec.evaluation.reading,
        "confidence": record.get("confidence"),
        "bootstrap_samples": record.get("samples"),
        "method": record.get("method"),
        "seeds": list(record.get("seeds", [])),
        "delta_m": finite.nulled(record["delta_m"])[0] if "delta_m" in record else None,
    }


def read_comparison(uri: str) -> dict[str, Any]:
    """ModelComparison's record, with the NaN and infinities its strict JSON wrote as
    ``null`` restored (so their reasons reach the report's ``not_finite``)."""
    with tf.io.gfile.GFile(os.path.join(uri, naming.MODEL_COMPARISON_FILE)) as f:
        record = json.load(f)
    return finite.restored(record, record.pop("not_finite", {}))


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        spec = TaskSpec.from_dict(json.loads(exec_properties["spec"]))
        (compared,) = input_dict[COMPARISON]
        record = read_comparison(compared.uri)
        tasks = {}
        for name in spec.task_names:
            (evaluated,) = input_dict[evaluation_key(name)]
            (blessing,) = input_dict[blessing_key(name)]
            tasks[name] = task_report(spec, name, evaluated.uri, blessing,
                                      record.get("tasks", {}).get(name))
        report = build_report(spec, tasks, record)
        report["comparison"] = compared.uri

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
    INPUTS = {"model": ChannelParameter(type=standard_artifacts.Model),
              COMPARISON: ChannelParameter(type=model_comparison.ModelComparisonResult)}
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
               "report": ChannelParameter(type=TransferReport)}


def _spec_class(task_names) -> type[BlessingGateSpec]:
    inputs = dict(BlessingGateSpec.INPUTS)
    for name in task_names:
        inputs[evaluation_key(name)] = ChannelParameter(type=standard_artifacts.ModelEvaluation)
        inputs[blessing_key(name)] = ChannelParameter(type=standard_artifacts.ModelBlessing)
    return type("BlessingGateSpec", (BlessingGateSpec,), {"INPUTS": inputs})


class BlessingGate(base_component.BaseComponent):
    """``BlessingGate(model, comparison, evaluations={task: ch}, blessings={task: ch},
    spec=spec, code_version=...)``."""

    SPEC_CLASS = BlessingGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, comparison: types.BaseChannel,
                 evaluations: Mapping[str, types.BaseChannel],
                 blessings: Mapping[str, types.BaseChannel], spec: TaskSpec,
                 code_version: str = ""):
        for what, channels in (("evaluations", evaluations), ("blessings", blessings)):
            if set(channels) != set(spec.task_names):
                raise ValueError(f"BlessingGate {what}: need one per task of the spec "
                                 f"({', '.join(spec.task_names)}), got {', '.join(channels)}")
        inputs = {"model": model, COMPARISON: comparison}
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
