"""Trainer module: ``run_fn`` trains the multi-task model and exports it.

TFX glue only: pick the distribution strategy, read the spec and
:class:`TrainerConfig` from ``custom_config``, build the architecture inside
the strategy's scope, run the :class:`~tfx_mtl.models.loop.TrainingLoop`
(TensorBoard logs and the report in the run directory), export the signatures.

``fn_args.eval_files`` is the validation split: the loop evaluates on it to
select the model (:mod:`early_stopping`), and the report's ``eval_metrics``
are the selected model's on it. One evaluation reads the split once (at most
``eval_steps`` batches).

A task's class weights (``pos_weight``, ``class_weights``) are resolved for its
classes before training (:mod:`class_weights`); ``balanced`` reads the train
split once to count them.

Checkpoints go to a directory keyed by what determines the training, under the
root the pipeline gives in ``custom_config`` (:mod:`checkpoint_key`), so the
re-run of a crashed Trainer, in a new run directory, resumes; the directory is
removed once the model is exported. Without a root (``run_fn`` called outside
the pipeline) they stay in the run directory.

With several workers (a ``TF_CONFIG`` cluster) every worker runs ``run_fn``;
all of them train and take part in the saves, only the chief writes the run
directory's report and the serving model (see :mod:`distribution`).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Mapping, Sequence

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx_bsl.public.tfxio import TensorFlowDatasetOptions

from tfx_mtl import naming
from tfx_mtl.models import (checkpoint_key, class_weights, distribution, export, families,
                            features)
from tfx_mtl.models.loop import TrainingLoop
from tfx_mtl.models.preprocessing import SPEC_CONFIG_KEY
from tfx_mtl.models.trainer_config import TRAINER_CONFIG_KEY, TrainerConfig
from tfx_mtl.task_spec import TaskSpec

CHECKPOINT_SUBDIR = "checkpoints"
COUNT_BATCH = 4096  # rows per batch when counting the train split's classes


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    # First: MultiWorkerMirroredStrategy must configure the runtime before any op runs.
    strategy = distribution.strategy()
    config = TrainerConfig.from_dict(fn_args.custom_config.get(TRAINER_CONFIG_KEY))
    spec = config.trained_spec(TaskSpec.from_dict(fn_args.custom_config[SPEC_CONFIG_KEY]))
    tf.keras.utils.set_random_seed(config.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    logging.info("training %s (%s) with %s, weighting %s, combine %s",
                 config.architecture.name, ", ".join(spec.task_names),
                 distribution.describe(strategy), config.weighting, config.combine)

    def dataset(files, shuffle, epochs=None, batch_size=config.batch_size):
        return fn_args.data_accessor.tf_dataset_factory(
            files,
            TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle,
                                     shuffle_seed=config.seed, num_epochs=epochs),
            tf_transform_output.transformed_metadata.schema)

    budget = {"train_steps": fn_args.train_steps}
    if config.train_epochs is not None:  # the budget in epochs: the data is known now
        examples = count_examples(fn_args.train_files)
        fn_args.train_steps = config.steps_for(examples)
        budget = {"train_epochs": config.train_epochs, "train_examples": examples,
                  "batch_size": config.batch_size, "train_steps": fn_args.train_steps}
        logging.info("budget: %g epochs over %d train examples = %d steps of batch %d",
                     config.train_epochs, examples, fn_args.train_steps, config.batch_size)
    train_data = dataset(fn_args.train_files, shuffle=True)
    eval_data = dataset(fn_args.eval_files, shuffle=False, epochs=1)
    label_stats = read_label_stats(spec, next(iter(train_data)))
    classes = {t.name: [c.decode() for c in tf_transform_output.vocabulary_by_name(
        naming.label_vocab_name(t.name))] for t in spec.tasks if t.type == "multiclass"}
    num_classes = {name: len(names) for name, names in classes.items()}
    weights = resolve_class_weights(
        spec, classes, lambda: dataset(fn_args.train_files, shuffle=False, epochs=1,
                                       batch_size=COUNT_BATCH))
    with strategy.scope():
        network = families.build(
            spec, features.input_cardinalities(spec, tf_transform_output.vocabulary_size_by_name),
            num_classes, config.architecture)
    keyed = _keyed_checkpoints(fn_args, strategy)
    checkpoint_dir = (keyed.directory if keyed
                      else os.path.join(fn_args.model_run_dir, CHECKPOINT_SUBDIR))
    if keyed and distribution.writes_outputs(strategy):
        logging.info("checkpoints in %s, keyed by %s", checkpoint_dir, keyed.write_manifest())
    loop = TrainingLoop(network, spec, label_stats, config, strategy,
                        checkpoint_dir=checkpoint_dir, log_dir=fn_args.model_run_dir,
                        max_steps=fn_args.train_steps, class_weights=weights)
    # Every worker logs its weights' fingerprint: workers in sync log the same ones.
    logging.info("initial weights fingerprint %s",
                 distribution.fingerprint(network.model.trainable_variables))
    eval_steps = max(1, fn_args.eval_steps or 1)
    result = loop.fit(train_data, fn_args.train_steps,
                      eval_data=lambda: eval_data.take(eval_steps))
    result.eval_metrics = loop.evaluator(eval_data.take(eval_steps))
    result.checkpoint_dir, result.checkpoint_key = checkpoint_dir, keyed.key if keyed else None
    result.budget = budget
    logging.info("trained to step %d, selected step %s; validation metrics %s; weights "
                 "fingerprint %s", result.steps, result.best_step, result.eval_metrics, distribution.fingerprint(network.model.trainable_variables))
    if distribution.writes_outputs(strategy):
        result.write(fn_args.model_run_dir)
    # Every worker exports (the save is collective); only the chief's copy is kept.
    with distribution.output_dir(fn_args.serving_model_dir, strategy) as serving_dir:
        export.export(network.model, spec, tf_transform_output, label_stats, serving_dir)
    distribution.barrier(strategy)  # no worker returns before the chief's model is complete
    if keyed and distribution.writes_outputs(strategy):
        keyed.remove()  # the training is complete and exported: nothing left to resume


def count_examples(file_patterns) -> int:
    """The examples in Transform's output files (gzipped TFRecords when named .gz)."""
    paths = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    count = 0
    for compression in ("GZIP", ""):
        chosen = [p for p in paths if p.endswith(".gz") == (compression == "GZIP")]
        if chosen:
            records = tf.data.TFRecordDataset(chosen, compression_type=compression)
            count += int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    return count


