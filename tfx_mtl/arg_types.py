"""argparse value types shared by the ``tfx-mtl`` sub-commands.

Each raises ``argparse.ArgumentTypeError`` with the offending text, so argparse
reports the option by name and exits with status 2.
"""
from __future__ import annotations

import argparse
import math


def _int(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int(text, 0, "a non-negative integer")


def number(text: str) -> float:
    """A finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def number_list(text: str) -> tuple[float, ...]:
    """Comma-separated finite floats: ``1,1000``."""
    return tuple(number(part.strip()) for part in text.split(","))


def word_list(text: str) -> tuple[str, ...]:
    """Comma-separated words: ``regression,binary``."""
    return tuple(part.strip() for part in text.split(","))


def units(text: str) -> tuple[int, ...]:
    """Comma-separated layer widths: ``256,256``."""
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive layer widths, got {text!r}")
    return widths
