"""ModelComparison: every model's predictions on the test split, compared by
:mod:`tfx_mtl.comparison` into paired intervals and Δm (``comparison.json``).

A TFX Evaluator compares two models; this component sees them all at once: the
multi-task model of each training seed and each task's single-task baseline of
each seed, scored on the same test examples in the same order, so one bootstrap
resample of the examples is shared by every model and task (the interval of
each change is paired, and Δm gets one joint interval).

It scores the models as TFMA does (``pipeline/eval_config.py``): serialized raw
examples go to the ``transform_features`` signature, whose ``<task>__label`` is
the label and ``<task>__mask`` the example weight, and to each model's
``<task>__evaluation`` signature, whose one output is the task's score. Every
model shares the one Transform graph, so labels and masks are read once, from
the first seed's multi-task model. Examples are read in batches and the models
one at a time, so memory holds one model and the predictions, not the data.

It reads only the examples' ``test`` split (:data:`tfx_mtl.naming.TEST`). The file
is strict JSON: a NaN or infinite value (e.g. an interval end undefined in some
resample) is ``null``, its reason under ``not_finite`` (:mod:`tfx_mtl.finite`).

The inputs depend on the spec's tasks and the number of seeds, so the
component spec is made per pipeline (:func:`_spec_class`), as BlessingGate's.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from tfx_mtl import comparison, finite, metric_formulas, naming
from tfx_mtl.task_spec import TaskSpec

BATCH_SIZE = 1024  # examples per call of a signature


class ModelComparisonResult(types.Artifact):
    """The paired comparison of every task on the test split (``comparison.json``).

    Named ``<namespace>.<Type>``, the form Kubeflow Pipelines v2 requires of a
    custom artifact type's schema title."""

    TYPE_NAME = naming.MODEL_COMPARISON_TYPE


def candidate_key(seed_index: int) -> str:
    """The input of the multi-task model trained with seed ``seed_index``."""
    return f"model_{seed_index}"


def baseline_key(task: str, seed_index: int) -> str:
    """The input of ``task``'s baseline of seed ``seed_index`` (``__``: no task has it)."""
    return f"{task}__baseline_{seed_index}"


def gated_metric(task) -> str:
    """The metric a task's change verdict and Δm use: its first with a change bound,
    else its first."""
    return next((m.key for m in task.metrics if m.max_regression is not None),
                task.metrics[0].key)


def split_files(examples: Sequence[types.Artifact]) -> list[str]:
    """The test split's files, in a fixed order (so every pass reads the same order)."""
    for artifact in examples:
        splits = artifact_utils.decode_split_names(artifact.split_names)
        if naming.TEST not in splits:
            raise ValueError(f"the examples {artifact.uri} have no {naming.TEST!r} split "
                             f"(splits: {', '.join(splits)}); the comparison reads only it")
    (uri,) = artifact_utils.get_split_uris(list(examples), naming.TEST)
    files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
    if not files:
        raise ValueError(f"the examples' {naming.TEST!r} split has no file in {uri}")
    return files


def _batches(files: Sequence[str], batch_size: int) -> Iterator[tf.Tensor]:
    yield from tf.data.TFRecordDataset(list(files), compression_type="GZIP").batch(batch_size)


def _load(model: types.Artifact):
    return tf.saved_model.load(path_utils.serving_model_path(model.uri))


def _scores(model: types.Artifact, tasks: Sequence[str], files: Sequence[str],
            batch_size: int) -> dict[str, np.ndarray]:
    """Each task's ``<task>__evaluation`` output over the files: [n] or [n, classes]."""
    loaded = _load(model)
    missing = [t for t in tasks if naming.evaluation_signature(t) not in loaded.signatures]
    if missing:
        raise ValueError(f"model {model.uri} has no signature "
                         f"{', '.join(naming.evaluation_signature(t) for t in missing)}")
    parts: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for batch in _batches(files, batch_size):
        for task in tasks:
            (output,) = loaded.signatures[naming.evaluation_signature(task)](
                **{naming.EXAMPLES_INPUT: batch}).values()
            parts[task].append(output.numpy().astype(np.float64))
    return {t: _flat_rows(np.concatenate(p)) for t, p in parts.items()}


