"""Metric values as strict JSON: a NaN or infinite value becomes ``null`` with its reason.

Python's ``json`` writes ``NaN`` and ``Infinity``, which strict parsers (browsers,
``jq``, Go, Java) reject, so one bad metric would make the whole transfer report or
run summary unreadable to them. A report keeps each such value as ``null`` and says
beside it why (:func:`nulled`, :func:`sections`); :func:`dumps` refuses anything
non-finite that slipped through instead of writing invalid JSON.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

UNDEFINED = "undefined (NaN)"
INFINITE = "infinite ({sign}Infinity)"


def reason(value: Any) -> str | None:
    """Why ``value`` is not a finite number, or None when it is one (or not a float)."""
    if not isinstance(value, float) or math.isfinite(value):
        return None
    if math.isnan(value):
        return UNDEFINED
    return INFINITE.format(sign="+" if value > 0 else "-")


def nulled(obj: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """``obj`` (dicts, lists, numbers) with every non-finite float replaced by None, and
    the reasons by dotted path (``eval_metrics.fare.rmse``; the key itself in a flat
    dict)."""
    if isinstance(obj, dict):
        pairs = [nulled(v, f"{path}.{k}" if path else str(k)) for k, v in obj.items()]
        return ({k: v for k, (v, _) in zip(obj, pairs)},
                {p: r for _, reasons in pairs for p, r in reasons.items()})
    if isinstance(obj, (list, tuple)):
        pairs = [nulled(v, f"{path}.{i}") for i, v in enumerate(obj)]
        return [v for v, _ in pairs], {p: r for _, reasons in pairs for p, r in reasons.items()}
    why = reason(obj)
    return (None, {path: why}) if why else (obj, {})


_VALUES = {UNDEFINED: math.nan, INFINITE.format(sign="+"): math.inf,
           INFINITE.format(sign="-"): -math.inf}


def restored(obj: Any, reasons: Mapping[str, str]) -> Any:
    """The inverse of :func:`nulled`: ``obj`` with each ``null`` that ``reasons`` explains
    (by dotted path) the NaN or infinity it stood for, so a record read back from strict
    JSON computes as the one written."""
    obj = json.loads(json.dumps(obj))  # a deep copy
    for path, why in reasons.items():
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = _VALUES[why]
        else:
            node[last] = _VALUES[why]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """``json.dumps`` that raises ValueError on NaN or Infinity instead of writing them."""
    return json.dumps(obj, allow_nan=False, **kwargs)


def sections(values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each section of metric values (e.g. ``metrics``, ``baseline_metrics``) nulled,
    plus ``not_finite``: the reasons by section and key (empty when all are finite).

    Reasons already recorded under ``values["not_finite"]`` are kept, so a report
    passes through it unchanged however often it is read and written."""
    result, not_finite = {}, {k: dict(v) for k, v in values.get("not_finite", {}).items()}
    for section, section_values in values.items():
        if section == "not_finite":
            continue
        result[section], reasons = nulled(dict(section_values))
        if reasons:
            not_finite.setdefault(section, {}).update(reasons)
    result["not_finite"] = not_finite
    return result
