"""Checks of a Predict input against its signature, done on the proto before any tensor exists.

A ``TensorProto`` says its shape in ``tensor_shape`` and carries its values separately
(typed repeated fields such as ``string_val``, or ``tensor_content``). TensorFlow's
``make_ndarray`` (like C++ ``Tensor::FromProto``) allocates the claimed shape and
*broadcasts* the values it was given to fill it: a 300-byte request claiming a million
rows with one value becomes a million-row tensor. So, before anything is materialised,
:func:`check_input` refuses an input whose dtype, rank or fixed dimensions differ from the
signature's, whose batch (first) dimension exceeds the server's limit, or whose value count
differs from the element count its shape claims. The work it does is a few ``len`` calls,
and whatever passes is no bigger in memory than the bytes that were received.
"""
from __future__ import annotations

import functools
import math

# TF Serving's batching default (BasicBatchScheduler::Options::max_batch_size). Importing
# this module imports no TensorFlow (the CLI reads this default).
DEFAULT_MAX_BATCH_SIZE = 1000


@functools.cache
def _fields() -> dict[int, tuple[str, int, int | None]]:
    """dtype -> (the repeated field that carries it, values per element, bytes per
    element in tensor_content); tensorflow/core/framework/tensor.proto."""
    from tensorflow.core.framework import types_pb2 as t
    return {
        t.DT_FLOAT: ("float_val", 1, 4), t.DT_DOUBLE: ("double_val", 1, 8),
        t.DT_INT32: ("int_val", 1, 4), t.DT_INT16: ("int_val", 1, 2),
        t.DT_INT8: ("int_val", 1, 1), t.DT_UINT8: ("int_val", 1, 1),
        t.DT_UINT16: ("int_val", 1, 2), t.DT_INT64: ("int64_val", 1, 8),
        t.DT_UINT32: ("uint32_val", 1, 4), t.DT_UINT64: ("uint64_val", 1, 8),
        t.DT_BOOL: ("bool_val", 1, 1), t.DT_HALF: ("half_val", 1, 2),
        t.DT_BFLOAT16: ("half_val", 1, 2), t.DT_COMPLEX64: ("scomplex_val", 2, 8),
        t.DT_COMPLEX128: ("dcomplex_val", 2, 16), t.DT_STRING: ("string_val", 1, None),
    }

# tensorflow/core/framework/types.cc DataTypeString: the names TF Serving's messages use.
_DTYPE_STRING = {"float32": "float", "float64": "double", "float16": "half"}


class RequestError(ValueError):
    """An input the server refuses (INVALID_ARGUMENT); the message names the input."""


def dtype_string(enum: int) -> str:
    import tensorflow as tf
    try:
        name = tf.as_dtype(enum).name
    except TypeError:
        return "invalid"
    return _DTYPE_STRING.get(name, name)


def shape_string(dims) -> str:
    """``[?,3]`` for a shape with an unknown first dimension, ``[]`` for a scalar."""
    return "[" + ",".join("?" if d < 0 else str(d) for d in dims) + "]"


def check_input(alias: str, tensor, info, max_batch_size: int) -> None:
    """Refuse ``tensor`` (a TensorProto) for the signature input ``info`` (a TensorInfo)
    with :class:`RequestError` unless its dtype, shape and value count fit."""
    if tensor.dtype != info.dtype:
        # tfrt_predict_util.cc PreProcessPredictionWithoutOutputFilter (names the input).
        raise RequestError(f"Expected input {alias} to be {dtype_string(info.dtype)} but get "
                           f"{dtype_string(tensor.dtype)}.")
    if tensor.tensor_shape.unknown_rank:
        raise RequestError(f"input {alias}: tensor_shape has unknown_rank set; a request must "
                           "give its shape")
    dims = [d.size for d in tensor.tensor_shape.dim]
    where = f"input {alias}: shape {shape_string(dims)}"
    if any(d < 0 for d in dims):
        raise RequestError(f"{where} has a negative dimension")
    if info.WhichOneof("encoding") == "name" and not info.tensor_shape.unknown_rank:
        wanted = [d.size for d in info.tensor_shape.dim]
        if len(dims) != len(wanted):
            raise RequestError(f"{where} has rank {len(dims)}; the signature takes rank "
                               f"{len(wanted)}, shape {shape_string(wanted)}")
        for i, (got, want) in enumerate(zip(dims, wanted)):
            if want >= 0 and got != want:
                raise RequestError(f"{where}: dimension {i} must be {want} (signature shape "
                                   f"{shape_string(wanted)})")
    if dims and dims[0] > max_batch_size:
        raise RequestError(f"{where}: batch size {dims[0]} exceeds this server's limit of "
                           f"{max_batch_size} (--max-batch-size)")
    field, per_element, item_bytes = _fields().get(tensor.dtype, (None, 0, None))
    if field is None:
        raise RequestError(f"input {alias}: dtype {dtype_string(tensor.dtype)} is not "
                           "supported by this server")
    elements = math.prod(dims)
    if tensor.tensor_content:
        if item_bytes is None:
            raise RequestError(f"input {alias}: a {dtype_string(tensor.dtype)} tensor carries "
                               f"its values in {field}, not tensor_content")
        sent, claimed = len(tensor.tensor_content), elements * item_bytes
        unit = f"bytes of tensor_content ({item_bytes} per element)"
    else:
        sent, claimed = len(getattr(tensor, field)), elements * per_element
        unit = f"values in {field}"
    if sent != claimed:
        raise RequestError(f"{where} has {elements} elements but the request carries {sent} "
                           f"{unit}; send every value (no broadcasting)")


def check_batch(count: int, max_batch_size: int) -> None:
    """Classify/Regress: refuse more examples than the batch limit."""
    if count > max_batch_size:
        raise RequestError(f"input: {count} examples exceed this server's limit of "
                           f"{max_batch_size} (--max-batch-size)")
