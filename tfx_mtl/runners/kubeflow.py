"""The Kubeflow runner: compiles the pipeline for Kubeflow Pipelines (KFP v2), no cluster needed.

The DAG is :func:`tfx_mtl.pipeline.pipeline.create_pipeline`'s, the very one the
local runner (:mod:`tfx_mtl.runners.local`) runs; here TFX's ``KubeflowV2DagRunner`` writes it as a
KFP v2 ``PipelineJob`` (JSON, or YAML for a ``.yaml``/``.yml`` file). What a user
changes per run is a run-time parameter (:data:`PARAMETERS`) with the compile
options as defaults; everything else is fixed in the spec:

- the task spec and its curated schema travel by value, module code by import
  path, so the file names no path of the compiling machine;
- every executor runs ``image`` (``kubeflow/Dockerfile``: TFX 1.21 with tfx-mtl
  installed) through TFX's v2 entrypoint, named explicitly, so the image's own
  ENTRYPOINT can serve Beam workers;
- the number of seeds (every model trained once per seed, for ModelComparison);
- scale knobs, when set: Beam args for ExampleGen, StatisticsGen, Transform and
  the Evaluators (:mod:`beam_args`), GPUs/CPU/memory for every Trainer, or
  several workers per Trainer through a Vertex AI custom job.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

from tfx_mtl import data as data_lib
from tfx_mtl import naming, run_parameters, task_spec
from tfx_mtl.errors import InputError
from tfx_mtl.kubeflow import beam_args
from tfx_mtl.run_parameters import ARCHITECTURE, COMBINE, DATA_ROOT, TRAIN_STEPS, WEIGHTING

# Where kubeflow/Dockerfile puts the bundled taxi data inside the image: the default
# data location, so a fresh cluster can run the pipeline before any data is uploaded.
IMAGE_DATA_ROOT = "/opt/tfx-mtl/data/chicago_taxi"
ENTRYPOINT = ("python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
_IMAGE = re.compile(r"^[\w.\-/:@]+$")


class CompileError(InputError):
    """A compile option is invalid; ``field`` names the option."""


@dataclasses.dataclass(frozen=True)
class TrainerScale:
    """Where each Trainer (multi-task and baselines alike) runs.

    ``gpus`` > 1 on one machine trains under MirroredStrategy; ``workers`` > 1
    trains as a Vertex AI custom job of that many machines under
    MultiWorkerMirroredStrategy (``vertex_project``/``vertex_region`` needed).
    ``gpu_type`` is the accelerator: a Kubernetes resource name on Kubeflow
    (``nvidia.com/gpu``), a Vertex machine accelerator with workers
    (``NVIDIA_TESLA_T4``).
    """

    gpus: int = 0
    gpu_type: str | None = None
    cpu: float | None = None  # cores (limit)
    memory_gb: float | None = None  # limit, in GB (KFP's unit)
    workers: int = 1
    machine_type: str = "n1-standard-8"
    vertex_project: str | None = None
    vertex_region: str | None = None


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    image: str
    pipeline_root: str
    spec_path: str | None = None  # default: the bundled taxi spec
    data_root: str = IMAGE_DATA_ROOT
    data_format: str = "csv"  # of the files under data_root, whatever a run sets it to
    # unsplit (ExampleGen hashes data_root's files into the splits) or split-dirs
    # (data_root holds train/, validation/, test/): a run's data_root cannot be looked at
    # when the pipeline compiles, so the layout is fixed here.
    data_layout: str = data_lib.UNSPLIT
    serving_model_dir: str | None = None  # default: <pipeline_root>/serving_model/<name>
    train_steps: int = run_parameters.DEFAULT_TRAIN_STEPS
    eval_steps: int = 50
    trainer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    beam_args: tuple[str, ...] = ()
    trainer: TrainerScale = TrainerScale()
    enable_cache: bool = True
    seeds: int | None = None  # trainings of each model; default: the spec's evaluation.seeds


def check_options(options: CompileOptions) -> None:
    """Refuses options that would compile into a spec that cannot run on a cluster."""
    if not options.image or not _IMAGE.match(options.image):
        raise CompileError("--image", f"not a container image reference: {options.image!r}")
    for flag, value in (("--pipeline-root", options.pipeline_root),
                        ("--serving-model-dir", options.serving_model_dir)):
        if value is not None and not _URI.match(value):
            raise CompileError(
                flag, f"{value!r} is not a storage URI every pod can reach "
                f"(gs://bucket/path, s3://bucket/path); local paths do not exist on the cluster")
    if options.data_root != IMAGE_DATA_ROOT and not _URI.match(options.data_root):
        raise CompileError("--data-root", f"{options.data_root!r} is not a storage URI "
                           f"(gs://bucket/dir of data files) nor the image's bundled data")
    if options.data_format not in data_lib.FORMATS:
        raise CompileError("--data-format", f"must be one of {', '.join(data_lib.FORMATS)}, "
                           f"got {options.data_format!r}")
    if options.data_format != "csv" and options.data_root == IMAGE_DATA_ROOT:
        raise CompileError("--data-format", f"{options.data_format} needs --data-root: the "
                           f"image's bundled data ({IMAGE_DATA_ROOT}) is CSV")
    if options.data_layout not in data_lib.LAYOUTS:
        raise CompileError("--data-layout", f"must be one of {', '.join(data_lib.LAYOUTS)}, "
                           f"got {options.data_layout!r}")
    if options.data_layout != data_lib.UNSPLIT and options.data_root == IMAGE_DATA_ROOT:
        raise CompileError("--data-layout", f"{options.data_layout} needs --data-root: the "
                           f"image's bundled data ({IMAGE_DATA_ROOT}) is one unsplit input")
    run_parameters.check_train_steps(options.train_steps, "--train-steps")
    if options.seeds is not None:
        run_parameters.check_positive_int(options.seeds, "--seeds")
    t = options.trainer
    if t.gpus < 0 or t.workers < 1:
        raise CompileError("--trainer-gpus/--trainer-workers",
                           "must be >= 0 GPUs and >= 1 worker")
    if t.workers > 1 and not (t.vertex_project and t.vertex_region):
        raise CompileError(
            "--trainer-workers", f"{t.workers} workers train as a Vertex AI custom job; "
            f"set --vertex-project and --vertex-region")


def trainer_resources(t: TrainerScale):
    """The KFP ResourceSpec of a Trainer's container, or None when nothing is set."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    if t.workers > 1 or not (t.gpus or t.cpu or t.memory_gb):
        return None
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if t.cpu:
        spec.cpu_limit = t.cpu
    if t.memory_gb:
        spec.memory_limit = t.memory_gb
    if t.gpus:
        spec.accelerator.type = t.gpu_type or "nvidia.com/gpu"
        spec.accelerator.count = t.gpus
    return spec


