"""The multi-task training loop: distribution, checkpoints, logging, early stopping.

``TrainingLoop.fit`` drives :class:`~tfx_mtl.models.train_step.MultiTaskStep`
under the given ``tf.distribute`` strategy: the global batch is split across
replicas, the compiled step runs in each replica, and between steps the loop

- stops with :class:`NonFiniteLossError` naming the task and step as soon as a
  task's loss is NaN or Inf (no checkpoint is written after that step);
- every ``log_every`` steps logs and writes to TensorBoard each task's loss and
  weight, and the gradient-conflict diagnostic (measured at every step when the
  combination method forms per-task gradients anyway, else on the logging step);
- every ``checkpoint_every`` steps saves model, optimiser, weighting, counters,
  early-stopping state and the data's position (the iterator itself on one
  device; under MirroredStrategy, whose iterators cannot be saved, the step, and
  a resumed run skips that many batches of the deterministic input), so a
  restarted Trainer resumes where the last checkpoint left off and ends as an
  uninterrupted run would have;
- every ``eval_every`` steps evaluates the spec's metrics on the eval split and
  stops early when the monitored metric stops improving (best weights kept).

Under MultiWorkerMirroredStrategy every process runs this loop in lockstep:
all of them restore from the chief's checkpoint directory and all of them save
(saves are collective), but only the chief saves into it and writes TensorBoard
logs; the other workers save into scratch space that is deleted afterwards.
Every decision that leads to a collective op (which step to save at, when to
stop) is taken from values that are equal on every worker.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Iterable, Mapping

import tensorflow as tf
from absl import logging

from tfx_mtl import finite
from tfx_mtl.models import combination, distribution, eval_metrics, ownership
from tfx_mtl.models import weighting as weighting_lib
from tfx_mtl.models.diagnostics import ConflictStats
from tfx_mtl.models.early_stopping import EarlyStopping, Monitor
from tfx_mtl.models.network import Network
from tfx_mtl.models.train_step import MultiTaskStep
from tfx_mtl.models.trainer_config import TrainerConfig
from tfx_mtl.task_spec import TaskSpec

REPORT_FILE = "training_report.json"


class NonFiniteLossError(RuntimeError):
    """A task's loss became NaN or Inf."""


@dataclasses.dataclass
class TrainingResult:
    """What a ``fit`` did, for the log and ``training_report.json``."""

    steps: int  # the step training ended at
    resumed_from: int  # 0: a fresh start
    losses: dict[str, float]  # last step's raw task losses
    weights: dict[str, float]  # last step's task weights
    strategy: str
    replicas: int
    weighting: str
    combine: str
    weighting_params: dict[str, Any]  # every parameter, defaults included
    combine_params: dict[str, Any]
    shared_parameters: int
    conflict_fraction: float | None  # of measured steps, any pair with cosine < 0
    mean_cosine: dict[str, float]  # per task pair, over measured steps
    measured_steps: int
    stopped_early: bool = False
    best_step: int | None = None
    eval_metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)  # its config
    tasks: list[str] = dataclasses.field(default_factory=list)  # the tasks it trained
    checkpoint_dir: str | None = None  # where it saved and resumed from
    checkpoint_key: str | None = None  # that directory's key (checkpoint_key), if keyed
    keras_version: str = dataclasses.field(default_factory=lambda: tf.keras.__version__)

    def write(self, directory: str) -> str:
        path = os.path.join(directory, REPORT_FILE)
        tf.io.gfile.makedirs(directory)
        # Strict JSON: an eval metric can be NaN or infinite (e.g. rmse of a 1e30 label).
        report, not_finite = finite.nulled(dataclasses.asdict(self))
        report["not_finite"] = not_finite
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(finite.dumps(report, indent=2, sort_keys=True))
        return path


