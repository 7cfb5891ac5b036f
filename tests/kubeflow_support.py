"""Runs one task of a compiled KFP v2 pipeline locally, as its container would run.

What KFP's driver and launcher do for a container task, done here by hand, and
nothing mocked: the task's ``ExecutorInput`` is built from the compiled
PipelineSpec and the run's parameter values, ``{{$}}`` in the container's args is
replaced by its JSON, and the container's own ``command + args`` (TFX's v2
entrypoint, the real executor) runs as a subprocess of this venv's Python.

The ExecutorInput is what the driver would give (kfp ``backend/src/v2/driver``):

- ``inputs.parameterValues``: each of the task's ``inputs.parameters``, resolved:
  ``componentInputParameter`` to the run's value of that root parameter (its
  ``defaultValue`` when the run sets none), ``runtimeValue.constant`` to the
  constant; values are checked against the component's ``parameterType`` as KFP
  checks a run's parameters.
- ``inputs.artifacts``: one RuntimeArtifact per artifact input with the ``uri``,
  the consuming component's ``artifactType`` (TFX's entrypoint picks the artifact
  class from its title), the MLMD id as ``name`` and the upstream artifact's
  properties and custom properties as ``metadata`` -- what KFP's MLMD holds for
  an artifact a TFX container produced, since TFX's entrypoint writes its
  artifacts' properties (``split_names``, ``span``, ...) into the executor output's
  metadata. :func:`mlmd_outputs` reads them from a local run's MLMD store.
- ``outputs.artifacts``: one RuntimeArtifact per output definition, with a fresh
  ``uri`` under ``<workdir>/pipeline_root/<run>/<task>/<output>`` and the output's
  ``artifactType``; ``outputs.outputFile``: ``<workdir>/tmp/kfp_outputs/
  output_metadata.json`` (KFP writes ``/tmp/kfp_outputs/output_metadata.json``).

The process gets only what the image would: ``kubeflow/Dockerfile``'s ENV
(``TF_USE_LEGACY_KERAS=0``, ``PYTHONDONTWRITEBYTECODE=1``, ``PIP_NO_CACHE_DIR=1``),
a PATH whose ``python`` is this venv's, HOME and LANG -- plus this host's
``OPENBLAS_*`` CPU settings, which describe the machine, not the project.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from typing import Any, Mapping, Sequence, Union

from google.protobuf import json_format

PLACEHOLDER = "{{$}}"  # KFP's placeholder for the whole ExecutorInput as JSON
IMAGE_ENV = {"TF_USE_LEGACY_KERAS": "0", "PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_CACHE_DIR": "1"}


@dataclasses.dataclass(frozen=True)
class InputArtifact:
    """An upstream artifact: its URI and the metadata KFP would hand the consumer."""

    uri: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    name: str = ""  # KFP: the artifact's MLMD id


Artifacts = Mapping[str, Union[str, InputArtifact, Sequence[Union[str, InputArtifact]]]]


@dataclasses.dataclass
class ExecutorRun:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, list[str]]  # output artifact name -> its URIs
    executor_output: dict[str, Any] | None  # outputs.outputFile's JSON, if written
    executor_input: dict[str, Any]
    command: list[str]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def root_defaults(pipeline_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The run-time parameters the spec declares, with their ``defaultValue``."""
    parameters = pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: p.get("defaultValue") for name, p in parameters.items()}


_PARAMETER_TYPES = {
    "STRING": (str,), "NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,), "LIST": (list,), "STRUCT": (dict,),
}


def _check_type(where: str, value: Any, parameter_type: str | None) -> None:
    expected = _PARAMETER_TYPES.get(parameter_type or "")
    if expected is None:
        return
    if parameter_type == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return  # JSON numbers: 30.0 is the integer 30
    if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
        raise ValueError(f"{where}: {value!r} is not a {parameter_type}")


