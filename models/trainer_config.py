"""Every knob of a Trainer run, as one JSON-able value.

The pipeline passes it to the Trainer through ``custom_config``; the spec's
``trainer`` section, the command line and Kubeflow's run-time parameters fill
it (:func:`checked_trainer_config`, :meth:`TrainerConfig.with_options`).
Validation happens when it is made, so a typo in a method name or parameter
fails before any component runs, with a message naming the field.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from tfx_mtl.errors import InputError, InputProblems
from tfx_mtl.models import architecture, combination, early_stopping, weighting
from tfx_mtl.task_spec import TaskSpec, TaskSpecError

TRAINER_CONFIG_KEY = "trainer"
PER_TASK_GRADIENTS = ("backward", "jacobian")
# (method field, its parameters' field, the registry) for both kinds of method.
_METHODS = (("weighting", "weighting_params", weighting.REGISTRY),
            ("combine", "combine_params", combination.REGISTRY))
# Selection defaults, measured on the bundled taxi data (docs/models_and_methods.md):
# every Trainer there stops early well before the default --train-steps cap.
EVAL_EVERY = 100
PATIENCE = 10
# Fields of earlier versions that the normalised validation loss replaced.
_REMOVED = ("early_stopping_task", "early_stopping_metric")


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
    tasks: tuple[str, ...] = ()  # the tasks this Trainer trains; (): every task of the spec
    weighting: str = "uniform"  # a registered weighting (models/weighting/)
    weighting_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    combine: str = "sum"  # a registered gradient combination (models/combination/)
    combine_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # How per-task gradients are formed: "backward" (K vector-Jacobian products of
    # one forward pass) or "jacobian" (one pfor-vectorised Jacobian); same numbers.
    per_task_gradients: str = "backward"
    # Which per-task gradients the combination acts on: "parameters" (of the shared
    # parameters) or "representation" (of the shared representation: K backward passes
    # through the heads only, one through the trunk). Changes nothing with `sum`.
    surgery_level: str = combination.PARAMETERS
    checkpoint_every: int = 500  # 0: only at the end
    # Model selection on the validation split (models/early_stopping.py): every
    # ``eval_every`` steps and at the last step, the weighted mean over the trained
    # tasks of (validation loss / loss at the first evaluation); the best evaluation's
    # weights are kept. 0: no in-loop evaluation, the last step's weights.
    eval_every: int = EVAL_EVERY
    early_stopping_patience: int = PATIENCE  # evaluations without improvement; 0: never stop
    early_stopping_min_delta: float = 0.0  # on the criterion's scale (1.0 = first evaluation)
    # The step budget in epochs over the train split, when set (else the Trainer's
    # train_steps): run_fn counts the split's examples and trains at most
    # ceil(train_epochs * examples / batch_size) steps (steps_for); early stopping
    # still applies within it. Set here, not as a step count, because a compiled
    # (Kubeflow) pipeline cannot see its data until it runs.
    train_epochs: float | None = None

    def __post_init__(self):
        if isinstance(self.tasks, (list, str)):  # from YAML/JSON; a lone name is one task
            object.__setattr__(self, "tasks", (self.tasks,) if isinstance(self.tasks, str)
                               else tuple(self.tasks))
        problems: list[tuple[str, str]] = []

        def add(field: str, message: str) -> None:
            problems.append((f"trainer.{field}", message))

        for name in ("batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                add(name, f"must be a positive integer, got {value!r}")
        for name in ("checkpoint_every", "eval_every", "early_stopping_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                add(name, f"must be a non-negative integer, got {value!r}")
        if not self.learning_rate > 0:
            add("learning_rate", f"must be positive, got {self.learning_rate!r}")
        if not all(isinstance(t, str) and t for t in self.tasks):
            add("tasks", f"must be a list of task names, got {list(self.tasks)!r}")
        elif len(set(self.tasks)) != len(self.tasks):
            add("tasks", f"names a task twice: {list(self.tasks)!r}")
        for method, params, registry in _METHODS:
            try:
                registry.params(getattr(self, method), getattr(self, params))
            except InputError as e:  # the registry names the method or the parameter
                add(e.field, e.message)
        if self.combine in combination.names():
            try:
                combination.REGISTRY.get(self.combine).level_at(self.surgery_level)
            except InputError as e:
                add(e.field, e.message)
        if self.per_task_gradients not in PER_TASK_GRADIENTS:
            add("per_task_gradients", f"must be one of {', '.join(PER_TASK_GRADIENTS)}, "
                                      f"got {self.per_task_gradients!r}")
        if not (isinstance(self.early_stopping_min_delta, (int, float))
                and not isinstance(self.early_stopping_min_delta, bool)
                and 0 <= self.early_stopping_min_delta < float("inf")):
            add("early_stopping_min_delta", f"must be a non-negative number, "
                                            f"got {self.early_stopping_min_delta!r}")
        epochs = self.train_epochs
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, float))
                                   or not 0 < epochs < float("inf")):
            add("train_epochs", f"must be a positive number of epochs, got {epochs!r}")
        if self.early_stopping_patience and not self.eval_every:
            add("early_stopping_patience", "needs trainer.eval_every > 0 (how often to "
                "evaluate); to train without in-loop evaluation set both to 0")
        if problems:
            raise TrainerConfigError(problems)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrainerConfig":
        data = dict(data or {})
        removed = [name for name in _REMOVED if name in data]
        if removed:
            raise TrainerConfigError([(
                f"trainer.{name}", "is no longer an option: every model, the multi-task one "
                "and each single-task baseline, is now selected on its normalised validation "
                "loss (the mean over its tasks of each task's validation loss divided by its "
                "value at the first evaluation); remove it") for name in removed])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainerConfigError([("trainer", f"unknown option(s) {', '.join(unknown)} "
                                                  f"(known: {', '.join(sorted(known))})")])
        try:
            arch_config = architecture.ArchitectureConfig.from_dict(data.pop("architecture", None))
        except architecture.ArchitectureError as e:
            raise TrainerConfigError(e.problems) from None
        return cls(**data, architecture=arch_config)

    def to_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        for _, params, _ in _METHODS:
            result[params] = dict(getattr(self, params))
        return result

    def with_options(self, options: Mapping[str, Any]) -> "TrainerConfig":
        """This config with ``options`` (TrainerConfig fields) set over it, as the command
        line sets options over the spec's trainer section and Kubeflow's run-time
        parameters over the compiled config: ``architecture`` merges field by field; a
        method's parameters merge by name, and a method that changes starts from none
        of the old one's (GradNorm's alpha means nothing to DWA)."""
        data, options = self.to_dict(), dict(options)
        data["architecture"].update(options.pop("architecture", None) or {})
        for method, params, _ in _METHODS:
            if method in options and options[method] != data[method]:
                data[params] = {}
            data[params] = {**data[params], **dict(options.pop(params, None) or {})}
        data.update(options)
        return TrainerConfig.from_dict(data)

    def steps_for(self, examples: int) -> int:
        """The step budget of ``train_epochs`` over a train split of ``examples``:
        ceil(epochs * examples / batch_size), at least one step."""
        return max(1, math.ceil(self.train_epochs * examples / self.batch_size))

    def trained_spec(self, spec: TaskSpec) -> TaskSpec:
        """The tasks this Trainer has heads for: ``tasks``, or all of the spec's."""
        return spec.restricted_to(self.tasks) if self.tasks else spec

    def for_task_count(self, count: int) -> "TrainerConfig":
        """The one rule for training a single task: with one task there is nothing to
        weigh or combine, so uniform weighting and the plain sum (at the default surgery
        level, where the sum runs the same, so a baseline keeps its cache)."""
        if count != 1:
            return self
        return dataclasses.replace(self, weighting="uniform", weighting_params={},
                                   combine="sum", combine_params={},
                                   surgery_level=combination.PARAMETERS)

    def baseline_for(self, task: str) -> "TrainerConfig":
        """The single-task baseline of ``task``: the same family, widths, data, batch,
        optimiser, seed, step budget and selection (evaluation interval, patience), one
        head; the criterion is then its task's validation loss over its first value,
        which orders evaluations exactly as that loss does."""
        return dataclasses.replace(self, tasks=(task,)).for_task_count(1)

    def spec_problems(self, spec: TaskSpec) -> list[tuple[str, str]]:
        """What does not fit ``spec`` (tasks it does not have; trained tasks whose weights
        leave the selection criterion nothing to weigh), as (field, message)."""
        unknown = [t for t in self.tasks if t not in spec.task_names]
        if unknown:
            return [("trainer.tasks", f"{', '.join(map(repr, unknown))} is not a task of the "
                                      f"spec (tasks: {', '.join(spec.task_names)})")]
        if self.eval_every:
            trained = self.trained_spec(spec)
            try:
                early_stopping.selection_weights(trained.task_names,
                                                 [t.weight for t in trained.tasks])
            except early_stopping.SelectionError as e:
                return [(e.field, e.message)]
        return []


def checked_trainer_config(options: Mapping[str, Any] | None, spec: TaskSpec) -> TrainerConfig:
    """The spec's ``trainer`` section with ``options`` (the command line's) set over it,
    checked against the spec. A bad trainer section is the spec's error (the file and
    field named); a bad option is a TrainerConfigError naming the option's field."""
    try:
        from_spec = TrainerConfig.from_dict(spec.trainer)
    except TrainerConfigError as e:
        raise TaskSpecError(spec.source, e.problems) from None
    config = from_spec.with_options(options or {})
    problems = config.spec_problems(spec)
    if problems:
        raise TrainerConfigError(problems)
    return config