class TrainingLoop:
    """Owns the optimiser, weighting, diagnostics and checkpoint of one training run.

    Build the network inside ``strategy.scope()`` before creating the loop.
    """

    def __init__(self, network: Network, spec: TaskSpec, label_stats: Mapping[str, tuple],
                 config: TrainerConfig, strategy: tf.distribute.Strategy | None = None,
                 checkpoint_dir: str | None = None, log_dir: str | None = None):
        config = config.for_task_count(len(spec.tasks))
        self.network, self.spec, self.config = network, spec, config
        self.label_stats = dict(label_stats)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.checkpoint_dir, self.log_dir = checkpoint_dir, log_dir
        with self.strategy.scope():
            self.partition = ownership.partition(
                network.model, network.last_shared_variables(), spec.task_names, self.strategy)
            self.weighting = weighting_lib.make(
                config.weighting, spec.task_names, [t.type for t in spec.tasks],
                [t.weight for t in spec.tasks], config.weighting_params)
            self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
            self.optimizer.build(list(self.partition.shared) + list(self.partition.task_specific)
                                 + list(self.weighting.trainable_variables))
            self.stats = ConflictStats(spec.task_names)
            self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.early_stopping = None
            if config.early_stopping_patience:
                monitor = Monitor.from_spec(spec, config.early_stopping_task,
                                            config.early_stopping_metric)
                self.early_stopping = EarlyStopping(monitor, config.early_stopping_patience,
                                                    network.model.variables,
                                                    config.early_stopping_min_delta)
        self.step = MultiTaskStep(network, spec, self.label_stats, self.weighting,
                                  combination.make(config.combine, config.combine_params),
                                  self.optimizer, self.partition, self.stats, config.seed,
                                  config.per_task_gradients)
        # Compiled once per loop, so later ``fit`` calls (resume, benchmarks) reuse the trace.
        self._train_step = tf.function(self._distributed_step)
        self.evaluator = eval_metrics.Evaluator(network.model, spec, self.label_stats)

    def _distributed_step(self, iterator, diagnose: bool):
        """One step on the iterator's next batch (read in the graph, as Keras does: passing
        a batch of many feature tensors in from Python costs more than the step itself)."""
        batch = next(iterator)
        if diagnose:  # a separate trace: measure conflicts on this batch, before the update
            self.strategy.run(self.step.replica_diagnose, (batch,))
        step = self.step_counter.assign_add(1)
        losses, weights = self.strategy.run(self.step.replica_step, (batch, step))
        local = self.strategy.experimental_local_results
        return local(losses)[0], local(weights)[0]

    def _checkpoint(self, iterator) -> tf.train.Checkpoint:
        # Keras 3 does not checkpoint its layers' RNG state (dropout seeds) with the
        # model; listing the model's non-trainable variables saves them too.
        parts = dict(model=self.network.model,
                     model_state=list(self.network.model.non_trainable_variables),
                     optimizer=self.optimizer, weighting=self.weighting, stats=self.stats,
                     step=self.step_counter)
        if iterator is not None:
            parts["data"] = iterator
        if self.early_stopping is not None:
            parts["early_stopping"] = self.early_stopping
        return tf.train.Checkpoint(**parts)

    def _observe(self, evaluated: Mapping[str, Mapping[str, float]], step: int) -> bool:
        monitor = self.early_stopping.monitor
        value = evaluated[monitor.task][monitor.metric]
        stopped = self.early_stopping.observe(value, step)
        logging.info("step %d eval %s/%s = %.5f (best %.5f at step %d)%s", step, monitor.task,
                     monitor.metric, value, float(self.early_stopping.best.numpy()),
                     int(self.early_stopping.best_step.numpy()),
                     ": stopping early" if stopped else "")
        return stopped

    def fit(self, train_data: tf.data.Dataset, steps: int,
            eval_data: Callable[[], Iterable] | None = None) -> TrainingResult:
        """Trains until ``steps`` (counting steps of earlier, resumed runs) or early stop.

        ``train_data`` yields global batches; ``eval_data()`` returns a fresh
        iterable of eval batches each time it is called.
        """
        with distribution.output_dir(self.checkpoint_dir, self.strategy) as save_dir:
            return self._fit(train_data, steps, eval_data, save_dir)

    def _fit(self, train_data: tf.data.Dataset, steps: int,
             eval_data: Callable[[], Iterable] | None, save_dir: str | None
             ) -> TrainingResult:
        """``fit``, saving checkpoints into ``save_dir`` (this worker's copy)."""
        config, strategy, names = self.config, self.strategy, self.spec.task_names
        train_data = distribution.shard_by_data(train_data, strategy)
        distributed = strategy.experimental_distribute_dataset(train_data)
        # A single-device iterator checkpoints its position (shuffle buffer included);
        # a distributed one cannot, so a resumed run replays the data up to its step.
        # Only one iterator is ever made: each new iterator of a reshuffling dataset
        # draws a new order.
        saves_position = isinstance(distributed, tf.data.Dataset)
        iterator = iter(distributed) if saves_position else None
        manager = None
        resumed_from = 0
        saved_step = None  # the step of the newest checkpoint, the same on every worker
        if save_dir:
            manager = tf.train.CheckpointManager(
                self._checkpoint(iterator), save_dir, max_to_keep=2,
                step_counter=self.step_counter)
            # Every worker resumes from the chief's checkpoint (its own copies are scratch).
            latest = tf.train.latest_checkpoint(self.checkpoint_dir)
            if latest:
                manager.checkpoint.restore(latest).assert_existing_objects_matched()
                resumed_from = saved_step = int(self.step_counter.numpy())
                logging.info("resumed from %s at step %d", latest, resumed_from)
        if iterator is None:
            start = int(self.step_counter.numpy())
            iterator = iter(strategy.experimental_distribute_dataset(
                train_data.skip(start)) if start else distributed)

        writer = (tf.summary.create_file_writer(self.log_dir)
                  if self.log_dir and distribution.writes_outputs(strategy) else None)
        stopped = bool(self.early_stopping is not None and self.early_stopping.stopped.numpy())
        losses, weights = {}, {}
        run_conflicts = _RunConflicts()
        evaluated: dict[str, dict[str, float]] = {}
        started = time.monotonic()
        step = int(self.step_counter.numpy())
        while step < steps and not stopped:
            step += 1
            logging_step = step % config.log_every == 0 or step == steps
            try:
                loss_values, weight_values = self._train_step(
                    iterator, logging_step and self.step.measures_on_logging_steps)
            except tf.errors.OutOfRangeError:
                logging.warning("the training data ran out after %d steps", step - 1)
                break
            loss_values = loss_values.numpy()
            for name, value in zip(names, loss_values):
                if not math.isfinite(float(value)):
                    raise NonFiniteLossError(f"task {name!r}: loss is {float(value)} at step "
                                             f"{step} (weighting {config.weighting}, "
                                             f"combine {config.combine})")
            losses = {n: float(v) for n, v in zip(names, loss_values)}
            weights = {n: float(v) for n, v in zip(names, weight_values.numpy())}

            if logging_step:
                scalars = {f"loss/{n}": v for n, v in losses.items()}
                scalars.update({f"weight/{n}": v for n, v in weights.items()})
                conflict = self.stats.read_and_reset()
                if conflict:
                    run_conflicts.add(conflict)
                    scalars.update(conflict)
                elapsed = time.monotonic() - started
                logging.info("step %d/%d (%.1fs) losses %s weights %s%s", step, steps, elapsed,
                             _short(losses), _short(weights),
                             f" conflict {conflict['grad_conflict/any_pair']:.2f}"
                             if conflict else "")
                _write(writer, step, scalars)

            if eval_data is not None and config.eval_every and step % config.eval_every == 0:
                evaluated = self.evaluator(eval_data())
                _write(writer, step, {f"eval/{t}/{m}": v for t, by_metric in evaluated.items()
                                      for m, v in by_metric.items()})
                if self.early_stopping is not None:
                    stopped = self._observe(evaluated, step)

            if manager and config.checkpoint_every and step % config.checkpoint_every == 0:
                manager.save(checkpoint_number=step)
                saved_step = step
        if manager and int(self.step_counter.numpy()) != saved_step:
            manager.save(checkpoint_number=int(self.step_counter.numpy()))
        if writer:
            writer.flush()

        best_step = None
        if self.early_stopping is not None:
            best_step = self.early_stopping.restore_best() or None
            if best_step:
                logging.info("restored the best weights, from step %d", best_step)
        return TrainingResult(
            steps=int(self.step_counter.numpy()), resumed_from=resumed_from, losses=losses,
            weights=weights, strategy=distribution.name(strategy),
            replicas=strategy.num_replicas_in_sync, weighting=config.weighting,
            combine=config.combine, weighting_params=dataclasses.asdict(self.weighting.params),
            combine_params=dataclasses.asdict(self.step.combination.params),
            shared_parameters=sum(v.shape.num_elements() for v in self.partition.shared),
            conflict_fraction=run_conflicts.fraction, mean_cosine=run_conflicts.mean_cosine,
            measured_steps=int(run_conflicts.steps), stopped_early=stopped, best_step=best_step,
            eval_metrics=evaluated, seconds=time.monotonic() - started,
            architecture=dataclasses.asdict(self.config.architecture), tasks=list(names))


class _RunConflicts:
    """Run-long totals of the per-interval conflict statistics."""

    def __init__(self):
        self.steps, self.conflicting, self.cosine_sums = 0.0, 0.0, {}

    def add(self, interval: Mapping[str, float]) -> None:
        steps = interval["grad_conflict/measured_steps"]
        self.steps += steps
        self.conflicting += interval["grad_conflict/any_pair"] * steps
        for key, value in interval.items():
            if key.startswith("grad_cosine/"):
                pair = key.split("/", 1)[1]
                self.cosine_sums[pair] = self.cosine_sums.get(pair, 0.0) + value * steps

    @property
    def fraction(self) -> float | None:
        return self.conflicting / self.steps if self.steps else None

    @property
    def mean_cosine(self) -> dict[str, float]:
        return {pair: total / self.steps for pair, total in self.cosine_sums.items()}


def _short(values: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.4g}" for k, v in values.items()) + "}"


def _write(writer, step: int, scalars: Mapping[str, Any]) -> None:
    if writer is None or not scalars:
        return
    with writer.as_default(step=step):
        for key, value in scalars.items():
            tf.summary.scalar(key, value)
