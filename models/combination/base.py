"""What every gradient combination is: the interface the training step uses, and the registry.

A combination turns the tasks' gradients into one update of the shared
parameters. Everything acts on ``G`` [K, P]: row k is task k's gradient,
flattened (:func:`flatten` / :func:`unflatten` convert between per-variable
Jacobians and ``G``). K is small (1..10) and static, so loops over tasks are
Python loops. All functions are TensorFlow ops that run inside ``tf.function``
and in a ``MirroredStrategy`` replica context; the trainer feeds them the
*global* (all-reduced) ``G``, so every replica computes the same update.

A method declares what the training step must compute for it (see
:class:`GradientCombination`): whether it needs per-task gradients at all, and
at which level -- of the shared parameters (:data:`PARAMETERS`, the default) or
of the shared representation (:data:`REPRESENTATION`, K cheap backward passes
through the heads only). The step asks the method; it compares no method names.

Scale of the result: ``sum`` and ``pcgrad`` return a *sum* over tasks;
``mgda`` returns a convex combination and ``cagrad`` a vector on the scale of
the *mean* (both as in their papers), i.e. about 1/K of the sum.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import tensorflow as tf

from tfx_mtl.models.registry import NoParams, Registry

REGISTRY = Registry("combine", "gradient combination")
PARAMETERS = "parameters"  # per-task gradients of the shared parameters: G [K, P]
REPRESENTATION = "representation"  # ... of the shared representation, weighed back as losses


class GradientCombination:
    """One method of combining per-task gradients; subclasses register in :data:`REGISTRY`.

    ``name`` is the registry key, ``Params`` the parameters' dataclass.
    ``needs_task_gradients``: False means the method is the plain sum, one backward
    pass of the summed losses. ``level``: :data:`PARAMETERS` -- the step forms
    ``G`` of the shared parameters and calls :meth:`combine`; :data:`REPRESENTATION`
    -- the step forms the gradients of the shared representation, sums their Gram
    matrix over replicas, and back-propagates the losses weighted by
    :meth:`task_weights` once, so such a method must implement it.
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    needs_task_gradients: ClassVar[bool] = True
    level: ClassVar[str] = PARAMETERS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.level not in (PARAMETERS, REPRESENTATION):
            raise TypeError(f"{cls.__name__}.level must be {PARAMETERS!r} or "
                            f"{REPRESENTATION!r}, got {cls.level!r}")
        if cls.level == REPRESENTATION and cls.task_weights is GradientCombination.task_weights:
            raise TypeError(f"{cls.__name__} works on the representation, so it must "
                            "implement task_weights")

    def __init__(self, params: Any = None):
        self.params = REGISTRY.params(self.name, params)

    def combine(self, G: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        """[P] the shared parameters' update from the task gradients ``G`` [K, P].

        ``seed`` [2] (int, e.g. (run seed, step)) for methods that draw at random.
        Default, for a Gram-based method (one that overrides :meth:`task_weights`):
        ``G^T task_weights(G G^T, seed)``."""
        if type(self).task_weights is GradientCombination.task_weights:
            raise NotImplementedError(f"{self.name} implements neither combine nor task_weights")
        G = as_matrix(G)
        weights = self.task_weights(tf.matmul(G, G, transpose_b=True), seed)
        return tf.linalg.matvec(G, weights, transpose_a=True)

    def task_weights(self, gram: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        """[K] alpha such that the update is alpha^T G, from the Gram matrix G G^T alone."""
        raise NotImplementedError(f"{self.name} has no task weights of the Gram matrix alone")


# -- helpers ---------------------------------------------------------------
def as_matrix(G, name: str = "G") -> tf.Tensor:
    """``G`` as a [K, P] tensor with a static K (ValueError naming the shape otherwise)."""
    G = tf.convert_to_tensor(G)
    if G.shape.rank != 2:
        raise ValueError(f"{name} must be a [K, P] matrix (one row per task), got shape {G.shape}")
    if G.shape[0] is None:
        raise ValueError(f"{name} must have a static number of rows (tasks), got shape {G.shape}")
    return G


def as_gram(gram) -> tf.Tensor:
    """``gram`` as a square [K, K] tensor with a static K."""
    gram = tf.convert_to_tensor(gram)
    if gram.shape.rank != 2 or gram.shape[0] is None or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square [K, K] matrix with static K, "
                         f"got shape {gram.shape}")
    return gram


def flatten(grads_per_var: Sequence[tf.Tensor]) -> tf.Tensor:
    """[K, P] from per-variable Jacobians [K, *var_shape] (concatenated in order)."""
    if not grads_per_var:
        raise ValueError("grads_per_var is empty: no shared variables to flatten")
    pieces, k = [], None
    for i, g in enumerate(grads_per_var):
        if g is None:
            raise ValueError(f"grads_per_var[{i}] is None: fill unconnected gradients "
                             "with zeros first")
        g = tf.convert_to_tensor(g)
        if g.shape.rank is not None and g.shape.rank < 1:
            raise ValueError(f"grads_per_var[{i}] must have a leading task axis, got a scalar")
        if k is None:
            k, dtype = g.shape[0], g.dtype
        elif g.dtype != dtype:
            raise ValueError(f"grads_per_var[{i}] has dtype {g.dtype.name}, "
                             f"grads_per_var[0] has {dtype.name}")
        elif g.shape[0] is not None and k is not None and g.shape[0] != k:
            raise ValueError(f"grads_per_var[{i}] has {g.shape[0]} task rows, "
                             f"grads_per_var[0] has {k}")
        pieces.append(tf.reshape(g, [k if k is not None else tf.shape(g)[0], -1]))
    return tf.concat(pieces, axis=1)


def unflatten(vector: tf.Tensor, shapes: Sequence) -> list[tf.Tensor]:
    """Inverse of one row of :func:`flatten`: split ``vector`` [P] into tensors of ``shapes``."""
    vector = tf.convert_to_tensor(vector)
    if vector.shape.rank != 1:
        raise ValueError(f"vector must be 1-D [P], got shape {vector.shape}")
    shapes = [tf.TensorShape(s) for s in shapes]
    for i, shape in enumerate(shapes):
        if not shape.is_fully_defined():
            raise ValueError(f"shapes[{i}] = {shape} is not fully defined")
    sizes = [s.num_elements() for s in shapes]
    if vector.shape[0] is not None and vector.shape[0] != sum(sizes):
        raise ValueError(f"vector has {vector.shape[0]} elements, shapes need {sum(sizes)}")
    return [tf.reshape(piece, shape)
            for piece, shape in zip(tf.split(vector, sizes), shapes)]


def cosine_matrix(G: tf.Tensor) -> tf.Tensor:
    """[K, K] pairwise cosine similarities of the rows of G (0 where a row is 0)."""
    G = as_matrix(G)
    unit = tf.math.divide_no_nan(G, tf.norm(G, axis=1, keepdims=True))
    return tf.clip_by_value(tf.matmul(unit, unit, transpose_b=True), -1.0, 1.0)
