"""Model selection on the validation split: one criterion for every Trainer.

Every Trainer, the multi-task one and each single-task baseline, is selected
the same way: the weighted mean over its tasks of the task's validation loss
divided by that task's loss at the first evaluation (:func:`normalized_loss`).
Dividing by the first loss puts every task on the same scale whatever its
units, so a task with a large loss cannot drown a small one and a task that
converges fast cannot stop training while a slow one still improves. With one
task the criterion orders steps exactly as the task's validation loss does.

All state (the reference losses, the best value and step, the patience count,
the best weights and the curve of every evaluation) lives in variables, so a
checkpoint carries it and a restarted Trainer selects and stops exactly where
an uninterrupted one would have.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfx_mtl import naming
from tfx_mtl.errors import InputError

CRITERION = "normalized_validation_loss"
SPLIT = naming.VALIDATION  # the split ``fn_args.eval_files`` holds
LOSS = "loss"  # eval_metrics.LOSS: each task's training loss on the evaluated batches


class SelectionError(InputError):
    """The criterion cannot be formed; ``field`` names the task."""


def normalized_loss(losses: Sequence[float], reference: Sequence[float],
                    weights: Sequence[float]) -> float:
    """sum_k w_k L_k / L0_k  /  sum_k w_k: lower is better; 1.0 at the first evaluation."""
    losses, reference, weights = (np.asarray(x, np.float64) for x in (losses, reference, weights))
    counted = weights > 0
    return float((weights[counted] * losses[counted] / reference[counted]).sum()
                 / weights[counted].sum())


def selection_weights(tasks: Sequence[str], weights: Sequence[float]) -> tuple[float, ...]:
    """Each trained task's weight in the criterion: its spec ``weight`` (0: not counted).
    With one task the weight has nothing to weigh against, so it is 1."""
    if len(tasks) == 1:
        return (1.0,)
    if not any(w > 0 for w in weights):
        raise SelectionError(
            ", ".join(f"tasks.{t}.weight" for t in tasks),
            "every trained task has weight 0, so the selection criterion (the weighted mean "
            "of the tasks' normalised validation losses) weighs nothing; give at least one "
            "task a positive weight")
    return tuple(float(w) for w in weights)


def check_reference(tasks: Sequence[str], reference: Sequence[float],
                    weights: Sequence[float], step: int) -> None:
    """A counted task's first validation loss must be positive and finite: it divides."""
    for task, value, weight in zip(tasks, reference, weights):
        if weight > 0 and not (math.isfinite(value) and value > 0):
            raise SelectionError(
                f"task {task!r}", f"its validation loss at the first evaluation (step {step}) "
                f"is {value}; the selection criterion divides by it, so it must be positive "
                f"and finite (does the validation split have labelled examples of {task!r}?)")


