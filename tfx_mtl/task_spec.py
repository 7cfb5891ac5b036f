"""The task spec: every task of a run described once, as data.

A task spec is a YAML file naming the input features and, for each task, its
type, label, loss, metrics (with bounds) and role, plus how runs are judged
(``evaluation``: the blessing policy, baselines, slices) and, optionally, how
the Trainer trains (``trainer``: TrainerConfig fields such as the architecture,
the weighting and combination and their parameters; command-line options
override them; checked by ``models/trainer_config.py`` before the run). Heads, losses, the
Transform ``preprocessing_fn``, signatures, baselines and TFMA configs are all
derived from a :class:`TaskSpec`, so adding a task never means editing code.

Validation collects every problem and raises one :class:`TaskSpecError` whose
lines each name the offending field (``tasks.fare.loss: ...``), before anything
runs.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Iterable, Mapping

import yaml

from tfx_mtl import column_keys, label_expr, naming
from tfx_mtl.errors import InputError

TASK_TYPES = ("binary", "multiclass", "regression")
ROLES = ("primary", "auxiliary")
# Which tasks must be blessed for the model to be pushed.
POLICIES = ("all", "primary")
# train: a fresh single-task baseline per task (TFX caches it while its inputs
# are unchanged); reuse: the latest baselines already in the MLMD store.
BASELINES = ("train", "reuse")
READINGS = ("significant", "strict")
# Class weights resolved from the train split's class counts (scikit-learn's "balanced").
BALANCED = "balanced"
MIN_BOOTSTRAP_SAMPLES = 100
FEATURE_KINDS = ("numeric", "bucketized", "categorical")

# Losses each task type accepts; the first is the default.
LOSSES = {
    "binary": ("binary_crossentropy",),
    "multiclass": ("sparse_categorical_crossentropy",),
    "regression": ("mse", "huber", "mae"),
}


@dataclasses.dataclass(frozen=True)
class MetricDef:
    """How a spec metric maps onto TFMA: class, result name, better direction.

    ``params``: the spec fields the metric takes (``k`` of ``top_k_accuracy``, ``class``
    of a multiclass ``precision``/``recall``); a metric with a parameter is named in
    results by its :attr:`Metric.key` (``top_k_accuracy@2``, ``recall[Adelie]``).
    ``aggregate``: TFMA's ``AggregationOptions`` (``micro``) for a TFMA metric over
    every class at once."""

    tfma_class: str
    tfma_name: str
    higher_is_better: bool | None  # None: no direction, so no threshold
    module: str | None = None  # for metrics this project implements
    params: tuple[str, ...] = ()
    aggregate: str | None = None


_OWN = "tfx_mtl.pipeline.tfma_metrics"
# top_k_accuracy's k when the spec gives none: top-1 is ``accuracy``, and with three
# classes (a common small case) top-3 is always 1.
DEFAULT_TOP_K = 2

METRICS: dict[str, dict[str, MetricDef]] = {
    "binary": {
        "auc": MetricDef("AUC", "auc", True),
        "auc_pr": MetricDef("AUCPrecisionRecall", "auc_precision_recall", True),
        "binary_accuracy": MetricDef("BinaryAccuracy", "binary_accuracy", True),
        "precision": MetricDef("Precision", "precision", True),
        "recall": MetricDef("Recall", "recall", True),
        # The project's: TFMA's BinaryCrossEntropy is NaN on a prediction of exactly 0 or 1.
        "log_loss": MetricDef("LogLoss", "log_loss", False, module=_OWN),
    },
    "multiclass": {
        "accuracy": MetricDef("SparseCategoricalAccuracy", "sparse_categorical_accuracy", True),
        "log_loss": MetricDef("LogLoss", "log_loss", False, module=_OWN),
        "top_k_accuracy": MetricDef("TopKAccuracy", "top_k_accuracy", True, module=_OWN,
                                    params=("k",)),
        # One-vs-rest ROC AUC: micro pools every (example, class) pair (TFMA's AUC,
        # micro-averaged); macro is the mean of the per-class AUCs (the project's: TFMA's
        # macro average needs the class ids, unknown before Transform).
        "auc_micro": MetricDef("AUC", "auc_micro", True, aggregate="micro"),
        "auc_macro": MetricDef("MacroAUC", "auc_macro", True, module=_OWN),
        # Of one class of the label, named as in the label column (see Metric.label_class).
        "precision": MetricDef("ClassPrecision", "precision", True, module=_OWN,
                               params=("class",)),
        "recall": MetricDef("ClassRecall", "recall", True, module=_OWN, params=("class",)),
    },
    "regression": {
        "mse": MetricDef("MeanSquaredError", "mean_squared_error", False),
        "mae": MetricDef("MeanAbsoluteError", "mean_absolute_error", False),
        "rmse": MetricDef("RootMeanSquaredError", "root_mean_squared_error", False,
                          module=_OWN),
    },
}


def metric_key(name: str, k: int | None = None, label_class: str | None = None) -> str:
    """A metric's name in results: ``name``, ``name@k`` or ``name[class]``."""
    if k is not None:
        return f"{name}@{k}"
    if label_class is not None:
        return f"{name}[{label_class}]"
    return name


