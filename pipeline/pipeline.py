"""The multi-task TFX pipeline, one definition for every runner.

CsvExampleGen | ImportExampleGen (CSV | TFRecord data, into the splits train,
   validation and test) -> StatisticsGen
-> SchemaGen | CuratedSchemaGen (the spec's schema) -> ExampleValidator -> SchemaGate
-> Transform (analyses train, transforms every split)
-> Trainer (the multi-task model)
   and, per task, ``baseline_<task>`` (a single-task Trainer of the same family
   and budget, or the latest one already trained: ``latest_baseline_<task>``);
   each fits on train and evaluates on validation, never reading test
-> per task, ``evaluate_<task>`` (TFMA on test: multi-task vs that task's baseline)
   and ``ModelComparison`` (every model on the test split: paired intervals, Δm)
-> BlessingGate (the spec's policy over the per-task blessings) -> Pusher (AtomicPusher:
   TFX's, with a version that appears whole, never overwritten)

With ``seeds`` > 1 the multi-task Trainer and every baseline are trained once per
seed (``Trainer__seed<i>``, ``baseline_<task>__seed<i>``; seed 0 keeps the plain ids):
ModelComparison pools them; the Evaluators, the gate and the Pusher use seed 0.

Transform and the Trainers get the spec without its evaluation section and
bounds (:meth:`TaskSpec.training_view`), so changing how runs are judged
re-runs the Evaluators and the gate, never the training.

Module code is referenced by import path (``tfx_mtl.models...``) and the curated
schema travels by value, so a compiled pipeline carries no local file path and
runs wherever the package is installed. Because TFX then cannot hash a module
file, each component that runs project code carries the code version
(:mod:`tfx_mtl.module_graph`) of exactly that code in a parameter of its own:
Transform, each Trainer and the Pusher in ``custom_config``, BlessingGate and
ModelComparison in ``code_version``, the Evaluators in their EvalConfig (see
:mod:`eval_config`).
Changing that code re-runs the component; changing other code re-runs nothing.
Each Trainer also gets a checkpoint root under ``pipeline_root`` of its own
(:mod:`tfx_mtl.models.checkpoint_key`), so the re-run of a crashed Trainer resumes.

The same DAG runs locally (plain values) and on Kubeflow, where the data
location, the train steps, the architecture, the weighting and the gradient
combination are ``RuntimeParameter``s set per run, and :class:`Scale` sends the
heavy Beam components to a distributed runner and the Trainers to GPUs or to
several workers.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from tfx import v1 as tfx

from tfx_mtl import data as data_lib
from tfx_mtl import module_graph, naming
from tfx_mtl import run_parameters as run_parameters_lib
from tfx_mtl.components import missing_values_csv, mtl_trainer, streaming_write
from tfx_mtl.components.atomic_pusher import AtomicPusher
from tfx_mtl.components.blessing_gate import BlessingGate
from tfx_mtl.components.curated_schema import CuratedSchemaGen, read_schema_text
from tfx_mtl.components.model_comparison import ModelComparison
from tfx_mtl.components.schema_gate import SchemaGate, checks_parameter
from tfx_mtl.models import checkpoint_key
from tfx_mtl.models.preprocessing import SPEC_CONFIG_KEY
from tfx_mtl.models.trainer_config import TRAINER_CONFIG_KEY, TrainerConfig
from tfx_mtl.pipeline import eval_config
from tfx_mtl.task_spec import DataConfig, TaskSpec

PREPROCESSING_FN = "tfx_mtl.models.preprocessing.preprocessing_fn"
RUN_FN = "tfx_mtl.models.trainer.run_fn"
BASELINE_OUTPUT = "model"  # the Trainer output a reused baseline is resolved from
# Beam's DirectRunner as every runner uses it for the light components (and, unless
# Scale.beam_args says otherwise, the heavy ones): in this process, one worker, on the
# FnApiRunner. Pinned (tfx_mtl.runners.direct_runner), so a run never picks another
# runner on its own, nor tries to download Beam's Prism runner.
# (tfx_mtl.runners.beam_runner.IN_PROCESS_ARGS, which the runners' tests pin to this.)
DIRECT_BEAM_ARGS = ("--runner=tfx_mtl.runners.direct_runner.PinnedDirectRunner",
                    "--direct_running_mode=in_memory", "--direct_num_workers=1")
CODE_VERSION_KEY = "code_version"  # in Transform's and the Trainers' custom_config


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where ExampleGen reads: a directory (or a RuntimeParameter naming one), a file
    pattern inside it, and the files' format (:data:`tfx_mtl.data.FORMATS`): CSV
    files (CsvExampleGen) or TFRecord files of serialized tf.Example (ImportExampleGen).
    ``splits``: the sub-directories of an input already split, the pattern inside each
    (:func:`tfx_mtl.data.split_layout`); empty for one input that ExampleGen hashes."""

    directory: Any
    pattern: str = "*"
    format: str = "csv"
    splits: tuple[str, ...] = ()

    @classmethod
    def from_path(cls, path: str) -> "DataSource":
        """A --data argument: one file, a directory's files of one format, or a directory
        per split."""
        fmt, _ = data_lib.data_files(path)
        splits = data_lib.split_layout(path)
        path = os.path.abspath(path)
        if os.path.isdir(path):
            return cls(path, data_lib.PATTERNS[fmt], fmt, splits)
        return cls(os.path.dirname(path), os.path.basename(path), fmt)


