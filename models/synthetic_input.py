"""Synthetic data shaped like the Transform's output, for tests and benchmarks.

The synthetic generator (:mod:`tfx_mtl.synth`) writes raw columns; the model
and the training loop read Transform's output (``<feature>_xf``, per-task
labels and masks). Its features are already standard normal, so this module
maps columns to those keys directly and skips a Beam job, which keeps the loop
tests and ``tfx-mtl bench train`` about the training loop alone.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
import yaml

from tfx_mtl import naming, synth, task_spec


def spec(config: synth.SynthConfig) -> task_spec.TaskSpec:
    """The task spec ``tfx-mtl synth`` would write for ``config``."""
    return task_spec.parse(yaml.safe_load(synth.spec_yaml(config)), source="<synth>")


def transformed(columns: Mapping[str, np.ndarray], spec_: task_spec.TaskSpec,
                missing: Mapping[str, Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """Transform-like arrays: features, labels, masks (1; 0 for rows in ``missing[task]``)."""
    rows = len(next(iter(columns.values())))
    result = {naming.feature_key(f): columns[f].astype(np.float32) for f in spec_.feature_names}
    for task in spec_.tasks:
        label = columns[task.label]
        mask = np.ones(rows, np.int64)
        if missing and task.name in missing:
            mask[np.asarray(missing[task.name], np.int64)] = 0
        result[naming.label_key(task.name)] = (label.astype(np.float32) if task.type == "regression"
                                               else label.astype(np.int64))
        result[naming.mask_key(task.name)] = mask
    return result


def dataset(arrays: Mapping[str, np.ndarray], batch_size: int, repeat: bool = True,
            shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches of ``arrays`` (full batches only, so every replica gets the same share)."""
    data = tf.data.Dataset.from_tensor_slices(dict(arrays))
    if shuffle_seed is not None:
        data = data.shuffle(len(next(iter(arrays.values()))), seed=shuffle_seed,
                            reshuffle_each_iteration=True)
    if repeat:
        data = data.repeat()
    return data.batch(batch_size, drop_remainder=True).prefetch(2)


def label_stats(arrays: Mapping[str, np.ndarray], spec_: task_spec.TaskSpec
                ) -> dict[str, tuple[float, float]]:
    """(mean, std) of each standardised regression label, over its labelled rows."""
    stats = {}
    for task in spec_.tasks:
        if task.type != "regression":
            continue
        if not task.standardize:
            stats[task.name] = (0.0, 1.0)
            continue
        mask = arrays[naming.mask_key(task.name)] > 0
        values = arrays[naming.label_key(task.name)][mask]
        stats[task.name] = ((float(values.mean()), float(values.std()) or 1.0) if values.size
                            else (0.0, 1.0))
    return stats
