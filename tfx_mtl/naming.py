"""The one naming convention: features, labels, model outputs, pipeline nodes and records.

Transformed (Transform output) keys:
  ``<feature>_xf``          a model input derived from raw column ``<feature>``
  ``<task>__label``         the task's label (0 where the label is missing)
  ``<task>__mask``          1.0 where the example has a label for the task, else 0.0
  ``<task>__label_mean``    regression only: mean of the labelled values (a constant)
  ``<task>__label_std``     regression only: their standard deviation (a constant)

Model outputs, per task type (a task's own signature uses the bare names;
``serving_default`` prefixes each with ``<task>_``, e.g. ``big_tipper_probability``):
  binary:      ``probability`` (P(label = 1), float32 [batch]) and
               ``class_id`` (0/1 at threshold 0.5, int64 [batch])
  multiclass:  ``probabilities`` (float32 [batch, K]), ``class_id`` (int64 [batch])
               and ``class`` (the class value as a string, [batch])
  regression:  ``value`` (float32 [batch], in the label's own units)

Signature names: ``serving_default``, one per task (the task's name),
``transform_features`` and, per task, ``<task>__evaluation`` (both for TFMA);
task names may not take the reserved ones, nor contain ``__``, so none of
these keys can collide with a task's.
"""
from __future__ import annotations

OUTPUTS = {
    "binary": ("probability", "class_id"),
    "multiclass": ("probabilities", "class_id", "class"),
    "regression": ("value",),
}
# The output TFMA scores for each task type.
SCORED_OUTPUT = {"binary": "probability", "multiclass": "probabilities", "regression": "value"}

SERVING_DEFAULT = "serving_default"
TRANSFORM_FEATURES = "transform_features"
EXAMPLES_INPUT = "examples"


def evaluation_signature(task: str) -> str:
    """What TFMA scores for ``task``: its SCORED_OUTPUT, as the signature's one output.

    One single-output signature per task, not one keyed by task: TFMA 0.52 unwraps
    a one-output model's predictions, so a multi-task model and a single-task
    baseline compare alike only when both are scored through one output.
    """
    return f"{task}__evaluation"


def labelled_evaluation_signature(task: str) -> str:
    """``evaluation_signature``'s output plus the task's label and mask (``label_key``,
    ``mask_key``): one pass of the Transform graph gives TFMA all three."""
    return f"{evaluation_signature(task)}_labelled"


def evaluation_task(signature: str) -> str:
    """The task an ``evaluation_signature`` scores."""
    return signature.removesuffix("__evaluation")


def feature_key(feature: str) -> str:
    return f"{feature}_xf"


def label_key(task: str) -> str:
    return f"{task}__label"


def mask_key(task: str) -> str:
    return f"{task}__mask"


def label_mean_key(task: str) -> str:
    return f"{task}__label_mean"


def label_std_key(task: str) -> str:
    return f"{task}__label_std"


def feature_vocab_name(feature: str) -> str:
    return f"{feature}_vocab"


def label_vocab_name(task: str) -> str:
    return f"{task}__label_vocab"


def output_key(task: str, output: str) -> str:
    """The key of a task's output in ``serving_default``."""
    return f"{task}_{output}"


# -- the pipeline and its records ----------------------------------------------
# Node ids of the DAG (pipeline/pipeline.py), as ML Metadata records them. TFX names a
# component by its class unless it is given an id; the ones that repeat per task get one.
# ExampleGen by data format (tfx_mtl.data.FORMATS): TFX's CsvExampleGen reads CSV,
# its ImportExampleGen TFRecord files of tf.Example.
EXAMPLE_GEN = {"csv": "CsvExampleGen", "tfrecord": "ImportExampleGen"}
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
CURATED_SCHEMA_GEN = "CuratedSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
SCHEMA_GATE = "SchemaGate"
TRAINER = "Trainer"
BLESSING_GATE = "BlessingGate"
PUSHER = "Pusher"  # TFX's Pusher kept this id; AtomicPusher keeps it too
# A push in progress, beside the versions: TF Serving takes only all-digit names as versions.
PUSH_TEMP_PREFIX = ".push-"
MODEL_COMPARISON = "ModelComparison"
_BASELINE_PREFIX = "baseline_"
_SEED_SUFFIX = "__seed"