def resolve_parameters(pipeline_spec: Mapping[str, Any], task: str,
                       run_parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The task's input parameter values for a run, as KFP's driver resolves them."""
    declared = pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(run_parameters or {}) - set(declared))
    if unknown:
        raise ValueError(f"run parameters {unknown} are not declared by the pipeline "
                         f"(declared: {sorted(declared)})")
    run = {**root_defaults(pipeline_spec), **dict(run_parameters or {})}
    for name, value in run.items():
        if value is None and not declared[name].get("isOptional"):
            raise ValueError(f"run parameter {name!r}: no value and no default")
        _check_type(f"run parameter {name!r}", value, declared[name].get("parameterType"))
    task_spec = pipeline_spec["root"]["dag"]["tasks"][task]
    component = pipeline_spec["components"][task_spec["componentRef"]["name"]]
    definitions = component.get("inputDefinitions", {}).get("parameters", {})
    values = {}
    for key, source in task_spec.get("inputs", {}).get("parameters", {}).items():
        if "componentInputParameter" in source:
            value = run[source["componentInputParameter"]]
        elif "runtimeValue" in source:
            value = source["runtimeValue"]["constant"]
        else:
            raise NotImplementedError(f"{task}.{key}: parameter source {sorted(source)} "
                                      f"(only run parameters and constants are supported)")
        _check_type(f"{task} input parameter {key!r}", value,
                    definitions.get(key, {}).get("parameterType"))
        values[key] = value
    return values


def _artifact_list(value) -> list[InputArtifact]:
    items = [value] if isinstance(value, (str, InputArtifact)) else list(value)
    return [InputArtifact(uri=a) if isinstance(a, str) else a for a in items]


def executor_input(pipeline_spec: Mapping[str, Any], task: str, workdir: str,
                   run_parameters: Mapping[str, Any] | None = None,
                   artifacts: Artifacts | None = None, run_id: str | None = None
                   ) -> dict[str, Any]:
    """The task's ExecutorInput (as a JSON-able dict, checked against KFP's proto)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    task_spec = pipeline_spec["root"]["dag"]["tasks"][task]
    component = pipeline_spec["components"][task_spec["componentRef"]["name"]]
    run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
    artifacts = dict(artifacts or {})

    input_defs = component.get("inputDefinitions", {}).get("artifacts", {})
    wanted = task_spec.get("inputs", {}).get("artifacts", {})
    missing, extra = sorted(set(wanted) - set(artifacts)), sorted(set(artifacts) - set(wanted))
    if missing or extra:
        raise ValueError(f"{task}: artifact inputs are {sorted(wanted)}; "
                         f"missing {missing}, unexpected {extra}")
    inputs_artifacts = {}
    for key in wanted:
        runtime = []
        for a in _artifact_list(artifacts[key]):
            entry = {"uri": a.uri, "type": input_defs[key]["artifactType"],
                     "metadata": dict(a.metadata)}
            if a.name:
                entry["name"] = a.name
            runtime.append(entry)
        inputs_artifacts[key] = {"artifacts": runtime}

    outputs_artifacts = {}
    root = os.path.join(workdir, "pipeline_root", run_id, task)
    for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
        uri = os.path.join(root, key)
        os.makedirs(os.path.dirname(uri), exist_ok=True)  # as the launcher's prepareOutputFolders
        entry = {"uri": uri, "type": definition["artifactType"]}
        if definition.get("metadata"):
            entry["metadata"] = definition["metadata"]
        outputs_artifacts[key] = {"artifacts": [entry]}
    output_parameters = {
        key: {"outputFile": os.path.join(workdir, "tmp", "kfp", "outputs", key)}
        for key in component.get("outputDefinitions", {}).get("parameters", {})}

    result = {
        "inputs": {"parameterValues": resolve_parameters(pipeline_spec, task, run_parameters),
                   "artifacts": inputs_artifacts},
        "outputs": {"artifacts": outputs_artifacts, "parameters": output_parameters,
                    "outputFile": os.path.join(workdir, "tmp", "kfp_outputs",
                                               "output_metadata.json")},
    }
    # Unknown fields or wrong shapes fail here, not inside the container.
    json_format.ParseDict(result, pipeline_spec_pb2.ExecutorInput())
    return result


