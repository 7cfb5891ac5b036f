"""Beam options for the data-parallel components when they run on a distributed runner.

The workers of Dataflow, Flink or Spark run ``preprocessing_fn`` and TFMA's
extractors, so they need ``tfx_mtl`` installed: by default they get the
pipeline's own image (``kubeflow/Dockerfile`` makes it a Beam SDK container
too). A runner's required options are checked here, at compile time, rather
than by a failed pod an hour later.
"""
from __future__ import annotations

from typing import Sequence

from tfx_mtl.errors import InputError

DATAFLOW = "DataflowRunner"
PORTABLE = ("FlinkRunner", "SparkRunner", "PortableRunner")
# What each runner cannot start without.
REQUIRED = {DATAFLOW: ("project", "region", "temp_location")}


class BeamArgsError(InputError):
    """A Beam option is missing or malformed; names it."""


def parse(args: Sequence[str]) -> dict[str, str | None]:
    """``--name=value`` / ``--name value`` / ``--flag`` pairs, by name (last one wins)."""
    options: dict[str, str | None] = {}
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if not arg.startswith("--") or arg == "--":
            raise BeamArgsError(arg, "expected --name=value")
        name, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(items) and not items[i + 1].startswith("--"):
            value, i = items[i + 1], i + 1
        options[name] = value if (eq or value) else None
        i += 1
    return options


def distributed(args: Sequence[str], image: str) -> tuple[str, ...]:
    """``args`` as ``--name=value`` strings, checked for their runner, with the worker
    image defaulted to ``image``. No ``--runner`` (or DirectRunner) is allowed: the
    args then tune the DirectRunner of each data-parallel component."""
    options = parse(args)
    runner = options.get("runner") or "DirectRunner"
    missing = [f"--{name}" for name in REQUIRED.get(runner, ()) if not options.get(name)]
    if missing:
        raise BeamArgsError(f"--runner={runner}", f"needs {', '.join(missing)} "
                                                  f"(pass them with --beam-arg)")
    if runner == DATAFLOW:
        options.setdefault("sdk_container_image", image)
        if not str(options.get("temp_location", "")).startswith("gs://"):
            raise BeamArgsError(f"--temp_location={options['temp_location']}", "Dataflow needs a "
                                "gs:// location")
    elif runner in PORTABLE:
        if "environment_type" not in options:
            options["environment_type"] = "DOCKER"
            options.setdefault("environment_config", image)
    return tuple(f"--{name}" if value is None else f"--{name}={value}"
                 for name, value in options.items())
