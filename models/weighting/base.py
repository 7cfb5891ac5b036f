"""What every loss weighting is: the interface the training step uses, and the registry.

The trainer forms each task's effective loss as ``l_k = w_k * L_k + r_k``
(``L_k`` the task's raw masked loss, ``w_k`` its weight, ``r_k`` a regulariser,
non-zero only for uncertainty weighting). A weighting is a :class:`Weighting`
registered in :data:`REGISTRY` under its ``name``, with its parameters as a
``Params`` dataclass; the math lives in pure functions beside it, with tests on
numbers worked out by hand.

State between steps lives in ``tf.Variable``s created in ``__init__``, so that
``tf.train.Checkpoint`` saves it and ``MirroredStrategy`` mirrors it. State
variables are non-trainable with ``ONLY_FIRST_REPLICA`` aggregation
(:data:`STATE`): ``update`` receives the *global* losses (identical on every
replica) and may assign them from a replica context.
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
                 static_weights: Sequence[float], params: Any = None):
        super().__init__(name=f"{self.name}_weighting")
        self.task_names = tuple(task_names)
        self.task_types = tuple(task_types)
        self.static_weights = tuple(float(w) for w in static_weights)
        self.k = len(self.task_names)
        self.params = REGISTRY.params(self.name, params)

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
