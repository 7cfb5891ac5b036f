"""The one naming convention for transformed features, labels and model outputs.

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
