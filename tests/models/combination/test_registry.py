"""The registry of gradient combinations, the shared helpers, and every method in tf.function."""
import numpy as np
import pytest
import tensorflow as tf
from combination_support import G1, G2

PAIR = tf.constant([G1, G2])

from tfx_mtl.models import combination
from tfx_mtl.models.combination import base

def test_combine_dispatches_and_rejects_unknown_methods():
    from tfx_mtl.models.combination.cagrad import cagrad
    from tfx_mtl.models.combination.mgda import mgda
    from tfx_mtl.models.combination.pcgrad import pcgrad_with_order

    np.testing.assert_allclose(combination.combine("sum", PAIR).numpy(), [0.5, -0.2, 0.8, 1.0],
                               atol=1e-7)
    np.testing.assert_allclose(
        combination.combine("pcgrad", PAIR, seed=tf.constant([1, 2])).numpy(),
        pcgrad_with_order(PAIR, [0, 1]).numpy())
    np.testing.assert_allclose(combination.combine("mgda", PAIR).numpy(), mgda(PAIR).numpy())
    np.testing.assert_allclose(combination.combine("cagrad", PAIR, c=0.3).numpy(),
                               cagrad(PAIR, 0.3).numpy())
    with pytest.raises(ValueError, match="combine: unknown gradient combination 'adam'.*sum, "
                                         "pcgrad, cagrad, mgda, mgda_ub"):
        combination.combine("adam", PAIR)
    with pytest.raises(ValueError, match="seed is required"):
        combination.combine("pcgrad", PAIR)
    with pytest.raises(ValueError, match="combine_params.c: gradient combination 'cagrad': "
                                         "parameter 'c' must be a number >= 0, got -1.0"):
        combination.combine("cagrad", PAIR, c=-1.0)
    with pytest.raises(ValueError, match="unknown parameter 'c' \\(allowed: none\\)"):
        combination.make("mgda", c=1.0)
    with pytest.raises(ValueError, match="G must be a \\[K, P\\] matrix"):
        combination.combine("sum", tf.zeros([3]))


def test_each_method_declares_what_the_step_computes_for_it():
    declared = {name: (combination.REGISTRY.get(name).needs_task_gradients,
                       combination.REGISTRY.get(name).level) for name in combination.names()}
    assert declared == {"sum": (False, base.PARAMETERS), "pcgrad": (True, base.PARAMETERS),
                        "cagrad": (True, base.PARAMETERS), "mgda": (True, base.PARAMETERS),
                        "mgda_ub": (True, base.REPRESENTATION),
                        "gradvac": (True, base.PARAMETERS), "graddrop": (True, base.PARAMETERS),
                        "db_mtl": (True, base.PARAMETERS)}


def test_task_weights_reproduce_the_combination_from_the_gram_matrix():
    # sum: weights 1; mgda (and mgda_ub, the same MGDA on other gradients): the min-norm
    # weights, whose combination is what combine returns.
    G = tf.constant([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5], [0.0, -1.0, 1.0]])
    gram = tf.matmul(G, G, transpose_b=True)
    for name in ("sum", "mgda", "mgda_ub"):
        method = combination.make(name)
        alpha = method.task_weights(gram)
        np.testing.assert_allclose(tf.linalg.matvec(G, alpha, transpose_a=True).numpy(),
                                   method.combine(G).numpy(), atol=1e-6)


def test_a_representation_level_method_must_have_task_weights():
    with pytest.raises(TypeError, match="must implement task_weights"):
        type("Broken", (base.GradientCombination,), {"name": "broken",
                                                     "level": base.REPRESENTATION})


def test_registering_a_name_twice_or_an_undeclared_parameter_is_refused():
    import dataclasses

    from tfx_mtl.models import registry

    with pytest.raises(ValueError, match="registered twice"):
        combination.REGISTRY.register(type("Again", (base.GradientCombination,),
                                           {"name": "pcgrad"}))

    @dataclasses.dataclass(frozen=True)
    class Loose:
        eta: float = 0.1  # not declared with registry.number: no check

    fresh = registry.Registry("combine", "gradient combination")
    with pytest.raises(TypeError, match="parameter 'eta' must be declared"):
        fresh.register(type("Loosely", (base.GradientCombination,),
                            {"name": "loose", "Params": Loose}))


def test_every_method_runs_in_a_tf_function():
    # Built outside (a stateful method's variables are made once), each at its first step.
    names = combination.names()
    traced_methods = [combination.make(m, tasks=3, parameters=2) for m in names]

    @tf.function
    def run(G, seed):
        return [method.combine(G, seed) for method in traced_methods]

    G = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    eager = [combination.combine(m, G, seed=tf.constant([3, 4])) for m in names]
    for traced, expected in zip(run(G, tf.constant([3, 4])), eager):
        np.testing.assert_allclose(traced.numpy(), expected.numpy(), atol=1e-6)


def test_cosine_matrix():
    # [3, 4] . [4, 3] = 24, norms 5 and 5 -> 0.96; [3, 4] . [-3, -4] -> -1; a zero row -> 0
    G = tf.constant([[3.0, 4.0], [4.0, 3.0], [-3.0, -4.0], [0.0, 0.0]])
    np.testing.assert_allclose(base.cosine_matrix(G).numpy(), [
        [1.0, 0.96, -1.0, 0.0],
        [0.96, 1.0, -0.96, 0.0],
        [-1.0, -0.96, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0]], atol=1e-6)


def test_flatten_unflatten_round_trip():
    kernel = tf.reshape(tf.range(12, dtype=tf.float32), [2, 2, 3])  # K=2, variable [2, 3]
    bias = tf.constant([[100.0, 101.0], [102.0, 103.0]])  # K=2, variable [2]
    G = base.flatten([kernel, bias])
    np.testing.assert_array_equal(G.numpy(), [[0, 1, 2, 3, 4, 5, 100, 101],
                                              [6, 7, 8, 9, 10, 11, 102, 103]])
    for k in range(2):
        pieces = base.unflatten(G[k], [(2, 3), tf.TensorShape([2])])
        np.testing.assert_array_equal(pieces[0].numpy(), kernel[k].numpy())
        np.testing.assert_array_equal(pieces[1].numpy(), bias[k].numpy())
    with pytest.raises(ValueError, match="vector has 8 elements, shapes need 9"):
        base.unflatten(G[0], [(3, 3)])
    with pytest.raises(ValueError, match="grads_per_var\\[1\\] has 3 task rows"):
        base.flatten([kernel, tf.zeros([3, 2])])
    with pytest.raises(ValueError, match="grads_per_var\\[0\\] is None"):
        base.flatten([None])