def _code_version(component_class: type, module_fn: str | None = None) -> str:
    """The code version of what a component runs: its executor's module when the executor
    is ours, and ``module_fn``'s (a dotted path to a function), with all they import."""
    modules = [component_class.EXECUTOR_SPEC.executor_class.__module__]
    if module_fn:
        modules.append(module_fn.rpartition(".")[0])
    return module_graph.code_version(m for m in modules if m.startswith(f"{module_graph.ROOT}."))


@dataclasses.dataclass(frozen=True)
class Scale:
    """Where the heavy work runs; the defaults keep every component on one machine.

    ``beam_args`` go to the data-parallel components (ExampleGen, StatisticsGen,
    Transform, the Evaluators), e.g. a Dataflow, Flink or Spark runner's options;
    the light ones keep the pipeline's own Beam args. ``trainer_resources`` is a
    platform config (a KFP ``ResourceSpec``: CPU, memory, GPUs) for every Trainer,
    baselines included, so each is trained on the same hardware; with several
    GPUs the Trainer runs under MirroredStrategy. ``vertex_training`` (keys for
    the Trainer's ``custom_config``: worker pools, region) runs every Trainer as a
    Vertex AI custom job, several workers under MultiWorkerMirroredStrategy.
    """

    beam_args: tuple[str, ...] = ()
    trainer_resources: Any = None
    vertex_training: Mapping[str, Any] | None = None


