"""How per-task gradients become one update: one module per method, registered by name.

Registered (in this order): ``sum``, ``pcgrad`` (Yu et al., 2020), ``cagrad``
(Liu et al., 2021), ``mgda`` and ``mgda_ub`` (Sener & Koltun, 2018), ``nash_mtl``
(Navon et al., 2022), ``upgrad`` (Quinton & Rey, 2024), ``aligned_mtl`` (Senushkin et al.,
2023), ``imtl_g`` (Liu et al., 2021), ``gradvac``
(Wang et al., 2021), ``graddrop`` (Chen et al., 2020), ``db_mtl`` (Lin et al., 2023). Adding one
is a module beside these, its import below, and its test: docs/development.md.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

# Importing a method's module registers it; names() lists them in this order.
from tfx_mtl.models.combination import plain_sum  # noqa: F401,I001
from tfx_mtl.models.combination import pcgrad  # noqa: F401
from tfx_mtl.models.combination import cagrad  # noqa: F401
from tfx_mtl.models.combination import mgda  # noqa: F401
from tfx_mtl.models.combination import nash_mtl  # noqa: F401
from tfx_mtl.models.combination import upgrad  # noqa: F401
from tfx_mtl.models.combination import aligned_mtl  # noqa: F401
from tfx_mtl.models.combination import imtl_g  # noqa: F401
from tfx_mtl.models.combination import gradvac  # noqa: F401
from tfx_mtl.models.combination import graddrop  # noqa: F401
from tfx_mtl.models.combination import db_mtl  # noqa: F401
from tfx_mtl.models.combination.base import (LEVELS, PARAMETERS, REGISTRY,  # noqa: F401
                                              REPRESENTATION, GradientCombination)


def names() -> tuple[str, ...]:
    return REGISTRY.names()


def make(name: str, params: Mapping[str, Any] | None = None, *, tasks: int | None = None,
         parameters: int | None = None, **more_params) -> GradientCombination:
    """The combination ``name`` for ``tasks`` (K) tasks and ``parameters`` (P) shared
    parameters, with its parameters (a mapping, or keywords). Stateful methods need K
    (DB-MTL also P); build them in the strategy's scope."""
    return REGISTRY.get(name)({**dict(params or {}), **more_params}, tasks, parameters)


def levels(name: str) -> tuple[str, ...]:
    """The surgery levels ``name`` can be asked to run at (``trainer.surgery_level``)."""
    method = REGISTRY.get(name)
    return tuple(level for level in LEVELS if _runs_at(method, level))


def _runs_at(method, level: str) -> bool:
    try:
        method.level_at(level)
    except ValueError:
        return False
    return True


def combine(name: str, G: tf.Tensor, *, seed: tf.Tensor | None = None, **params) -> tf.Tensor:
    """[P] ``name``'s update from ``G`` [K, P], as the step computes it at parameter level
    (a fresh method: a stateful one at its first step)."""
    G = tf.convert_to_tensor(G)
    k, p = G.shape if G.shape.rank == 2 else (None, None)
    return make(name, params, tasks=k, parameters=p).combine(G, seed)
