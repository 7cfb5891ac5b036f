"""GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020, "Just Pick a Sign")."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_mtl.models import registry
from tfx_mtl.models.combination.base import REGISTRY, GradientCombination, as_matrix


def graddrop_with_draws(G: tf.Tensor, draws: tf.Tensor, leak: float = 0.0) -> tf.Tensor:
    """[P] GradDrop of ``G`` [K, P] with the uniform draws U [P] given.

    Chen et al. (NeurIPS 2020), Algorithm 1: per coordinate the positive sign
    purity P = 1/2 (1 + sum_k g_k / sum_k |g_k|) (1/2 where every g_k is 0);
    task k's coordinate is kept when (P > U and g_k > 0) or (P < U and g_k < 0),
    else dropped; with the leak l, task k contributes g_k (l + (1 - l) kept).
    Returns the sum over tasks (the sum's scale): with l = 1 the plain sum.
    """
    G = as_matrix(G)
    draws = tf.cast(draws, G.dtype)
    purity = 0.5 * (1.0 + tf.math.divide_no_nan(tf.reduce_sum(G, axis=0),
                                                tf.reduce_sum(tf.abs(G), axis=0)))
    kept = (((purity > draws)[None, :] & (G > 0)) | ((purity < draws)[None, :] & (G < 0)))
    leak = tf.cast(leak, G.dtype)
    return tf.reduce_sum(G * (leak + (1.0 - leak) * tf.cast(kept, G.dtype)), axis=0)


def graddrop(G: tf.Tensor, seed: tf.Tensor, leak: float = 0.0) -> tf.Tensor:
    """GradDrop with U ~ uniform(0, 1) per coordinate, drawn statelessly from ``seed`` [2]
    (so every replica and a resumed run draw the same U for the same (run seed, step))."""
    G = as_matrix(G)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape != (2,):
        raise ValueError(f"seed must be an int32/int64 tensor of shape [2], "
                         f"got {seed.dtype.name} {seed.shape}")
    draws = tf.random.stateless_uniform(tf.shape(G)[1:], seed=seed, dtype=G.dtype)
    return graddrop_with_draws(G, draws, leak)


@dataclasses.dataclass(frozen=True)
class GradDropParams:
    # the paper's leak l in [0, 1] (one for every task): the share of a dropped gradient kept
    leak: float = registry.number(0.0, minimum=0, maximum=1)


@REGISTRY.register
class GradDrop(GradientCombination):
    """GradDrop (Chen et al., NeurIPS 2020): :func:`graddrop`, U drawn per coordinate from
    (run seed, step). Elementwise: at representation level the step applies it to each
    replica's representation gradients, coordinate by coordinate.

    Result on the *sum*'s scale. Deviations: the paper inserts GradDrop at an
    activation layer (the representation) -- there P is per unit of the activation,
    from the batch's gradients summed with the sign of the layer's input, and one mask
    applies to every example; here it is per coordinate of the shared parameters'
    gradients (default, an extension of the paper's use, as in neither the paper nor
    LibMTL, which refuses parameter gradients), or at representation level per example
    and unit (no summing over the batch, no input-sign factor). One leak for all tasks
    (the paper allows one per task; its default and LibMTL's is 0).
    """

    name = "graddrop"
    Params = GradDropParams
    elementwise = True
    random = True

    def combine(self, G, seed=None):
        self._check_seed(seed)
        return graddrop(G, seed, self.params.leak)
