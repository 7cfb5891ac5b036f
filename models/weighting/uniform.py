"""Uniform weighting: every task's loss times its static weight from the spec (1.0 each by default)."""
from __future__ import annotations

from tfx_mtl.models.weighting.base import REGISTRY, Weighting


@REGISTRY.register
class Uniform(Weighting):
    """Static weights from the spec; nothing is learned."""

    name = "uniform"
