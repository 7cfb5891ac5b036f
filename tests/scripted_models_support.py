"""Scripted models for the gate's tests: SavedModels with the pipeline's signatures whose
scores are columns of the examples, so every metric is known in advance.

A model's ``<task>__evaluation`` signature returns the column ``<scored>_<task>`` (e.g.
``cand_fare`` for the multi-task candidate, ``base_fare`` for a baseline), and its
``transform_features`` returns each task's label (column ``<task>``) and mask (column
``<task>_mask``), exactly the signatures the pipeline's models export, so TFX's
Evaluator and ModelComparison score them as they score a trained model.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import json

import numpy as np
import tensorflow as tf
from tfx.types import standard_artifacts

from tfx_mtl import naming
from tfx_mtl.components import blessing_gate, model_comparison


def artifact(cls, uri, id_):
    result = cls()
    result.uri = str(uri)
    result.id = id_
    os.makedirs(result.uri, exist_ok=True)
    return result


def write_examples(uri: str, columns: Mapping[str, np.ndarray], split: str = naming.TEST,
                   strings: Mapping[str, Sequence[bytes]] | None = None) -> None:
    """``columns`` (floats) and ``strings`` as the gzipped tf.Examples of one split."""
    os.makedirs(os.path.join(uri, f"Split-{split}"))
    path = os.path.join(uri, f"Split-{split}", "data.tfrecord.gz")
    n = len(next(iter(columns.values())))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(n):
            # a [n, K] column (class probabilities) gives each example K floats
            feature = {k: tf.train.Feature(float_list=tf.train.FloatList(
                value=np.atleast_1d(v[i]).tolist())) for k, v in columns.items()}
            for k, v in (strings or {}).items():
                feature[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v[i]]))
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())


def scripted_model(export_dir: str, scored: str, tasks: Sequence[str],
                   all_tasks: Sequence[str], sides: Sequence[str] = ("cand", "base"),
                   classes: Mapping[str, int] | None = None) -> None:
    """A SavedModel scoring ``<scored>_<task>`` for each of ``tasks``; a task in
    ``classes`` is multiclass: its scores are that many probabilities per example (its
    label column holds the class id)."""
    classes = classes or {}
    spec = {k: tf.io.FixedLenFeature([], tf.float32)
            for t in all_tasks for k in (t, f"{t}_mask")}
    spec.update({f"{s}_{t}": tf.io.FixedLenFeature([classes[t]] if t in classes else [],
                                                   tf.float32)
                 for t in all_tasks for s in sides})
    serialized = tf.TensorSpec([None], tf.string)

    # The argument is named as the pipeline's models name it (naming.EXAMPLES_INPUT).
    @tf.function(input_signature=[serialized])
    def transform_features(examples):
        parsed = tf.io.parse_example(examples, spec)
        return {**{naming.label_key(t): tf.cast(parsed[t], tf.int64) if t in classes
                   else parsed[t] for t in all_tasks},
                **{naming.mask_key(t): parsed[f"{t}_mask"] for t in all_tasks}}

    def evaluation(task):
        @tf.function(input_signature=[serialized])
        def score(examples):
            return {task: tf.io.parse_example(examples, spec)[f"{scored}_{task}"]}
        return score

    signatures = {naming.TRANSFORM_FEATURES: transform_features}
    signatures.update({naming.evaluation_signature(t): evaluation(t) for t in tasks})
    tf.saved_model.save(tf.Module(), os.path.join(export_dir, "Format-Serving"),
                        signatures=signatures)


def compare(uri, spec, examples, candidate, baselines, samples=1000):
    """ModelComparison's executor on one seed's models: its output artifact."""
    out = artifact(model_comparison.ModelComparisonResult, uri, 40)
    inputs = {"examples": [examples], model_comparison.candidate_key(0): [candidate]}
    for task, baseline in baselines.items():
        inputs[model_comparison.baseline_key(task, 0)] = [baseline]
    model_comparison.Executor().Do(inputs, {"comparison": [out]}, {
        "spec": json.dumps(spec.judging_view().to_dict()), "seeds": json.dumps([42]),
        "confidence": "0.95", "samples": str(samples)})
    return out


def run_gate(root, candidate, outputs, spec, suffix="with", name="out"):
    inputs = {"model": [candidate], blessing_gate.COMPARISON: [outputs["comparison"]]}
    for task in spec.task_names:
        evaluation, blessing = outputs[f"{task}_{suffix}"]
        inputs[blessing_gate.evaluation_key(task)] = [evaluation]
        inputs[blessing_gate.blessing_key(task)] = [blessing]
    blessing = artifact(standard_artifacts.ModelBlessing, root / name / "blessing", 30)
    report = artifact(blessing_gate.TransferReport, root / name / "report", 31)
    blessing_gate.Executor().Do(inputs, {"blessing": [blessing], "report": [report]},
                                {"spec": json.dumps(spec.to_dict())})
    with open(os.path.join(report.uri, naming.TRANSFER_REPORT_FILE)) as f:
        return blessing, report, json.load(f, parse_constant=_not_json)


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")
