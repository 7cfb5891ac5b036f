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
     backward passes of the one recorded forward pass, pass k from ``l_k``
     alone (so through task k's tower only) and over the task-specific
     variables too, whose rows summed are their gradient (or, with
     ``per_task_gradients: jacobian``, one ``pfor`` Jacobian), summed across
     replicas *before* surgery, so surgery sees the global batch's gradients
     and every replica computes the same update; a Gram-based method gets
     ``G G^T`` summed variable by variable (``G`` is never concatenated) and
     the conflict cosines come from it;
   - per-task gradients of the shared representation (``surgery_level:
     representation``, or ``mgda_ub``): K cheap backward passes, pass k from
     ``l_k`` through task k's head to the representation and the task-specific
     variables (whose rows summed are their gradient), then one backward pass
     through the trunk of the method's cotangent of the representation
     (:func:`representation_gradients`): ``beta^T R`` for a Gram-based method
     (beta from the Gram matrix summed across replicas), the method's
     combination of this replica's representation gradients for an elementwise
     one;
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
        # Which shared variables are the last shared layer (GradNorm's W).
        last = {id(v) for v in partition.last_shared}
        self.last_indices = [i for i, v in enumerate(self.shared) if id(v) in last]
        self.last_shared = [v for v in partition.last_shared if id(v) in shared_ids]
        # A method with task weights of the Gram matrix: its update is beta^T G.
        self.gram_based = combination.combines_by_gram()

    # -- pieces ------------------------------------------------------------
    def _inputs(self, batch):
        return {key: batch[key] for key in self.spec.feature_keys}

    def _labelled_counts(self, batch, ctx) -> tf.Tensor:
        local = tf.stack([tf.reduce_sum(tf.cast(tf.reshape(batch[naming.mask_key(t)], [-1]),
                                                tf.float32)) for t in self.task_names])
        return ctx.all_reduce(_SUM, local)

    def _task_losses(self, raw, batch, counts) -> tf.Tensor:
        """[K]: this replica's share of each task's global masked mean loss."""
        return tf.stack(self._task_loss_list(raw, batch, counts))

    def _task_loss_list(self, raw, batch, counts) -> list[tf.Tensor]:
        """:meth:`_task_losses` as K scalars: each one's backward pass then reaches only
        its own task's tower (a stacked [K] target with a one-hot cotangent runs all K)."""
        losses = []
        for i, task in enumerate(self.spec.tasks):
            mean, std = self.label_stats.get(task.name, (0.0, 1.0))
            per_example = heads.per_example_loss(task, raw[task.name],
                                                 batch[naming.label_key(task.name)], mean, std,
                                                 self.class_weights.get(task.name))
            mask = tf.cast(tf.reshape(batch[naming.mask_key(task.name)], [-1]), tf.float32)
            losses.append(tf.math.divide_no_nan(tf.reduce_sum(per_example * mask), counts[i]))
        return losses

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

    def _parameter_level(self, tape, targets, ctx, seed):
        """The shared parameters' combined gradient (global), the task-specific ones'
        (local) and the per-task gradient norms on the last shared layer (global).

        Why it is shaped so (docs/BENCHMARKS.md, per-task gradient cost): one
        backward pass per task over shared + task-specific variables, whose
        task-specific rows summed are ``d total / d specific`` (no extra pass);
        a Gram-based method (one with ``task_weights``) gets ``G G^T`` summed over
        variables and its update as ``beta^T G`` per variable, without the [K, P]
        concatenation; the conflict cosines come from the same Gram matrix.
        ``targets``: K scalars (or the [K] tensor, with the ``pfor`` Jacobian).
        """
        rows = task_gradient_rows(tape, targets, self.shared + self.specific, self.k,
                                  self.vectorised)
        shared_rows = ctx.all_reduce(_SUM, rows[:len(self.shared)])
        specific = [tf.reduce_sum(r, axis=0) for r in rows[len(self.shared):]]
        shared, cosines = combine_rows(self.combination, shared_rows, seed, self.gram_based)
        self.stats.update(cosines)
        norms = None
        if self.weighting.needs_grad_norms and self.last_indices:
            norms = tf.sqrt(tf.linalg.diag_part(gram_of_rows(
                [shared_rows[i] for i in self.last_indices])))
        return shared, specific, norms

    # -- the step ----------------------------------------------------------
    def replica_step(self, batch, step):
        """Returns (global raw losses [K], logged weights [K])."""
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        counts = self._labelled_counts(batch, ctx)
        with tf.GradientTape(persistent=True) as tape:
            raw, representation = self._forward(batch, training=True)
            loss_list = self._task_loss_list(raw, batch, counts)
            losses = tf.stack(loss_list)
            global_losses = ctx.all_reduce(_SUM, tf.stop_gradient(losses))
            weights, regulariser = self.weighting.terms(global_losses)
            effective = weights * losses + regulariser / replicas
            total = tf.reduce_sum(effective)
            # effective[k] as its own scalar (per-task gradients: one tower per pass).
            parts = [weights[i] * loss_list[i] + regulariser[i] / replicas
                     for i in range(self.k)] if self.level is not None else None
        norms = None

        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        if self.level == PARAMETERS:
            shared_grads, specific_grads, gram_norms = self._parameter_level(
                tape, effective if self.vectorised else parts, ctx, seed)
            grads = [g / replicas for g in shared_grads] + specific_grads
            if self.weighting.needs_grad_norms and gram_norms is not None:
                norms = tf.math.divide_no_nan(gram_norms, weights)
        elif self.level == REPRESENTATION:
            shared_grads, specific_grads = representation_gradients(
                tape, effective, representation, self.shared, self.combination, seed, ctx,
                self.vectorised, parts, self.specific)
            grads = shared_grads + specific_grads
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
                             vectorised: bool = False, parts: Sequence | None = None,
                             specific: Sequence = ()) -> tuple[list, list]:
    """This replica's gradients of ``shared`` for ``combination`` run on the gradients of
    the shared ``representation`` (the tensors the tape recorded at the shared/task
    boundary), and of the task-specific variables ``specific``.

    K backward passes, each from one task's loss to the representation and ``specific``
    (through that task's head only, when ``parts`` gives the K effective losses as
    scalars), give this replica's [K, N] representation gradients R and, summed, the
    task-specific gradients. The method turns R into one cotangent of the
    representation, back-propagated through the trunk once:
    - Gram-based: beta = task_weights(R R^T summed over replicas, seed), identical on
      every replica; the cotangent is beta^T R (= the gradient of sum_k beta_k
      effective_k at the representation: the shared parameters reach the losses only
      through it);
    - elementwise: the combination of this replica's own rows (exact: each coordinate
      belongs to one of its examples; with several replicas ``seed`` folded with the
      replica id).
    Summed over replicas (as ``apply_gradients`` does) this is the global update.
    Returns (shared gradients, specific gradients).
    """
    k = effective.shape[0]
    representation, specific = list(representation), list(specific)
    rows = task_gradient_rows(tape, effective if parts is None else parts,
                              representation + specific, k, vectorised)
    local = flatten(rows[:len(representation)])
    specific_grads = [tf.reduce_sum(r, axis=0) for r in rows[len(representation):]]
    if combination.combines_by_gram():
        gram = ctx.all_reduce(_SUM, tf.matmul(local, local, transpose_b=True))
        beta = tf.stop_gradient(combination.task_weights(gram, seed))
        combined = tf.linalg.matvec(local, beta, transpose_a=True)
    else:
        # Each replica holds other examples: a random elementwise method draws afresh.
        local_seed = seed if ctx.num_replicas_in_sync == 1 else \
            tf.random.experimental.stateless_fold_in(
                seed, tf.cast(ctx.replica_id_in_sync_group, tf.int64))
        combined = combination.combine(local, local_seed)
    combined = tf.stop_gradient(combined)
    sizes = [tf.size(r) for r in representation]
    pieces = tf.split(combined, tf.stack(sizes), num=len(sizes))
    cotangents = [tf.reshape(p, tf.shape(r)) for p, r in zip(pieces, representation)]
    shared_grads = tape.gradient(representation, list(shared), output_gradients=cotangents)
    return list(shared_grads), specific_grads


