"""The multi-task TFX pipeline, one definition for every runner.

CsvExampleGen -> StatisticsGen -> SchemaGen | ImportSchemaGen (curated schema)
-> ExampleValidator -> SchemaGate -> Transform -> Trainer -> Evaluator -> Pusher

Module code is referenced by import path (``tfx_mtl.models...``), so a compiled
pipeline carries no local file path and runs wherever the package is installed.
Because TFX then cannot hash a module file, the components' ``custom_config``
carries a hash of the package's source: changing the code invalidates the cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
from typing import Any, Sequence

import tensorflow as tf
from tfx import v1 as tfx

from tfx_mtl.components.schema_gate import SchemaGate
from tfx_mtl.models.preprocessing import SPEC_CONFIG_KEY
from tfx_mtl.models.trainer_config import TRAINER_CONFIG_KEY, TrainerConfig
from tfx_mtl.pipeline import eval_config
from tfx_mtl.task_spec import TaskSpec

PREPROCESSING_FN = "tfx_mtl.models.preprocessing.preprocessing_fn"
RUN_FN = "tfx_mtl.models.trainer.run_fn"
# The packages whose code runs inside Transform and Trainer (spec, labels, models).
_CODE_PACKAGES = ("tfx_mtl", "tfx_mtl.models")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where CsvExampleGen reads: a directory and a file pattern inside it."""

    directory: str
    pattern: str = "*"

    @classmethod
    def from_path(cls, path: str) -> "DataSource":
        path = os.path.abspath(path)
        if os.path.isdir(path):
            return cls(path, "*.csv")
        return cls(os.path.dirname(path), os.path.basename(path))


def code_version() -> str:
    """A short hash of the module code Transform and Trainer run (see _CODE_PACKAGES)."""
    digest = hashlib.sha256()
    for name in _CODE_PACKAGES:
        directory = importlib.import_module(name).__path__[0]
        for filename in sorted(os.listdir(directory)):
            if filename.endswith(".py"):
                digest.update(filename.encode())
                with open(os.path.join(directory, filename), "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def stage_schema(schema_file: str, pipeline_root: str) -> str:
    """Copies the curated schema to a path named by its content's hash.

    TFX keys ImportSchemaGen's cache on the file's path, not its content; a
    content-addressed copy makes an edited schema a new input.
    """
    with tf.io.gfile.GFile(schema_file, "rb") as f:
        content = f.read()
    digest = hashlib.sha256(content).hexdigest()[:16]
    staged = os.path.join(pipeline_root, "curated_schema", digest, "schema.pbtxt")
    if not tf.io.gfile.exists(staged):
        tf.io.gfile.makedirs(os.path.dirname(staged))
        with tf.io.gfile.GFile(staged, "wb") as f:
            f.write(content)
    return staged


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data: DataSource,
    spec: TaskSpec,
    serving_model_dir: str,
    train_steps: int,
    eval_steps: int = 50,
    trainer_config: TrainerConfig = TrainerConfig(),
    metadata_connection_config: Any = None,
    beam_pipeline_args: Sequence[str] = (),
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    custom_config = {SPEC_CONFIG_KEY: spec.to_dict(), "code_version": code_version()}

    example_gen = tfx.components.CsvExampleGen(
        input_base=data.directory,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="single_split", pattern=data.pattern)]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=4),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1)])))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    if spec.schema:
        schema_gen = tfx.components.ImportSchemaGen(
            schema_file=stage_schema(spec.schema, pipeline_root))
    else:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    schema_gate = SchemaGate(anomalies=example_validator.outputs["anomalies"],
                             schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gate.outputs["validated_schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=custom_config)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=eval_steps),
        custom_config={**custom_config,
                       TRAINER_CONFIG_KEY: trainer_config.to_dict()})
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=eval_config.build(spec))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, schema_gate,
                    transform, trainer, evaluator, pusher],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args))
