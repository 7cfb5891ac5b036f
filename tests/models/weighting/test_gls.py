"""The geometric loss strategy on numbers worked out by hand."""
import numpy as np
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.gls import gls_weights

NAMES = ("a", "b", "c")
TYPES = ("regression", "binary", "regression")


def test_gls_weights():
    # L = [1, 4]: GLS = sqrt(1 * 4) = 2; w = GLS / L = [2, 0.5]
    np.testing.assert_allclose(gls_weights([1.0, 4.0]).numpy(), [2.0, 0.5], rtol=1e-6)
    # L = [1, 2, 4]: GLS = (8)^(1/3) = 2; w = [2, 1, 0.5]
    np.testing.assert_allclose(gls_weights([1.0, 2.0, 4.0]).numpy(), [2.0, 1.0, 0.5], rtol=1e-6)
    # A task without labels (L = 0) would make the product 0: it is left out and gets 0;
    # the others' GLS = sqrt(1 * 4) = 2 as above.
    np.testing.assert_allclose(gls_weights([1.0, 0.0, 4.0]).numpy(), [2.0, 0.0, 0.5], rtol=1e-6)
    # No task present: all 0, no NaN.
    np.testing.assert_array_equal(gls_weights([0.0, 0.0]).numpy(), [0.0, 0.0])


def test_gls_module_has_the_gradient_of_k_times_the_geometric_mean():
    # d/dL_k of K (L_1 L_2 L_3)^(1/3) at [1, 2, 4] = GLS / L_k = [2, 1, 0.5], times the
    # static weights [1, 2, 1]; a task with L = 0 gets a zero gradient, not NaN.
    w = weighting.make("gls", NAMES, TYPES, [1.0, 2.0, 1.0])
    assert not w.trainable_variables
    for values, expected in (([1.0, 2.0, 4.0], [2.0, 2.0, 0.5]),
                             ([1.0, 0.0, 4.0], [2.0, 0.0, 0.5])):
        losses = tf.Variable(values)
        with tf.GradientTape() as tape:
            weights, reg = w.terms(losses)
            total = tf.reduce_sum(weights * losses + reg)
        np.testing.assert_allclose(tape.gradient(total, losses).numpy(), expected, rtol=1e-6)
        np.testing.assert_array_equal(reg.numpy(), [0.0, 0.0, 0.0])