def per_task_gradients(tape: tf.GradientTape, targets, sources: Sequence, k: int,
                       vectorised: bool = True) -> tf.Tensor:
    """[K, P]: row k is the gradient of ``targets[k]`` w.r.t. all ``sources``, flattened."""
    return flatten(task_gradient_rows(tape, targets, sources, k, vectorised))


def task_gradient_rows(tape: tf.GradientTape, targets, sources: Sequence, k: int,
                       vectorised: bool = True) -> list[tf.Tensor]:
    """Per source [K, *shape]: row k is the gradient of ``targets[k]`` (zeros where no
    task reaches the source).

    ``targets``: a [K] tensor, or K scalars recorded on ``tape`` (then pass k runs
    backwards from ``targets[k]`` alone, through its own task's ops only).
    ``vectorised``: one Jacobian through ``pfor`` (``targets`` stacked if a list);
    else K backward passes over the one recorded forward pass (one-hot cotangents
    for a [K] tensor). K passes beat ``pfor`` on CPU (docs/BENCHMARKS.md).
    """
    if vectorised:
        with tape:  # the stack must be recorded to be differentiated
            stacked = targets if tf.is_tensor(targets) else tf.stack(targets)
        jacobians = tape.jacobian(stacked, sources, experimental_use_pfor=True)
    else:
        if tf.is_tensor(targets):
            rows = [tape.gradient(targets, sources, output_gradients=tf.one_hot(i, k))
                    for i in range(k)]
        else:
            rows = [tape.gradient(targets[i], sources) for i in range(k)]
        jacobians = [None if all(r[j] is None for r in rows) else tf.stack(
            [tf.zeros(tf.shape(s), tf.float32) if r[j] is None else tf.convert_to_tensor(r[j])
             for r in rows]) for j, s in enumerate(sources)]
    return _fill_jacobians(jacobians, sources, k)