_KEY_RE = re.compile(r"^([a-z_]+)(?:@([0-9]+)|\[(.+)\])?$", re.DOTALL)


def parse_metric_key(key: str) -> tuple[str, int | None, str | None]:
    """Inverse of :func:`metric_key`: (name, k, class)."""
    match = _KEY_RE.match(key)
    if not match:
        raise ValueError(f"{key!r} is not a metric key (name, name@k or name[class])")
    name, k, label_class = match.groups()
    return name, int(k) if k is not None else None, label_class

_RESERVED_TASK_NAMES = (naming.SERVING_DEFAULT, naming.TRANSFORM_FEATURES)
# Words of lower-case letters and digits joined by single underscores: ``__``
# separates a task's name from a suffix in derived keys (see naming).
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class TaskSpecError(InputError):
    """The spec is invalid: the file, then a line per problem. ``problems`` lists
    (field, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "".join(f"\n  {field}: {message}" for field, message in problems)
        super().__init__(source, f"invalid task spec:{lines}")


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str  # the column, exactly as the data's header writes it (see column_keys)
    kind: str  # numeric | bucketized | categorical
    buckets: int = 10  # bucketized: quantile buckets
    top_k: int = 1000  # categorical: vocabulary size kept
    oov_buckets: int = 10  # categorical: hash buckets for unseen values
    embedding_dim: int = 8  # bucketized / categorical


@dataclasses.dataclass(frozen=True)
class Threshold:
    lower_bound: float | None = None
    upper_bound: float | None = None


@dataclasses.dataclass(frozen=True)
class MaxRegression:
    """How much worse than the task's single-task baseline a metric may be.

    ``amount`` is in the metric's units, or a fraction of the baseline's value
    when ``relative`` (written ``1%`` in the spec). "Worse" follows the metric's
    direction: an AUC may fall by ``amount``, an RMSE may rise by it.
    """

    amount: float
    relative: bool = False
    # Filled from ``evaluation.default_max_regression`` for a task the spec left unbounded
    # (so no task is blessed whatever it scores); the report marks it as a default.
    default: bool = False

    def describe(self, higher_is_better: bool) -> str:
        verb = "fall" if higher_is_better else "rise"
        amount = f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"
        return f"may {verb} by at most {amount} vs the baseline"


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    threshold: Threshold | None = None
    max_regression: MaxRegression | None = None
    # ``max_regression: none`` with a reason: the spec relaxes the default change bound.
    unbounded_reason: str | None = None
    k: int | None = None  # top_k_accuracy: the label is among the k most probable classes
    # Multiclass precision/recall (``class`` in the spec): one class of the label, as its
    # column holds it (the label vocabulary's entry).
    label_class: str | None = None

    def definition(self, task_type: str) -> MetricDef:
        return METRICS[task_type][self.name]

    @property
    def key(self) -> str:
        """The metric's name in results and reports (:func:`metric_key`)."""
        return metric_key(self.name, self.k, self.label_class)

    def tfma_name(self, task_type: str) -> str:
        """The name of its value in TFMA's results."""
        return self.key if self.key != self.name else self.definition(task_type).tfma_name


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    type: str
    label: str  # label text: a column or an expression (see label_expr)
    loss: str
    metrics: tuple[Metric, ...]
    role: str = "primary"
    weight: float = 1.0  # static loss weight
    huber_delta: float = 1.0  # only for loss: huber, in standardized units
    standardize: bool = True  # regression: learn in z-units, serve in label units
    # Class weights of the training loss (docs/task_spec.md#class-weights): binary
    # ``pos_weight`` (a number or BALANCED), multiclass ``class_weights`` ((class, weight)
    # pairs, classes as written in the label column, or BALANCED); None: unweighted.
    pos_weight: float | str | None = None
    class_weights: tuple[tuple[str, float], ...] | str | None = None

    def __post_init__(self):
        if isinstance(self.class_weights, (list, tuple)):  # from JSON: lists of pairs
            object.__setattr__(self, "class_weights",
                               tuple((str(c), float(w)) for c, w in self.class_weights))

    @property
    def label_expr(self) -> label_expr.LabelExpr:
        return label_expr.parse(self.label)

    @property
    def label_columns(self) -> tuple[str, ...]:
        return self.label_expr.columns


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How a run is judged: the blessing policy, the baselines and the TFMA slices."""

    policy: str = "all"  # one of POLICIES
    baselines: str = "train"  # one of BASELINES
    # Each slice is a tuple of columns: one column, or several for a feature cross.
    slices: tuple[tuple[str, ...], ...] = ()
    # The data is refused when more than this fraction of the examples has a NaN or
    # infinite value in a column a task's label reads (SchemaGate; docs/task_spec.md).
    max_non_finite_labels: float = 0.01
    # How a change bound (max_regression) reads the paired interval (tfx_mtl.comparison):
    # "significant" refuses when the whole interval is beyond the bound, "strict" when
    # the point estimate is.
    reading: str = "significant"  # one of READINGS
    confidence: float = 0.95  # of the interval of each change and of Δm
    bootstrap_samples: int = 2000
    seeds: int = 1  # the multi-task model and every baseline are trained with this many
    # The change bound a task gets on its first metric when the spec sets none.
    default_max_regression: MaxRegression = MaxRegression(0.01, relative=True)

    def must_bless(self, task: Task) -> bool:
        """Whether the push waits for this task's blessing under the policy."""
        return self.policy == "all" or task.role == "primary"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How ExampleGen reads the data: hash buckets per split, in naming.SPLITS order (a
    pre-split input, a directory per split, is used as given), and the CSV cells that
    mean "missing" besides the empty one (``missing_values``, e.g. ``('NA', '?')``:
    ExampleGen reads such a cell as an empty one, docs/task_spec.md)."""

    splits: tuple[tuple[str, int], ...] = ((naming.TRAIN, 8), (naming.VALIDATION, 1),
                                           (naming.TEST, 1))
    missing_values: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    features: tuple[Feature, ...]
    tasks: tuple[Task, ...]
    schema: str | None = None  # curated schema (absolute path) or None: infer
    source: str = "<dict>"
    evaluation: Evaluation = Evaluation()
    trainer: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # TrainerConfig fields
    data: DataConfig = DataConfig()

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def column_keys(self) -> dict[str, str]:
        """Each feature's column -> its safe key (:mod:`tfx_mtl.column_keys`), from which
        its Transform output, vocabulary and Keras input are named."""
        return column_keys.column_keys(self.feature_names)

    @property
    def feature_keys(self) -> tuple[str, ...]:
        """The Transform output (model input) key of each feature, in spec order."""
        keys = self.column_keys
        return tuple(naming.feature_key(keys[name]) for name in self.feature_names)

    @property
    def label_columns(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for task in self.tasks:
            seen.update(dict.fromkeys(task.label_columns))
        return tuple(seen)

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r} in spec {self.name!r} (tasks: {', '.join(self.task_names)})")

    def restricted_to(self, names: str | Iterable[str]) -> "TaskSpec":
        """The same spec with only the tasks ``names``, in spec order (e.g. a single-task
        baseline). The rest of the spec is kept; a lone auxiliary task is allowed."""
        wanted = [names] if isinstance(names, str) else list(names)
        if not wanted:
            raise ValueError("names: give at least one task to keep")
        for name in wanted:
            if name not in self.task_names:
                raise ValueError(f"names: {name!r} is not a task of spec {self.name!r} "
                                 f"(tasks: {', '.join(self.task_names)})")
        return dataclasses.replace(self, tasks=tuple(t for t in self.tasks if t.name in wanted))

    def training_view(self) -> "TaskSpec":
        """What Transform and the Trainers need: no evaluation section, no bounds, no
        paths (the schema reaches them as an artifact). Their cache keys on it, so
        changing how runs are judged (policy, slices, bounds) or moving the spec
        file does not retrain anything, and a compiled pipeline names no local file."""
        tasks = tuple(dataclasses.replace(t, metrics=tuple(
            Metric(m.name, k=m.k, label_class=m.label_class) for m in t.metrics))
                      for t in self.tasks)
        return dataclasses.replace(self, tasks=tasks, evaluation=Evaluation(), schema=None,
                                   source=self.name, trainer={}, data=DataConfig())

    def transform_view(self) -> "TaskSpec":
        """The training view without what only the Trainers read (class weights), so
        reweighting a class retrains without re-running Transform."""
        view = self.training_view()
        return dataclasses.replace(view, tasks=tuple(
            dataclasses.replace(t, pos_weight=None, class_weights=None) for t in view.tasks))

    def judging_view(self) -> "TaskSpec":
        """What the blessing gate needs: the tasks and how they are judged, no paths."""
        return dataclasses.replace(self, schema=None, source=self.name, trainer={},
                                   data=DataConfig())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, e.g. for a TFX component's ``custom_config``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TaskSpec":
        """Inverse of :meth:`to_dict` (the data is assumed already validated)."""
        return cls(
            name=data["name"],
            features=tuple(Feature(**f) for f in data["features"]),
            tasks=tuple(
                Task(**{**t, "metrics": tuple(
                    Metric(m["name"], Threshold(**m["threshold"]) if m["threshold"] else None,
                           MaxRegression(**m["max_regression"])
                           if m.get("max_regression") else None,
                           m.get("unbounded_reason"), m.get("k"), m.get("label_class"))
                    for m in t["metrics"])})
                for t in data["tasks"]),
            schema=data.get("schema"),
            source=data.get("source", "<dict>"),
            evaluation=_evaluation_from_dict(data.get("evaluation")),
            trainer=dict(data.get("trainer") or {}),
            data=DataConfig(tuple((name, buckets) for name, buckets in data["data"]["splits"]),
                            tuple(data["data"].get("missing_values", ())))
            if data.get("data") else DataConfig(),
        )


def _evaluation_from_dict(data: Mapping[str, Any] | None) -> Evaluation:
    if not data:
        return Evaluation()
    defaults = Evaluation()
    fields = {f.name: data[f.name] for f in dataclasses.fields(Evaluation) if f.name in data}
    fields["slices"] = tuple(tuple(s) for s in fields.get("slices", ()))
    if "default_max_regression" in fields:
        fields["default_max_regression"] = MaxRegression(**fields["default_max_regression"])
    return dataclasses.replace(defaults, **fields)


def load(path: str | os.PathLike, columns: Iterable[str] | None = None) -> TaskSpec:
    """Reads and validates a spec file; ``columns`` are the data's columns, if known."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise TaskSpecError(path, [("<file>", f"cannot read: {e.strerror}")]) from None
    except yaml.YAMLError as e:
        raise TaskSpecError(path, [("<file>", f"not valid YAML: {e}")]) from None
    return parse(data, source=path, base_dir=os.path.dirname(os.path.abspath(path)),
                 columns=columns)


