"""Every knob of a Trainer run, as one JSON-able value.

The pipeline passes it to the Trainer through ``custom_config``; the CLI and
the Kubeflow runner fill it from their options. Validation happens when it is
made, so a typo in a method name fails before any component runs, with a
message naming the field.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from tfx_mtl.errors import InputProblems
from tfx_mtl.models import architecture, gradient_combination, weighting

TRAINER_CONFIG_KEY = "trainer"
PER_TASK_GRADIENTS = ("backward", "jacobian")


class TrainerConfigError(InputProblems):
    """Trainer options are invalid; ``problems`` lists (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("trainer", problems)


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    batch_size: int = 128  # global batch, split across replicas
    learning_rate: float = 1e-3
    seed: int = 42
    log_every: int = 50  # steps between log lines / TensorBoard points
    architecture: architecture.ArchitectureConfig = architecture.ArchitectureConfig()
    weighting: str = "uniform"  # see weighting.WEIGHTINGS
    weighting_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    combine: str = "sum"  # see gradient_combination.METHODS
    cagrad_c: float = 0.5
    # How per-task gradients are formed: "backward" (K vector-Jacobian products of
    # one forward pass) or "jacobian" (one pfor-vectorised Jacobian); same numbers.
    per_task_gradients: str = "backward"
    checkpoint_every: int = 500  # 0: only at the end
    eval_every: int = 0  # steps between in-loop evaluations; 0: never
    early_stopping_patience: int = 0  # evaluations without improvement; 0: off
    early_stopping_task: str | None = None  # default: the first primary task
    early_stopping_metric: str | None = None  # default: that task's first metric
    early_stopping_min_delta: float = 0.0

    def __post_init__(self):
        problems = []
        for name in ("batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"trainer.{name}: must be a positive integer, got {value!r}")
        for name in ("checkpoint_every", "eval_every", "early_stopping_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"trainer.{name}: must be a non-negative integer, got {value!r}")
        if not self.learning_rate > 0:
            problems.append(f"trainer.learning_rate: must be positive, got {self.learning_rate!r}")
        if self.cagrad_c < 0:
            problems.append(f"trainer.cagrad_c: must be >= 0, got {self.cagrad_c!r}")
        if self.weighting not in weighting.WEIGHTINGS:
            problems.append(f"trainer.weighting: unknown weighting {self.weighting!r} "
                            f"(one of: {', '.join(weighting.WEIGHTINGS)})")
        else:
            try:
                weighting.check_params(self.weighting, self.weighting_params)
            except ValueError as e:
                problems.append(f"trainer.weighting_params: {e}")
        if self.combine not in gradient_combination.METHODS:
            problems.append(f"trainer.combine: unknown method {self.combine!r} "
                            f"(one of: {', '.join(gradient_combination.METHODS)})")
        if self.per_task_gradients not in PER_TASK_GRADIENTS:
            problems.append(f"trainer.per_task_gradients: must be one of "
                            f"{', '.join(PER_TASK_GRADIENTS)}, got {self.per_task_gradients!r}")
        if self.early_stopping_patience and not self.eval_every:
            problems.append("trainer.early_stopping_patience: needs trainer.eval_every > 0 "
                            "(how often to evaluate)")
        if problems:
            raise TrainerConfigError([tuple(p.split(": ", 1)) for p in problems])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrainerConfig":
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainerConfigError([("trainer", f"unknown option(s) {', '.join(unknown)} "
                                                  f"(known: {', '.join(sorted(known))})")])
        arch = data.pop("architecture", None)
        try:
            arch_config = architecture.ArchitectureConfig.from_dict(arch or {})
        except architecture.ArchitectureError as e:
            raise TrainerConfigError(e.problems) from None
        return cls(**data, architecture=arch_config)

    def baseline_for(self, task: str) -> "TrainerConfig":
        """The single-task baseline of ``task``: the same family, widths, data, batch,
        optimiser, seed and steps, one head. Weighting and gradient combination
        have nothing to balance with one task (uniform, sum); early stopping, if
        on, watches the task's own first metric."""
        arch = self.architecture
        family = arch.family if arch.name == "single_task" else arch.name
        return dataclasses.replace(
            self, architecture=dataclasses.replace(arch, name="single_task", family=family,
                                                   task=task),
            weighting="uniform", weighting_params={}, combine="sum",
            early_stopping_task=None, early_stopping_metric=None)

    def to_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result["weighting_params"] = dict(self.weighting_params)
        return result


def checked_trainer_config(options: Mapping[str, Any] | None, spec) -> TrainerConfig:
    """The TrainerConfig of ``options``, checked against ``spec``; the error names the field."""
    config = TrainerConfig.from_dict(options)
    try:
        config.architecture.validate(spec)
    except architecture.ArchitectureError as e:
        raise TrainerConfigError(e.problems) from None
    return config
