"""A NaN or infinite value in a column a label reads masks the label, for every task type
(the labels of binary tasks need no TFT analyzer, so they run eagerly here)."""
import math

import tensorflow as tf

from tfx_mtl import naming, task_spec
from tfx_mtl.models import preprocessing

NAN, INF = math.nan, math.inf


def _label_and_mask(label, columns):
    spec = task_spec.parse({"features": ["x"],
                            "tasks": [{"name": "t", "type": "binary", "label": label}]})
    dense = {name: (tf.constant(values, tf.float32), tf.constant([True] * len(values)))
             for name, values in columns.items()}
    out = preprocessing._transform_label(spec.task("t"), dense)
    return (out[naming.label_key("t")].numpy().tolist(),
            out[naming.mask_key("t")].numpy().tolist())


def test_a_non_finite_binary_label_is_missing_not_positive():
    assert _label_and_mask("y", {"y": [1.0, NAN, 0.0, INF]}) == ([1, 0, 0, 0],
                                                                [1.0, 0.0, 1.0, 0.0])


def test_a_non_finite_column_of_a_comparison_masks_the_label():
    labels, mask = _label_and_mask("tips > 0.2 * fare",
                                   {"tips": [3.0, 3.0, NAN], "fare": [10.0, -INF, 10.0]})
    assert (labels, mask) == ([1, 0, 0], [1.0, 0.0, 0.0])
