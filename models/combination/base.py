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
whether it can run on the gradients of the shared representation instead of
the shared parameters (``trainer.surgery_level``: :data:`PARAMETERS`, the
default, or :data:`REPRESENTATION`, K cheap backward passes through the heads
only). The step asks the method; it compares no method names.

Scale of the result: ``sum`` and ``pcgrad`` return a *sum* over tasks;
``mgda`` returns a convex combination and ``cagrad`` a vector on the scale of
the *mean* (both as in their papers), i.e. about 1/K of the sum.

A combination is a ``tf.Module`` built for K tasks (``make(name, params,
tasks=K)``). A method with state between steps (an EMA) creates its variables in
``__init__`` with :data:`STATE` and assigns them inside ``combine`` /
``task_weights``; the training loop builds it in the strategy's scope (so the
variables are mirrored) and saves it in its checkpoint (so a resumed run goes on
from the saved state). The step hands it the *global* ``G`` / Gram matrix,
identical on every replica, so the first replica's assignment is every replica's.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import tensorflow as tf

from tfx_mtl.errors import InputError
from tfx_mtl.models.registry import NoParams, Registry

REGISTRY = Registry("combine", "gradient combination")
STATE = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
PARAMETERS = "parameters"  # per-task gradients of the shared parameters: G [K, P]
REPRESENTATION = "representation"  # ... of the shared representation, weighed back as losses
LEVELS = (PARAMETERS, REPRESENTATION)


class GradientCombination(tf.Module):
    """One method of combining per-task gradients; subclasses register in :data:`REGISTRY`.

    ``name`` is the registry key, ``Params`` the parameters' dataclass.
    ``needs_task_gradients``: False means the method is the plain sum, one backward
    pass of the summed losses. A method is one of
    - *Gram-based*: it implements :meth:`task_weights` (its update is beta^T G with
      beta from G G^T alone; :meth:`combine` defaults to that). At representation
      level the step sums the representation gradients' Gram matrix over replicas
      and back-propagates the losses weighted by beta once;
    - *elementwise* (``elementwise = True``): :meth:`combine` acts on each coordinate
      independently, so at representation level the step applies it to each
      replica's own representation gradients (every coordinate belongs to one
      example) and back-propagates the result through the trunk once;
    - neither: it sets ``representation_level = False`` (the step refuses it at
      representation level either way) and runs on the shared parameters only.
    ``forced_level``: a level the method always runs at, whatever
    ``trainer.surgery_level`` says (``mgda_ub``); None: the configured one.
    ``stateful``: the method keeps state between steps and needs ``tasks``.
    ``random``: the method draws at random and refuses to run without ``seed``.
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    needs_task_gradients: ClassVar[bool] = True
    elementwise: ClassVar[bool] = False
    representation_level: ClassVar[bool] = True
    forced_level: ClassVar[str | None] = None
    stateful: ClassVar[bool] = False
    random: ClassVar[bool] = False  # draws at random: needs ``seed`` (:meth:`_check_seed`)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.forced_level not in (None, *LEVELS):
            raise TypeError(f"{cls.__name__}.forced_level must be None, {PARAMETERS!r} or "
                            f"{REPRESENTATION!r}, got {cls.forced_level!r}")
        if cls.forced_level == REPRESENTATION and not cls.runs_on_representation():
            raise TypeError(f"{cls.__name__} is forced to representation level but cannot "
                            "run there (representation_level = False, or neither "
                            "task_weights nor elementwise)")

    def __init__(self, params: Any = None, tasks: int | None = None,
                 parameters: int | None = None):
        """``tasks``: K, the rows of ``G``; ``parameters``: P, its columns (the shared
        parameters' count). Stateful methods need K (and state of G's shape, P)."""
        super().__init__(name=f"{self.name}_combination")
        self.params = REGISTRY.params(self.name, params)
        for field, value in (("tasks", tasks), ("parameters", parameters)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
        if tasks is None and self.stateful:
            raise ValueError(f"{self.name} keeps state per task: build it with tasks=K")
        self.k, self.p = tasks, parameters

    def _check_seed(self, seed) -> None:
        """ValueError if this method draws at random (``random``) and has no ``seed``."""
        if self.random and seed is None:
            raise ValueError(f"{self.name}: seed is required (an int tensor [2], "
                             "e.g. (run seed, step))")

    def _check_tasks(self, k: int) -> None:
        """ValueError unless ``k`` rows match the K this combination was built for."""
        if self.k is not None and k != self.k:
            raise ValueError(f"{self.name} was built for {self.k} tasks, got {k} rows")

    @classmethod
    def gram_based(cls) -> bool:
        """True when the method implements :meth:`task_weights` (beta from G G^T alone)."""
        return cls.task_weights is not GradientCombination.task_weights

    @classmethod
    def combines_by_gram(cls) -> bool:
        """How the step combines: True when it forms only the Gram matrix and the task
        weights (a Gram-based method that is not elementwise), False when it hands
        :meth:`combine` the gradient rows themselves."""
        return cls.gram_based() and not cls.elementwise

    @classmethod
    def runs_on_representation(cls) -> bool:
        """Whether the step can run the method on the representation's gradients."""
        return bool(cls.representation_level and (cls.gram_based() or cls.elementwise))

    @classmethod
    def level_at(cls, surgery_level: str) -> str:
        """The level the method runs at when ``surgery_level`` is asked for (its forced
        level, if any); InputError (field ``surgery_level``) if it cannot run there."""
        if surgery_level not in LEVELS:
            raise InputError("surgery_level", f"must be one of {', '.join(LEVELS)}, "
                                              f"got {surgery_level!r}")
        level = cls.forced_level or surgery_level
        if level == REPRESENTATION and not cls.runs_on_representation():
            raise InputError("surgery_level", f"gradient combination {cls.name!r} cannot run "
                             f"at {REPRESENTATION} level (it is neither Gram-based nor "
                             f"elementwise); use {PARAMETERS}")
        return level

    def combine(self, G: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        """[P] the shared parameters' update from the task gradients ``G`` [K, P].

        ``seed`` [2] (int, e.g. (run seed, step)) for methods that draw at random.
        Default, for a Gram-based method: G^T task_weights(G G^T, seed)."""
        if not self.gram_based():
            raise NotImplementedError(f"{self.name} implements neither combine nor task_weights")
        G = as_matrix(G)
        return tf.linalg.matvec(G, self.task_weights(tf.matmul(G, G, transpose_b=True), seed),
                                transpose_a=True)

    def task_weights(self, gram: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        """[K] beta such that the update is beta^T G, from the Gram matrix G G^T alone."""
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