def parse(data: Any, source: str = "<dict>", base_dir: str | None = None,
          columns: Iterable[str] | None = None) -> TaskSpec:
    """Validates raw spec data (as loaded from YAML) into a :class:`TaskSpec`."""
    problems: list[tuple[str, str]] = []
    if not isinstance(data, Mapping):
        raise TaskSpecError(source, [("<root>", "must be a mapping with 'features' and 'tasks'")])
    _unknown_keys(data, {"name", "schema", "features", "tasks", "evaluation", "trainer", "data"},
                  "", problems)

    name = data.get("name", "tasks")
    _check_spec_name(name, problems)

    schema = data.get("schema")
    if schema is not None:
        if not isinstance(schema, str):
            problems.append(("schema", "must be a path to a schema.pbtxt"))
            schema = None
        else:
            # Relative to the spec's folder; it may climb out of it (a schema shared by
            # several specs): it is only read, like --data, and travels by value.
            schema = os.path.normpath(os.path.join(base_dir or os.getcwd(), schema))
            if not os.path.isfile(schema):
                problems.append(("schema", f"file not found: {schema}"))

    features = _parse_features(data.get("features"), problems)
    tasks = _parse_tasks(data.get("tasks"), problems)
    evaluation = _parse_evaluation(data.get("evaluation"), problems)
    tasks = [_with_default_bound(task, evaluation.default_max_regression) for task in tasks]
    data_config = _parse_data(data.get("data"), problems)
    trainer = data.get("trainer") or {}
    if not isinstance(trainer, Mapping):
        problems.append(("trainer", "must be a mapping of Trainer options (e.g. weighting: "
                                    f"gradnorm, weighting_params: {{alpha: 1.5}}), got {trainer!r}"))

    feature_names = {f.name for f in features}
    for task in tasks:
        for column in _safe_label_columns(task):
            if column in feature_names:
                problems.append((f"tasks.{task.name}.label",
                                 f"column {column!r} is also listed as a feature; "
                                 "label columns must never be model inputs"))
    if columns is not None:
        columns = list(columns)
        known = set(columns)
        for i, feature in enumerate(features):
            if feature.name not in known:
                problems.append((f"features[{i}].name", _unknown_column(feature.name, columns)))
        for task in tasks:
            for column in _safe_label_columns(task):
                if column not in known:
                    problems.append((f"tasks.{task.name}.label",
                                     _unknown_column(column, columns, label=True)))
        for i, slice_columns in enumerate(evaluation.slices):
            for column in slice_columns:
                if column not in known:
                    problems.append((f"evaluation.slices[{i}]", _unknown_column(column, columns)))
    if problems:
        raise TaskSpecError(source, problems)
    return TaskSpec(name=name, features=tuple(features), tasks=tuple(tasks),
                    schema=schema, source=source, evaluation=evaluation, trainer=dict(trainer),
                    data=data_config)


