"""The run summary, read back from MLMD and TFMA after a run.

Everything comes from the pipeline's own records, not from the process that
ran it: the latest pipeline run's executions (COMPLETE or CACHED, with wall
times), the blessing gate's transfer report (per task: multi-task and baseline
metrics, changes, bounds, verdict), and the Pusher's destination. The JSON
shape is a contract (see README): ``{"tasks": {"<task>": {"type", "metrics",
"baseline_metrics", "blessed", ...}}, "policy", "decision", "pushed",
"output_dir", ...}`` -- later versions add fields, never rename these.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, TextIO

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


def tasks_without_baseline(sqlite_path: str, pipeline_name: str, tasks, baseline_node) -> list[str]:
    """The tasks with no single-task baseline model in the store (for ``baselines: reuse``)."""
    if not os.path.exists(sqlite_path):
        return list(tasks)
    store = open_store(sqlite_path)
    try:
        model_type = store.get_artifact_type("Model").id
    except Exception:  # no Model was ever registered  # noqa: BLE001
        return list(tasks)
    missing = []
    for task in tasks:
        node = store.get_context_by_type_and_name("node", f"{pipeline_name}.{baseline_node(task)}")
        models = [] if node is None else [
            a for a in store.get_artifacts_by_context(node.id)
            if a.state == metadata_store_pb2.Artifact.LIVE and a.type_id == model_type]
        if not models:
            missing.append(task)
    return missing


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


def report_path(uri: str) -> str:
    """The transfer report file inside the gate's TransferReport artifact."""
    from tfx_mtl.components.blessing_gate import REPORT_FILE  # imports TFX

    return os.path.join(uri, REPORT_FILE)


def collect(sqlite_path: str, pipeline_name: str, output_dir: str) -> dict[str, Any]:
    """The run summary: the gate's transfer report, component runs and the push."""
    from tfx_mtl.components.blessing_gate import TransferReport  # imports TFX

    store = open_store(sqlite_path)
    run, executions = latest_run(store, pipeline_name)
    components, report, pushed = [], None, None
    for execution in sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id)):
        node = _node_id(store, execution, pipeline_name)
        components.append(ComponentRun(
            node, _EXECUTION_STATES.get(execution.last_known_state, "UNKNOWN"),
            (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000))
        report = next(iter(_output_artifacts(store, execution, TransferReport.TYPE_NAME)), report)
        pushed = next(iter(_output_artifacts(store, execution, "PushedModel")), pushed)
    if report is None:
        raise LookupError(f"the latest run of {pipeline_name!r} has no transfer report")
    with open(report_path(report.uri)) as f:
        transfer = json.load(f)
    push_dir = None
    if pushed is not None and pushed.custom_properties["pushed"].int_value == 1:
        push_dir = pushed.custom_properties["pushed_destination"].string_value
    return {
        "tasks": transfer["tasks"],
        "policy": transfer["policy"],
        "decision": transfer["decision"],
        "blocking": transfer["blocking"],
        "model_blessed": transfer["blessed"],
        "pushed": push_dir,
        "output_dir": output_dir,
        "pipeline": pipeline_name,
        "run_id": run.name,
        "transfer_report": report_path(report.uri),
        "components": [dataclasses.asdict(c) for c in components],
    }


def render(summary: dict[str, Any], spec: TaskSpec, out: TextIO) -> None:
    """The transfer report as printed at the end of ``tfx-mtl run``: one row per metric."""
    header = ["task", "role", "labelled", "metric", "multi-task", "baseline", "change",
              "bound", "blessed"]
    rows = []
    for name, info in summary["tasks"].items():
        task = spec.task(name)
        m, b, changes = info["metrics"], info["baseline_metrics"], info["changes"]
        for i, metric in enumerate(task.metrics):
            first = i == 0
            change = changes.get(metric.name)
            rel = ""
            if change is not None and b.get(metric.name):
                rel = f" ({change / b[metric.name] * 100:+.1f}%)"
            rows.append([
                name if first else "", info["role"] if first else "",
                _fmt(m.get("labelled_count"), 0) if first else "", metric.name,
                _fmt(m.get(metric.name)), _fmt(b.get(metric.name)),
                ("-" if change is None else f"{change:+.4f}") + rel,
                "; ".join(info["bounds"].get(metric.name, [])).replace(" vs the baseline", "")
                or "-",
                ("yes" if info["blessed"] else "NO") if first else ""])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()
    out.write("\n" + line + "\n" + "-" * len(line) + "\n")
    for row in rows:
        out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    out.write("\n")
    for name, info in summary["tasks"].items():
        for failure in info["failures"]:
            extra = "" if info["must_bless"] else " (auxiliary: does not block the push)"
            out.write(f"  task {name!r} not blessed{extra}: {failure}\n")
    out.write(f"gate: {summary['decision']}\n")
    if summary["pushed"]:
        out.write(f"model pushed to {summary['pushed']}\n")
    else:
        out.write("model NOT pushed: the blessing gate refused it\n")


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

