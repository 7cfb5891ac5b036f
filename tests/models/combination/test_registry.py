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
                       combination.REGISTRY.get(name).gram_based(),
                       combination.REGISTRY.get(name).forced_level)
                for name in combination.names()}
    assert declared == {"sum": (False, True, None), "pcgrad": (True, True, None),
                        "cagrad": (True, True, None), "mgda": (True, True, None),
                        "mgda_ub": (True, True, base.REPRESENTATION),
                        **{name: (True, True, None)
                           for name in ("nash_mtl", "upgrad", "aligned_mtl", "imtl_g", "gradvac")},
                        "graddrop": (True, False, None), "db_mtl": (True, False, None)}
    assert combination.levels("pcgrad") == (base.PARAMETERS, base.REPRESENTATION)
    assert combination.levels("graddrop") == (base.PARAMETERS, base.REPRESENTATION)
    assert combination.levels("db_mtl") == (base.PARAMETERS,)
    # The step forms only the Gram matrix for a Gram-based method, unless it is
    # elementwise too (then the rows themselves go to combine).
    assert {n for n in combination.names() if combination.REGISTRY.get(n).combines_by_gram()} \
        == {n for n, d in declared.items() if d[1]}

    class Both(base.GradientCombination):
        name, elementwise = "both", True

        def task_weights(self, gram, seed=None):
            return tf.ones([gram.shape[0]])

    assert Both.gram_based() and not Both.combines_by_gram()


def test_every_gram_based_method_combines_as_its_task_weights_say():
    # The update is beta^T G with beta from G G^T alone, for every Gram-based method
    # registered (the base class's default combine, or the method's own).
    G = tf.constant([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5], [0.0, -1.0, 1.0]])
    gram = tf.matmul(G, G, transpose_b=True)
    seed = tf.constant([3, 4], tf.int64)
    for name in combination.names():
        if not combination.REGISTRY.get(name).gram_based():
            continue
        # Two fresh methods: a stateful one must see the same first step both ways.
        beta = combination.make(name, tasks=3).task_weights(gram, seed)
        method = combination.make(name, tasks=3)
        np.testing.assert_allclose(tf.linalg.matvec(G, beta, transpose_a=True).numpy(),
                                   method.combine(G, seed).numpy(), atol=1e-6, err_msg=name)


def test_the_level_a_method_runs_at_and_what_it_refuses():
    assert combination.REGISTRY.get("mgda_ub").level_at(base.PARAMETERS) == base.REPRESENTATION
    assert combination.REGISTRY.get("mgda").level_at(base.REPRESENTATION) == base.REPRESENTATION
    with pytest.raises(ValueError, match="surgery_level: must be one of parameters, "
                                         "representation, got 'layers'"):
        combination.REGISTRY.get("mgda").level_at("layers")
    parameters_only = type("ParametersOnly", (base.GradientCombination,),
                           {"name": "parameters_only", "representation_level": False,
                            "combine": lambda self, G, seed=None: G[0]})
    assert parameters_only.level_at(base.PARAMETERS) == base.PARAMETERS
    with pytest.raises(ValueError, match="surgery_level: gradient combination "
                                         "'parameters_only' cannot run at representation"):
        parameters_only.level_at(base.REPRESENTATION)


def test_a_method_must_say_how_it_runs_on_the_representation():
    # Neither Gram-based nor elementwise, even if it forgot representation_level = False.
    broken = type("Broken", (base.GradientCombination,),
                  {"name": "broken", "combine": lambda self, G, seed=None: G[0]})
    with pytest.raises(ValueError, match="'broken' cannot run at representation level"):
        broken.level_at(base.REPRESENTATION)
    with pytest.raises(TypeError, match="forced to representation level"):
        type("Contradiction", (base.GradientCombination,),
             {"name": "contradiction", "representation_level": False,
              "forced_level": base.REPRESENTATION})
    elementwise = type("Elementwise", (base.GradientCombination,),
                       {"name": "elementwise", "elementwise": True,
                        "combine": lambda self, G, seed=None: tf.reduce_sum(G, 0)})
    assert elementwise.runs_on_representation() and not elementwise.gram_based()


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


def test_a_bounded_parameter_is_checked_at_both_ends_when_the_config_is_read():
    """``registry.number``'s bounds are checked by ``Registry.params`` (config validation),
    before any method is built: GradVac's beta in (0, 1], GradDrop's leak in [0, 1]."""
    from tfx_mtl.errors import InputError

    for name, key, good, bad in (("gradvac", "beta", (1.0, 1e-3), (0.0, 1.0001, float("nan"))),
                                 ("graddrop", "leak", (0.0, 1.0), (-0.1, 1.5))):
        for value in good:
            assert getattr(combination.REGISTRY.params(name, {key: value}), key) == value
        for value in bad:
            with pytest.raises(InputError, match=f"combine_params.{key}: .* must be a number "
                                                 f"(>|>=) 0 and <= 1, got {value!r}"):
                combination.REGISTRY.params(name, {key: value})


def test_a_random_method_refuses_to_run_without_a_seed():
    random = [n for n in combination.REGISTRY.names() if combination.REGISTRY.get(n).random]
    assert sorted(random) == ["graddrop", "gradvac", "pcgrad"]
    for name in random:
        method = combination.make(name, tasks=2)
        with pytest.raises(ValueError, match=f"{name}: seed is required"):
            method.combine(PAIR)