def vertex_training(t: TrainerScale, image: str) -> dict[str, Any] | None:
    """The Trainer's ``custom_config`` keys that run it as a Vertex AI custom job: a
    chief pool of one and a worker pool of ``workers - 1``, all on ``image``."""
    if t.workers <= 1:
        return None
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex

    machine: dict[str, Any] = {"machine_type": t.machine_type}
    if t.gpus:
        machine.update(accelerator_type=t.gpu_type or "NVIDIA_TESLA_T4",
                       accelerator_count=t.gpus)
    pool = {"machine_spec": machine, "container_spec": {"image_uri": image}}
    return {
        vertex.TRAINING_ARGS_KEY: {
            "project": t.vertex_project,
            "worker_pool_specs": [{**pool, "replica_count": 1},
                                  {**pool, "replica_count": t.workers - 1}]},
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: t.vertex_region,
    }


def build(options: CompileOptions):
    """The TFX pipeline object for Kubeflow (the local DAG, with run-time parameters)."""
    from tfx import v1 as tfx

    from tfx_mtl.models.trainer_config import checked_trainer_config
    from tfx_mtl.pipeline import pipeline as pipeline_lib

    check_options(options)
    spec_path = options.spec_path or data_lib.bundled_spec()
    spec = task_spec.load(spec_path)
    if spec.evaluation.baselines == "reuse":
        raise CompileError(
            spec_path, "evaluation.baselines: reuse cannot compile for Kubeflow: KFP v2's "
            "resolver picks the latest Model of any producer, not the task's baseline")
    trainer_config = checked_trainer_config(dict(options.trainer_options), spec)
    try:
        image_beam_args = beam_args.distributed(options.beam_args, options.image) \
            if options.beam_args else ()
    except beam_args.BeamArgsError as e:
        raise CompileError("--beam-arg", str(e)) from None

    def parameter(name, ptype, default):
        return tfx.dsl.experimental.RuntimeParameter(name=name, ptype=ptype, default=default)

    name = naming.pipeline_name(spec.name)
    return pipeline_lib.create_pipeline(
        pipeline_name=name,
        pipeline_root=options.pipeline_root,
        data=pipeline_lib.DataSource(
            parameter(DATA_ROOT, str, options.data_root), data_lib.PATTERNS[options.data_format],
            options.data_format,
            naming.SPLITS if options.data_layout == data_lib.SPLIT_DIRS else ()),
        spec=spec,
        serving_model_dir=(options.serving_model_dir
                           or f"{options.pipeline_root.rstrip('/')}/serving_model/{name}"),
        train_steps=parameter(TRAIN_STEPS, int, options.train_steps),
        eval_steps=options.eval_steps,
        trainer_config=trainer_config,
        run_parameters={
            ARCHITECTURE: parameter(ARCHITECTURE, str, trainer_config.architecture.name),
            WEIGHTING: parameter(WEIGHTING, str, trainer_config.weighting),
            COMBINE: parameter(COMBINE, str, trainer_config.combine)},
        scale=pipeline_lib.Scale(
            beam_args=image_beam_args,
            trainer_resources=trainer_resources(options.trainer),
            vertex_training=vertex_training(options.trainer, options.image)),
        enable_cache=options.enable_cache,
        seeds=spec.evaluation.seeds if options.seeds is None else options.seeds)


