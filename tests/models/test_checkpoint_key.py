"""Checkpoints keyed by what determines the training: a crashed Trainer's re-run resumes.

The key's parts are checked on real files; the whole story runs ``trainer.run_fn``
over a real Transform output in processes of its own (``trainer_process.py``, the
route of the multi-worker tests): one killed (SIGKILL) after a checkpoint and run
again in a new run directory, against one that was never interrupted.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import checkpoint_key
from tfx_mtl.models.trainer_config import TrainerConfig

from .conftest import trainer_job  # noqa: F401  (importlib mode: the fixture module)


def _artifacts(tmp_path):
    """An Examples directory (three splits) and a TransformGraph directory of real files."""
    for split in ("train", "validation", "test"):
        (tmp_path / "examples" / f"Split-{split}").mkdir(parents=True)
        (tmp_path / "examples" / f"Split-{split}" / "data.gz").write_bytes(b"rows" * 10)
    (tmp_path / "graph" / "transform_fn").mkdir(parents=True)
    (tmp_path / "graph" / "transform_fn" / "saved_model.pb").write_bytes(b"graph")
    return tmp_path


def _inputs(tmp_path, **changes):
    values = dict(
        custom_config={"task_spec": {"name": "s"}, "code_version": "abc",
                       "trainer": TrainerConfig().to_dict(),
                       checkpoint_key.CHECKPOINT_ROOT_KEY: str(tmp_path / "root")},
        train_files=[str(tmp_path / "examples" / "Split-train" / "*")],
        eval_files=[str(tmp_path / "examples" / "Split-validation" / "*")],
        transform_graph=str(tmp_path / "graph"), train_steps=100, eval_steps=5,
        strategy="_DefaultDistributionStrategy", replicas=1)
    values.update(changes)
    return checkpoint_key.training_inputs(**values)


def _with_trainer(tmp_path, **fields):
    config = _inputs(tmp_path)["custom_config"]
    return {**config, "trainer": {**config["trainer"], **fields}}


def test_the_same_training_gets_the_same_key_wherever_its_root_is(tmp_path):
    inputs = _inputs(_artifacts(tmp_path))
    assert checkpoint_key.key(inputs) == checkpoint_key.key(_inputs(tmp_path))
    assert checkpoint_key.key(dict(reversed(list(inputs.items())))) == checkpoint_key.key(inputs)
    # The root is where the checkpoints go, not what they are of.
    moved = _inputs(tmp_path, custom_config={
        **inputs["custom_config"], checkpoint_key.CHECKPOINT_ROOT_KEY: "gs://elsewhere"})
    assert checkpoint_key.key(moved) == checkpoint_key.key(inputs)
    keyed = checkpoint_key.keyed("gs://bucket/root/Trainer/checkpoints/", inputs)
    assert keyed.directory == f"gs://bucket/root/Trainer/checkpoints/{keyed.key}"
    assert inputs["examples"]["train"]["files"] == 1 and inputs["examples"]["train"]["bytes"] == 40
    assert set(inputs["examples"]) == {"train", "validation"}  # the splits a Trainer reads
    assert inputs["transform_graph"]["files"] == 1


@pytest.mark.parametrize("change", [
    "seed", "batch_size", "tasks", "architecture", "surgery_level", "checkpoint_every",
    "code_version",
    "spec", "train_steps", "eval_steps", "replicas", "strategy", "transform_graph_uri",
    "examples_uri", "examples_content", "examples_new_file", "graph_content"])
def test_anything_that_determines_the_training_changes_the_key(tmp_path, change):
    artifacts = _artifacts(tmp_path)
    before = checkpoint_key.key(_inputs(artifacts))
    config = _inputs(artifacts)["custom_config"]
    changes = {
        "seed": lambda: dict(custom_config=_with_trainer(tmp_path, seed=7)),
        "batch_size": lambda: dict(custom_config=_with_trainer(tmp_path, batch_size=64)),
        "tasks": lambda: dict(custom_config=_with_trainer(tmp_path, tasks=["fare"])),
        "architecture": lambda: dict(custom_config=_with_trainer(
            tmp_path, architecture={**config["trainer"]["architecture"], "name": "mmoe"})),
        "surgery_level": lambda: dict(custom_config=_with_trainer(
            tmp_path, surgery_level="representation")),
        "checkpoint_every": lambda: dict(custom_config=_with_trainer(
            tmp_path, checkpoint_every=10)),
        "code_version": lambda: dict(custom_config={**config, "code_version": "abd"}),
        "spec": lambda: dict(custom_config={**config, "task_spec": {"name": "t"}}),
        "train_steps": lambda: dict(train_steps=200),
        "eval_steps": lambda: dict(eval_steps=6),
        "replicas": lambda: dict(replicas=2),
        "strategy": lambda: dict(strategy="MirroredStrategy"),
        "transform_graph_uri": lambda: dict(transform_graph=str(tmp_path / "graph2")),
        "examples_uri": lambda: dict(train_files=[str(tmp_path / "other" / "Split-train" / "*")]),
    }
    if change == "transform_graph_uri":
        (tmp_path / "graph").rename(tmp_path / "graph2")  # the same files, elsewhere
    if change == "examples_uri":
        (tmp_path / "other").mkdir()
        (tmp_path / "examples" / "Split-train").rename(tmp_path / "other" / "Split-train")
    if change == "examples_content":  # the same URI, rewritten (TFX never does; a copy may)
        (tmp_path / "examples" / "Split-train" / "data.gz").write_bytes(b"rows" * 11)
    if change == "examples_new_file":
        (tmp_path / "examples" / "Split-validation" / "data-2.gz").write_bytes(b"more")
    if change == "graph_content":
        (tmp_path / "graph" / "transform_fn" / "saved_model.pb").write_bytes(b"graph!")
    after = checkpoint_key.key(_inputs(artifacts, **changes.get(change, dict)()))
    assert after != before


def test_the_manifest_says_what_the_key_was_computed_from(tmp_path):
    inputs = _inputs(_artifacts(tmp_path))
    keyed = checkpoint_key.keyed(str(tmp_path / "root"), inputs)
    with open(keyed.write_manifest()) as f:
        manifest = json.load(f)
    assert manifest == {"key": keyed.key, **json.loads(json.dumps(inputs))}
    assert checkpoint_key.key({k: v for k, v in manifest.items() if k != "key"}) == keyed.key
    keyed.remove()
    assert not os.path.exists(keyed.directory) and os.path.isdir(tmp_path / "root")
    keyed.remove()  # nothing left to remove: no error


# -- run_fn killed after a checkpoint, and run again -------------------------------

PROCESS = Path(__file__).with_name("trainer_process.py")
STEPS = 120
EVERY = 10
TIMEOUT = 300


@pytest.fixture(scope="module")
def job(transformed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    config = TrainerConfig.from_dict({
        "batch_size": 4, "learning_rate": 0.05, "log_every": 40, "checkpoint_every": EVERY,
        "weighting": "uncertainty", "combine": "pcgrad",
        "architecture": {"name": "mmoe", "hidden_units": [8], "tower_units": [4],
                         "experts": 2, "dropout": 0.1}})
    return tmp, trainer_job(transformed, tmp, config, STEPS)


def _start(tmp, name, job, root, **changes):
    """run_fn in a process of its own, with new run and serving directories (a new TFX
    execution) and ``root`` as the pipeline's checkpoint root."""
    job = {**job, **changes, "model_run_dir": str(tmp / name / "run"),
           "serving_model_dir": str(tmp / name / "serving")}
    job["custom_config"] = {**job["custom_config"], checkpoint_key.CHECKPOINT_ROOT_KEY: str(root)}
    (tmp / f"{name}.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    with open(tmp / f"{name}.log", "w") as log:
        process = subprocess.Popen([sys.executable, str(PROCESS), "run_fn", str(tmp / f"{name}.json")],
                                   env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=log,
                                   stderr=subprocess.STDOUT)
    process.name, process.log = name, tmp / f"{name}.log"
    return process


def _finish(*processes):
    """Waits for each to exit 0; returns each one's training report."""
    deadline = time.monotonic() + TIMEOUT
    try:
        for p in processes:
            code = p.wait(timeout=max(1, deadline - time.monotonic()))
            assert code == 0, f"{p.name} exited {code}:\n{p.log.read_text()[-4000:]}"
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [json.loads((p.log.parent / p.name / "run" / "training_report.json").read_text())
            for p in processes]


def _kill_after_a_checkpoint(process, root):
    """SIGKILL ``process`` as soon as a checkpoint of it is complete (listed in the
    ``checkpoint`` state file, which is written after the checkpoint's files)."""
    deadline = time.monotonic() + TIMEOUT
    while not list(root.glob("*/checkpoint")):
        assert process.poll() is None, f"exited {process.returncode} before a checkpoint:\n" \
                                       + process.log.read_text()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    assert process.poll() is None, "finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _weights(serving_dir):
    """Every variable of the exported SavedModel (trainable or not), by name."""
    reader = tf.train.load_checkpoint(str(serving_dir / "variables" / "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.fixture(scope="module")
def runs(job):
    """An uninterrupted run; a run killed after a checkpoint, then run again; a run of the
    same job with more steps beside the killed run's checkpoints (two at a time: 2 cores)."""
    tmp, spec = job
    straight = _start(tmp, "straight", spec, tmp / "straight_root")
    killed = _start(tmp, "killed", spec, tmp / "root")
    _kill_after_a_checkpoint(killed, tmp / "root")
    (left_behind,) = list((tmp / "root").iterdir())
    saved = tf.train.get_checkpoint_state(str(left_behind)).model_checkpoint_path
    manifest = json.loads((left_behind / checkpoint_key.MANIFEST_FILE).read_text())
    rerun = _start(tmp, "rerun", spec, tmp / "root")
    longer = _start(tmp, "longer", spec, tmp / "root", train_steps=STEPS + EVERY)
    reports = dict(zip(("straight", "rerun", "longer"), _finish(straight, rerun, longer)))
    return tmp, left_behind, int(saved.rsplit("-", 1)[1]), reports, manifest


@pytest.mark.subprocess
def test_a_rerun_after_a_crash_resumes_and_ends_as_an_uninterrupted_run(runs):
    tmp, left_behind, saved_step, reports, _ = runs
    assert not (tmp / "killed" / "run" / "training_report.json").exists()  # it really crashed
    assert 0 < saved_step < STEPS and saved_step % EVERY == 0
    straight, rerun = reports["straight"], reports["rerun"]
    assert (straight["resumed_from"], straight["steps"]) == (0, STEPS)
    assert (rerun["resumed_from"], rerun["steps"]) == (saved_step, STEPS)
    assert rerun["checkpoint_dir"] == str(left_behind)
    assert rerun["checkpoint_key"] == straight["checkpoint_key"] == left_behind.name
    # Bit for bit: one device, the same ops in the same order, the data position and the
    # RNG states restored from the checkpoint.
    expected, got = _weights(tmp / "straight" / "serving"), _weights(tmp / "rerun" / "serving")
    assert set(got) == set(expected) and len(expected) > 10
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert straight["eval_metrics"] == rerun["eval_metrics"]


@pytest.mark.subprocess
def test_a_changed_configuration_starts_fresh_beside_the_old_checkpoints(runs):
    _, left_behind, _, reports, _ = runs
    longer = reports["longer"]
    assert (longer["resumed_from"], longer["steps"]) == (0, STEPS + EVERY)
    assert longer["checkpoint_key"] != left_behind.name
    assert os.path.dirname(longer["checkpoint_dir"]) == str(left_behind.parent)


@pytest.mark.subprocess
def test_a_completed_training_removes_its_checkpoints(runs):
    tmp, left_behind, _, reports, _ = runs
    for name in ("straight", "rerun", "longer"):
        assert not os.path.exists(reports[name]["checkpoint_dir"]), name
    assert list((tmp / "straight_root").iterdir()) == []
    assert not left_behind.exists()  # the killed run's, completed by its re-run


@pytest.mark.subprocess
def test_the_manifest_beside_the_checkpoints_says_what_they_are_of(runs, job):
    tmp, left_behind, _, _, manifest = runs
    _, spec = job
    assert manifest["key"] == left_behind.name
    assert (manifest["train_steps"], manifest["replicas"]) == (STEPS, 1)
    assert manifest["custom_config"]["trainer"] == json.loads(json.dumps(
        spec["custom_config"]["trainer"]))
    assert manifest["examples"]["train"]["locations"] == [
        f"{spec['examples']}/Split-train/*"]
    assert manifest["transform_graph"]["locations"] == [spec["transform_graph"]]
    assert f"checkpoints in {left_behind}, keyed by {left_behind}/manifest.json" in (
        tmp / "killed.log").read_text()
