"""The per-task gradients of the training step: rows per variable, their Gram matrix,
cosines from it, and the Gram path of a combination against ``combine`` on G."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import combination
from tfx_mtl.models.combination.base import cosine_matrix, flatten
from tfx_mtl.models.train_step import (combine_rows, cosines_of_gram, gram_of_rows,
                                       task_gradient_rows)


def test_gram_of_rows_is_g_gt_of_their_concatenation():
    # a: [[1, 2], [3, 4]], b: [[[1]], [[2]]] -> G = [[1, 2, 1], [3, 4, 2]];
    # G G^T = [[1+4+1, 3+8+2], [13, 9+16+4]] = [[6, 13], [13, 29]].
    rows = [tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([[[1.0]], [[2.0]]])]
    np.testing.assert_allclose(gram_of_rows(rows).numpy(), [[6.0, 13.0], [13.0, 29.0]])


def test_cosines_of_gram_by_hand_and_as_cosine_matrix_gives_them():
    # G = [[1, 0], [1, 1], [0, 0]]: gram [[1, 1, 0], [1, 2, 0], [0, 0, 0]];
    # cos(g1, g2) = 1 / (1 * sqrt 2) = 0.70711; the zero row has cosine 0 with everything.
    G = tf.constant([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    cosines = cosines_of_gram(tf.matmul(G, G, transpose_b=True)).numpy()
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(cosines, [[1, r, 0], [r, 1, 0], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(cosines, cosine_matrix(G).numpy(), atol=1e-6)


@pytest.mark.parametrize("mode", ["scalars", "tensor", "jacobian"])
def test_rows_are_each_tasks_gradient_and_zeros_where_it_does_not_reach(mode):
    # w = (1, 2) shared, v = 3 only in task 2. L1 = 3 w0 + w1^2: grad_w = (3, 2 w1) = (3, 4);
    # L2 = w0 w1 + v^2: grad_w = (w1, w0) = (2, 1), grad_v = 2 v = 6; L1 does not reach v.
    w, v = tf.Variable([1.0, 2.0]), tf.Variable([3.0])
    with tf.GradientTape(persistent=True) as tape:
        parts = [3 * w[0] + w[1] ** 2, w[0] * w[1] + v[0] ** 2]
        stacked = tf.stack(parts)
        total = tf.reduce_sum(stacked)
    targets = parts if mode == "scalars" else stacked
    rows = task_gradient_rows(tape, targets, [w, v], 2, vectorised=mode == "jacobian")
    np.testing.assert_allclose(rows[0].numpy(), [[3.0, 4.0], [2.0, 1.0]])
    np.testing.assert_allclose(rows[1].numpy(), [[0.0], [6.0]])
    # The rows of a task-specific variable sum to the gradient of the summed losses.
    np.testing.assert_allclose(tf.reduce_sum(rows[1], 0).numpy(), tape.gradient(total, v).numpy())


@pytest.mark.parametrize("name", ["mgda"])
def test_the_gram_path_gives_combines_update_and_cosines(name):
    # A Gram-based method's update beta^T G, computed variable by variable, equals
    # combine(G) on the concatenated G; the cosines equal cosine_matrix(G).
    method = combination.make(name)
    rng = np.random.default_rng(0)
    rows = [tf.constant(rng.normal(size=(3, 4, 2)), tf.float32),
            tf.constant(rng.normal(size=(3, 5)), tf.float32)]
    seed = tf.constant([0, 1], tf.int64)
    by_gram, cos_gram = combine_rows(method, rows, seed, gram_based=True)
    by_g, cos_g = combine_rows(method, rows, seed, gram_based=False)
    for a, b in zip(by_gram, by_g):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cos_gram.numpy(), cos_g.numpy(), atol=1e-5)
    np.testing.assert_allclose(cos_g.numpy(), cosine_matrix(flatten(rows)).numpy(), atol=1e-6)


class _PreviousStep:
    """The step's parameter level as it was before issue 17 (the reference): one-hot
    cotangents on the stacked [K] losses, the task-specific gradients from a separate
    pass of their sum, ``combine`` on the concatenated G, norms from G's columns."""

    def _parameter_level(self, tape, targets, ctx, seed):
        from tfx_mtl.models.combination.base import unflatten
        from tfx_mtl.models.train_step import _SUM, per_task_gradients

        with tape:
            stacked = targets if tf.is_tensor(targets) else tf.stack(targets)
            total = tf.reduce_sum(stacked)
        matrix = ctx.all_reduce(_SUM, per_task_gradients(tape, stacked, self.shared, self.k,
                                                         self.vectorised))
        self.stats.update(cosine_matrix(matrix))
        shared = unflatten(self.combination.combine(matrix, seed),
                           [v.shape for v in self.shared])
        specific = [tf.zeros(v.shape) if g is None else g
                    for g, v in zip(tape.gradient(total, self.specific), self.specific)]
        sizes = [v.shape.num_elements() for v in self.shared]
        starts = np.cumsum([0] + sizes)
        columns = np.concatenate([np.arange(starts[i], starts[i] + sizes[i])
                                  for i in self.last_indices])
        return shared, specific, tf.norm(tf.gather(matrix, columns, axis=1), axis=1)


