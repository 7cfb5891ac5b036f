"""A finished run as ML Metadata recorded it: its components, their outputs, the push.

Everything that reads a run back (the summary ``tfx-mtl run`` prints, the review
notebooks, the serving benchmark) finds it here, from the run's own records and
not from the process that ran it. :class:`RunPaths` is the layout of a local
run's output directory; :func:`find_run` returns the latest run of a pipeline
as a :class:`Run`.

Artifact URIs in MLMD are absolute; when a run directory has been copied or
moved, each one is looked up again under the given pipeline root.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

from tfx_mtl import naming
from tfx_mtl.task_spec import TaskSpec


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """A local run's output directory (``tfx-mtl run --output-dir``, default ``./runs``):

    ``pipeline_root/``    TFX artifacts of every component, by component and execution
    ``metadata.sqlite``   the MLMD store (lineage, caching)
    ``serving_model/<pipeline>/<version>/``  models pushed by Pusher
    ``logs/run-<time>-<pid>.log``  the full TFX/Beam/TensorFlow log of each run
    ``run.lock``          held by the run using the directory (:mod:`tfx_mtl.runners.run_lock`)
    """

    output_dir: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.output_dir, "serving_model")

    @property
    def logs(self) -> str:
        return os.path.join(self.output_dir, "logs")


def open_store(sqlite_path: str):
    """The MLMD store in ``sqlite_path``, read-only."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

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


def node_id(store, execution, pipeline_name: str) -> str:
    """The pipeline node an execution ran (e.g. ``Trainer``, ``baseline_fare``)."""
    for ctx in store.get_contexts_by_execution(execution.id):
        if ctx.name.startswith(pipeline_name + "."):
            return ctx.name[len(pipeline_name) + 1:]
    return str(execution.id)


def outputs(store, execution) -> list[tuple[str, Any]]:
    """(output key, artifact) of each output of ``execution``, by artifact id."""
    from ml_metadata.proto import metadata_store_pb2

    events = {e.artifact_id: e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps}
    artifacts = store.get_artifacts_by_id(list(events)) if events else []
    return [(events[a.id].path.steps[0].key, a) for a in sorted(artifacts, key=lambda a: a.id)]


def execution_state(execution) -> str:
    """COMPLETE, CACHED, FAILED, RUNNING, ..."""
    from ml_metadata.proto import metadata_store_pb2

    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def missing_baselines(sqlite_path: str, pipeline_name: str, tasks: Iterable[str],
                      seeds: int = 1) -> list[str]:
    """The baseline Trainer nodes (``baseline_<task>[__seed<i>]``, every task and seed)
    with no model in the store (for ``baselines: reuse``)."""
    from ml_metadata.proto import metadata_store_pb2

    nodes = [naming.baseline_node(task, i) for task in tasks for i in range(seeds)]
    if not os.path.exists(sqlite_path):
        return nodes
    store = open_store(sqlite_path)
    try:
        model_type = store.get_artifact_type("Model").id
    except Exception:  # no Model was ever registered  # noqa: BLE001
        return nodes
    missing = []
    for node_name in nodes:
        node = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_name}")
        models = [] if node is None else [
            a for a in store.get_artifacts_by_context(node.id)
            if a.state == metadata_store_pb2.Artifact.LIVE and a.type_id == model_type]
        if not models:
            missing.append(node_name)
    return missing


def report_path(uri: str) -> str:
    """The transfer report file inside the gate's TransferReport artifact."""
    return os.path.join(uri, naming.TRANSFER_REPORT_FILE)


@dataclasses.dataclass(frozen=True)
class ComponentRun:
    id: str  # the node id
    state: str  # COMPLETE | CACHED | FAILED | RUNNING ...
    seconds: float


