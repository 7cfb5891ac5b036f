"""How the task losses are weighted: static, uncertainty, GradNorm, DWA.

The trainer forms each task's effective loss as ``l_k = w_k * L_k + r_k``
(``L_k`` the task's raw masked loss, ``w_k`` its weight, ``r_k`` a
regulariser, non-zero only for uncertainty weighting). The math lives in pure
functions; the :class:`Weighting` modules hold the state between steps in
``tf.Variable``s created in ``__init__`` so that ``tf.train.Checkpoint``
saves it and ``MirroredStrategy`` mirrors it. State variables are
non-trainable with ``ONLY_FIRST_REPLICA`` aggregation: ``update`` receives
the *global* losses (identical on every replica) and may assign them from a
replica context.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

WEIGHTINGS = ("uniform", "uncertainty", "gradnorm", "dwa")
TASK_TYPES = ("binary", "multiclass", "regression")

# GradNorm keeps every weight at or above this before renormalising, so a
# task is never switched off for good (a zero weight gets no gradient back).
GRADNORM_MIN_WEIGHT = 1e-3

_STATE = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


# -- pure math -------------------------------------------------------------
def uncertainty_terms(log_var: tf.Tensor, is_regression) -> tuple[tf.Tensor, tf.Tensor]:
    """(weights [K], regulariser [K]) of Kendall, Gal & Cipolla (CVPR 2018).

    With s = log sigma^2 (learned, one per task): a regression task's loss is
    L / (2 sigma^2) + log sigma = 0.5 exp(-s) L + 0.5 s; a classification
    task's L / sigma^2 + log sigma = exp(-s) L + 0.5 s. Differentiable in s.
    """
    log_var = tf.convert_to_tensor(log_var, tf.float32)
    is_regression = tf.convert_to_tensor(is_regression, tf.bool)
    scale = tf.where(is_regression, 0.5, 1.0)
    return scale * tf.exp(-log_var), 0.5 * log_var


def gradnorm_step(weights: tf.Tensor, grad_norms: tf.Tensor, losses: tf.Tensor,
                  initial_losses: tf.Tensor, alpha: float, learning_rate: float) -> tf.Tensor:
    """One GradNorm update of the task weights (Chen et al., ICML 2018).

    ``grad_norms`` are ||grad_W L_k|| of the *unweighted* losses on the last
    shared layer W, so G_k = w_k grad_norms_k. With G_bar = mean(G), loss
    ratios Ltilde_k = L_k / L_k(0) and relative rates r_k = Ltilde_k /
    mean(Ltilde), the target G_bar r_k^alpha is a constant (no gradient), so
    L_grad = sum_k |G_k - target_k| has dL_grad/dw_k = sign(G_k - target_k)
    grad_norms_k. One SGD step on w, then clip at GRADNORM_MIN_WEIGHT and
    renormalise to sum(w) = K (the paper's renormalisation).
    """
    weights, grad_norms, losses, initial_losses = (
        tf.convert_to_tensor(t, tf.float32) for t in (weights, grad_norms, losses, initial_losses))
    k = tf.cast(tf.size(weights), tf.float32)
    norms = weights * grad_norms
    ratios = tf.math.divide_no_nan(losses, initial_losses)
    rates = tf.math.divide_no_nan(ratios, tf.reduce_mean(ratios))
    target = tf.stop_gradient(tf.reduce_mean(norms) * rates ** alpha)
    gradient = tf.sign(norms - target) * grad_norms
    weights = tf.maximum(weights - learning_rate * gradient, GRADNORM_MIN_WEIGHT)
    return weights * k / tf.reduce_sum(weights)


def dwa_weights(previous_losses: tf.Tensor, before_previous_losses: tf.Tensor,
                temperature: float = 2.0) -> tf.Tensor:
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, Sec. 3.3).

    r_k = L_k(t-1) / L_k(t-2) (a task whose loss falls slowly has a large r_k),
    w_k = K exp(r_k / T) / sum_i exp(r_i / T); weights sum to K. A zero
    L_k(t-2) (no labels in that period) gives r_k = 0.
    """
    previous_losses = tf.convert_to_tensor(previous_losses, tf.float32)
    ratios = tf.math.divide_no_nan(previous_losses,
                                   tf.convert_to_tensor(before_previous_losses, tf.float32))
    k = tf.cast(tf.size(ratios), tf.float32)
    return k * tf.nn.softmax(ratios / temperature)


# -- stateful weightings ---------------------------------------------------
class Weighting(tf.Module):
    """The interface the trainer uses; the base class weighs by the static weights."""

    needs_grad_norms = False

    def __init__(self, task_names: Sequence[str], task_types: Sequence[str],
                 static_weights: Sequence[float], name: str):
        super().__init__(name=name)
        self.task_names = tuple(task_names)
        self.task_types = tuple(task_types)
        self.static_weights = tuple(float(w) for w in static_weights)
        self.k = len(self.task_names)

    def _static(self) -> tf.Tensor:
        return tf.constant(self.static_weights, tf.float32)

    def terms(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(w [K], r [K]): the current weights and regularisers."""
        return self._static(), tf.zeros([self.k])

    def update(self, losses: tf.Tensor, grad_norms: tf.Tensor | None = None) -> None:
        """Once per optimiser step, after the model step, with the global raw losses [K]."""
        del losses, grad_norms  # static weights: nothing to learn

    def weights_for_logging(self) -> tf.Tensor:
        """[K] each task's effective weight."""
        return self.terms()[0]


class Uniform(Weighting):
    """Static weights from the spec (1.0 each by default)."""

    def __init__(self, task_names, task_types, static_weights):
        super().__init__(task_names, task_types, static_weights, name="uniform_weighting")


class Uncertainty(Weighting):
    """Learned homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018).

    The K log-variances s_k (init 0) are trained by the model's optimiser.
    The static weight multiplies the task's whole term, w and r, so a weight
    of 0 removes the task (rather than letting its s_k run to -inf) and the
    optimal s_k does not depend on it.
    """

    def __init__(self, task_names, task_types, static_weights):
        super().__init__(task_names, task_types, static_weights, name="uncertainty_weighting")
        self.log_variances = tf.Variable(tf.zeros([self.k]), trainable=True, name="log_variances")
        self._is_regression = tuple(t == "regression" for t in self.task_types)

    def terms(self):
        weights, regulariser = uncertainty_terms(self.log_variances, self._is_regression)
        static = self._static()
        return static * weights, static * regulariser


class GradNorm(Weighting):
    """GradNorm (Chen et al., ICML 2018): weights that balance gradient norms.

    Weights start at the static weights renormalised to sum K. Each task's
    initial loss L_k(0) is recorded at the first update where it is positive
    (a task without labels in the first batch has a loss of 0); until every
    task has one, the weights stay put. Note a static weight of 0 does not
    keep a task off: GradNorm raises it like any other.
    """

    needs_grad_norms = True

    def __init__(self, task_names, task_types, static_weights, alpha: float = 1.5,
                 learning_rate: float = 0.025):
        super().__init__(task_names, task_types, static_weights, name="gradnorm_weighting")
        self.alpha, self.learning_rate = float(alpha), float(learning_rate)
        static = tf.constant(self.static_weights, tf.float32)
        self.task_weights = tf.Variable(static * self.k / tf.reduce_sum(static),
                                        name="task_weights", **_STATE)
        self.initial_losses = tf.Variable(tf.zeros([self.k]), name="initial_losses", **_STATE)

    def terms(self):
        return tf.convert_to_tensor(self.task_weights), tf.zeros([self.k])

    def update(self, losses, grad_norms=None):
        if grad_norms is None:
            raise ValueError("GradNorm.update: grad_norms is required (the norms of the "
                             "unweighted task losses' gradients on the last shared layer)")
        losses = tf.convert_to_tensor(losses, tf.float32)
        initial = tf.where(self.initial_losses > 0, self.initial_losses, losses)
        stepped = gradnorm_step(self.task_weights, grad_norms, losses, initial,
                                self.alpha, self.learning_rate)
        ready = tf.reduce_all(initial > 0)
        self.task_weights.assign(tf.where(ready, stepped, self.task_weights))
        self.initial_losses.assign(initial)


class DWA(Weighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019) over periods of steps.

    The paper averages losses per epoch; here per ``period`` optimiser steps.
    The weights are 1 (times the static weights) for the first two periods and
    are recomputed from the last two period means at each period boundary.
    """

    def __init__(self, task_names, task_types, static_weights, period: int = 100,
                 temperature: float = 2.0):
        super().__init__(task_names, task_types, static_weights, name="dwa_weighting")
        self.period, self.temperature = int(period), float(temperature)
        self.dwa = tf.Variable(tf.ones([self.k]), name="dwa_weights", **_STATE)
        self.loss_sum = tf.Variable(tf.zeros([self.k]), name="loss_sum", **_STATE)
        self.steps_in_period = tf.Variable(0, dtype=tf.int64, name="steps_in_period", **_STATE)
        self.completed_periods = tf.Variable(0, dtype=tf.int64, name="completed_periods", **_STATE)
        self.previous = tf.Variable(tf.zeros([self.k]), name="previous_mean", **_STATE)
        self.before_previous = tf.Variable(tf.zeros([self.k]), name="before_previous_mean",
                                           **_STATE)

    def terms(self):
        return self._static() * self.dwa, tf.zeros([self.k])

    def update(self, losses, grad_norms=None):
        total = self.loss_sum + tf.convert_to_tensor(losses, tf.float32)
        steps = self.steps_in_period + 1
        boundary = steps >= self.period
        previous = tf.where(boundary, total / self.period, self.previous)
        before_previous = tf.where(boundary, self.previous, self.before_previous)
        completed = self.completed_periods + tf.cast(boundary, tf.int64)
        weights = tf.where(boundary & (completed >= 2),
                           dwa_weights(previous, before_previous, self.temperature), self.dwa)
        self.dwa.assign(weights)
        self.previous.assign(previous)
        self.before_previous.assign(before_previous)
        self.completed_periods.assign(completed)
        self.loss_sum.assign(tf.where(boundary, tf.zeros_like(total), total))
        self.steps_in_period.assign(tf.where(boundary, tf.zeros_like(steps), steps))


# -- construction ----------------------------------------------------------
_CLASSES = {"uniform": Uniform, "uncertainty": Uncertainty, "gradnorm": GradNorm, "dwa": DWA}
# name -> {param: (check, what the check means)}; the defaults are the classes'.
_PARAMS: dict[str, dict[str, tuple[Any, str]]] = {
    "uniform": {},
    "uncertainty": {},
    "gradnorm": {
        "alpha": (lambda v: _number(v) and v >= 0, "a number >= 0"),
        "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
    },
    "dwa": {
        "period": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "an integer >= 1"),
        "temperature": (lambda v: _number(v) and v > 0, "a number > 0"),
    },
}


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == value and abs(value) != float("inf"))


def make(name: str, task_names: Sequence[str], task_types: Sequence[str],
         static_weights: Sequence[float] | Mapping[str, float] | None = None,
         **params) -> Weighting:
    """The weighting ``name`` (one of :data:`WEIGHTINGS`) for these tasks.

    ``static_weights``: the spec's per-task weights, a sequence aligned with
    ``task_names`` or a mapping name -> weight (missing: 1.0; None: all 1.0).
    ``params``: gradnorm: alpha (1.5), learning_rate (0.025); dwa: period
    (100 steps), temperature (2.0).
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown weighting {name!r} (one of: {', '.join(WEIGHTINGS)})")
    task_names, task_types = tuple(task_names), tuple(task_types)
    if not task_names:
        raise ValueError("task_names is empty: a weighting needs at least one task")
    if len(set(task_names)) != len(task_names):
        raise ValueError(f"task_names has duplicates: {list(task_names)}")
    if len(task_types) != len(task_names):
        raise ValueError(f"task_types has {len(task_types)} entries for {len(task_names)} tasks")
    for task, task_type in zip(task_names, task_types):
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_types: task {task!r} has unknown type {task_type!r} "
                             f"(one of: {', '.join(TASK_TYPES)})")
    weights = _static_weights(static_weights, task_names)
    if name == "gradnorm" and not sum(weights) > 0:
        raise ValueError("static_weights: gradnorm needs a positive sum to normalise, "
                         f"got {list(weights)}")
    check_params(name, params)
    return _CLASSES[name](task_names, task_types, weights, **params)


def check_params(name: str, params: Mapping[str, Any]) -> None:
    """Raises ValueError naming any parameter ``name`` does not take or a bad value."""
    if name not in _CLASSES:
        raise ValueError(f"unknown weighting {name!r} (one of: {', '.join(WEIGHTINGS)})")
    allowed = _PARAMS[name]
    for key, value in params.items():
        if key not in allowed:
            raise ValueError(f"weighting {name!r}: unknown parameter {key!r} "
                             f"(allowed: {', '.join(allowed) or 'none'})")
        check, meaning = allowed[key]
        if not check(value):
            raise ValueError(f"weighting {name!r}: parameter {key!r} must be {meaning}, "
                             f"got {value!r}")


def _static_weights(static_weights, task_names: tuple[str, ...]) -> tuple[float, ...]:
    if static_weights is None:
        return (1.0,) * len(task_names)
    if isinstance(static_weights, Mapping):
        unknown = sorted(set(static_weights) - set(task_names))
        if unknown:
            raise ValueError(f"static_weights: unknown task(s) {', '.join(map(repr, unknown))} "
                             f"(tasks: {', '.join(task_names)})")
        static_weights = [static_weights.get(task, 1.0) for task in task_names]
    static_weights = tuple(static_weights)
    if len(static_weights) != len(task_names):
        raise ValueError(f"static_weights has {len(static_weights)} entries "
                         f"for {len(task_names)} tasks")
    for task, weight in zip(task_names, static_weights):
        if not _number(weight) or weight < 0:
            raise ValueError(f"static_weights: task {task!r} has weight {weight!r}; "
                             "must be a finite number >= 0")
    return tuple(float(w) for w in static_weights)
