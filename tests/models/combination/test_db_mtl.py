"""DB-MTL's gradient balancing on numbers worked out by hand."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.errors import InputError
from tfx_mtl.models import combination
from tfx_mtl.models.combination.db_mtl import balanced_sum, ema_gradients


def test_db_mtl_scales_each_buffered_gradient_to_the_largest_norm():
    # beta 0.9, beta_sigma 0: the buffer keeps 0.9 of itself each step.
    # step 1: b = G + 0.9 (0 - G) = 0.1 G = [[0.3, 0, 0], [0, 0.2, 0]]; norms 0.3, 0.2;
    #   scales 1, 1.5 -> update [0.3, 0.3, 0]
    # step 2, G2 = [[1, 0, 0], [0, 0, 4]]: b = G2 + 0.9 (b - G2) = 0.1 G2 + 0.9 b
    #   = [[0.1 + 0.27, 0, 0], [0, 0.18, 0.4]] = [[0.37, 0, 0], [0, 0.18, 0.4]];
    #   norms 0.37, sqrt(0.0324 + 0.16) = 0.4386342; scale 0.4386342 / 0.37 = 1.1855
    #   -> update [0.4386342, 0.18, 0.4]
    method = combination.make("db_mtl", tasks=2, parameters=3)
    np.testing.assert_allclose(
        method.combine(tf.constant([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])).numpy(),
        [0.3, 0.3, 0.0], atol=1e-6)
    np.testing.assert_allclose(
        method.combine(tf.constant([[1.0, 0.0, 0.0], [0.0, 0.0, 4.0]])).numpy(),
        [0.4386342, 0.18, 0.4], atol=1e-6)
    np.testing.assert_allclose(method.buffer.numpy(), [[0.37, 0, 0], [0, 0.18, 0.4]], atol=1e-6)
    assert int(method.steps.numpy()) == 2


def test_db_mtl_rate_decays_with_the_step():
    # beta 0.8, beta_sigma 1, step 4: rate 0.8 / 4 = 0.2; b = G + 0.2 (b - G) = [1 + 0.2 (6 - 1)]
    np.testing.assert_allclose(ema_gradients(tf.constant([[6.0]]), tf.constant([[1.0]]), 4,
                                             0.8, 1.0).numpy(), [[2.0]])
    # a zero row contributes nothing (no 0/0): [3, 4] has norm 5, the sum is [3, 4]
    np.testing.assert_allclose(balanced_sum(tf.constant([[3.0, 4.0], [0.0, 0.0]])).numpy(),
                               [3.0, 4.0])


def test_db_mtl_runs_only_on_parameter_gradients_and_checks_its_shape():
    method = combination.REGISTRY.get("db_mtl")
    assert method.stateful and not method.representation_level and not method.elementwise
    with pytest.raises(InputError, match="combine_params.beta_sigma.*must be a number >= 0"):
        combination.make("db_mtl", beta_sigma=-1.0, tasks=2, parameters=3)
    with pytest.raises(ValueError, match="db_mtl was built for 3 parameters .* got 4 columns"):
        combination.make("db_mtl", tasks=2, parameters=3).combine(tf.ones([2, 4]))
    with pytest.raises(ValueError, match="db_mtl was built for 2 tasks, got 3 rows"):
        combination.make("db_mtl", tasks=2, parameters=3).combine(tf.ones([3, 3]))