def _unknown_column(column: str, columns: list[str], label: bool = False) -> str:
    hint = ""
    if label and any(not c.isidentifier() for c in columns):
        hint = ("; in a label expression, quote a column whose name is not a plain name in "
                "backticks, e.g. `marital-status` == 'Never-married'")
    return f"unknown column {column!r} (the data has: {', '.join(columns)}){hint}"


def _safe_label_columns(task: Task) -> tuple[str, ...]:
    try:
        return task.label_columns
    except label_expr.LabelExprError:
        return ()  # already reported


def _unknown_keys(entry: Mapping, allowed: set[str], where: str,
                  problems: list[tuple[str, str]]) -> None:
    for key in entry:
        if key not in allowed:
            problems.append((f"{where}{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})"))


def _check_spec_name(name: Any, problems: list[tuple[str, str]]) -> None:
    """The spec names the pipeline (naming.pipeline_name), which names the folder Pusher
    writes to and the MLMD contexts: a task-like name, short enough for TFX and Kubeflow."""
    if (not isinstance(name, str) or not _NAME_RE.match(name)
            or len(name) > naming.MAX_SPEC_NAME_LENGTH):
        problems.append(("name", f"{name!r} is not a valid spec name (lower-case letters and "
                                 "digits in words joined by single underscores, at most "
                                 f"{naming.MAX_SPEC_NAME_LENGTH} characters)"))