_PIPELINE_PREFIX = "tfx-mtl-"
# TFX refuses a pipeline name over 63 characters (Argo's workflow names, MySQL's
# database names): tfx/orchestration/pipeline.py, _MAX_PIPELINE_NAME_LENGTH. Kubeflow
# v2 wants [a-z0-9][a-z0-9-]{0,127} (tfx/orchestration/kubeflow/v2/pipeline_builder.py),
# which a spec name of task-name form (task_spec) meets once its underscores are dashes.
MAX_PIPELINE_NAME_LENGTH = 63
MAX_SPEC_NAME_LENGTH = MAX_PIPELINE_NAME_LENGTH - len(_PIPELINE_PREFIX)


def pipeline_name(spec_name: str) -> str:
    """The pipeline of a spec: ``tfx-mtl-<spec name>`` (dashes, as Kubeflow wants).

    It is also a folder name (the local run's ``serving_model/<pipeline>``), so the spec
    name is checked when the spec loads (task_spec) to be one safe path segment.
    """
    return f"{_PIPELINE_PREFIX}{spec_name}".replace("_", "-")


def _seeded(node: str, seed_index: int) -> str:
    # Seed 0 keeps the plain id, so a run with more seeds reuses a one-seed run's cached
    # Trainers; ``__`` cannot occur in a task name, so the suffix is never ambiguous.
    if seed_index < 0:
        raise ValueError(f"seed_index must be >= 0, got {seed_index}")
    return f"{node}{_SEED_SUFFIX}{seed_index}" if seed_index else node


def trainer_node(seed_index: int = 0) -> str:
    """The id of the multi-task Trainer of seed ``seed_index`` (0: ``Trainer``)."""
    return _seeded(TRAINER, seed_index)


def baseline_node(task: str, seed_index: int = 0) -> str:
    """The id of ``task``'s single-task baseline Trainer of seed ``seed_index``."""
    return _seeded(f"{_BASELINE_PREFIX}{task}", seed_index)


def seed_index(node: str) -> int:
    """The seed index a Trainer's node id carries (0 for the plain id)."""
    base, sep, index = node.rpartition(_SEED_SUFFIX)
    return int(index) if sep and base and index.isdigit() else 0


def _unseeded(node: str) -> str:
    base, sep, index = node.rpartition(_SEED_SUFFIX)
    return base if sep and base and index.isdigit() else node


def baseline_task(node: str) -> str | None:
    """The task of a baseline Trainer's node id (any seed); None for any other node."""
    node = _unseeded(node)
    return node[len(_BASELINE_PREFIX):] if node.startswith(_BASELINE_PREFIX) else None


def latest_baseline_node(task: str, seed_index: int = 0) -> str:
    """The id of the resolver that finds ``task``'s latest baseline (``baselines: reuse``)."""
    return f"latest_{baseline_node(task, seed_index)}"


def evaluator_node(task: str) -> str:
    """The id of ``task``'s Evaluator (multi-task model vs that task's baseline)."""
    return f"evaluate_{task}"


# ExampleGen's splits: Trainers fit on train and select on validation; only the
# Evaluators and ModelComparison read test (docs/pipeline.md).
TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
SPLITS = (TRAIN, VALIDATION, TEST)

# The two models each Evaluator compares (TFMA model names).
CANDIDATE = "candidate"
BASELINE = "baseline"

# The blessing gate's report: its artifact type (``<namespace>.<Type>``, the form
# Kubeflow Pipelines v2 requires of a custom type) and the file inside it.
TRANSFER_REPORT_TYPE = "tfx_mtl.TransferReport"
TRANSFER_REPORT_FILE = "transfer_report.json"
# SchemaGate's count of each task's label values (NaN, inf; components/data_checks.py).
LABEL_REPORT_TYPE = "tfx_mtl.LabelReport"
LABEL_REPORT_FILE = "label_report.json"
# ModelComparison's paired comparison of every task on the test split (tfx_mtl.comparison).
MODEL_COMPARISON_TYPE = "tfx_mtl.ModelComparison"
MODEL_COMPARISON_FILE = "comparison.json"
# Each Trainer's account of its training (models/loop.py), in its ModelRun artifact.
TRAINING_REPORT_FILE = "training_report.json"