def _keyed_checkpoints(fn_args, strategy) -> checkpoint_key.KeyedCheckpoints | None:
    """The checkpoint directory keyed by this training's inputs and configuration; None
    when ``custom_config`` gives no root. Every worker computes the same one."""
    root = fn_args.custom_config.get(checkpoint_key.CHECKPOINT_ROOT_KEY)
    if not root:
        return None
    return checkpoint_key.keyed(root, checkpoint_key.training_inputs(
        fn_args.custom_config, fn_args.train_files, fn_args.eval_files,
        fn_args.transform_output, fn_args.train_steps, fn_args.eval_steps,
        distribution.name(strategy), strategy.num_replicas_in_sync))


def resolve_class_weights(spec: TaskSpec, classes: Mapping[str, Sequence[str]],
                          train_data: Callable[[], Iterable]
                          ) -> dict[str, class_weights.ClassWeights]:
    """Each class-weighted task's weights by class id; ``classes``: each multiclass task's
    label vocabulary. ``balanced`` counts the train split (``train_data()``: one pass),
    only when a task asks for it."""
    weighted = [t for t in spec.tasks if class_weights.is_weighted(t)]
    counted = [t for t in weighted if class_weights.needs_counts(t)]
    counts = {}
    if counted:
        started = time.monotonic()
        counts = class_weights.count_classes(
            train_data(), counted, {t: len(c) for t, c in classes.items()})
        logging.info("class counts of the train split %s (%.1fs)", counts,
                     time.monotonic() - started)
    result = {}
    for task in weighted:
        names = classes[task.name] if task.type == "multiclass" else class_weights.BINARY_CLASSES
        result[task.name] = class_weights.resolve(task, names, counts.get(task.name))
        logging.info("task %s: class weights %s", task.name, result[task.name].report())
    return result


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