def _check_column(value: Any, field: str, problems: list[tuple[str, str]]) -> bool:
    """A column is named as the data's header writes it: any non-empty text."""
    if not isinstance(value, str) or not value:
        problems.append((field, f"{value!r} is not a column name (the column's name as the "
                                "data's header writes it)"))
        return False
    return True


def _positive_int(entry: Mapping, key: str, default: int, field: str,
                  problems: list[tuple[str, str]]) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append((f"{field}.{key}", f"must be a positive integer, got {value!r}"))
        return default
    return value


def _parse_features(raw: Any, problems: list[tuple[str, str]]) -> list[Feature]:
    if not isinstance(raw, list) or not raw:
        problems.append(("features", "must be a non-empty list of {name, kind}"))
        return []
    features, seen = [], set()
    for i, entry in enumerate(raw):
        field = f"features[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry, "kind": "numeric"}
        if not isinstance(entry, Mapping):
            problems.append((field, "must be a mapping with name and kind"))
            continue
        _unknown_keys(entry, {f.name for f in dataclasses.fields(Feature)}, f"{field}.", problems)
        name = entry.get("name")
        if not _check_column(name, f"{field}.name", problems):
            continue
        if name in seen:
            problems.append((f"{field}.name", f"duplicate feature {name!r}"))
            continue
        seen.add(name)
        kind = entry.get("kind", "numeric")
        if kind not in FEATURE_KINDS:
            problems.append((f"{field}.kind",
                             f"unknown kind {kind!r} (one of: {', '.join(FEATURE_KINDS)})"))
            continue
        features.append(Feature(
            name=name, kind=kind,
            buckets=_positive_int(entry, "buckets", 10, field, problems),
            top_k=_positive_int(entry, "top_k", 1000, field, problems),
            oov_buckets=_positive_int(entry, "oov_buckets", 10, field, problems),
            embedding_dim=_positive_int(entry, "embedding_dim", 8, field, problems)))
    return features


def _parse_tasks(raw: Any, problems: list[tuple[str, str]]) -> list[Task]:
    if not isinstance(raw, list) or not raw:
        problems.append(("tasks", "must be a non-empty list of tasks"))
        return []
    tasks: list[Task] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            problems.append((f"tasks[{i}]", "must be a mapping"))
            continue
        name = entry.get("name")
        field = f"tasks.{name}" if isinstance(name, str) and name else f"tasks[{i}]"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problems.append((f"{field}.name",
                             f"{name!r} is not a valid task name (lower-case letters and "
                             "digits in words joined by single underscores)"))
            continue
        if name in _RESERVED_TASK_NAMES:
            problems.append((f"{field}.name", f"{name!r} is reserved for a signature"))
            continue
        if name in seen:
            problems.append((f"{field}.name", f"duplicate task {name!r}"))
            continue
        seen.add(name)
        task = _parse_task(entry, name, field, problems)
        if task is not None:
            tasks.append(task)
    # Only when every task says auxiliary: a task refused for another reason (its type,
    # loss, role or name) may well be the primary one.
    if all(isinstance(entry, Mapping) and entry.get("role") == "auxiliary" for entry in raw):
        problems.append(("tasks", "at least one task must have role: primary"))
    return tasks


def _parse_task(entry: Mapping, name: str, field: str,
                problems: list[tuple[str, str]]) -> Task | None:
    allowed = {f.name for f in dataclasses.fields(Task)}
    _unknown_keys(entry, allowed, f"{field}.", problems)
    before = len(problems)
    task_type = entry.get("type")
    if task_type not in TASK_TYPES:
        problems.append((f"{field}.type",
                         f"unknown task type {task_type!r} (one of: {', '.join(TASK_TYPES)})"))
        return None

    label = entry.get("label")
    if isinstance(label, (int, float)) or label is None:
        problems.append((f"{field}.label", "is required: a column name or an expression"))
    else:
        try:
            expr = label_expr.parse(label)
        except label_expr.LabelExprError as e:
            problems.append((f"{field}.label", e.message))
        else:
            if task_type == "multiclass" and expr.kind != "column":
                problems.append((f"{field}.label", "a multiclass label must be a single column"))
            if task_type == "regression" and expr.kind == "bool":
                problems.append((f"{field}.label",
                                 "a regression label must be a column or an arithmetic expression"))
            if task_type == "binary" and expr.kind == "number":
                problems.append((f"{field}.label",
                                 "a binary label must be a column (0/1) or a comparison"))

    loss = entry.get("loss", LOSSES[task_type][0])
    if loss not in LOSSES[task_type]:
        problems.append((f"{field}.loss", f"unknown loss {loss!r} for a {task_type} task "
                         f"(one of: {', '.join(LOSSES[task_type])})"))

    role = entry.get("role", "primary")
    if role not in ROLES:
        problems.append((f"{field}.role", f"must be one of: {', '.join(ROLES)}; got {role!r}"))

    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        problems.append((f"{field}.weight", f"must be a non-negative number, got {weight!r}"))
    huber_delta = entry.get("huber_delta", 1.0)
    if isinstance(huber_delta, bool) or not isinstance(huber_delta, (int, float)) or huber_delta <= 0:
        problems.append((f"{field}.huber_delta", f"must be a positive number, got {huber_delta!r}"))
    standardize = entry.get("standardize", True)
    if not isinstance(standardize, bool):
        problems.append((f"{field}.standardize", f"must be true or false, got {standardize!r}"))

    pos_weight, class_weights = _parse_class_weights(entry, task_type, field, problems)
    metrics = _parse_metrics(entry.get("metrics"), task_type, f"{field}.metrics", problems)
    if len(problems) > before:
        return None
    return Task(name=name, type=task_type, label=label_expr.parse(label).text, loss=loss,
                metrics=tuple(metrics), role=role, weight=float(weight),
                huber_delta=float(huber_delta), standardize=standardize,
                pos_weight=pos_weight, class_weights=class_weights)


