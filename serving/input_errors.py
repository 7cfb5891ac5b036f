"""Naming the input and the feature behind a failed signature call on serialized tf.Examples.

When a model's graph refuses its input, TensorFlow's message names graph internals, not
the request: an example that is not a tf.Example gives "Could not parse example input,
value: '<its bytes>'" (which Python cannot even decode when the bytes are not UTF-8), a
feature with two values where the model takes one gives "indices[1] = [0,1] is out of
bounds ... {{node SparseToDense}}". :func:`explain` looks at the examples the request
sent, only after such a failure (so a good request pays nothing), and says which input,
which example and which feature.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

# Messages of TF ops that mean "a feature has more values than the model takes": the
# pipeline's models parse features as VarLen and densify them to one value per example.
_TOO_MANY_VALUES = ("SparseToDense", "output_shape has incorrect number of elements")


def _feature_size(feature) -> int:
    kind = feature.WhichOneof("kind")
    return len(getattr(feature, kind).value) if kind else 0


def explain(inputs: Mapping[str, np.ndarray], tf_message: str) -> str | None:
    """A message naming the input, example and feature that made the call fail with
    ``tf_message``, or None when the examples do not show it."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    for alias, array in sorted(inputs.items()):
        if array.dtype != object:
            continue
        parsed = []
        for index, value in enumerate(np.ravel(array)):
            try:
                parsed.append(example_pb2.Example.FromString(bytes(value)))
            except DecodeError:
                return (f"input {alias}: example {index} is not a serialized tf.Example "
                        f"({len(value)} bytes that do not parse)")
        if not any(marker in tf_message for marker in _TOO_MANY_VALUES):
            continue
        for index, example in enumerate(parsed):
            for name, feature in sorted(example.features.feature.items()):
                if _feature_size(feature) > 1:
                    return (f"input {alias}: example {index}, feature {name!r} has "
                            f"{_feature_size(feature)} values; the model takes at most one "
                            "value of each feature per example")
    return None