def combine_rows(combination: GradientCombination, rows: Sequence[tf.Tensor], seed,
                 gram_based: bool) -> tuple[list[tf.Tensor], tf.Tensor]:
    """The combined update per variable from the per-task rows [K, *shape] of G, and the
    rows' pairwise cosines [K, K]. ``gram_based``: via ``task_weights(G G^T)``, the
    update ``beta^T G`` variable by variable; else ``combine`` on the concatenated G."""
    if gram_based:
        gram = gram_of_rows(rows)
        beta = combination.task_weights(gram, seed)
        return [tf.tensordot(beta, r, 1) for r in rows], cosines_of_gram(gram)
    matrix = flatten(rows)
    return (unflatten(combination.combine(matrix, seed), [r.shape[1:] for r in rows]),
            cosine_matrix(matrix))


def gram_of_rows(rows: Sequence[tf.Tensor]) -> tf.Tensor:
    """[K, K] ``G G^T`` of the per-variable rows [K, *shape] (G their concatenation),
    summed variable by variable, so G is never built."""
    k = rows[0].shape[0]
    return tf.add_n([tf.matmul(m, m, transpose_b=True)
                     for m in (tf.reshape(r, [k, -1]) for r in rows)])


def cosines_of_gram(gram: tf.Tensor) -> tf.Tensor:
    """[K, K] pairwise cosines of G's rows from ``G G^T`` (0 where a row is 0), as
    ``cosine_matrix(G)`` gives them."""
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
    return tf.clip_by_value(tf.math.divide_no_nan(gram, norms[:, None] * norms[None, :]),
                            -1.0, 1.0)


def _fill_jacobians(jacobians: Sequence, sources: Sequence, k: int) -> list[tf.Tensor]:
    """[K, *shape] per source; a source no task reaches gets zeros."""
    return [tf.zeros(tf.concat([[k], tf.shape(s)], 0), tf.float32) if j is None else j
            for j, s in zip(jacobians, sources)]
