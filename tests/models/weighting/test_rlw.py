"""Random loss weighting: the map from a normal draw worked out by hand, and the draws."""
import math

import numpy as np
import tensorflow as tf

from tfx_mtl.models import weighting
from tfx_mtl.models.weighting.rlw import rlw_weights

NAMES = ("a", "b")
TYPES = ("regression", "binary")
ONES = tf.ones([2])


def test_rlw_weights():
    # draw [0, log 3]: softmax = [1/4, 3/4], times K = 2: [0.5, 1.5]
    np.testing.assert_allclose(rlw_weights([0.0, math.log(3.0)]).numpy(), [0.5, 1.5], rtol=1e-6)
    # K = 3, equal draws: [1, 1, 1]
    np.testing.assert_allclose(rlw_weights([0.7, 0.7, 0.7]).numpy(), [1.0, 1.0, 1.0], rtol=1e-6)


def test_rlw_draws_are_standard_normal_per_step_and_reproducible():
    # K = 2: w_a = 2 sigmoid(z_a - z_b) with z_a - z_b ~ N(0, 2), so
    # logit(w_a / 2) / sqrt(2) is standard normal across steps: mean 0, sd 1
    # (n = 2000: the mean's standard error is 0.022, the sd's 0.016).
    w = weighting.make("rlw", NAMES, TYPES, seed=7)
    seen = []
    for _ in range(2000):
        seen.append(w.terms(ONES)[0].numpy())
        w.update(ONES)
    seen = np.array(seen)
    np.testing.assert_allclose(seen.sum(axis=1), 2.0, rtol=1e-5)
    x = np.log(seen[:, 0] / seen[:, 1]) / math.sqrt(2)
    assert abs(x.mean()) < 0.1 and abs(x.std() - 1) < 0.08, (x.mean(), x.std())
    assert len(np.unique(seen[:, 0])) == 2000  # a fresh draw every step
    # The same run seed and step give the same weights; another seed other ones.
    again = weighting.make("rlw", NAMES, TYPES, seed=7)
    np.testing.assert_array_equal(again.terms(ONES)[0].numpy(), seen[0])
    other = weighting.make("rlw", NAMES, TYPES, seed=8)
    assert not np.allclose(other.terms(ONES)[0].numpy(), seen[0])
    # The weights do not depend on the losses, and the static weights multiply.
    scaled = weighting.make("rlw", NAMES, TYPES, [2.0, 0.0], seed=7)
    np.testing.assert_allclose(scaled.terms(tf.constant([5.0, 0.0]))[0].numpy(),
                               seen[0] * [2.0, 0.0], rtol=1e-6)


def test_rlw_checkpoint_carries_the_step(tmp_path):
    saved = weighting.make("rlw", NAMES, TYPES, seed=1)
    for _ in range(3):
        saved.update(ONES)
    path = tf.train.Checkpoint(weighting=saved).save(str(tmp_path / "ckpt"))
    restored = weighting.make("rlw", NAMES, TYPES, seed=1)
    tf.train.Checkpoint(weighting=restored).restore(path).assert_consumed()
    assert int(restored.steps.numpy()) == 3
    np.testing.assert_array_equal(restored.terms(ONES)[0].numpy(), saved.terms(ONES)[0].numpy())
