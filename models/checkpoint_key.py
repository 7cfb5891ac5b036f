"""Where a Trainer keeps its checkpoints: a directory keyed by what determines the training.

TFX gives every Trainer execution a new run directory, so checkpoints kept there
are lost to the re-run after a crash. The pipeline gives each Trainer node a
stable root instead (``<pipeline_root>/<node>/checkpoints``, in ``custom_config``
under :data:`CHECKPOINT_ROOT_KEY`), and the checkpoints go to ``<root>/<key>/``,
the key a digest of everything that determines the trained weights:

- the input artifacts: the Examples' split patterns (train, and validation, what
  ``fn_args.eval_files`` holds) and the TransformGraph's URI,
  and each one's files (relative path and size). TFX's cache reuses the upstream
  artifacts when a Trainer re-runs after a crash, so their URIs are stable; new
  upstream artifacts are new data, and training starts fresh;
- the whole ``custom_config`` but the root: the (training view of the) task spec,
  the Trainer config with every knob (seed, batch, tasks, methods, checkpoint and
  eval cadence) and the code version of ``run_fn``'s modules;
- the train and eval steps, the strategy and its replica count (a checkpoint
  holds the data position as one device or several replicas consume it).

So a re-run of the same configuration resumes where the last checkpoint left off,
and any change starts fresh, ``train_steps`` included: a run's weights depend on
its configuration only, never on what ran before it. ``manifest.json`` beside the
checkpoints says what the key was computed from. A completed training removes
its directory (:func:`remove`): the Model artifact is the result, and TFX's cache
already reuses a completed Trainer.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import tensorflow as tf

from tfx_mtl import naming

CHECKPOINT_ROOT_KEY = "checkpoint_root"  # in a Trainer's custom_config
CHECKPOINTS = "checkpoints"
MANIFEST_FILE = "manifest.json"


def root(pipeline_root: str, node_id: str) -> str:
    """The checkpoint root of a Trainer node: beside its artifacts, under no execution."""
    return f"{pipeline_root.rstrip('/')}/{node_id}/{CHECKPOINTS}"


@dataclasses.dataclass(frozen=True)
class KeyedCheckpoints:
    """A Trainer's checkpoint directory, ``<root>/<key>``, and what the key digests."""

    directory: str
    key: str
    inputs: Mapping[str, Any]

    def write_manifest(self) -> str:
        """``manifest.json``: the key and its inputs, for a human asking why a run resumed."""
        path = f"{self.directory}/{MANIFEST_FILE}"
        tf.io.gfile.makedirs(self.directory)
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump({"key": self.key, **self.inputs}, f, indent=2, sort_keys=True)
        return path

    def remove(self) -> None:
        """Deletes the directory, once the training it keeps has completed and been exported."""
        if tf.io.gfile.exists(self.directory):
            tf.io.gfile.rmtree(self.directory)


def training_inputs(custom_config: Mapping[str, Any], train_files: Sequence[str],
                    eval_files: Sequence[str], transform_graph: str, train_steps: int,
                    eval_steps: int | None, strategy: str, replicas: int) -> dict[str, Any]:
    """What determines a Trainer's weights, as JSON-able values (the manifest's body)."""
    return {
        "examples": {naming.TRAIN: _files(train_files), naming.VALIDATION: _files(eval_files)},
        "transform_graph": _files([transform_graph], walk=True),
        "custom_config": {k: v for k, v in custom_config.items() if k != CHECKPOINT_ROOT_KEY},
        "train_steps": train_steps, "eval_steps": eval_steps,
        "strategy": strategy, "replicas": replicas,
    }


def key(inputs: Mapping[str, Any]) -> str:
    """A short digest of ``inputs``, the same for equal values in any key order."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def keyed(checkpoint_root: str, inputs: Mapping[str, Any]) -> KeyedCheckpoints:
    digest = key(inputs)
    return KeyedCheckpoints(f"{checkpoint_root.rstrip('/')}/{digest}", digest, dict(inputs))


def _files(locations: Sequence[str], walk: bool = False) -> dict[str, Any]:
    """The locations (file patterns, or directories when ``walk``) and a digest of their
    files' relative paths and sizes: a cheap identity of the artifact's content."""
    listing = []
    for location in sorted(locations):
        if walk:
            base = location.rstrip("/")
            paths = [f"{d}/{name}" for d, _, names in tf.io.gfile.walk(base) for name in names]
        else:
            base = os.path.dirname(location)
            paths = tf.io.gfile.glob(location)
        for path in sorted(paths):
            listing.append((location, os.path.relpath(path, base),
                            tf.io.gfile.stat(path).length))
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    return {"locations": sorted(locations), "files": len(listing),
            "bytes": sum(size for *_, size in listing), "digest": digest}