def _flat_rows(values: np.ndarray) -> np.ndarray:
    """[n, 1] -> [n]; [n] and [n, classes] as they are."""
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


def _labels_and_masks(model: types.Artifact, tasks: Sequence[str], files: Sequence[str],
                      batch_size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each task's ``<task>__label`` and ``<task>__mask`` from ``transform_features``."""
    transform = _load(model).signatures[naming.TRANSFORM_FEATURES]
    labels: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    masks: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for batch in _batches(files, batch_size):
        features = transform(**{naming.EXAMPLES_INPUT: batch})
        for task in tasks:
            labels[task].append(features[naming.label_key(task)].numpy().reshape(-1))
            masks[task].append(features[naming.mask_key(task)].numpy().reshape(-1))
    return ({t: np.concatenate(v).astype(np.float64) for t, v in labels.items()},
            {t: np.concatenate(v).astype(np.float64) for t, v in masks.items()})


def _column_values(files: Sequence[str], column: str) -> list[str | None]:
    """Each example's raw ``column`` as the label vocabulary writes it (None: absent)."""
    values = []
    for batch in _batches(files, BATCH_SIZE):
        for serialized in batch.numpy():
            feature = tf.train.Example.FromString(serialized).features.feature.get(column)
            kind = feature.WhichOneof("kind") if feature is not None else None
            values.append(metric_formulas.class_name(
                np.asarray(list(getattr(feature, kind).value))) if kind else None)
    return values


def predictions(spec: TaskSpec, examples: Sequence[types.Artifact],
                candidates: Sequence[types.Artifact],
                baselines: Mapping[str, Sequence[types.Artifact]],
                batch_size: int = BATCH_SIZE) -> dict[str, comparison.TaskData]:
    """Per task: label, mask and every model's scores on the test split, in one order.

    ``candidates``: the multi-task model of each seed; ``baselines[task]``: that
    task's baseline of each seed (as many as candidates)."""
    files = split_files(examples)
    tasks = spec.task_names
    labels, masks = _labels_and_masks(candidates[0], tasks, files, batch_size)
    candidate_scores = [_scores(model, tasks, files, batch_size) for model in candidates]
    result = {}
    for task in spec.tasks:
        if len(baselines[task.name]) != len(candidates):
            raise ValueError(f"task {task.name!r}: {len(baselines[task.name])} baselines for "
                             f"{len(candidates)} seeds of the multi-task model")
        baseline_scores = [_scores(model, [task.name], files, batch_size)[task.name]
                           for model in baselines[task.name]]
        classes = {}
        if any(m.label_class is not None for m in task.metrics):
            # Per-class metrics name a class: its id is learnt from the label column, as
            # the Evaluator's metric does (pipeline/tfma_metrics.py).
            classes = metric_formulas.class_ids(_column_values(files, task.label_columns[0]),
                                           labels[task.name], masks[task.name])
        result[task.name] = comparison.TaskData(
            type=task.type, label=labels[task.name], weight=masks[task.name],
            candidate=[scores[task.name] for scores in candidate_scores],
            baseline=baseline_scores, classes=classes)
    return result


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        spec = TaskSpec.from_dict(json.loads(exec_properties["spec"]))
        seeds = json.loads(exec_properties["seeds"])
        candidates = [_one(input_dict, candidate_key(i)) for i in range(len(seeds))]
        baselines = {t: [_one(input_dict, baseline_key(t, i)) for i in range(len(seeds))]
                     for t in spec.task_names}
        data = predictions(spec, input_dict["examples"], candidates, baselines)
        record = comparison.compare(
            data, {t.name: [m.key for m in t.metrics] for t in spec.tasks},
            {t.name: gated_metric(t) for t in spec.tasks}, seeds,
            confidence=float(exec_properties["confidence"]),
            samples=int(exec_properties["samples"]))
        (out,) = output_dict["comparison"]
        with tf.io.gfile.GFile(os.path.join(out.uri, naming.MODEL_COMPARISON_FILE), "w") as f:
            f.write(finite.dumps(strict(record), indent=2) + "\n")


def strict(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as strict JSON: each NaN or infinite value ``null``, and its reason
    under ``not_finite`` by dotted path (``tasks.tipped.metrics.precision.change_low``)."""
    values, reasons = finite.nulled(dict(record))
    return {**values, "not_finite": reasons}


def _one(input_dict: Mapping[str, list[types.Artifact]], key: str) -> types.Artifact:
    (artifact,) = input_dict[key]
    return artifact


class ModelComparisonSpec(ComponentSpec):
    """The fixed part; :func:`_spec_class` adds a model per seed and a baseline per task
    and seed."""

    # seeds: the training seed of each seed index, JSON; code_version: a hash of this
    # component's code, so a change to it is not served from TFX's cache.
    PARAMETERS = {"spec": ExecutionParameter(type=str),
                  "seeds": ExecutionParameter(type=str),
                  "confidence": ExecutionParameter(type=float),
                  "samples": ExecutionParameter(type=int),
                  "code_version": ExecutionParameter(type=str)}
    INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {"comparison": ChannelParameter(type=ModelComparisonResult)}


def _spec_class(task_names: Sequence[str], seed_count: int) -> type[ModelComparisonSpec]:
    inputs = dict(ModelComparisonSpec.INPUTS)
    for i in range(seed_count):
        inputs[candidate_key(i)] = ChannelParameter(type=standard_artifacts.Model)
        for name in task_names:
            inputs[baseline_key(name, i)] = ChannelParameter(type=standard_artifacts.Model)
    return type("ModelComparisonSpec", (ModelComparisonSpec,), {"INPUTS": inputs})


class ModelComparison(base_component.BaseComponent):
    """``ModelComparison(examples, models=[ch per seed], baselines={task: [ch per seed]},
    spec=spec, seeds=[seed per seed index], code_version=...)``, under the id
    :data:`tfx_mtl.naming.MODEL_COMPARISON`. ``spec`` is the judging view of the
    trained spec; its evaluation section gives the confidence and the samples."""

    SPEC_CLASS = ModelComparisonSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, models: Sequence[types.BaseChannel],
                 baselines: Mapping[str, Sequence[types.BaseChannel]], spec: TaskSpec,
                 seeds: Sequence[int], code_version: str = ""):
        if not models or len(models) != len(seeds):
            raise ValueError(f"ModelComparison: need one model per seed ({len(seeds)}), "
                             f"got {len(models)}")
        if set(baselines) != set(spec.task_names) or any(
                len(channels) != len(seeds) for channels in baselines.values()):
            raise ValueError(f"ModelComparison baselines: need one per task of the spec "
                             f"({', '.join(spec.task_names)}) and seed ({len(seeds)})")
        inputs = {"examples": examples}
        for i, model in enumerate(models):
            inputs[candidate_key(i)] = model
            for name in spec.task_names:
                inputs[baseline_key(name, i)] = baselines[name][i]
        component_spec = _spec_class(spec.task_names, len(seeds))(
            spec=json.dumps(spec.to_dict(), sort_keys=True),
            seeds=json.dumps(list(seeds)),
            confidence=spec.evaluation.confidence,
            samples=spec.evaluation.bootstrap_samples,
            code_version=code_version,
            comparison=types.Channel(type=ModelComparisonResult),
            **inputs)
        super().__init__(spec=component_spec)
        self.with_id(naming.MODEL_COMPARISON)