def compile_pipeline(options: CompileOptions, output: str) -> dict[str, Any]:
    """Writes the compiled pipeline to ``output`` and returns the PipelineJob as a dict.

    A ``.yaml``/``.yml`` file holds the PipelineSpec (what Kubeflow Pipelines
    uploads), a ``.json`` file the whole PipelineJob (what Vertex AI runs). TFX's
    runner leaves the run-time parameters' defaults out of the spec; they are put
    where KFP reads them (``root.inputDefinitions``) and into the job's runtime
    config. Keys are sorted, so the same inputs give the same bytes.
    """
    from tfx import v1 as tfx

    if not output.endswith((".json", ".yaml", ".yml")):
        raise CompileError("--output", f"{output!r} must end in .json, .yaml or .yml")
    pipeline = build(options)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=options.image, default_commands=list(ENTRYPOINT),
            use_pipeline_spec_2_1=True))
    job = runner.run(pipeline, write_out=False)
    defaults = _defaults(pipeline)
    declared = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    if set(declared) != set(defaults):
        raise RuntimeError(f"compiled run-time parameters {sorted(declared)} are not "
                           f"{sorted(defaults)}")
    for name, default in defaults.items():
        declared[name].update(defaultValue=default, isOptional=True)
    job["runtimeConfig"]["parameterValues"] = dict(defaults)
    # Where KFP puts every artifact unless a run says otherwise (TFX leaves it to the
    # PipelineJob's runtime config, which a YAML package does not carry).
    job["pipelineSpec"]["defaultPipelineRoot"] = options.pipeline_root
    _write(job, output)
    return job


def _defaults(pipeline) -> dict[str, Any]:
    """Each RuntimeParameter of ``pipeline`` with its default, by name."""
    from tfx.orchestration import data_types

    found: dict[str, Any] = {}
    for component in pipeline.components:
        for value in component.exec_properties.values():
            if isinstance(value, data_types.RuntimeParameter):
                found[value.name] = value.default
    return found


def _write(job: Mapping[str, Any], output: str) -> None:
    import json

    import yaml

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        if output.endswith(".json"):
            json.dump(job, f, sort_keys=True, indent=1)
            f.write("\n")
            return
        spec = job["pipelineSpec"]
        f.write(f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
                f"# Compiled by tfx-mtl ({spec.get('sdkVersion', '')}); run-time parameters:\n")
        for name, p in sorted(spec["root"]["inputDefinitions"]["parameters"].items()):
            f.write(f"#  {name}: {p['parameterType']} [Default: {p.get('defaultValue')!r}]\n")
        yaml.safe_dump(spec, f, sort_keys=True)


def run_value_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(parameter, problem) for each run-time value the Trainer would refuse, so that
    submit refuses it before the run starts (KFP only checks types). Other parameters,
    and other pipelines', pass through."""
    from tfx_mtl.models import architecture, combination, weighting

    choices = {ARCHITECTURE: architecture.ARCHITECTURES, WEIGHTING: weighting.names(),
               COMBINE: combination.names()}
    problems = [(name, f"{values[name]!r} is not one of {', '.join(allowed)}")
                for name, allowed in choices.items()
                if name in values and values[name] not in allowed]
    if values.get(TRAIN_STEPS) is not None:
        try:
            run_parameters.check_train_steps(values[TRAIN_STEPS])
        except InputError as e:
            problems.append((e.field, e.message))
    return problems


def parameter_defaults(pipeline_job: Mapping[str, Any]) -> dict[str, Any]:
    """The run-time parameters a compiled PipelineJob declares, with their defaults."""
    parameters = pipeline_job["pipelineSpec"]["root"].get("inputDefinitions", {}).get(
        "parameters", {})
    return {name: p.get("defaultValue") for name, p in parameters.items()}
