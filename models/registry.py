"""Methods registered by name, each with a dataclass of its parameters.

One mechanism for both kinds of multi-task method (loss weightings, gradient
combinations): a method class names itself (``name``) and its parameters
(``Params``, a frozen dataclass whose fields say their own check, see
:func:`number` and :func:`integer`); ``Registry.register`` files it. The
parameters reach a method the same way from every source (a ``--combine-param
c=0.4`` on the command line, the spec's ``trainer`` section, a
:class:`~tfx_mtl.models.trainer_config.TrainerConfig`): as a mapping that
:meth:`Registry.params` checks and turns into ``Params``, naming the field.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

from tfx_mtl.errors import InputError


@dataclasses.dataclass(frozen=True)
class NoParams:
    """The parameters of a method that takes none."""


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _param(default: Any, check: Callable[[Any], bool], meaning: str):
    return dataclasses.field(default=default, metadata={"check": check, "meaning": meaning})


def number(default: float, *, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None):
    """A finite number parameter, optionally ``>= minimum`` or ``> above``, and
    ``<= maximum`` (a rate or a share)."""
    lower = (f">= {minimum:g}", lambda v: v >= minimum) if minimum is not None else \
        (f"> {above:g}", lambda v: v > above) if above is not None else None
    upper = (f"<= {maximum:g}", lambda v: v <= maximum) if maximum is not None else None
    bounds = [b for b in (lower, upper) if b]
    if not bounds:
        return _param(default, _is_number, "a finite number")
    return _param(default, lambda v: _is_number(v) and all(ok(v) for _, ok in bounds),
                  "a number " + " and ".join(text for text, _ in bounds))


def integer(default: int, *, minimum: int):
    """A whole-number parameter ``>= minimum``."""
    return _param(default, lambda v: isinstance(v, int) and not isinstance(v, bool)
                  and v >= minimum, f"an integer >= {minimum}")


class Registry:
    """The methods of one kind, by name, in registration order. ``kind`` is the field
    that names a method (``weighting``, ``combine``); ``noun`` what messages call one."""

    def __init__(self, kind: str, noun: str):
        self.kind, self.noun = kind, noun
        self._methods: dict[str, type] = {}

    def register(self, method: type) -> type:
        """Files ``method`` under ``method.name`` (usable as a class decorator)."""
        name = getattr(method, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{method.__name__}: a registered {self.noun} needs a name")
        if name in self._methods:
            raise ValueError(f"{self.noun} {name!r} is registered twice")
        if not dataclasses.is_dataclass(method.Params):
            raise TypeError(f"{self.noun} {name!r}: Params must be a dataclass")
        for field in dataclasses.fields(method.Params):
            if "check" not in field.metadata:
                raise TypeError(f"{self.noun} {name!r}: parameter {field.name!r} must be "
                                "declared with registry.number or registry.integer")
        self._methods[name] = method
        return method

    def names(self) -> tuple[str, ...]:
        return tuple(self._methods)

    def get(self, name: str) -> type:
        """The method class ``name``; InputError (field: the kind) if there is none."""
        if name not in self._methods:
            raise InputError(self.kind, f"unknown {self.noun} {name!r} "
                                        f"(one of: {', '.join(self._methods)})")
        return self._methods[name]

    def params(self, name: str, values: Mapping[str, Any] | Any | None = None):
        """``name``'s Params from ``values`` (a mapping, or already a Params); every value
        checked. InputError names ``<kind>_params.<parameter>``."""
        params_class = self.get(name).Params
        if isinstance(values, params_class):
            return values
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(params_class)}
        for key, value in values.items():
            field = f"{self.kind}_params.{key}"
            if key not in fields:
                raise InputError(field, f"{self.noun} {name!r}: unknown parameter {key!r} "
                                        f"(allowed: {', '.join(fields) or 'none'})")
            if not fields[key].metadata["check"](value):
                raise InputError(field, f"{self.noun} {name!r}: parameter {key!r} must be "
                                        f"{fields[key].metadata['meaning']}, got {value!r}")
        return params_class(**values)
