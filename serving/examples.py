"""Raw feature rows -> serialized ``tf.Example``s, the input of every serving signature.

A row is a mapping of feature name -> value: a scalar, or a list for a multi-valued
feature. A feature's name is its column's name as the data's header writes it
(``hours-per-week``, ``marital status``): the served model parses the raw columns, and
the safe keys the model uses inside (:mod:`tfx_mtl.column_keys`) never reach a request. ``None``, ``""``, a float NaN or an empty list means "missing": the feature
is left out of the example and the model imputes it, exactly as for an empty CSV cell.

With a tensorflow_metadata ``Schema`` (e.g. ``schemas/chicago_taxi/schema.pbtxt``) the
schema types each feature:

* ``INT``   -> ``int64_list``: ints, bools, integral floats (``3.0``) and strings of
  integers (``"3"``, ``"3.0"``); ``3.5`` or ``"3.5"`` is a :class:`RowError`.
* ``FLOAT`` -> ``float_list``: ints, floats and numeric strings (CSV cells).
* ``BYTES`` -> ``bytes_list``: strings (UTF-8), bytes, and ints (as their decimal text).

A feature the schema says takes at most one value (``value_count { max: 1 }``, as every
feature of the taxi schema) refuses a list of two or more values: the model would fail
on it with an internal message (``SparseToDense``), so it is refused here, naming the row
and the feature, before anything is sent.

Columns the schema does not know are an error by default (``extra="error"``): a typo in a
feature name would otherwise be dropped by the model without a word and the feature
imputed, giving plausible but wrong predictions. Pass ``extra="ignore"`` to drop them
(e.g. to send whole CSV rows with columns that are not features).

Without a schema each value is typed by its Python type: ``bool``/``int`` -> int64,
``float`` -> float, ``str``/``bytes`` -> bytes (a list of ints and floats -> float).
Mind that the model's parse spec is strict: ``0`` sent for a FLOAT feature arrives as
an int64 list and the server rejects it (INVALID_ARGUMENT naming the feature); give a
schema when the values come from JSON or CSV.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping

from tensorflow.core.example import example_pb2, feature_pb2

from tfx_mtl.errors import InputError

EXTRA_CHOICES = ("error", "ignore")

_INT, _FLOAT, _BYTES = "INT", "FLOAT", "BYTES"


class RowError(InputError):
    """A row that cannot be encoded; names the row (0-based index) and the feature."""

    def __init__(self, row: int, feature: str | None, message: str):
        self.row = row
        self.feature = feature
        super().__init__(f"row {row}" + (f", feature {feature!r}" if feature is not None else ""),
                         message)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, bytes)) and value == type(value)():
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return False


def _values(value: Any) -> list:
    """The value as a list of non-missing scalars (a scalar -> one element)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # NumPy arrays and scalars
    if isinstance(value, (list, tuple)):
        items = list(value)
        for item in items:
            if isinstance(item, (list, tuple, dict)):
                raise TypeError(f"nested value {value!r}: a feature takes a scalar or a flat list")
        if any(_is_missing(item) for item in items):
            # A missing element inside a list would shift every later value: refuse it.
            if all(_is_missing(item) for item in items):
                return []
            raise TypeError(f"list {value!r} has missing (None/empty/NaN) elements")
        return items
    if isinstance(value, dict):
        raise TypeError(f"a mapping {value!r}: a feature takes a scalar or a flat list")
    return [] if _is_missing(value) else [value]


def _to_int(item: Any) -> int:
    if isinstance(item, bool):
        return int(item)
    if isinstance(item, numbers.Integral):
        return int(item)
    if isinstance(item, numbers.Real):
        if float(item).is_integer():
            return int(item)
        raise TypeError(f"{item!r} is not an integer (the schema says INT)")
    if isinstance(item, (str, bytes)):
        text = item.decode() if isinstance(item, bytes) else item
        try:
            return int(text.strip())
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise TypeError(f"{item!r} is not an integer (the schema says INT)") from None
        if math.isfinite(number) and number.is_integer():
            return int(number)
        raise TypeError(f"{item!r} is not an integer (the schema says INT)")
    raise TypeError(f"{item!r} ({type(item).__name__}) is not an integer (the schema says INT)")


def _to_float(item: Any) -> float:
    if isinstance(item, numbers.Real):
        return float(item)
    if isinstance(item, (str, bytes)):
        text = item.decode() if isinstance(item, bytes) else item
        try:
            return float(text)
        except ValueError:
            raise TypeError(f"{item!r} is not a number (the schema says FLOAT)") from None
    raise TypeError(f"{item!r} ({type(item).__name__}) is not a number (the schema says FLOAT)")


def _to_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, numbers.Integral) and not isinstance(item, bool):
        return str(int(item)).encode()
    raise TypeError(f"{item!r} ({type(item).__name__}) is not a string (the schema says BYTES)")


