"""The architecture families by name: :func:`build` makes the network a config names.

Kept apart from :mod:`tfx_mtl.models.architecture` (the config every family reads),
so the families import the config and this module imports the families, with no
cycle; the table below names each family module explicitly, and a test holds it to
``architecture.ARCHITECTURES`` (the names a config accepts).
"""
from __future__ import annotations

from typing import Mapping

from tfx_mtl.models import cross_stitch, mmoe, ple, shared_bottom
from tfx_mtl.models.architecture import ArchitectureConfig
from tfx_mtl.models.network import Network
from tfx_mtl.task_spec import TaskSpec

BUILDERS = {family.NAME: family.build_network for family in (shared_bottom, mmoe, ple,
                                                             cross_stitch)}


def build(spec: TaskSpec, cardinalities: Mapping[str, int],
          num_classes: Mapping[str, int] | None = None,
          config: ArchitectureConfig = ArchitectureConfig()) -> Network:
    """The network ``config`` names, for ``spec``; ``num_classes`` is needed for multiclass tasks."""
    return BUILDERS[config.name](spec, cardinalities, num_classes, config)