def _parse_class_weights(entry: Mapping, task_type: str, field: str,
                         problems: list[tuple[str, str]]
                         ) -> tuple[float | str | None, tuple[tuple[str, float], ...] | str | None]:
    """``pos_weight`` (binary) and ``class_weights`` (multiclass): a positive finite number
    per class, or ``balanced``. Whether a named class exists is checked against the
    train split's classes when they are known (the Trainer: models/class_weights.py)."""
    owner = {"pos_weight": "binary", "class_weights": "multiclass"}
    for key, wanted in owner.items():
        if key in entry and task_type != wanted:
            hint = {"binary": " (use pos_weight)", "multiclass": " (use class_weights)"}
            problems.append((f"{field}.{key}", f"only a {wanted} task takes {key}; this task "
                             f"is {task_type}{hint.get(task_type, '')}"))
    pos_weight = entry.get("pos_weight")
    if task_type != "binary" or pos_weight is None or pos_weight == BALANCED:
        pos_weight = pos_weight if task_type == "binary" else None
    elif not _positive_finite(pos_weight):
        problems.append((f"{field}.pos_weight", "must be a positive finite number (the "
                         f"weight of a positive example) or {BALANCED!r}, got {pos_weight!r}"))
        pos_weight = None
    else:
        pos_weight = float(pos_weight)
    raw = entry.get("class_weights")
    if task_type != "multiclass" or raw is None or raw == BALANCED:
        return pos_weight, raw if task_type == "multiclass" else None
    if not isinstance(raw, Mapping) or not raw:
        problems.append((f"{field}.class_weights", "must map classes (as written in the label "
                         f"column) to weights, e.g. {{Adelie: 2.0}}, or be {BALANCED!r}; got "
                         f"{raw!r}"))
        return pos_weight, None
    weights = []
    for cls, weight in raw.items():
        where = f"{field}.class_weights.{cls}"
        if isinstance(cls, bool) or not isinstance(cls, (str, int)) or str(cls) == "":
            problems.append((where, "a class must be a value of the label column (a string "
                                    f"or an integer), got {cls!r}"))
        elif not _positive_finite(weight):
            problems.append((where, f"must be a positive finite number, got {weight!r}"))
        else:
            weights.append((str(cls), float(weight)))
    return pos_weight, tuple(weights)


def _positive_finite(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value > 0)


def _parse_metrics(raw: Any, task_type: str, field: str,
                   problems: list[tuple[str, str]]) -> list[Metric]:
    known = METRICS[task_type]
    if raw is None:
        return [Metric(next(iter(known)))]
    if not isinstance(raw, list) or not raw:
        problems.append((field, "must be a non-empty list of metrics"))
        return []
    metrics, seen = [], set()
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"name": entry}
        where = f"{field}[{i}]"
        if not isinstance(entry, Mapping):
            problems.append((where, "must be a metric name or {name, lower_bound, upper_bound}"))
            continue
        _unknown_keys(entry, {"name", "lower_bound", "upper_bound", "max_regression", "reason",
                              "k", "class"}, f"{where}.", problems)
        name = entry.get("name")
        if name not in known:
            problems.append((f"{where}.name", f"unknown metric {name!r} for a {task_type} task "
                             f"(one of: {', '.join(known)})"))
            continue
        k, label_class = _metric_params(entry, known[name], task_type, where, problems)
        key = metric_key(name, k, label_class)
        if key in seen:
            problems.append((f"{where}.name", f"duplicate metric {key!r}"))
            continue
        seen.add(key)
        bounds = {}
        for key in ("lower_bound", "upper_bound"):
            value = entry.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append((f"{where}.{key}", f"must be a number, got {value!r}"))
            else:
                bounds[key] = float(value)
        if (bounds.get("lower_bound") is not None and bounds.get("upper_bound") is not None
                and bounds["lower_bound"] > bounds["upper_bound"]):
            problems.append((where, "lower_bound is above upper_bound"))
        reason = entry.get("reason")
        if entry.get("max_regression") == _NO_BOUND:
            max_regression = None
            if not isinstance(reason, str) or not reason.strip():
                problems.append((f"{where}.reason", "max_regression: none needs a reason (why "
                                 "this task may be worse than its baseline), e.g. reason: "
                                 "informational auxiliary task"))
                reason = None
        else:
            max_regression = _parse_max_regression(entry.get("max_regression"),
                                                   f"{where}.max_regression", problems)
            if reason is not None:
                problems.append((f"{where}.reason", "only goes with max_regression: none"))
                reason = None
        metrics.append(Metric(name, Threshold(**bounds) if bounds else None, max_regression,
                              reason.strip() if reason else None, k, label_class))
    return metrics


