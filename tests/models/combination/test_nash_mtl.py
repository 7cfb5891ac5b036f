"""Nash-MTL on numbers worked out by hand, and its solver's accuracy against a long solve."""
import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import combination
from tfx_mtl.models.combination.nash_mtl import RIDGE, nash_mtl_weights


def _weights(G, **params):
    G = np.asarray(G, dtype=np.float64)
    return nash_mtl_weights(tf.constant(G @ G.T), **params).numpy()


def test_nash_mtl_by_hand():
    # g1 = [1, 0], g2 = [0, 2]: M = diag(1, 4); M a = 1/a -> a1 = 1/a1, 4 a2 = 1/a2:
    # a = (1, 1/2), update [1, 1] of norm sqrt(2) = sqrt(K); clipped to norm 1: a / sqrt2.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [0.0, 2.0]], max_norm=0), [1.0, 0.5],
                               rtol=1e-6)
    G = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(combination.combine("nash_mtl", G).numpy(), [2 ** -0.5] * 2,
                               rtol=1e-6)
    # g1 = [1, 0], g2 = [-1, 1]: M = [[1, -1], [-1, 2]]; a1^2 - a1 a2 = 1 = 2 a2^2 - a1 a2
    # -> a1 = sqrt2 a2, a2^2 (2 - sqrt2) = 1: a2 = 1/sqrt(2 - sqrt2) = 1.30656, a1 = 1.84776.
    a2 = 1 / np.sqrt(2 - np.sqrt(2))
    np.testing.assert_allclose(_weights([[1.0, 0.0], [-1.0, 1.0]], max_norm=0),
                               [np.sqrt(2) * a2, a2], rtol=1e-6)
    # max_norm 2 >= sqrt(2): no clipping; max_norm 1: the update's norm is 1.
    np.testing.assert_allclose(_weights([[1.0, 0.0], [0.0, 2.0]], max_norm=2.0), [1.0, 0.5],
                               rtol=1e-6)


def test_nash_mtl_is_scale_free_and_permutation_equivariant():
    G = np.random.default_rng(3).normal(size=(3, 4))
    for max_norm in (0.0, 1.0):
        alpha = _weights(G, max_norm=max_norm)
        np.testing.assert_allclose(_weights(5.0 * G, max_norm=max_norm), alpha / 5.0, rtol=1e-9)
        order = [2, 0, 1]
        np.testing.assert_allclose(_weights(G[order], max_norm=max_norm), alpha[order],
                                   rtol=1e-9)


def _long_solve(m, iterations=300):
    """Reference: damped Newton (step 1/(1 + Newton decrement), provably convergent for
    this self-concordant f) for M a = 1/a, many more steps than the step's solver."""
    m = m + RIDGE * np.eye(len(m))
    a = np.ones(len(m)) / np.sqrt(np.trace(m))
    for _ in range(iterations):
        grad = m @ a - 1 / a
        step = -np.linalg.solve(m + np.diag(1 / a ** 2), grad)
        a = a + step / (1 + np.sqrt(max(-grad @ step, 0.0)))
    return a


def _problems():
    rng = np.random.default_rng(0)
    for trial in range(60):
        k = int(rng.integers(2, 11))
        p = int(rng.integers(2, 30) if trial % 2 else rng.integers(12, 200))
        G = rng.normal(size=(k, p)) * np.exp(2 * rng.normal(size=(k, 1)))
        if trial % 3 == 0:  # a strong conflict
            G[1] = -0.99 * G[0] + 0.01 * rng.normal(size=p)
        if trial % 5 == 0:  # a duplicate direction
            G[-1] = 3 * G[0]
        gram = G @ G.T
        yield gram / np.mean(np.diag(gram))


def test_nash_mtl_solver_reaches_the_reference_solution_in_its_iterations():
    # 20 Newton steps (the default): alpha within 1e-6 (relative) of a 300-step damped-Newton
    # reference on 60 problems (K = 2..10, P = 2..200 incl. K > P, conflicts, duplicates,
    # norms spread e^+-4); the bargaining residual max |a_k (M a)_k - 1| < 1e-6 (measured:
    # ~5e-8, rounding in the ridged near-singular cases). 5 steps are not enough.
    worst, worst_short, worst_residual = 0.0, 0.0, 0.0
    for m in _problems():
        reference = _long_solve(m)
        alpha = nash_mtl_weights(tf.constant(m), max_norm=0).numpy()
        short = nash_mtl_weights(tf.constant(m), iterations=5, max_norm=0).numpy()
        worst = max(worst, np.max(np.abs(alpha - reference) / reference))
        worst_short = max(worst_short, np.max(np.abs(short - reference) / reference))
        ridged = m + RIDGE * np.eye(len(m))
        worst_residual = max(worst_residual, np.max(np.abs(alpha * (ridged @ alpha) - 1)))
    assert worst < 1e-6 and worst_residual < 1e-6, (worst, worst_residual)
    assert worst_short > 1e-3, worst_short


@pytest.mark.parametrize("G, expected", [
    ([[1.0, 0.0], [0.0, 0.0]], [1.0, 0.0]),  # a zero gradient gets no weight
    ([[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0]),  # all zero: 1 (the update is 0 anyway)
])
def test_nash_mtl_zero_gradients(G, expected):
    np.testing.assert_allclose(_weights(G), expected, atol=1e-7)


def test_nash_mtl_opposite_gradients_give_a_zero_update_not_nan():
    # g2 = -g1: M is singular with the positive null vector (1, 1); the ridge keeps alpha
    # finite (a_k = 1/sqrt(RIDGE) in units of the mean squared norm) and the update is ~0.
    G = tf.constant([[1.0, -2.0], [-1.0, 2.0]])
    update = combination.combine("nash_mtl", G).numpy()
    assert np.all(np.isfinite(update)) and np.allclose(update, 0.0, atol=1e-3)
