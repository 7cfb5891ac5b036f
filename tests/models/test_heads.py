"""Head math on numbers worked out by hand."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import heads
from tfx_mtl.task_spec import Task

BINARY = Task("b", "binary", "y > 0", "binary_crossentropy", ())
REGRESSION = Task("r", "regression", "y", "mse", ())
HUBER = Task("h", "regression", "y", "huber", (), huber_delta=1.0)
MULTICLASS = Task("m", "multiclass", "y", "sparse_categorical_crossentropy", ())


# (Masking, a label-less batch giving 0 and not NaN: the step's and the evaluator's
# normalisation, tested in test_loop.py.)
def test_binary_cross_entropy_at_logit_zero_is_log2():
    loss = heads.per_example_loss(BINARY, tf.zeros([2, 1]), tf.constant([0, 1]))
    np.testing.assert_allclose(loss.numpy(), [math.log(2)] * 2, rtol=1e-6)


def test_regression_is_scored_in_standardised_units():
    # label 30, mean 20, std 10 -> z = 1; prediction z = 3 -> squared error 4
    loss = heads.per_example_loss(REGRESSION, tf.constant([[3.0]]), tf.constant([30.0]),
                                  mean=20.0, std=10.0)
    np.testing.assert_allclose(loss.numpy(), [4.0])


def test_huber_is_quadratic_then_linear():
    # errors 0.5 and 3 with delta 1: 0.5 * 0.25 = 0.125 and 1 * (3 - 0.5) = 2.5
    per_example = heads.per_example_loss(HUBER, tf.constant([[0.5], [3.0]]), tf.constant([0.0, 0.0]))
    np.testing.assert_allclose(per_example.numpy(), [0.125, 2.5])


def test_outputs_follow_the_naming_convention():
    binary = heads.outputs(BINARY, tf.constant([[0.0], [10.0]]))
    np.testing.assert_allclose(binary["probability"].numpy(), [0.5, 1 / (1 + math.exp(-10))], rtol=1e-6)
    np.testing.assert_array_equal(binary["class_id"].numpy(), [1, 1])
    value = heads.outputs(REGRESSION, tf.constant([[1.0], [-0.5]]), mean=20.0, std=10.0)
    np.testing.assert_allclose(value["value"].numpy(), [30.0, 15.0])
    multi = heads.outputs(MULTICLASS, tf.math.log(tf.constant([[0.2, 0.5, 0.3]])),
                          class_names=tf.constant(["a", "b", "c"]))
    np.testing.assert_allclose(multi["probabilities"].numpy(), [[0.2, 0.5, 0.3]], rtol=1e-6)
    assert multi["class_id"].numpy().tolist() == [1] and multi["class"].numpy().tolist() == [b"b"]


def test_multiclass_head_needs_two_classes():
    with pytest.raises(ValueError, match="'m'.*2 classes"):
        heads.head_width(MULTICLASS, 1)
