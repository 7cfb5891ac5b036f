"""GradDrop on numbers worked out by hand."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.errors import InputError
from tfx_mtl.models import combination
from tfx_mtl.models.combination.graddrop import graddrop, graddrop_with_draws

# Columns: sums -2, 0, 4 over absolute sums 4, 4, 4: purity P = 0.25, 0.5, 1.
G = tf.constant([[1.0, -2.0, 3.0], [-3.0, 2.0, 1.0]])


def test_graddrop_keeps_the_sign_the_draw_picks_per_coordinate():
    # U = [0.1, 0.7, 0.99]: col 0 P .25 > .1 -> positives: 1; col 1 P .5 < .7 -> negatives: -2;
    # col 2 P 1 > .99 -> positives: 3 + 1 = 4.
    draws = tf.constant([0.1, 0.7, 0.99])
    np.testing.assert_allclose(graddrop_with_draws(G, draws).numpy(), [1.0, -2.0, 4.0])
    # leak 0.5: dropped values count half: col 0 1 + .5 (-3) = -.5; col 1 -2 + .5 * 2 = -1
    np.testing.assert_allclose(graddrop_with_draws(G, draws, 0.5).numpy(), [-0.5, -1.0, 4.0])
    # leak 1: the plain sum [-2, 0, 4]; U = 0.3: col 0 P .25 < .3 -> negatives: -3
    np.testing.assert_allclose(graddrop_with_draws(G, draws, 1.0).numpy(), [-2.0, 0.0, 4.0])
    np.testing.assert_allclose(graddrop_with_draws(G, tf.fill([3], 0.3)).numpy(),
                               [-3.0, 2.0, 4.0])


def test_graddrop_draws_are_reproducible_per_seed_and_vary_across_seeds():
    step = tf.function(lambda seed: graddrop(G, seed))
    seed = tf.constant([5, 2], tf.int64)
    first = step(seed).numpy()
    np.testing.assert_array_equal(step(seed).numpy(), first)
    draws = tf.random.stateless_uniform([3], seed=seed)
    np.testing.assert_allclose(first, graddrop_with_draws(G, draws).numpy())
    results = {tuple(step(tf.constant([5, s], tf.int64)).numpy()) for s in range(30)}
    # column 2 (all positive) is always 4; columns 0 and 1 pick a sign: only these values
    assert len(results) > 1 and all(r[2] == 4.0 and r[0] in (1.0, -3.0) and r[1] in (2.0, -2.0)
                                    for r in results)
    assert combination.REGISTRY.get("graddrop").elementwise


def test_graddrop_refuses_bad_leak_and_seed():
    with pytest.raises(InputError, match="combine_params.leak.*must be a number >= 0 and <= 1, got 2.0"):
        combination.make("graddrop", leak=2.0)
    with pytest.raises(ValueError, match="seed is required"):
        combination.make("graddrop").combine(G)
    with pytest.raises(ValueError, match="seed must be an int32/int64 tensor of shape \\[2\\]"):
        graddrop(G, tf.constant([1.0, 2.0]))
