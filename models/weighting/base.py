"""What every loss weighting is: the interface the training step uses, and the registry.

The trainer forms each task's effective loss as ``l_k = w_k * L_k + r_k``
(``L_k`` the task's raw masked loss, ``w_k`` its weight, ``r_k`` a regulariser,
non-zero for the learned weightings ``uncertainty`` and ``imtl_l``). ``w_k`` may
depend on the current losses: ``terms`` receives the *global* raw losses (all-reduced
across replicas, stop-gradient) and a loss-dependent weight is ``tf.stop_gradient``ed,
so that ``sum_k w_k L_k`` has the method's gradient (e.g. ``1 / L_k``: that of
``log L_k``). A weighting is a :class:`Weighting`
registered in :data:`REGISTRY` under its ``name``, with its parameters as a
``Params`` dataclass; the math lives in pure functions beside it, with tests on
numbers worked out by hand.

State between steps lives in ``tf.Variable``s created in ``__init__``, so that
``tf.train.Checkpoint`` saves it and ``MirroredStrategy`` mirrors it. State
variables are non-trainable with ``ONLY_FIRST_REPLICA`` aggregation
(:data:`STATE`): ``update`` receives the *global* losses (identical on every
replica) and may assign them from a replica context.

A random weighting draws from stateless ops seeded by (run seed, its own step counter):
``make(..., seed=...)`` gives the run seed (``self.seed``), and the counter is a state
variable advanced by ``update``, so a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import tensorflow as tf

from tfx_mtl.models.registry import NoParams, Registry

REGISTRY = Registry("weighting", "weighting")
STATE = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class Weighting(tf.Module):
    """The interface the training step uses; this base weighs by the static weights.

    Subclasses set ``name`` (the registry key), ``Params`` (their parameters) and
    ``needs_grad_norms`` (whether ``update`` needs the per-task gradient norms on
    the last shared layer, which the step then measures).
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    needs_grad_norms: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str], task_types: Sequence[str],
                 static_weights: Sequence[float], params: Any = None, seed: int = 0):
        super().__init__(name=f"{self.name}_weighting")
        self.task_names = tuple(task_names)
        self.task_types = tuple(task_types)
        self.static_weights = tuple(float(w) for w in static_weights)
        self.k = len(self.task_names)
        self.params = REGISTRY.params(self.name, params)
        self.seed = int(seed)

    def _static(self) -> tf.Tensor:
        return tf.constant(self.static_weights, tf.float32)

    def terms(self, losses: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(w [K], r [K]): the current weights and regularisers, given the global raw
        losses [K] of this step (stop-gradient)."""
        del losses  # static weights do not depend on them
        return self._static(), tf.zeros([self.k])

    def update(self, losses: tf.Tensor, grad_norms: tf.Tensor | None = None) -> None:
        """Once per optimiser step, after the model step, with the global raw losses [K]."""
        del losses, grad_norms  # static weights: nothing to learn

    def weights_for_logging(self, losses: tf.Tensor) -> tf.Tensor:
        """[K] each task's effective weight at these losses, with the state as it is
        (after ``update``: the weights the next step would use at these losses)."""
        return self.terms(tf.convert_to_tensor(losses, tf.float32))[0]


def present(losses: tf.Tensor) -> tf.Tensor:
    """[K] bool: the tasks with a positive loss. A task with no labels in the global
    batch has a loss of exactly 0 (and no gradient): the loss-dependent weightings give
    it weight 0 and leave it out of their normalisations, rather than divide by 0."""
    return tf.convert_to_tensor(losses, tf.float32) > 0


def safe_log(losses: tf.Tensor) -> tf.Tensor:
    """log L_k for the present tasks, 0 for the others (no -inf, no NaN gradient)."""
    losses = tf.convert_to_tensor(losses, tf.float32)
    return tf.math.log(tf.where(present(losses), losses, tf.ones_like(losses)))
