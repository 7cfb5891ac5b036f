"""One optimiser step of the multi-task model, written for a replica context.

Per step, on each replica:
1. each task's masked loss ``L_k`` on the replica's share of the global batch,
   normalised by the task's labelled count in the *global* batch (so summing
   over replicas gives exactly the single-device loss); a task with class
   weights sums its examples' weighted losses, still over that count;
2. the weighting's effective losses ``l_k = w_k * L_k + r_k``, its terms given the
   global raw losses (all-reduced, stop-gradient: loss-dependent weights see the
   global batch, and every replica weighs alike);
3. gradients: task-specific parameters get the gradient of ``sum_k l_k``
   (only their own task reaches them); the shared parameters get what the
   combination method asks for (:class:`~tfx_mtl.models.combination.base.GradientCombination`):
   - no per-task gradients (``sum``): one backward pass of ``sum_k l_k``;
   - per-task gradients of the shared parameters: ``G`` [K, P] from K
     backward passes of the one recorded forward pass (or, with
     ``per_task_gradients: jacobian``, one ``pfor`` Jacobian), summed across
     replicas *before* surgery, so surgery sees the global batch's gradients
     and every replica computes the same update;
   - per-task gradients of the shared representation (``surgery_level:
     representation``, or ``mgda_ub``): K cheap backward passes through the
     heads, then one backward pass through the trunk
     (:func:`representation_gradients`): for a Gram-based method, of the losses
     weighted by its task weights (from the Gram matrix summed across
     replicas); for an elementwise method, of the representation itself with
     the method's combination of this replica's representation gradients as the
     cotangent;
4. the optimiser applies them; the weighting updates its state from the
   global losses (and, when it needs them, the per-task gradient norms on the
   last shared layer).

Keras' ``apply_gradients`` sums gradients over replicas when called in a
replica context; gradients that are already global (the combined shared
gradient) are therefore handed over divided by the number of replicas.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from tfx_mtl import naming
from tfx_mtl.models import heads
from tfx_mtl.models.combination.base import (PARAMETERS, REPRESENTATION, GradientCombination,
                                              cosine_matrix, flatten, unflatten)
from tfx_mtl.models.diagnostics import ConflictStats
from tfx_mtl.models.network import Network
from tfx_mtl.models.ownership import Partition
from tfx_mtl.task_spec import TaskSpec

_SUM = tf.distribute.ReduceOp.SUM


def _fill(grads: Sequence, variables: Sequence) -> list[tf.Tensor]:
    """Zeros for unconnected gradients (UnconnectedGradients.ZERO fails on Keras 3 variables)."""
    return [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]


class MultiTaskStep:
    """What a step needs; ``replica_step``, ``replica_diagnose`` run under ``strategy.run``."""

    def __init__(self, network: Network, spec: TaskSpec, label_stats: Mapping[str, tuple],
                 weighting, combination: GradientCombination, optimizer, partition: Partition,
                 stats: ConflictStats, seed: int, per_task_gradients: str = "backward",
                 class_weights: Mapping[str, Sequence[float]] | None = None,
                 surgery_level: str = PARAMETERS):
        """``class_weights``: each weighted task's weights by class id (heads).
        ``surgery_level``: which per-task gradients the combination acts on (the method
        may force one, :meth:`GradientCombination.level_at`)."""
        self.network, self.spec, self.label_stats = network, spec, label_stats
        self.class_weights = dict(class_weights or {})
        self.weighting, self.combination, self.optimizer = weighting, combination, optimizer
        self.partition, self.stats = partition, stats
        self.seed = seed
        self.vectorised = per_task_gradients == "jacobian"
        self.task_names = spec.task_names
        self.k = len(self.task_names)
        self.shared = list(partition.shared)
        self.specific = list(partition.task_specific) + list(weighting.trainable_variables)
        self.variables = self.shared + self.specific
        # Which per-task gradients the step forms for the combination: none, of the
        # shared parameters, or of the shared representation.
        level = combination.level_at(surgery_level)  # refuses what the method cannot do
        self.level = level if combination.needs_task_gradients and self.shared and self.k > 1 \
            else None
        shared_ids = [id(v) for v in self.shared]
        # Columns of G that belong to the last shared layer (GradNorm's W).
        columns, offset = [], 0
        last = {id(v) for v in partition.last_shared}
        for v in self.shared:
            size = v.shape.num_elements()
            if id(v) in last:
                columns.append(tf.range(offset, offset + size))
            offset += size
        self.last_columns = tf.concat(columns, 0) if columns else None
        self.last_shared = [v for v in partition.last_shared if id(v) in shared_ids]

    # -- pieces ------------------------------------------------------------
    def _inputs(self, batch):
        return {key: batch[key] for key in self.spec.feature_keys}

    def _labelled_counts(self, batch, ctx) -> tf.Tensor:
        local = tf.stack([tf.reduce_sum(tf.cast(tf.reshape(batch[naming.mask_key(t)], [-1]),
                                                tf.float32)) for t in self.task_names])
        return ctx.all_reduce(_SUM, local)

    def _task_losses(self, raw, batch, counts) -> tf.Tensor:
        """[K]: this replica's share of each task's global masked mean loss."""
        losses = []
        for i, task in enumerate(self.spec.tasks):
            mean, std = self.label_stats.get(task.name, (0.0, 1.0))
            per_example = heads.per_example_loss(task, raw[task.name],
                                                 batch[naming.label_key(task.name)], mean, std,
                                                 self.class_weights.get(task.name))
            mask = tf.cast(tf.reshape(batch[naming.mask_key(task.name)], [-1]), tf.float32)
            losses.append(tf.math.divide_no_nan(tf.reduce_sum(per_example * mask), counts[i]))
        return tf.stack(losses)

    def _forward(self, batch, training: bool):
        if self.level == REPRESENTATION:
            result = self.network.representation_model(self._inputs(batch), training=training)
            return result["outputs"], list(tf.nest.flatten(result["representation"]))
        return self.network.model(self._inputs(batch), training=training), []

    def _last_layer_norms(self, tape, losses, ctx) -> tf.Tensor:
        """||grad_W L_k|| of the unweighted global losses on the last shared layer."""
        if not self.last_shared:
            return tf.zeros([self.k])
        g = ctx.all_reduce(_SUM, per_task_gradients(tape, losses, self.last_shared, self.k,
                                                    self.vectorised))
        return tf.norm(g, axis=1)

    # -- the step ----------------------------------------------------------
    def replica_step(self, batch, step):
        """Returns (global raw losses [K], logged weights [K])."""
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        counts = self._labelled_counts(batch, ctx)
        with tf.GradientTape(persistent=True) as tape:
            raw, representation = self._forward(batch, training=True)
            losses = self._task_losses(raw, batch, counts)
            global_losses = ctx.all_reduce(_SUM, tf.stop_gradient(losses))
            weights, regulariser = self.weighting.terms(global_losses)
            effective = weights * losses + regulariser / replicas
            total = tf.reduce_sum(effective)
        norms = None

        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        if self.level == PARAMETERS:
            matrix = ctx.all_reduce(_SUM, per_task_gradients(tape, effective, self.shared,
                                                             self.k, self.vectorised))
            self.stats.update(cosine_matrix(matrix))
            combined = self.combination.combine(matrix, seed)
            shared_grads = [g / replicas
                            for g in unflatten(combined, [v.shape for v in self.shared])]
            specific_grads = tape.gradient(total, self.specific)
            grads = shared_grads + list(specific_grads)
            if self.weighting.needs_grad_norms and self.last_columns is not None:
                last = tf.gather(matrix, self.last_columns, axis=1)
                norms = tf.math.divide_no_nan(tf.norm(last, axis=1), weights)
        elif self.level == REPRESENTATION:
            shared_grads = representation_gradients(
                tape, effective, representation, self.shared, self.combination, seed, ctx,
                self.vectorised)
            grads = list(shared_grads) + list(tape.gradient(total, self.specific))
        else:
            grads = tape.gradient(total, self.variables)
        if norms is None and self.weighting.needs_grad_norms:
            norms = self._last_layer_norms(tape, losses, ctx)
        del tape

        self.optimizer.apply_gradients(zip(_fill(grads, self.variables), self.variables))
        self.weighting.update(global_losses, norms)
        return global_losses, self.weighting.weights_for_logging(global_losses)

    def replica_diagnose(self, batch):
        """Measures gradient conflicts without training (when the step does not form the
        shared parameters' per-task gradients itself; at log steps)."""
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        counts = self._labelled_counts(batch, ctx)
        with tf.GradientTape(persistent=True) as tape:
            raw = self.network.model(self._inputs(batch), training=False)
            losses = self._task_losses(raw, batch, counts)
            global_losses = ctx.all_reduce(_SUM, tf.stop_gradient(losses))
            weights, regulariser = self.weighting.terms(global_losses)
            effective = weights * losses + regulariser / replicas
        matrix = ctx.all_reduce(_SUM, per_task_gradients(tape, effective, self.shared, self.k,
                                                         self.vectorised))
        self.stats.update(cosine_matrix(matrix))
        return global_losses

    @property
    def measures_on_logging_steps(self) -> bool:
        """True when the step does not form the shared parameters' per-task gradients
        itself (sum; representation-level methods), so conflicts are measured apart."""
        return self.level != PARAMETERS and bool(self.shared) and self.k > 1


def representation_gradients(tape: tf.GradientTape, effective: tf.Tensor,
                             representation: Sequence[tf.Tensor], shared: Sequence,
                             combination: GradientCombination, seed: tf.Tensor, ctx,
                             vectorised: bool = False) -> list:
    """This replica's gradients of ``shared`` for ``combination`` run on the gradients of
    the shared ``representation`` (the tensors the tape recorded at the shared/task
    boundary): K backward passes through the heads give this replica's [K, N]
    representation gradients, then one backward pass through the trunk.

    - Gram-based: beta = task_weights(Gram summed over replicas, seed), identical on
      every replica; returns the gradient of sum_k beta_k effective_k.
    - elementwise: the combination of this replica's own rows (exact: each coordinate
      belongs to one of its examples), reshaped to the representation's tensors and
      back-propagated as their cotangent.
    Summed over replicas (as ``apply_gradients`` does) this is the global update.
    """
    k = effective.shape[0]
    local = per_task_gradients(tape, effective, representation, k, vectorised)
    if combination.gram_based() and not combination.elementwise:
        gram = ctx.all_reduce(_SUM, tf.matmul(local, local, transpose_b=True))
        beta = tf.stop_gradient(combination.task_weights(gram, seed))
        return tape.gradient(effective, list(shared), output_gradients=beta)
    combined = tf.stop_gradient(combination.combine(local, seed))
    sizes = [tf.size(r) for r in representation]
    pieces = tf.split(combined, tf.stack(sizes), num=len(sizes))
    cotangents = [tf.reshape(p, tf.shape(r)) for p, r in zip(pieces, representation)]
    return tape.gradient(list(representation), list(shared), output_gradients=cotangents)


def per_task_gradients(tape: tf.GradientTape, targets: tf.Tensor, sources: Sequence, k: int,
                       vectorised: bool = True) -> tf.Tensor:
    """[K, P]: row k is the gradient of ``targets[k]`` w.r.t. all ``sources``, flattened.

    ``vectorised``: one Jacobian through ``pfor``; else K vector-Jacobian products
    with one-hot cotangents (K backward passes over the one recorded forward pass).
    """
    if vectorised:
        jacobians = tape.jacobian(targets, sources, experimental_use_pfor=True)
    else:
        rows = [tape.gradient(targets, sources, output_gradients=tf.one_hot(i, k))
                for i in range(k)]
        jacobians = [None if all(r[j] is None for r in rows) else tf.stack(
            [tf.zeros(tf.shape(s), tf.float32) if r[j] is None else tf.convert_to_tensor(r[j])
             for r in rows]) for j, s in enumerate(sources)]
    return flatten(_fill_jacobians(jacobians, sources, k))


def _fill_jacobians(jacobians: Sequence, sources: Sequence, k: int) -> list[tf.Tensor]:
    """[K, *shape] per source; a source no task reaches gets zeros."""
    return [tf.zeros(tf.concat([[k], tf.shape(s)], 0), tf.float32) if j is None else j
            for j, s in zip(jacobians, sources)]
