"""Gradients worked out by hand, shared by the gradient-combination tests."""
import itertools

import numpy as np

# A conflicting pair: g1 . g2 = -3 - 0.8 + 0.15 - 6 = -9.65,
# ||g1||^2 = 4 + 1 + 0.25 + 9 = 14.25, ||g2||^2 = 2.25 + 0.64 + 0.09 + 4 = 6.98.
G1 = [2.0, -1.0, 0.5, 3.0]
G2 = [-1.5, 0.8, 0.3, -2.0]


def simplex_grid(k: int, steps: int) -> np.ndarray:
    """All points of the simplex with coordinates in multiples of 1/steps."""
    points = [p for p in itertools.product(range(steps + 1), repeat=k - 1) if sum(p) <= steps]
    return np.array([list(p) + [steps - sum(p)] for p in points], dtype=np.float64) / steps


def assert_scale_and_permutation_equivariant(weights, G, atol=1e-9):
    """``weights`` (a Gram matrix -> [K] function) gives the same weights when every gradient
    is scaled by 7 (so the update scales by 7), and permuted weights for permuted tasks."""
    G = np.asarray(G, dtype=np.float64)
    beta = np.asarray(weights(G @ G.T))
    np.testing.assert_allclose(np.asarray(weights(49.0 * (G @ G.T))), beta, atol=atol)
    order = np.roll(np.arange(len(G)), 1)
    np.testing.assert_allclose(np.asarray(weights(G[order] @ G[order].T)), beta[order], atol=atol)