def container(pipeline_spec: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The task's executor container (image, command, args) from the deployment spec."""
    task_spec = pipeline_spec["root"]["dag"]["tasks"][task]
    label = pipeline_spec["components"][task_spec["componentRef"]["name"]]["executorLabel"]
    return pipeline_spec["deploymentSpec"]["executors"][label]["container"]


def image_env(home: str) -> dict[str, str]:
    """The environment of the image's container: its ENV, this venv's python first on PATH."""
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                    "/usr/local/bin", "/usr/bin", "/bin"]),
           "HOME": home, "LANG": "C.UTF-8", **IMAGE_ENV}
    env.update({k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})
    return env


def run_task(pipeline_spec: Mapping[str, Any], task: str, workdir: str,
             run_parameters: Mapping[str, Any] | None = None,
             artifacts: Artifacts | None = None, timeout: float = 600) -> ExecutorRun:
    """Runs ``task``'s container command locally with the ExecutorInput KFP would give it."""
    workdir = os.path.abspath(str(workdir))
    the_input = executor_input(pipeline_spec, task, workdir, run_parameters, artifacts)
    serialized = json.dumps(the_input)
    spec = container(pipeline_spec, task)
    command = [*spec["command"], *[a.replace(PLACEHOLDER, serialized) for a in spec["args"]]]
    if command[0] == "python":  # the image's python is this venv's
        command[0] = sys.executable
    cwd, home = os.path.join(workdir, "cwd"), os.path.join(workdir, "home")
    os.makedirs(cwd, exist_ok=True)
    os.makedirs(home, exist_ok=True)
    proc = subprocess.run(command, cwd=cwd, env=image_env(home), capture_output=True,
                          text=True, timeout=timeout)
    output_file = the_input["outputs"]["outputFile"]
    executor_output = None
    if os.path.exists(output_file):
        with open(output_file) as f:
            executor_output = json.load(f)
    outputs = {key: [a["uri"] for a in value["artifacts"]]
               for key, value in the_input["outputs"]["artifacts"].items()}
    return ExecutorRun(proc.returncode, proc.stdout, proc.stderr, outputs, executor_output,
                       the_input, command)


# --- upstream artifacts from a local run's MLMD store ------------------------------------


def kfp_metadata(artifact) -> dict[str, Any]:
    """An MLMD artifact's properties then custom properties as KFP's ``toRuntimeArtifact``
    turns them into RuntimeArtifact metadata (ints and doubles become JSON numbers)."""
    from tfx.types import artifact as tfx_artifact

    metadata = {}
    for properties in (artifact.properties, artifact.custom_properties):
        for key, value in properties.items():
            kind = value.WhichOneof("value")
            if kind in ("int_value", "double_value"):
                metadata[key] = float(getattr(value, kind))
            elif kind == "string_value":
                metadata[key] = value.string_value
            elif kind == "struct_value":
                metadata[key] = tfx_artifact._decode_struct_value(value.struct_value)  # noqa: SLF001
            elif kind == "bool_value":
                metadata[key] = value.bool_value
            # proto values have no JSON form in KFP's metadata: left out
    return metadata


def mlmd_outputs(sqlite_path: str, node: str, pipeline_name: str | None = None
                 ) -> dict[str, list[InputArtifact]]:
    """The output artifacts (by output key) of ``node``'s latest completed (or cached)
    execution in a local run's MLMD store, as the consumer's ExecutorInput carries them."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(sqlite_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    contexts = [c for c in store.get_contexts_by_type("node")
                if (c.name == f"{pipeline_name}.{node}" if pipeline_name
                    else c.name.endswith(f".{node}"))]
    if len(contexts) != 1:
        raise LookupError(f"{sqlite_path}: {len(contexts)} node contexts named {node!r}")
    done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    executions = [e for e in store.get_executions_by_context(contexts[0].id)
                  if e.last_known_state in done]
    if not executions:
        raise LookupError(f"{sqlite_path}: {node} has no completed execution")
    latest = max(executions, key=lambda e: (e.create_time_since_epoch, e.id))
    events = [e for e in store.get_events_by_execution_ids([latest.id])
              if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps]
    by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    result: dict[str, list[InputArtifact]] = {}
    for event in sorted(events, key=lambda e: e.artifact_id):
        artifact = by_id[event.artifact_id]
        result.setdefault(event.path.steps[0].key, []).append(
            InputArtifact(uri=artifact.uri, metadata=kfp_metadata(artifact),
                          name=str(artifact.id)))
    return result