_CONVERT = {_INT: _to_int, _FLOAT: _to_float, _BYTES: _to_bytes}


def _python_type(items: list) -> str:
    """The feature type of schema-less values, from their Python types."""
    kinds = set()
    for item in items:
        if isinstance(item, (str, bytes)):
            kinds.add(_BYTES)
        elif isinstance(item, (bool, numbers.Integral)):
            kinds.add(_INT)
        elif isinstance(item, numbers.Real):
            kinds.add(_FLOAT)
        else:
            raise TypeError(f"{item!r} ({type(item).__name__}) is not an int, float, str or bytes")
    if kinds == {_INT, _FLOAT}:
        return _FLOAT
    if len(kinds) > 1:
        raise TypeError(f"mixes strings and numbers: {items!r}")
    return kinds.pop()


def _feature(kind: str, values: list) -> feature_pb2.Feature:
    if kind == _INT:
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))
    if kind == _FLOAT:
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))
    return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=values))


class RowEncoder:
    """Encodes raw feature rows as serialized ``tf.Example``s.

    ``schema``: a ``tensorflow_metadata.proto.v0.schema_pb2.Schema`` typing the features
    (or ``None``: typed by the Python values). ``extra``: what to do with a column the
    schema does not know, ``"error"`` (default) or ``"ignore"`` (drop it); without a
    schema every column is encoded.
    """

    def __init__(self, schema=None, *, extra: str = "error"):
        if extra not in EXTRA_CHOICES:
            raise ValueError(f"extra must be one of {', '.join(EXTRA_CHOICES)}, got {extra!r}")
        self.schema = schema
        self.extra = extra
        self.types: dict[str, str | None] | None = None
        self.single_valued: frozenset[str] = frozenset()
        if schema is not None:
            from tensorflow_metadata.proto.v0 import schema_pb2

            names = {schema_pb2.INT: _INT, schema_pb2.FLOAT: _FLOAT, schema_pb2.BYTES: _BYTES}
            # A feature the schema leaves untyped is typed by its values.
            self.types = {f.name: names.get(f.type) for f in schema.feature}
            self.single_valued = frozenset(
                f.name for f in schema.feature
                if f.HasField("value_count") and f.value_count.max == 1)

    @classmethod
    def from_schema_file(cls, path, *, extra: str = "error") -> "RowEncoder":
        """A schema-typed encoder from a Schema in text format (``.pbtxt``) or binary."""
        from google.protobuf import text_format
        from tensorflow_metadata.proto.v0 import schema_pb2

        with open(path, "rb") as f:
            raw = f.read()
        schema = schema_pb2.Schema()
        try:
            text_format.Parse(raw.decode("utf-8"), schema)
        except (UnicodeDecodeError, text_format.ParseError) as text_error:
            try:
                schema = schema_pb2.Schema.FromString(raw)
            except Exception:
                raise ValueError(
                    f"{path}: not a tensorflow_metadata Schema: {text_error}") from None
        if not schema.feature:
            raise ValueError(f"{path}: the schema has no features")
        return cls(schema, extra=extra)

    @property
    def features(self) -> list[str] | None:
        """The schema's feature names (``None`` without a schema)."""
        return None if self.types is None else list(self.types)

    def example(self, row: Mapping[str, Any], index: int = 0) -> example_pb2.Example:
        """The row as a ``tf.Example`` proto (``index`` names the row in errors)."""
        if not isinstance(row, Mapping):
            raise RowError(index, None, f"expected a mapping of feature name -> value, "
                                        f"got {type(row).__name__}")
        features = {}
        for name, value in row.items():
            if not isinstance(name, str):
                raise RowError(index, str(name), "feature names must be strings")
            if self.types is not None and name not in self.types:
                if self.extra == "ignore":
                    continue
                raise RowError(index, name, "not a feature of the schema (known: "
                                            f"{', '.join(sorted(self.types))}; "
                                            "extra='ignore' drops unknown columns)")
            try:
                values = _values(value)
                if not values:
                    continue  # missing: the model imputes it
                if len(values) > 1 and name in self.single_valued:
                    raise TypeError(f"{len(values)} values, but the schema allows at most "
                                    "one (value_count max 1)")
                kind = self.types.get(name) if self.types is not None else None
                if kind is None:
                    kind = _python_type(values)
                values = [_CONVERT[kind](v) for v in values]
                features[name] = _feature(kind, values)
            except (TypeError, ValueError) as e:  # ValueError: e.g. an int beyond int64
                raise RowError(index, name, str(e)) from None
        return example_pb2.Example(features=feature_pb2.Features(feature=features))

    def encode(self, row: Mapping[str, Any], index: int = 0) -> bytes:
        """The row as a serialized ``tf.Example``."""
        return self.example(row, index).SerializeToString()

    def encode_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Every row serialized; errors name the row by its position in ``rows``."""
        return [self.encode(row, i) for i, row in enumerate(rows)]