def _metric_params(entry: Mapping, definition: MetricDef, task_type: str, where: str,
                   problems: list[tuple[str, str]]) -> tuple[int | None, str | None]:
    """``k`` (top_k_accuracy, default :data:`DEFAULT_TOP_K`) and ``class`` (multiclass
    precision/recall: required, a class of the label as its column holds it)."""
    name = entry["name"]
    for param in ("k", "class"):
        if param in entry and param not in definition.params:
            problems.append((f"{where}.{param}", f"{name!r} of a {task_type} task takes no "
                                                 f"{param!r}"))
    k = label_class = None
    if "k" in definition.params:
        k = entry.get("k", DEFAULT_TOP_K)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            problems.append((f"{where}.k", f"must be a positive integer, got {k!r}"))
            k = DEFAULT_TOP_K
    if "class" in definition.params:
        label_class = entry.get("class")
        if isinstance(label_class, int) and not isinstance(label_class, bool):
            label_class = str(label_class)  # an integer column's vocabulary entry
        if not isinstance(label_class, str) or not label_class:
            problems.append((f"{where}.class", f"{name!r} of a multiclass task is per class: "
                             "name one class of the label as its column holds it, e.g. "
                             f"{{name: {name}, class: 'Adelie'}}; got {label_class!r}"))
            label_class = None
    return k, label_class


_NO_BOUND = "none"


def _with_default_bound(task: Task, default: MaxRegression) -> Task:
    """``task`` with the default change bound on its first metric when the spec sets no
    change bound on any of its metrics and does not relax it (``max_regression: none``)."""
    if any(m.max_regression or m.unbounded_reason for m in task.metrics):
        return task
    first, *rest = task.metrics
    bound = dataclasses.replace(default, default=True)
    return dataclasses.replace(task, metrics=(dataclasses.replace(first, max_regression=bound),
                                              *rest))


_PERCENT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*%\s*$")


def _parse_max_regression(raw: Any, field: str,
                          problems: list[tuple[str, str]]) -> MaxRegression | None:
    """A non-negative number (metric units) or a percentage string such as ``1%``."""
    if raw is None:
        return None
    if isinstance(raw, str):
        match = _PERCENT_RE.match(raw)
        if match:
            return MaxRegression(float(match.group(1)) / 100, relative=True)
    elif not isinstance(raw, bool) and isinstance(raw, (int, float)) and raw >= 0:
        return MaxRegression(float(raw))
    problems.append((field, "must be a non-negative number (in the metric's units) or a "
                            f"percentage of the baseline such as '1%', got {raw!r}"))
    return None


def _parse_data(raw: Any, problems: list[tuple[str, str]]) -> DataConfig:
    """``data: {splits: {train: 8, validation: 1, test: 1}, missing_values: [NA, '?']}``:
    hash buckets per split, and the cells that mean missing besides the empty one."""
    if raw is None:
        return DataConfig()
    if not isinstance(raw, Mapping):
        problems.append(("data", "must be a mapping, e.g. {splits: {train: 8, validation: 1, "
                                 "test: 1}, missing_values: [NA]}"))
        return DataConfig()
    _unknown_keys(raw, {"splits", "missing_values"}, "data.", problems)
    missing_values = _parse_missing_values(raw.get("missing_values"), problems)
    splits = raw.get("splits")
    if splits is None:
        return DataConfig(missing_values=missing_values)
    if not isinstance(splits, Mapping) or set(splits) != set(naming.SPLITS):
        problems.append(("data.splits", "must give the hash buckets of exactly these splits: "
                                        f"{', '.join(naming.SPLITS)}; got {splits!r}"))
        return DataConfig(missing_values=missing_values)
    buckets = []
    for name in naming.SPLITS:
        buckets.append((name, _positive_int(splits, name, 1, "data.splits", problems)))
    return DataConfig(tuple(buckets), missing_values)


