"""Early stopping on one task's eval metric, with the best weights kept.

The monitored task and metric come from the spec (by default the first
primary task and its first metric; its direction from ``task_spec.METRICS``).
All state, the best weights included, lives in variables, so a checkpoint
carries it and a restarted Trainer stops exactly where an uninterrupted one
would have.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.task_spec import TaskSpec


@dataclasses.dataclass(frozen=True)
class Monitor:
    task: str
    metric: str
    higher_is_better: bool

    @classmethod
    def from_spec(cls, spec: TaskSpec, task: str | None = None, metric: str | None = None
                  ) -> "Monitor":
        if task is None:
            task = next(t.name for t in spec.tasks if t.role == "primary") if any(
                t.role == "primary" for t in spec.tasks) else spec.tasks[0].name
        if task not in spec.task_names:
            raise ValueError(f"early_stopping_task: {task!r} is not a task of the spec "
                             f"(tasks: {', '.join(spec.task_names)})")
        definition = spec.task(task)
        names = [m.name for m in definition.metrics]
        metric = metric or names[0]
        if metric not in names:
            raise ValueError(f"early_stopping_metric: {metric!r} is not a metric of task "
                             f"{task!r} (metrics: {', '.join(names)})")
        direction = definition.metrics[names.index(metric)].definition(definition.type)
        if direction.higher_is_better is None:
            raise ValueError(f"early_stopping_metric: {metric!r} has no better direction")
        return cls(task, metric, direction.higher_is_better)


def improved(value: float, best: float, higher_is_better: bool, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta``."""
    return value > best + min_delta if higher_is_better else value < best - min_delta


class EarlyStopping(tf.Module):
    """Counts evaluations without improvement; keeps a copy of the best weights."""

    def __init__(self, monitor: Monitor, patience: int, variables, min_delta: float = 0.0):
        super().__init__(name="early_stopping")
        if patience < 1:
            raise ValueError(f"early_stopping_patience: must be >= 1, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self._variables = list(variables)
        state = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.best = tf.Variable(float("nan"), name="best", **state)
        self.best_step = tf.Variable(0, dtype=tf.int64, name="best_step", **state)
        self.bad_evals = tf.Variable(0, dtype=tf.int64, name="bad_evals", **state)
        self.stopped = tf.Variable(False, name="stopped", **state)
        self.best_weights = [tf.Variable(tf.convert_to_tensor(v), name=f"best_{i}", **state)
                             for i, v in enumerate(self._variables)]

    def observe(self, value: float, step: int) -> bool:
        """Records one evaluation; returns True when training should stop."""
        best = float(self.best.numpy())
        if best != best or improved(value, best, self.monitor.higher_is_better, self.min_delta):
            self.best.assign(value)
            self.best_step.assign(step)
            self.bad_evals.assign(0)
            for saved, variable in zip(self.best_weights, self._variables):
                saved.assign(tf.convert_to_tensor(variable))
        else:
            self.bad_evals.assign_add(1)
            if int(self.bad_evals.numpy()) >= self.patience:
                self.stopped.assign(True)
        return bool(self.stopped.numpy())

    def restore_best(self) -> int:
        """Puts the best weights back; returns the step they are from (0: none recorded)."""
        step = int(self.best_step.numpy())
        if step:
            for saved, variable in zip(self.best_weights, self._variables):
                variable.assign(tf.convert_to_tensor(saved))
        return step
