"""The multi-task training loop: distribution, checkpoints, logging, early stopping.

``TrainingLoop.fit`` drives :class:`~tfx_mtl.models.train_step.MultiTaskStep`
under the given ``tf.distribute`` strategy: the global batch is split across
replicas, the compiled step runs in each replica, and between steps the loop

- stops with :class:`NonFiniteLossError` naming the task and step as soon as a
  task's loss is NaN or Inf (no checkpoint is written after that step);
- every ``log_every`` steps logs and writes to TensorBoard each task's loss and
  weight, the gradient-conflict diagnostic (measured at every step when the
  combination method forms per-task gradients anyway, else on the logging step)
  and, for MMoE and PLE, the gates and the experts' load on the logging step's
  batch (:mod:`gate_diagnostics`; the last measurement and its warnings go to the
  report);
- every ``checkpoint_every`` steps saves model, optimiser, weighting, the gradient
  combination's state (if it has any), counters,
  early-stopping state and the data's position (the iterator itself on one
  device; under MirroredStrategy, whose iterators cannot be saved, the step, and
  a resumed run skips that many batches of the deterministic input), so a
  restarted Trainer resumes where the last checkpoint left off and ends as an
  uninterrupted run would have;
- every ``eval_every`` steps and at the last step evaluates the spec's metrics
  and each task's loss on the validation split, scores the evaluation with the
  selection criterion (:mod:`early_stopping`: the weighted mean of each task's
  loss over its loss at the first evaluation; a class-weighted task's loss is
  class-weighted there too, the objective it trains on), keeps the best evaluation's
  weights and stops early after ``early_stopping_patience`` evaluations without
  improvement; the weights ``fit`` ends with are the best evaluation's.

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

from tfx_mtl import finite, naming
from tfx_mtl.models import combination, distribution, eval_metrics, ownership
from tfx_mtl.models import gate_diagnostics
from tfx_mtl.models import weighting as weighting_lib
from tfx_mtl.models.class_weights import ClassWeights
from tfx_mtl.models.diagnostics import ConflictStats
from tfx_mtl.models.early_stopping import EarlyStopping, max_evaluations
from tfx_mtl.models.network import Network
from tfx_mtl.models.train_step import MultiTaskStep
from tfx_mtl.models.trainer_config import TrainerConfig
from tfx_mtl.task_spec import TaskSpec

REPORT_FILE = naming.TRAINING_REPORT_FILE


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
    # The per-task gradients the combination acted on: "parameters" or "representation"
    # (the configured trainer.surgery_level, or the level the method forces, mgda_ub's).
    surgery_level: str
    shared_parameters: int
    conflict_fraction: float | None  # of measured steps, any pair with cosine < 0
    mean_cosine: dict[str, float]  # per task pair, over measured steps
    measured_steps: int
    stopped_early: bool = False
    best_step: int | None = None
    selection: dict[str, Any] | None = None  # EarlyStopping.report(); None: no evaluation
    eval_metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    # The family of the network that trained (read off the built model, not the config)
    # and its config; a single-task baseline is its family with one task.
    family: str = ""
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)  # its config
    # Each class-weighted task's effective weights (ClassWeights.report()); {}: none.
    class_weights: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tasks: list[str] = dataclasses.field(default_factory=list)  # the tasks it trained
    checkpoint_dir: str | None = None  # where it saved and resumed from
    checkpoint_key: str | None = None  # that directory's key (checkpoint_key), if keyed
    keras_version: str = dataclasses.field(default_factory=lambda: tf.keras.__version__)
    # The step budget: {"train_steps"}, or with trainer.train_epochs also the epochs, the
    # train examples counted and the batch size they became train_steps with (run_fn).
    budget: dict[str, Any] | None = None
    # MMoE/PLE: the last gate measurement (gate_diagnostics.summarise); None: no gates.
    gates: dict[str, Any] | None = None

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
                 checkpoint_dir: str | None = None, log_dir: str | None = None,
                 max_steps: int | None = None,
                 class_weights: Mapping[str, ClassWeights] | None = None):
        """``max_steps``: the training's step budget (``run_fn``: ``train_steps``), which
        sizes the selection's curve in the checkpoint; default: the first ``fit``'s steps.
        ``class_weights``: the weighted tasks' resolved weights, applied to the training
        loss and to the validation loss the selection reads (:mod:`class_weights`)."""
        self.class_weights = {t: w for t, w in (class_weights or {}).items()
                              if t in spec.task_names}
        by_id = {t: w.weights for t, w in self.class_weights.items()}
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
                [t.weight for t in spec.tasks], config.weighting_params, seed=config.seed)
            self.combination = combination.make(
                config.combine, config.combine_params, tasks=len(spec.tasks),
                parameters=sum(v.shape.num_elements() for v in self.partition.shared) or None)
            self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
            self.optimizer.build(list(self.partition.shared) + list(self.partition.task_specific)
                                 + list(self.weighting.trainable_variables))
            self.stats = ConflictStats(spec.task_names)
            self.gate_stats = gate_diagnostics.GateStats.of(network, spec.feature_keys)
            self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.max_steps = max_steps
        self.early_stopping: EarlyStopping | None = None  # made by the first evaluating fit
        self.step = MultiTaskStep(network, spec, self.label_stats, self.weighting,
                                  self.combination,
                                  self.optimizer, self.partition, self.stats, config.seed,
                                  config.per_task_gradients, by_id, config.surgery_level)
        # Compiled once per loop, so later ``fit`` calls (resume, benchmarks) reuse the trace.
        self._train_step = tf.function(self._distributed_step)
        self.evaluator = eval_metrics.Evaluator(network.model, spec, self.label_stats, by_id)

    def _distributed_step(self, iterator, diagnose: bool, gates: bool = False):
        """One step on the iterator's next batch (read in the graph, as Keras does: passing
        a batch of many feature tensors in from Python costs more than the step itself)."""
        batch = next(iterator)
        if gates:  # measure the gates on this batch, before the update
            self.strategy.run(self.gate_stats.replica_update, (batch,))
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
        if self.combination.variables:  # its state (GradVac's, DB-MTL's EMA)
            parts["combination"] = self.combination
        if iterator is not None:
            parts["data"] = iterator
        if self.early_stopping is not None:
            parts["early_stopping"] = self.early_stopping
        return tf.train.Checkpoint(**parts)

    def _make_selection(self, evaluations: int) -> None:
        """The selection state with room for ``evaluations``, made once (before a
        checkpoint is restored into it)."""
        if self.early_stopping is None:
            config, spec = self.config, self.spec
            with self.strategy.scope():
                self.early_stopping = EarlyStopping(
                    spec.task_names, [t.weight for t in spec.tasks],
                    config.early_stopping_patience, self.network.model.variables,
                    evaluations, config.early_stopping_min_delta)

    def _evaluate(self, eval_data: Callable[[], Iterable], step: int, writer
                  ) -> tuple[dict[str, dict[str, float]], bool]:
        """One evaluation on the validation split, scored by the selection criterion;
        returns the metrics and whether training should stop."""
        evaluated = self.evaluator(eval_data())
        selection = self.early_stopping
        stopped = selection.observe(evaluated, step)
        value = float(selection.curve.numpy()[int(selection.evaluations.numpy()) - 1, 1])
        scalars = {f"eval/{t}/{m}": v for t, by_metric in evaluated.items()
                   for m, v in by_metric.items()}
        scalars["eval/selection_criterion"] = value
        _write(writer, step, scalars)
        logging.info("step %d validation: criterion %.5f (best %.5f at step %d), losses %s%s",
                     step, value, float(selection.best.numpy()),
                     int(selection.best_step.numpy()),
                     _short({t: m["loss"] for t, m in evaluated.items()}),
                     ": stopping early" if stopped else "")
        return evaluated, stopped

    def fit(self, train_data: tf.data.Dataset, steps: int,
            eval_data: Callable[[], Iterable] | None = None) -> TrainingResult:
        """Trains until ``steps`` (counting steps of earlier, resumed runs) or early stop.

        ``train_data`` yields global batches; ``eval_data()`` returns a fresh
        iterable of validation batches each time it is called. With ``eval_data``
        and ``eval_every`` set, the run ends with the weights of its best evaluation.
        """
        with distribution.output_dir(self.checkpoint_dir, self.strategy) as save_dir:
            return self._fit(train_data, steps, eval_data, save_dir)

    def _fit(self, train_data: tf.data.Dataset, steps: int,
             eval_data: Callable[[], Iterable] | None, save_dir: str | None
             ) -> TrainingResult:
        """``fit``, saving checkpoints into ``save_dir`` (this worker's copy)."""
        config, strategy, names = self.config, self.strategy, self.spec.task_names
        selecting = eval_data is not None and config.eval_every > 0
        # Every worker resumes from the chief's checkpoint (its own copies are scratch).
        latest = tf.train.latest_checkpoint(self.checkpoint_dir) if save_dir else None
        if selecting:
            needed = max_evaluations(self.max_steps or steps, config.eval_every)
            # Sized as the checkpoint's curve, if any, so that it restores (a run without a
            # checkpoint root may resume with another budget); grown after the restore.
            self._make_selection((latest and _saved_curve_rows(latest)) or needed)
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
            if latest:
                manager.checkpoint.restore(latest).assert_existing_objects_matched()
                resumed_from = saved_step = int(self.step_counter.numpy())
                logging.info("resumed from %s at step %d", latest, resumed_from)
        if selecting:
            with strategy.scope():
                self.early_stopping.make_room(needed)
        if iterator is None:
            start = int(self.step_counter.numpy())
            iterator = iter(strategy.experimental_distribute_dataset(
                train_data.skip(start)) if start else distributed)

        writer = (tf.summary.create_file_writer(self.log_dir)
                  if self.log_dir and distribution.writes_outputs(strategy) else None)
        stopped = bool(selecting and self.early_stopping.stopped.numpy())
        ran_out = False
        losses, weights = {}, {}
        run_conflicts = _RunConflicts()
        gates = None
        evaluated: dict[str, dict[str, float]] = {}
        started = time.monotonic()
        step = int(self.step_counter.numpy())
        while step < steps and not stopped:
            step += 1
            logging_step = step % config.log_every == 0 or step == steps
            try:
                loss_values, weight_values = self._train_step(
                    iterator, logging_step and self.step.measures_on_logging_steps,
                    logging_step and self.gate_stats is not None)
            except tf.errors.OutOfRangeError:
                logging.warning("the training data ran out after %d steps", step - 1)
                ran_out = True
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
                measured = self.gate_stats and self.gate_stats.read(step)
                if measured:
                    gates = measured
                    scalars.update(gate_diagnostics.scalars(measured))
                elapsed = time.monotonic() - started
                logging.info("step %d/%d (%.1fs) losses %s weights %s%s", step, steps, elapsed,
                             _short(losses), _short(weights),
                             f" conflict {conflict['grad_conflict/any_pair']:.2f}"
                             if conflict else "")
                _write(writer, step, scalars)

            # The last step is evaluated too, so the end of the budget is a candidate.
            if selecting and (step % config.eval_every == 0 or step == steps):
                evaluated, stopped = self._evaluate(eval_data, step, writer)

            if manager and config.checkpoint_every and step % config.checkpoint_every == 0:
                manager.save(checkpoint_number=step)
                saved_step = step
        final = int(self.step_counter.numpy())
        if (selecting and ran_out and not stopped and final
                and self.early_stopping.last_step() != final):
            evaluated, stopped = self._evaluate(eval_data, final, writer)
            saved_step = None  # that evaluation is state to save
        if manager and final != saved_step:
            manager.save(checkpoint_number=final)
        if writer:
            writer.flush()
        for warning in (gates or {}).get("warnings", []):
            logging.warning("gates at step %d: %s", gates["step"], warning["message"])

        best_step, selection = None, None
        if selecting:
            best_step = self.early_stopping.restore_best() or None
            selection = self.early_stopping.report(config.eval_every)
            if best_step:
                logging.info("restored the best weights, from step %d", best_step)
        return TrainingResult(
            steps=int(self.step_counter.numpy()), resumed_from=resumed_from, losses=losses,
            weights=weights, strategy=distribution.name(strategy),
            replicas=strategy.num_replicas_in_sync, weighting=config.weighting,
            combine=config.combine, weighting_params=dataclasses.asdict(self.weighting.params),
            combine_params=dataclasses.asdict(self.step.combination.params),
            surgery_level=self.step.combination.level_at(config.surgery_level),
            shared_parameters=sum(v.shape.num_elements() for v in self.partition.shared),
            conflict_fraction=run_conflicts.fraction, mean_cosine=run_conflicts.mean_cosine,
            measured_steps=int(run_conflicts.steps), stopped_early=stopped, best_step=best_step,
            selection=selection, eval_metrics=evaluated, seconds=time.monotonic() - started,
            family=self.network.model.name,
            architecture=dataclasses.asdict(self.config.architecture), tasks=list(names),
            class_weights={t: w.report() for t, w in self.class_weights.items()},
            gates=gates)


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


def _saved_curve_rows(checkpoint: str) -> int | None:
    """How many evaluations the checkpoint's selection curve has room for (None: none)."""
    for key, shape in tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map().items():
        if key.startswith("early_stopping/curve/"):
            return int(shape[0])
    return None


def _short(values: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.4g}" for k, v in values.items()) + "}"


def _write(writer, step: int, scalars: Mapping[str, Any]) -> None:
    if writer is None or not scalars:
        return
    with writer.as_default(step=step):
        for key, value in scalars.items():
            tf.summary.scalar(key, value)
