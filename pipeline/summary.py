"""The run summary, read back from MLMD and TFMA after a run.

Everything comes from the pipeline's own records, not from the process that
ran it: the latest pipeline run's executions (COMPLETE or CACHED, with wall
times), the Evaluator's metrics and validation per task output, the blessing,
and the Pusher's destination. The JSON shape is a contract (see README):
``{"tasks": {"<task>": {"type", "metrics", "blessed", ...}}, "pushed",
"output_dir", ...}`` -- later versions add fields, never rename these.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, TextIO

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_mtl.task_spec import TaskSpec

_EXECUTION_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class ComponentRun:
    id: str
    state: str  # COMPLETE | CACHED | FAILED | RUNNING ...
    seconds: float


def open_store(sqlite_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = sqlite_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def latest_run(store, pipeline_name: str):
    """(run context, executions) of the pipeline's most recent run."""
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        raise LookupError(f"no pipeline {pipeline_name!r} in the metadata store")
    ours = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if any(e.id in ours for e in store.get_executions_by_context(c.id))]
    if not runs:
        raise LookupError(f"pipeline {pipeline_name!r} has no run in the metadata store")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    return run, store.get_executions_by_context(run.id)


def _node_id(store, execution, pipeline_name: str) -> str:
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.name.startswith(pipeline_name + "."):
            return ctx.name[len(pipeline_name) + 1:]
    return str(execution.id)


def _output_artifacts(store, execution, type_name: str):
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = store.get_artifacts_by_id([e.artifact_id for e in events])
    type_ids = {t.id: t.name for t in store.get_artifact_types_by_id(
        list({a.type_id for a in artifacts}))} if artifacts else {}
    return [a for a in artifacts if type_ids.get(a.type_id) == type_name]


def _read_metrics(eval_uri: str, spec: TaskSpec) -> dict[str, dict[str, float]]:
    """Overall-slice metrics per task, renamed to the spec's metric names."""
    names = {task.name: {m.definition(task.type).tfma_name: m.name for m in task.metrics}
             for task in spec.tasks}
    result: dict[str, dict[str, float]] = {task.name: {} for task in spec.tasks}
    for metrics_for_slice in tfma.load_metrics(eval_uri):
        if metrics_for_slice.slice_key.single_slice_keys:
            continue  # overall slice only
        for kv in metrics_for_slice.metric_keys_and_values:
            task, tfma_name = kv.key.output_name, kv.key.name
            if task not in result or not kv.value.HasField("double_value"):
                continue
            value = kv.value.double_value.value  # a google.protobuf.DoubleValue
            weighted = kv.key.example_weighted.value  # weighted by the task's label mask
            if tfma_name == "example_count":
                result[task]["labelled_count" if weighted else "example_count"] = value
            elif tfma_name in names[task]:
                result[task][names[task][tfma_name]] = value
    return result


def _read_failures(eval_uri: str, spec: TaskSpec) -> dict[str, list[str]]:
    names = {(task.name, m.definition(task.type).tfma_name): m.name
             for task in spec.tasks for m in task.metrics}
    failures: dict[str, list[str]] = {task.name: [] for task in spec.tasks}
    validation = tfma.load_validation_result(eval_uri)
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            task = failure.metric_key.output_name
            metric = names.get((task, failure.metric_key.name), failure.metric_key.name)
            failures.setdefault(task, []).append(
                f"{metric} = {failure.metric_value.double_value.value:.6g} fails {_bound(failure.metric_threshold)}")
    return failures


def _bound(threshold) -> str:
    value = threshold.value_threshold
    parts = []
    if value.HasField("lower_bound"):
        parts.append(f">= {value.lower_bound.value:g}")
    if value.HasField("upper_bound"):
        parts.append(f"<= {value.upper_bound.value:g}")
    return " and ".join(parts) or str(threshold).strip()


def collect(sqlite_path: str, pipeline_name: str, spec: TaskSpec, output_dir: str) -> dict[str, Any]:
    store = open_store(sqlite_path)
    run, executions = latest_run(store, pipeline_name)
    components, evaluation, blessing, pushed = [], None, None, None
    for execution in sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id)):
        node = _node_id(store, execution, pipeline_name)
        components.append(ComponentRun(
            node, _EXECUTION_STATES.get(execution.last_known_state, "UNKNOWN"),
            (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000))
        evaluation = next(iter(_output_artifacts(store, execution, "ModelEvaluation")), evaluation)
        blessing = next(iter(_output_artifacts(store, execution, "ModelBlessing")), blessing)
        pushed = next(iter(_output_artifacts(store, execution, "PushedModel")), pushed)

    metrics = _read_metrics(evaluation.uri, spec) if evaluation else {}
    failures = _read_failures(evaluation.uri, spec) if evaluation else {}
    push_dir = None
    if pushed is not None and pushed.custom_properties["pushed"].int_value == 1:
        push_dir = pushed.custom_properties["pushed_destination"].string_value
    tasks = {}
    for task in spec.tasks:
        tasks[task.name] = {
            "type": task.type,
            "role": task.role,
            "metrics": metrics.get(task.name, {}),
            "blessed": bool(evaluation) and not failures.get(task.name),
            "failures": failures.get(task.name, []),
        }
    return {
        "tasks": tasks,
        "pushed": push_dir,
        "output_dir": output_dir,
        "pipeline": pipeline_name,
        "run_id": run.name,
        "model_blessed": bool(blessing and blessing.custom_properties["blessed"].int_value == 1),
        "components": [dataclasses.asdict(c) for c in components],
    }


def render(summary: dict[str, Any], spec: TaskSpec, out: TextIO) -> None:
    """The per-task table printed at the end of ``tfx-mtl run``."""
    metric_names = []
    for task in spec.tasks:
        for metric in task.metrics:
            if metric.name not in metric_names:
                metric_names.append(metric.name)
    header = ["task", "type", "role", "labelled"] + metric_names + ["blessed"]
    rows = []
    for name, info in summary["tasks"].items():
        m = info["metrics"]
        rows.append([name, info["type"], info["role"], _fmt(m.get("labelled_count"), 0)]
                    + [_fmt(m.get(k)) for k in metric_names]
                    + ["yes" if info["blessed"] else "NO"])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out.write("\n" + line + "\n" + "-" * len(line) + "\n")
    for row in rows:
        out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "\n")
    for name, info in summary["tasks"].items():
        for failure in info["failures"]:
            out.write(f"  task {name!r} not blessed: {failure}\n")
    out.write("\n")
    if summary["pushed"]:
        out.write(f"model pushed to {summary['pushed']}\n")
    else:
        out.write("model NOT pushed: the Evaluator did not bless it\n")


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}" if digits else f"{value:.0f}"


def write_json(summary: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")

