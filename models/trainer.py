"""Trainer module: ``run_fn`` trains the multi-task model with a custom loop.

The loop is a ``tf.GradientTape`` step inside ``tf.function``: each task's
masked loss (see heads) times its static spec weight, summed. Per-task losses
go to TensorBoard under the Trainer's run directory. The multi-task optimiser
(loss weighting, gradient surgery, MirroredStrategy) builds on this loop.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Iterator, Mapping

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx_bsl.public.tfxio import TensorFlowDatasetOptions

from tfx_mtl import naming
from tfx_mtl.models import export, heads, shared_bottom
from tfx_mtl.models.preprocessing import SPEC_CONFIG_KEY
from tfx_mtl.task_spec import TaskSpec

TRAINER_CONFIG_KEY = "trainer"


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 42
    log_every: int = 50
    architecture: shared_bottom.ArchitectureConfig = shared_bottom.ArchitectureConfig()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrainerConfig":
        data = dict(data or {})
        arch = data.pop("architecture", None) or {}
        arch = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()}
        return cls(**data, architecture=shared_bottom.ArchitectureConfig(**arch))


class NonFiniteLossError(RuntimeError):
    """A task's loss became NaN or Inf."""


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    spec = TaskSpec.from_dict(fn_args.custom_config[SPEC_CONFIG_KEY])
    config = TrainerConfig.from_dict(fn_args.custom_config.get(TRAINER_CONFIG_KEY))
    tf.keras.utils.set_random_seed(config.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)

    def dataset(files, shuffle):
        return fn_args.data_accessor.tf_dataset_factory(
            files,
            TensorFlowDatasetOptions(batch_size=config.batch_size, shuffle=shuffle,
                                     shuffle_seed=config.seed, num_epochs=None),
            tf_transform_output.transformed_metadata.schema)

    train_data = dataset(fn_args.train_files, shuffle=True)
    eval_data = dataset(fn_args.eval_files, shuffle=False)
    label_stats = read_label_stats(spec, next(iter(train_data)))
    num_classes = {t.name: len(tf_transform_output.vocabulary_by_name(
        naming.label_vocab_name(t.name))) for t in spec.tasks if t.type == "multiclass"}
    model = shared_bottom.build(
        spec, shared_bottom.input_cardinalities(spec, tf_transform_output.vocabulary_size_by_name),
        num_classes, config.architecture)

    train(model, spec, config, label_stats, iter(train_data), fn_args.train_steps,
          log_dir=fn_args.model_run_dir)
    eval_losses = evaluate(model, spec, label_stats, iter(eval_data), fn_args.eval_steps)
    logging.info("eval losses after %d steps: %s", fn_args.train_steps, eval_losses)
    export.export(model, spec, tf_transform_output, label_stats, fn_args.serving_model_dir)


def read_label_stats(spec: TaskSpec, batch: Mapping[str, tf.Tensor]
                     ) -> dict[str, tuple[float, float]]:
    """(mean, std) of each regression label: constants Transform wrote on every row."""
    stats = {}
    for task in spec.tasks:
        if task.type != "regression":
            continue
        if task.standardize:
            stats[task.name] = (float(tf.reshape(batch[naming.label_mean_key(task.name)], [-1])[0]),
                                float(tf.reshape(batch[naming.label_std_key(task.name)], [-1])[0]))
        else:
            stats[task.name] = (0.0, 1.0)
    return stats


def _model_inputs(spec: TaskSpec, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {naming.feature_key(f): batch[naming.feature_key(f)] for f in spec.feature_names}


def task_losses(model, spec: TaskSpec, label_stats, batch, training: bool
                ) -> dict[str, tf.Tensor]:
    """Each task's masked loss on one batch."""
    raw = model(_model_inputs(spec, batch), training=training)
    return {task.name: heads.masked_loss(
                task, raw[task.name], batch[naming.label_key(task.name)],
                batch[naming.mask_key(task.name)], *label_stats.get(task.name, (0.0, 1.0)))
            for task in spec.tasks}


def train(model, spec: TaskSpec, config: TrainerConfig, label_stats, batches: Iterator,
          steps: int, log_dir: str | None = None) -> dict[str, float]:
    """Runs ``steps`` optimiser steps; returns the last step's per-task losses."""
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    weights = {task.name: task.weight for task in spec.tasks}

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            losses = task_losses(model, spec, label_stats, batch, training=True)
            total = tf.add_n([weights[name] * loss for name, loss in losses.items()])
        variables = model.trainable_variables
        grads = tape.gradient(total, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        optimizer.apply_gradients(zip(grads, variables))
        return losses

    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    losses: dict[str, float] = {}
    started = time.monotonic()
    for i in range(1, steps + 1):
        losses = {name: float(v) for name, v in step(next(batches)).items()}
        for name, value in losses.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(f"task {name!r}: loss is {value} at step {i}")
        if i % config.log_every == 0 or i == steps:
            logging.info("step %d/%d (%.1fs) losses %s", i, steps,
                         time.monotonic() - started, losses)
            if writer:
                with writer.as_default(step=i):
                    for name, value in losses.items():
                        tf.summary.scalar(f"loss/{name}", value)
    if writer:
        writer.flush()
    return losses


def evaluate(model, spec: TaskSpec, label_stats, batches: Iterator, steps: int
             ) -> dict[str, float]:
    """Mean per-task loss over ``steps`` eval batches."""
    step = tf.function(lambda batch: task_losses(model, spec, label_stats, batch, training=False))
    totals = {task.name: 0.0 for task in spec.tasks}
    steps = max(1, steps)
    for _ in range(steps):
        for name, value in step(next(batches)).items():
            totals[name] += float(value) / steps
    return totals