@dataclasses.dataclass(frozen=True)
class Run:
    """The latest run of one pipeline, as recorded in MLMD."""

    pipeline: str
    run_id: str
    metadata: str  # the MLMD SQLite file
    pipeline_root: str
    components: tuple[ComponentRun, ...]  # in the order they ran
    outputs: dict[str, dict[str, str]]  # node id -> output key -> artifact uri
    spec: TaskSpec | None  # the spec the gate judged with; None if it did not run
    report: dict[str, Any] | None  # the transfer report; None if the gate did not run
    pushed: str | None  # where Pusher pushed the model, if it did

    @property
    def states(self) -> dict[str, str]:
        """node id -> state of its execution."""
        return {c.id: c.state for c in self.components}

    @property
    def tasks(self) -> list[str]:
        return list(self.require_report()["tasks"])

    @property
    def slices(self) -> list[tuple[str, ...]]:
        """The spec's slices (a tuple of columns each; several columns are a cross)."""
        return [tuple(s) for s in self.require_spec().evaluation.slices]

    def evaluation(self, task: str) -> str:
        """The uri of ``task``'s TFMA evaluation (multi-task vs its baseline)."""
        return self._local(self._task(task)["evaluation"])

    def baseline_model(self, task: str) -> str | None:
        """The uri of the single-task model ``task`` was compared with, if any."""
        uri = (self._task(task).get("baseline_model") or {}).get("uri")
        return self._local(uri) if uri else None

    def trained_baselines(self, seed_index: int = 0) -> dict[str, str]:
        """task -> the model artifact uri of each baseline Trainer of seed ``seed_index``
        this run ran (seed 0: the baselines the Evaluators compared with)."""
        found = {}
        for node, keys in self.outputs.items():
            task = naming.baseline_task(node)
            if task is not None and naming.seed_index(node) == seed_index and "model" in keys:
                found[task] = keys["model"]
        return dict(sorted(found.items()))

    def output(self, node: str, key: str) -> str:
        try:
            return self.outputs[node][key]
        except KeyError:
            raise LookupError(
                f"the latest run of {self.pipeline!r} in {self.metadata} has no output "
                f"{node}.{key} ({self.describe_states()})") from None

    def require_report(self) -> dict[str, Any]:
        if self.report is None:
            raise LookupError(
                f"the latest run of {self.pipeline!r} in {self.metadata} has no transfer "
                f"report: {naming.BLESSING_GATE} did not run ({self.describe_states()})")
        return self.report

    def require_spec(self) -> TaskSpec:
        if self.spec is None:
            raise LookupError(f"no task spec for the latest run of {self.pipeline!r}: "
                              f"{naming.BLESSING_GATE} did not run; pass spec_path")
        return self.spec

    def describe_states(self) -> str:
        return ", ".join(f"{c.id}: {c.state}" for c in self.components) or "no component ran"

    def _task(self, task: str) -> dict[str, Any]:
        tasks = self.require_report()["tasks"]
        if task not in tasks:
            raise KeyError(f"no task {task!r} in the run (tasks: {', '.join(tasks)})")
        return tasks[task]

    def _local(self, uri: str) -> str:
        return rebase(uri, self.pipeline_root)


def find_run(output_dir: str | os.PathLike | None = None, *,
             pipeline_root: str | os.PathLike | None = None,
             metadata: str | os.PathLike | None = None, pipeline_name: str | None = None,
             spec_path: str | os.PathLike | None = None) -> Run:
    """The latest run in ``output_dir`` (laid out as :class:`RunPaths`), or in
    ``pipeline_root`` + ``metadata`` (the MLMD SQLite file). ``pipeline_name`` may be
    left out when the store holds one pipeline; ``spec_path`` replaces the spec
    recorded by the gate (e.g. for a run that stopped before it)."""
    from tfx_mtl import task_spec

    if output_dir is not None:
        paths = RunPaths(os.fspath(output_dir))
        pipeline_root = pipeline_root or paths.pipeline_root
        metadata = metadata or paths.metadata
    if pipeline_root is None or metadata is None:
        raise ValueError("give output_dir, or both pipeline_root and metadata")
    pipeline_root, metadata = os.path.abspath(pipeline_root), os.path.abspath(metadata)
    if not os.path.isfile(metadata):
        raise FileNotFoundError(f"no MLMD store at {metadata}: run `tfx-mtl run --output-dir "
                                f"{os.path.dirname(metadata)}` first, or point to its output")
    store = open_store(metadata)
    name = pipeline_name or _only_pipeline(store, metadata)
    try:
        run, executions = latest_run(store, name)
    except LookupError as e:
        raise LookupError(f"{e} ({metadata})") from None
    components, found, spec, report, pushed = [], {}, None, None, None
    for execution in sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id)):
        node = node_id(store, execution, name)
        components.append(ComponentRun(
            node, execution_state(execution),
            (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000))
        produced = outputs(store, execution)
        found[node] = {key: rebase(a.uri, pipeline_root) for key, a in produced}
        if node == naming.BLESSING_GATE and "spec" in execution.custom_properties:
            spec = TaskSpec.from_dict(json.loads(execution.custom_properties["spec"].string_value))
        for _, artifact in produced:
            props = artifact.custom_properties
            if "pushed" in props and props["pushed"].int_value == 1:
                pushed = props["pushed_destination"].string_value
    if "report" in found.get(naming.BLESSING_GATE, {}):
        with open(report_path(found[naming.BLESSING_GATE]["report"])) as f:
            report = json.load(f)
    if spec_path is not None:
        spec = task_spec.load(spec_path)
    return Run(pipeline=name, run_id=run.name, metadata=metadata, pipeline_root=pipeline_root,
               components=tuple(components), outputs=found, spec=spec, report=report,
               pushed=pushed)


def _only_pipeline(store, metadata: str) -> str:
    names = sorted(c.name for c in store.get_contexts_by_type("pipeline"))
    if len(names) == 1:
        return names[0]
    if not names:
        raise LookupError(f"no pipeline run recorded in {metadata}")
    raise LookupError(f"{metadata} holds several pipelines ({', '.join(names)}): "
                      "pass pipeline_name")


def rebase(uri: str, pipeline_root: str) -> str:
    """The artifact's ``<node>/<output>/<id>`` under ``pipeline_root`` if it is there,
    else ``uri``: a copied or moved run directory is read where it is now."""
    moved = os.path.join(pipeline_root, *os.path.normpath(uri).split(os.sep)[-3:])
    return moved if os.path.exists(moved) else uri