def create_example_gen(data: DataSource,
                       buckets: Sequence[tuple[str, int]] = DataConfig().splits,
                       missing_values: Sequence[str] = ()):
    """The ExampleGen for the data's format, under TFX's default id (naming.EXAMPLE_GEN),
    writing the splits of naming.SPLITS: an input already split is used as given (one
    input split per directory, and an empty output config, which TFX then copies);
    otherwise all the files are one input, hashed into the splits by ``buckets``
    (the spec's ``data.splits``: (split, hash buckets) pairs). CSV cells equal to one of
    ``missing_values`` (the spec's ``data.missing_values``) are read as empty ones. CSV is
    read by the project's streaming executor (components/streaming_csv.py: TFX's
    CsvExampleGen's splits and output, memory flat in rows), under TFX's id; TFRecord by
    TFX's ImportExampleGen writing without its reshuffle (components/streaming_write.py)."""
    if data.splits:
        input_config = tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=split, pattern=f"{split}/{data.pattern}")
            for split in data.splits])
        output_config = tfx.proto.Output()
    else:
        input_config = tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="single_split", pattern=data.pattern)])
        output_config = tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name=split, hash_buckets=count)
            for split, count in buckets]))
    if data.format == "csv":
        return missing_values_csv.MissingValuesCsvExampleGen(
            input_base=data.directory, input_config=input_config, output_config=output_config,
            custom_config=missing_values_csv.custom_config(missing_values),
        ).with_id(naming.EXAMPLE_GEN["csv"])
    return streaming_write.StreamingImportExampleGen(
        input_base=data.directory, input_config=input_config, output_config=output_config,
    ).with_id(naming.EXAMPLE_GEN["tfrecord"])


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data: DataSource,
    spec: TaskSpec,
    serving_model_dir: str,
    train_steps: Any,
    eval_steps: int = 50,
    trainer_config: TrainerConfig = TrainerConfig(),
    run_parameters: Mapping[str, Any] | None = None,
    baselines: str | None = None,
    scale: Scale = Scale(),
    metadata_connection_config: Any = None,
    beam_pipeline_args: Sequence[str] = DIRECT_BEAM_ARGS,
    enable_cache: bool = True,
    seeds: int = 1,
) -> tfx.dsl.Pipeline:
    """The DAG for ``spec``; ``baselines`` ("train" | "reuse") overrides the spec's.

    ``train_steps`` is a number or a RuntimeParameter; ``run_parameters`` maps
    ``architecture``, ``weighting`` and ``combine`` to RuntimeParameters that
    override ``trainer_config``'s values per run. ``seeds`` trains the multi-task model
    and every baseline that many times (seeds ``trainer_config.seed + i``) for
    ModelComparison; the Evaluators, the gate and the Pusher use seed 0's models.
    """
    baselines = baselines or spec.evaluation.baselines
    if baselines not in ("train", "reuse"):
        raise ValueError(f"baselines: must be 'train' or 'reuse', got {baselines!r}")
    run_parameters_lib.check_positive_int(seeds, "seeds")
    run_parameters = dict(run_parameters or {})
    unknown = sorted(set(run_parameters) - {run_parameters_lib.ARCHITECTURE,
                                            run_parameters_lib.WEIGHTING,
                                            run_parameters_lib.COMBINE})
    if unknown:
        raise ValueError(f"run_parameters: unknown {', '.join(unknown)}")
    spec_config = {SPEC_CONFIG_KEY: spec.training_view().to_dict()}
    heavy_beam_args = list(scale.beam_args)

    def heavy(component):
        """A data-parallel Beam component: on the distributed runner when one is set."""
        return component.with_beam_pipeline_args(heavy_beam_args) if heavy_beam_args else component

    example_gen = heavy(create_example_gen(data, spec.data.splits, spec.data.missing_values))
    statistics_gen = heavy(tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]))
    if spec.schema:
        schema_gen = CuratedSchemaGen(schema_text=read_schema_text(spec.schema))
    else:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    trained = trainer_config.trained_spec(spec)
    schema_gate = SchemaGate(
        anomalies=example_validator.outputs["anomalies"], schema=schema_gen.outputs["schema"],
        statistics=statistics_gen.outputs["statistics"], data_root=data.directory,
        checks=checks_parameter(data.pattern, trained.tasks,
                                spec.evaluation.max_non_finite_labels, data.splits))
    transform = heavy(tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        # TFX's default, pinned: the statistics of train only, every split transformed.
        splits_config=tfx.proto.SplitsConfig(analyze=[naming.TRAIN],
                                             transform=list(naming.SPLITS)),
        custom_config={SPEC_CONFIG_KEY: spec.transform_view().to_dict(),
                       CODE_VERSION_KEY: _code_version(
            tfx.components.Transform, PREPROCESSING_FN)},
        # Nothing reads Transform's pre/post-transform statistics (StatisticsGen's are the
        # data's) nor its analyzer cache (no run feeds it back): neither is computed.
        disable_statistics=True, disable_analyzer_cache=True))

    def trainer(node_id: str, config: TrainerConfig,
                run_options: Mapping[str, Any]) -> mtl_trainer.MtlTrainer:
        component_class = mtl_trainer.MtlTrainer
        if scale.vertex_training:
            from tfx_mtl.components.vertex_trainer import VertexMtlTrainer
            component_class = VertexMtlTrainer
        component = component_class(
            run_fn=RUN_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            train_args=tfx.proto.TrainArgs(
                splits=[naming.TRAIN],
                num_steps=train_steps if isinstance(train_steps, int) else None),
            eval_args=tfx.proto.EvalArgs(splits=[naming.VALIDATION], num_steps=eval_steps),
            custom_config={**spec_config, CODE_VERSION_KEY: _code_version(component_class, RUN_FN),
                           TRAINER_CONFIG_KEY: config.to_dict(),
                           checkpoint_key.CHECKPOINT_ROOT_KEY: checkpoint_key.root(
                               pipeline_root, node_id),
                           **(scale.vertex_training or {})},
            run_options={run_parameters_lib.TRAIN_STEPS: train_steps, **run_options})
        if scale.trainer_resources is not None:
            component.with_platform_config(scale.trainer_resources)
        return component.with_id(node_id)

    # Seed i trains every model with seed + i; seed 0 keeps the plain node ids (so a run
    # with more seeds reuses a one-seed run's cached Trainers) and is what is evaluated
    # per task, gated and pushed. ModelComparison sees every seed.
    seed_configs = [dataclasses.replace(trainer_config, seed=trainer_config.seed + i)
                    for i in range(seeds)]
    multi_tasks = [trainer(naming.trainer_node(i), config, {
        run_parameters_lib.ARCHITECTURE: trainer_config.architecture.name,
        run_parameters_lib.WEIGHTING: trainer_config.weighting,
        run_parameters_lib.COMBINE: trainer_config.combine,
        **run_parameters}) for i, config in enumerate(seed_configs)]
    multi_task = multi_tasks[0]

    def single_task(task: str, i: int):
        if baselines == "reuse":
            return tfx.dsl.Resolver(
                strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
                model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                                      producer_component_id=naming.baseline_node(task, i),
                                      output_key=BASELINE_OUTPUT),
            ).with_id(naming.latest_baseline_node(task, i))
        # The model's own family, for one task; it follows a run-time architecture.
        return trainer(naming.baseline_node(task, i), seed_configs[i].baseline_for(task), {
            run_parameters_lib.ARCHITECTURE: run_parameters.get(
                run_parameters_lib.ARCHITECTURE, trainer_config.architecture.name)})

    seeded_baselines = {task: [single_task(task, i) for i in range(seeds)]
                        for task in trained.task_names}
    evaluators = {}
    for task in trained.task_names:
        evaluators[task] = heavy(tfx.components.Evaluator(
            examples=example_gen.outputs["examples"], example_splits=[naming.TEST],
            model=multi_task.outputs["model"],
            baseline_model=seeded_baselines[task][0].outputs["model"],
            eval_config=eval_config.for_task(trained, task),
            module_path=eval_config.EXTRACTORS_MODULE)).with_id(naming.evaluator_node(task))
    comparison = ModelComparison(
        examples=example_gen.outputs["examples"],
        models=[m.outputs["model"] for m in multi_tasks],
        baselines={t: [b.outputs["model"] for b in nodes]
                   for t, nodes in seeded_baselines.items()},
        spec=trained.judging_view(),
        seeds=[config.seed for config in seed_configs],
        code_version=_code_version(ModelComparison))
    gate = BlessingGate(
        model=multi_task.outputs["model"],
        comparison=comparison.outputs["comparison"],
        evaluations={t: e.outputs["evaluation"] for t, e in evaluators.items()},
        blessings={t: e.outputs["blessing"] for t, e in evaluators.items()},
        spec=trained.judging_view(),
        code_version=_code_version(BlessingGate))
    pusher = AtomicPusher(
        model=multi_task.outputs["model"],
        model_blessing=gate.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
        custom_config={CODE_VERSION_KEY: _code_version(AtomicPusher)},
    ).with_id(naming.PUSHER)

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, schema_gate,
                    transform, *multi_tasks,
                    *(node for nodes in zip(*seeded_baselines.values()) for node in nodes),
                    *evaluators.values(), comparison, gate, pusher],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args))