@pytest.mark.parametrize("weighting,combine", [
    ("uncertainty", "mgda"),  # Gram path; the weighting's own variables in the rows
    ("gradnorm", "pcgrad"),  # combine on G; norms of the last shared layer from the rows
    ("dwa", "cagrad")])
def test_training_equals_the_previous_per_task_gradient_path(weighting, combine):
    from loop_support import data, loop, params
    from tfx_mtl.models import synthetic_input
    from tfx_mtl.models.train_step import MultiTaskStep

    spec, arrays = data(tasks=3)
    trained = {}
    for path in ("now", "previous"):
        training = loop(spec, arrays, weighting=weighting, combine=combine,
                        weighting_params={"period": 2} if weighting == "dwa" else {})
        if path == "previous":
            training.step.__class__ = type("Previous", (_PreviousStep, MultiTaskStep), {})
        training.fit(synthetic_input.dataset(arrays, 64), 6)
        trained[path] = params(training)
    for a, b in zip(trained["now"], trained["previous"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _previous_representation_gradients(tape, effective, representation, shared, combination,
                                       seed, ctx, vectorised=False, parts=None, specific=()):
    """The representation level as it was before (the reference, Gram-based methods):
    one-hot passes of the stacked losses to the representation, then the losses weighted
    by beta back-propagated through heads and trunk, and the task-specific gradients from
    a separate pass of the summed losses."""
    from tfx_mtl.models.train_step import _SUM, per_task_gradients

    local = per_task_gradients(tape, effective, list(representation), effective.shape[0],
                               vectorised)
    gram = ctx.all_reduce(_SUM, tf.matmul(local, local, transpose_b=True))
    beta = tf.stop_gradient(combination.task_weights(gram, seed))
    shared_grads = tape.gradient(effective, list(shared), output_gradients=beta)
    with tape:
        total = tf.reduce_sum(effective)
    specific_grads = [tf.zeros(v.shape) if g is None else g
                      for g, v in zip(tape.gradient(total, list(specific)), specific)]
    return list(shared_grads), specific_grads


@pytest.mark.parametrize("arch", ["shared_bottom", "mmoe", "ple", "cross_stitch"])
def test_representation_level_equals_weighting_the_losses_through_heads_and_trunk(
        arch, monkeypatch):
    # The step back-propagates beta^T R from the representation through the trunk only,
    # and sums the K passes' task-specific rows; the reference back-propagates the
    # beta-weighted losses through heads and trunk and the summed losses once more.
    # Equal only if the shared parameters reach the losses through the representation
    # alone, on every architecture.
    from loop_support import data, loop, params
    from tfx_mtl.models import synthetic_input, train_step

    spec, arrays = data(tasks=3)
    trained = {}
    for path in ("now", "previous"):
        training = loop(spec, arrays, weighting="uncertainty", combine="mgda",
                        surgery_level="representation",
                        architecture={"name": arch, "levels": 2 if arch == "ple" else 1})
        with monkeypatch.context() as patch:
            if path == "previous":
                patch.setattr(train_step, "representation_gradients",
                              _previous_representation_gradients)
            training.fit(synthetic_input.dataset(arrays, 64), 6)
        trained[path] = params(training)
    for a, b in zip(trained["now"], trained["previous"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