def improved(value: float, best: float, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (lower is better)."""
    return value < best - min_delta


def max_evaluations(steps: int, eval_every: int) -> int:
    """Evaluations a run of ``steps`` makes: every ``eval_every`` steps and at the last."""
    return steps // eval_every + 1


_STATE = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class EarlyStopping(tf.Module):
    """Scores each evaluation with the criterion, keeps the best weights and the curve,
    and says when ``patience`` evaluations in a row did not improve (0: never stop)."""

    def __init__(self, tasks: Sequence[str], weights: Sequence[float], patience: int,
                 variables, max_evals: int, min_delta: float = 0.0):
        super().__init__(name="early_stopping")
        if patience < 0:
            raise ValueError(f"early_stopping_patience: must be >= 0, got {patience}")
        self.tasks = tuple(tasks)
        self.weights = selection_weights(self.tasks, weights)
        self.patience, self.min_delta, self.max_evals = patience, min_delta, max_evals
        self._variables = list(variables)
        k = len(self.tasks)
        self.reference = tf.Variable(tf.fill([k], tf.constant(float("nan"), tf.float64)),
                                     name="reference", **_STATE)
        self.best = tf.Variable(float("nan"), dtype=tf.float64, name="best", **_STATE)
        self.best_step = tf.Variable(0, dtype=tf.int64, name="best_step", **_STATE)
        self.bad_evals = tf.Variable(0, dtype=tf.int64, name="bad_evals", **_STATE)
        self.stopped = tf.Variable(False, name="stopped", **_STATE)
        # One row per evaluation: step, criterion, each task's loss (NaN: not yet).
        self.curve = tf.Variable(tf.fill([max_evals, 2 + k], tf.constant(float("nan"),
                                                                          tf.float64)),
                                 name="curve", **_STATE)
        self.evaluations = tf.Variable(0, dtype=tf.int64, name="evaluations", **_STATE)
        self.best_weights = [tf.Variable(tf.convert_to_tensor(v), name=f"best_{i}", **_STATE)
                             for i, v in enumerate(self._variables)]

    def criterion(self, evaluated: Mapping[str, Mapping[str, float]], step: int) -> float:
        """The criterion of one evaluation (``{task: {"loss": L, ...}}``); the first one
        sets the reference losses."""
        losses = [float(evaluated[t][LOSS]) for t in self.tasks]
        if int(self.evaluations.numpy()) == 0:
            check_reference(self.tasks, losses, self.weights, step)
            self.reference.assign(losses)
        return normalized_loss(losses, self.reference.numpy(), self.weights)

    def observe(self, evaluated: Mapping[str, Mapping[str, float]], step: int) -> bool:
        """Records one evaluation; returns True when training should stop."""
        value = self.criterion(evaluated, step)
        count = int(self.evaluations.numpy())
        if count >= self.max_evals:
            raise RuntimeError(f"evaluation {count + 1} at step {step} exceeds the "
                               f"{self.max_evals} the selection curve was sized for")
        curve = self.curve.numpy()
        curve[count] = [step, value, *(float(evaluated[t][LOSS]) for t in self.tasks)]
        self.curve.assign(curve)
        self.evaluations.assign(count + 1)
        best = float(self.best.numpy())
        if best != best or improved(value, best, self.min_delta):
            self.best.assign(value)
            self.best_step.assign(step)
            self.bad_evals.assign(0)
            for saved, variable in zip(self.best_weights, self._variables):
                saved.assign(tf.convert_to_tensor(variable))
        else:
            self.bad_evals.assign_add(1)
            if self.patience and int(self.bad_evals.numpy()) >= self.patience:
                self.stopped.assign(True)
        return bool(self.stopped.numpy())

    def make_room(self, evaluations: int) -> None:
        """Grows the curve to hold ``evaluations`` rows (a resume with a larger budget than
        the checkpoint's), keeping the rows recorded. Call it in the strategy's scope."""
        if evaluations <= self.max_evals:
            return
        curve = np.full([evaluations, self.curve.shape[1]], np.nan)
        curve[:self.max_evals] = self.curve.numpy()
        self.curve = tf.Variable(curve, name="curve", **_STATE)
        self.max_evals = evaluations

    def last_step(self) -> int:
        """The step of the latest evaluation (0: none yet)."""
        count = int(self.evaluations.numpy())
        return int(self.curve.numpy()[count - 1, 0]) if count else 0

    def restore_best(self) -> int:
        """Puts the best weights back; returns the step they are from (0: none recorded)."""
        step = int(self.best_step.numpy())
        if step:
            for saved, variable in zip(self.best_weights, self._variables):
                variable.assign(tf.convert_to_tensor(saved))
        return step

    def report(self, eval_every: int) -> dict:
        """The training report's ``selection`` section."""
        rows = self.curve.numpy()[:int(self.evaluations.numpy())]
        reference = self.reference.numpy()
        best_step = int(self.best_step.numpy())
        return {
            "criterion": CRITERION, "split": SPLIT,
            "weights": dict(zip(self.tasks, self.weights)),
            "reference_losses": ({t: float(v) for t, v in zip(self.tasks, reference)}
                                 if len(rows) else {}),
            "best_step": best_step or None,
            "best_value": float(self.best.numpy()) if best_step else None,
            "patience": self.patience, "min_delta": self.min_delta, "eval_every": eval_every,
            "stopped_early": bool(self.stopped.numpy()),
            "curve": [{"step": int(row[0]), "value": float(row[1]),
                       "losses": {t: float(v) for t, v in zip(self.tasks, row[2:])}}
                      for row in rows],
        }