def _parse_missing_values(raw: Any, problems: list[tuple[str, str]]) -> tuple[str, ...]:
    """A list of cell texts (an empty cell is always missing). YAML reads an unquoted
    ``NA`` as text but ``-1`` as a number, so numbers are taken as the text they read as;
    ``true``/``null`` are refused (YAML's reading of ``yes``, ``~``: quote them)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(("data.missing_values", "must be a list of the cell texts that mean "
                                                f"missing, e.g. [NA, '?'], got {raw!r}"))
        return ()
    tokens: list[str] = []
    for i, token in enumerate(raw):
        if isinstance(token, (int, float)) and not isinstance(token, bool):
            token = str(token)
        if not isinstance(token, str) or not token:
            problems.append((f"data.missing_values[{i}]", "must be the non-empty text of a "
                             f"cell (quote it in YAML, e.g. 'NA', '?'), got {token!r}"))
        elif token not in tokens:
            tokens.append(token)
    return tuple(tokens)


def _parse_evaluation(raw: Any, problems: list[tuple[str, str]]) -> Evaluation:
    if raw is None:
        return Evaluation()
    if not isinstance(raw, Mapping):
        problems.append(("evaluation", "must be a mapping with policy, baselines and slices"))
        return Evaluation()
    _unknown_keys(raw, {f.name for f in dataclasses.fields(Evaluation)}, "evaluation.",
                  problems)
    policy = raw.get("policy", "all")
    if policy not in POLICIES:
        problems.append(("evaluation.policy", f"must be one of: {', '.join(POLICIES)}; "
                                              f"got {policy!r}"))
        policy = "all"
    baselines = raw.get("baselines", "train")
    if baselines not in BASELINES:
        problems.append(("evaluation.baselines", f"must be one of: {', '.join(BASELINES)}; "
                                                 f"got {baselines!r}"))
        baselines = "train"
    raw_slices = raw.get("slices", [])
    if not isinstance(raw_slices, list):
        problems.append(("evaluation.slices", "must be a list of columns (or lists of columns "
                                              f"for a cross), got {raw_slices!r}"))
        raw_slices = []
    slices: list[tuple[str, ...]] = []
    for i, entry in enumerate(raw_slices):
        columns = [entry] if isinstance(entry, str) else entry
        if (not isinstance(columns, list) or not columns
                or not all(isinstance(c, str) and c for c in columns)):
            problems.append((f"evaluation.slices[{i}]",
                             f"must be a column name or a list of column names, got {entry!r}"))
        elif not all(_check_column(c, f"evaluation.slices[{i}]", problems) for c in columns):
            continue
        elif len(set(columns)) != len(columns):
            problems.append((f"evaluation.slices[{i}]", f"repeats a column: {entry!r}"))
        elif tuple(columns) in slices:
            problems.append((f"evaluation.slices[{i}]", f"duplicate slice {entry!r}"))
        else:
            slices.append(tuple(columns))
    defaults = Evaluation()
    reading = raw.get("reading", defaults.reading)
    if reading not in READINGS:
        problems.append(("evaluation.reading", f"must be one of: {', '.join(READINGS)}; "
                                               f"got {reading!r}"))
        reading = defaults.reading
    confidence = raw.get("confidence", defaults.confidence)
    if (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
            or not 0.5 <= confidence < 1):
        problems.append(("evaluation.confidence", "must be a number from 0.5 to below 1 (e.g. "
                                                  f"0.95 for a 95% interval), got {confidence!r}"))
        confidence = defaults.confidence
    samples = _positive_int(raw, "bootstrap_samples", defaults.bootstrap_samples, "evaluation",
                            problems)
    if samples < MIN_BOOTSTRAP_SAMPLES:
        problems.append(("evaluation.bootstrap_samples",
                         f"must be at least {MIN_BOOTSTRAP_SAMPLES} for a percentile interval, "
                         f"got {samples}"))
        samples = defaults.bootstrap_samples
    default_bound = defaults.default_max_regression
    if "default_max_regression" in raw:
        default_bound = _parse_max_regression(raw["default_max_regression"],
                                              "evaluation.default_max_regression",
                                              problems) or default_bound
    return Evaluation(policy=policy, baselines=baselines, slices=tuple(slices),
                      max_non_finite_labels=_parse_fraction(
                          raw.get("max_non_finite_labels", Evaluation.max_non_finite_labels),
                          "evaluation.max_non_finite_labels", problems),
                      reading=reading, confidence=float(confidence), bootstrap_samples=samples,
                      seeds=_positive_int(raw, "seeds", defaults.seeds, "evaluation", problems),
                      default_max_regression=default_bound)


def _parse_fraction(raw: Any, field: str, problems: list[tuple[str, str]]) -> float:
    """A fraction in [0, 1], or a percentage string such as ``1%``."""
    match = _PERCENT_RE.match(raw) if isinstance(raw, str) else None
    value = float(match.group(1)) / 100 if match else raw
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        problems.append((field, f"must be a fraction from 0 to 1 or a percentage such as "
                                f"'1%', got {raw!r}"))
        return 0.0
    return float(value)
