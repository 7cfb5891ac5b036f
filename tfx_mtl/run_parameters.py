"""What a user may change from one run of a compiled pipeline to the next.

Kubeflow sets run-time parameters per run; locally the same values are plain
options. Their names are defined here once: the compiler declares them, the
Trainer component (``components/mtl_trainer.py``) takes them as execution
parameters, and ``tfx-mtl submit`` checks values for them.
"""
from __future__ import annotations

from typing import Any

from tfx_mtl.errors import InputError

DATA_ROOT = "data_root"  # where ExampleGen reads
TRAIN_STEPS = "train_steps"
ARCHITECTURE = "architecture"
WEIGHTING = "weighting"
COMBINE = "combine"
# Everything a compiled pipeline declares, in the order `compile` prints them.
# The default step budget: a cap, since every Trainer stops early on validation.
# Measured on the bundled taxi data: docs/models_and_methods.md.
DEFAULT_TRAIN_STEPS = 5000

PARAMETERS = (DATA_ROOT, TRAIN_STEPS, ARCHITECTURE, WEIGHTING, COMBINE)
# The ones the Trainer takes (the data location is ExampleGen's).
TRAINER_OPTIONS = (TRAIN_STEPS, ARCHITECTURE, WEIGHTING, COMBINE)


def check_train_steps(value: Any, field: str = TRAIN_STEPS) -> int:
    """``value`` if it is a whole number of steps >= 1; else InputError naming ``field``."""
    return check_positive_int(value, field)


def check_positive_int(value: Any, field: str) -> int:
    """``value`` if it is a whole number >= 1 (train steps, seeds); else InputError
    naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(field, f"must be a positive integer, got {value!r}")
    return value
