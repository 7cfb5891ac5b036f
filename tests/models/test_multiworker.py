"""Several Trainer processes under MultiWorkerMirroredStrategy, as Vertex AI / TFJob start them.

The pure ``TF_CONFIG`` helpers are tested on hand-written values; the real
thing runs ``trainer.run_fn`` in two Python processes on localhost (a chief and
a worker, the layout Vertex AI uses), plus one single-process run of the same
job to compare against.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfx_mtl.models import distribution
from tfx_mtl.models.trainer_config import TrainerConfig

from .conftest import ROWS, SPEC, trainer_job  # noqa: F401  (importlib mode: relative import of the fixture module)


def _tf_config(cluster, task_type, index):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


CHIEF_AND_WORKER = {"chief": ["host-a:2222"], "worker": ["host-b:2222", "host-c:2222"]}
WORKERS_ONLY = {"worker": ["host-a:2222", "host-b:2222"]}


# -- TF_CONFIG ---------------------------------------------------------------

@pytest.mark.parametrize("tf_config", [
    None, "", "{}",
    json.dumps({"task": {"type": "worker", "index": 0}}),  # no cluster: one process
])
def test_no_cluster_is_a_lone_process(tf_config):
    assert distribution.parse_tf_config(tf_config) is None
    assert distribution.writes_outputs(tf.distribute.get_strategy())  # a lone process writes


@pytest.mark.parametrize("tf_config,size", [
    (_tf_config({"chief": ["h:1"]}, "chief", 0), 1),  # Vertex AI with one replica
    (_tf_config(CHIEF_AND_WORKER, "worker", 1), 3),
    (_tf_config(WORKERS_ONLY, "worker", 0), 2),
    # An evaluator does not train: it is not counted.
    (_tf_config({**WORKERS_ONLY, "evaluator": ["h:9"]}, "evaluator", 0), 2),
])
def test_cluster_size_counts_chief_and_worker_tasks(tf_config, size):
    assert distribution.parse_tf_config(tf_config).size == size


@pytest.mark.parametrize("cluster,task_type,index,chief", [
    (CHIEF_AND_WORKER, "chief", 0, True),
    (CHIEF_AND_WORKER, "worker", 0, False),  # a chief exists: worker 0 is just a worker
    (CHIEF_AND_WORKER, "worker", 1, False),
    (WORKERS_ONLY, "worker", 0, True),  # no chief: worker 0 is the chief
    (WORKERS_ONLY, "worker", 1, False),
    ({**WORKERS_ONLY, "evaluator": ["h:9"]}, "evaluator", 0, False),
])
def test_is_chief_follows_tensorflows_convention(cluster, task_type, index, chief):
    assert distribution.parse_tf_config(_tf_config(cluster, task_type, index)).is_chief is chief


def test_a_string_task_index_is_read_as_tensorflow_does():
    config = json.dumps({"cluster": WORKERS_ONLY, "task": {"type": "worker", "index": "1"}})
    task = distribution.parse_tf_config(config)
    assert task.task_index == 1 and not task.is_chief


@pytest.mark.parametrize("tf_config,message", [
    ("{cluster: 1}", "TF_CONFIG: not valid JSON"),
    ("[1, 2]", "TF_CONFIG: must be a JSON object, got list"),
    (json.dumps({"cluster": ["h:1"], "task": {}}), "TF_CONFIG: cluster must be an object"),
    (json.dumps({"cluster": {"worker": "h:1,h:2"}, "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG: cluster.worker must be a list"),
    (json.dumps({"cluster": {"worker": ["h:1", 2]}, "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG: cluster.worker must be a list"),
    (json.dumps({"cluster": WORKERS_ONLY}), "TF_CONFIG: task must be an object"),
    (_tf_config(WORKERS_ONLY, "chief", 0), "TF_CONFIG: task.type must name a job of the "
                                           "cluster (worker), got 'chief'"),
    (_tf_config(WORKERS_ONLY, "worker", 2), "TF_CONFIG: task.index must be an integer in "
                                            "[0, 2) for job 'worker', got 2"),
    (_tf_config(WORKERS_ONLY, "worker", -1), "TF_CONFIG: task.index"),
    (_tf_config(WORKERS_ONLY, "worker", True), "TF_CONFIG: task.index"),
    (json.dumps({"cluster": WORKERS_ONLY, "task": {"type": "worker"}}),
     "TF_CONFIG: task.index must be an integer in [0, 2) for job 'worker', got None"),
    (_tf_config({**WORKERS_ONLY, "ps": ["h:3"]}, "worker", 0),
     "TF_CONFIG: cluster.ps: parameter servers are not supported"),
    (_tf_config({"evaluator": ["h:1"]}, "evaluator", 0),
     "TF_CONFIG: cluster has no chief or worker task"),
])
def test_a_malformed_tf_config_names_the_field(tf_config, message):
    with pytest.raises(distribution.ClusterConfigError) as raised:
        distribution.parse_tf_config(tf_config)
    assert message in str(raised.value)


def test_an_evaluator_task_cannot_run_the_trainer():
    # Checked before any strategy is created (no TensorFlow runtime is touched).
    with pytest.raises(distribution.ClusterConfigError, match="task.type 'evaluator' does not"):
        distribution.strategy(_tf_config({**WORKERS_ONLY, "evaluator": ["h:9"]}, "evaluator", 0))


def test_a_single_process_writes_its_outputs_in_place(tmp_path):
    strategy = distribution.strategy(_tf_config({"chief": ["h:1"]}, "chief", 0))
    assert not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    assert distribution.writes_outputs(strategy)
    with distribution.output_dir(str(tmp_path), strategy) as path:
        assert path == str(tmp_path)
    with distribution.output_dir(None, strategy) as path:
        assert path is None
    data = tf.data.Dataset.range(4)
    assert distribution.shard_by_data(data, strategy) is data


def test_fingerprint_changes_with_any_value():
    a = [np.zeros((2, 3), np.float32), np.ones(4, np.float32)]
    b = [np.zeros((2, 3), np.float32), np.array([1, 1, 1, 1 + 1e-7], np.float32)]
    assert distribution.fingerprint(a) == distribution.fingerprint([x.copy() for x in a])
    assert distribution.fingerprint(a) != distribution.fingerprint(b)
    assert distribution.fingerprint(a) == distribution.fingerprint([tf.Variable(x) for x in a])


# -- two real processes --------------------------------------------------------

STEPS = 20
RESUMED_STEPS = 10
TIMEOUT = 300  # seconds for a group of processes (they start in ~10 s and train in a few)
SIGNATURES = {"serving_default", "transform_features", "big", "fare", "kind",
              *(f"{t}__evaluation{s}" for t in ("big", "fare", "kind") for s in ("", "_labelled"))}
PROCESS = Path(__file__).with_name("trainer_process.py")


def _cluster():
    """A chief and a worker on free localhost ports (Vertex AI's layout)."""
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("localhost", 0))
    chief, worker = (f"localhost:{s.getsockname()[1]}" for s in sockets)
    for s in sockets:
        s.close()
    return {"chief": [chief], "worker": [worker]}


def _example(row):
    feature = {}
    for key, values in row.items():
        if values:
            feature[key] = (tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
                            if isinstance(values[0], bytes)
                            else tf.train.Feature(float_list=tf.train.FloatList(value=values)))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _start(name, args, tmp, tf_config):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["TMPDIR"] = str(tmp / f"{name}.tmp")  # where a worker's scratch copies go
    os.makedirs(env["TMPDIR"])
    if tf_config:
        env["TF_CONFIG"] = tf_config
    log_path = tmp / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(PROCESS), *args], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log_path  # read by _wait_all
    return process


def _wait_all(processes, timeout):
    """Waits for every process; kills them all on a failure or the timeout."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes.values()):
            failed = [n for n, p in processes.items() if p.poll() not in (None, 0)]
            assert not failed, _logs(processes, failed)
            assert time.monotonic() < deadline, "timed out\n" + _logs(processes, processes)
            time.sleep(0.5)
        failed = [n for n, p in processes.items() if p.returncode != 0]
        assert not failed, _logs(processes, failed)
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return {n: p.log_path.read_text() for n, p in processes.items()}


def _logs(processes, names):
    return "\n".join(f"--- {n} (exit {processes[n].poll()}):\n"
                     + processes[n].log_path.read_text()[-4000:] for n in names)


def _fingerprints(log):
    initial = re.findall(r"initial weights fingerprint (\w+)", log)
    final = re.findall(r"trained to step .*; weights fingerprint (\w+)", log)
    return initial, final


def _predict(serving_dir, examples):
    """serving_default's outputs of the SavedModel, after checking its signatures."""
    loaded = tf.saved_model.load(str(serving_dir))
    assert set(loaded.signatures) == SIGNATURES
    return {k: v.numpy() for k, v in loaded.signatures["serving_default"](examples=examples).items()}


def _train(tmp, tag, job, dirs):
    """run_fn in a chief and a worker together, and in a lone process; ``dirs[name]``:
    (model_run_dir, serving_model_dir). Returns each process's log and the wall time."""
    names = {name: f"{tag}-{name}" for name in ("chief", "worker", "alone")}
    for name, process_name in names.items():
        run_dir, serving_dir = dirs[name]
        (tmp / f"{process_name}.json").write_text(json.dumps(
            {**job, "model_run_dir": str(run_dir), "serving_model_dir": str(serving_dir)}))
    cluster = _cluster()
    tf_configs = {"chief": _tf_config(cluster, "chief", 0),
                  "worker": _tf_config(cluster, "worker", 0), "alone": None}
    started = time.monotonic()
    processes = {name: _start(process_name, ["run_fn", str(tmp / f"{process_name}.json")], tmp,
                              tf_configs[name])
                 for name, process_name in names.items()}
    logs = _wait_all(processes, TIMEOUT)
    return logs, time.monotonic() - started


@pytest.fixture(scope="module")
def job(transformed, tmp_path_factory):
    """A directory with the Examples (one file per split) and the job of every run."""
    tmp = tmp_path_factory.mktemp("multiworker")
    config = TrainerConfig.from_dict({
        "batch_size": 4, "learning_rate": 0.05, "log_every": 5, "checkpoint_every": 10,
        "eval_every": 10, "weighting": "uncertainty", "combine": "pcgrad",
        "architecture": {"name": "mmoe", "hidden_units": [8], "tower_units": [4],
                         "experts": 2}})
    return tmp, trainer_job(transformed, tmp, config, STEPS)


@pytest.fixture(scope="module")
def cluster_run(job):
    """A chief and a worker train the job together, each with its own directories (so
    what the worker writes shows); a lone process trains it alone."""
    tmp, spec = job
    logs, seconds = _train(tmp, "first", spec, {name: (tmp / name / "run", tmp / name / "serving")
                                                for name in ("chief", "worker", "alone")})
    return tmp, logs, seconds


@pytest.fixture(scope="module")
def resumed_run(cluster_run, job):
    """RESUMED_STEPS more steps from the first run's checkpoints. As on a real cluster,
    chief and worker share the run directory (the chief's); new serving directories."""
    tmp, spec = job
    dirs = {"chief": (tmp / "chief" / "run", tmp / "resumed" / "chief"),
            "worker": (tmp / "chief" / "run", tmp / "resumed" / "worker"),
            "alone": (tmp / "alone" / "run", tmp / "resumed" / "alone")}
    logs, seconds = _train(tmp, "resumed", {**spec, "train_steps": STEPS + RESUMED_STEPS}, dirs)
    return tmp, logs, seconds


@pytest.mark.subprocess
def test_both_workers_train_under_multi_worker_mirrored_strategy(cluster_run):
    _, logs, seconds = cluster_run
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in logs["chief"]
    assert "as chief 0 (chief)" in logs["chief"]
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in logs["worker"]
    assert "as worker 0" in logs["worker"] and "(chief)" not in logs["worker"]
    assert "_DefaultDistributionStrategy with 1 replica(s)" in logs["alone"]
    for name in ("chief", "worker"):
        assert f"trained to step {STEPS}" in logs[name], logs[name][-3000:]
    print(f"three Trainer processes in {seconds:.1f}s")


@pytest.mark.subprocess
def test_the_workers_stay_in_sync_and_really_train(cluster_run):
    _, logs, _ = cluster_run
    (chief_initial,), (chief_final,) = _fingerprints(logs["chief"])
    (worker_initial,), (worker_final,) = _fingerprints(logs["worker"])
    assert worker_initial == chief_initial  # (MWMS broadcasts the chief's initial values)
    assert worker_final == chief_final  # synchronous training: bit-identical weights
    assert chief_final != chief_initial


@pytest.mark.subprocess
def test_only_the_chief_writes_outputs(cluster_run):
    tmp, _, _ = cluster_run
    assert not (tmp / "worker" / "serving").exists()
    assert not (tmp / "worker" / "run").exists()
    report = json.loads((tmp / "chief" / "run" / "training_report.json").read_text())
    assert (report["strategy"], report["replicas"], report["steps"]) == (
        "MultiWorkerMirroredStrategy", 2, STEPS)
    checkpoints = tf.train.get_checkpoint_state(str(tmp / "chief" / "run" / "checkpoints"))
    assert [p.rsplit("-", 1)[1] for p in checkpoints.all_model_checkpoint_paths] == ["10", "20"]
    assert tf.io.gfile.glob(str(tmp / "chief" / "run" / "events.out.tfevents.*"))
    # The worker saved checkpoints and the SavedModel to scratch space, then removed them.
    assert os.listdir(tmp / "first-worker.tmp") == []


@pytest.mark.subprocess
def test_the_barrier_holds_every_worker_until_the_last_arrives(tmp_path):
    # run_fn ends with it, so no worker returns (and has TFX's executor look for the
    # serving model) before the chief has exported; here the chief arrives 3 s late.
    cluster = _cluster()
    processes = {name: _start(name, ["barrier", delay, str(tmp_path / f"{name}.out")],
                              tmp_path, _tf_config(cluster, name, 0))
                 for name, delay in (("chief", "3"), ("worker", "0"))}
    _wait_all(processes, 120)
    chief, worker = (json.loads((tmp_path / f"{n}.out").read_text()) for n in processes)
    assert worker["strategy"].startswith("MultiWorkerMirroredStrategy with 2 replica(s)")
    assert worker["arrived"] < chief["arrived"] <= worker["returned"]


@pytest.mark.subprocess
def test_the_chief_exports_what_one_process_would_have(cluster_run):
    # The two workers split each global batch (DATA sharding over one input file):
    # the result matches one process on the same global batches, up to float sums.
    tmp, _, _ = cluster_run
    examples = tf.constant([_example(r) for r in ROWS])
    together = _predict(tmp / "chief" / "serving", examples)
    alone = _predict(tmp / "alone" / "serving", examples)
    assert set(together) == {"big_probability", "big_class_id", "fare_value",
                             "kind_probabilities", "kind_class_id", "kind_class"}
    for key in ("big_probability", "fare_value", "kind_probabilities"):
        np.testing.assert_allclose(together[key], alone[key], rtol=1e-4, atol=1e-5)


@pytest.mark.subprocess
def test_the_workers_resume_from_the_chiefs_checkpoint(resumed_run):
    tmp, logs, seconds = resumed_run
    for name in ("chief", "worker"):
        assert re.search(rf"resumed from .*chief/run/checkpoints/ckpt-{STEPS} at step {STEPS}",
                         logs[name]), logs[name][-3000:]
        assert f"trained to step {STEPS + RESUMED_STEPS}" in logs[name]
    assert _fingerprints(logs["chief"])[1] == _fingerprints(logs["worker"])[1]
    report = json.loads((tmp / "chief" / "run" / "training_report.json").read_text())
    assert (report["steps"], report["resumed_from"]) == (STEPS + RESUMED_STEPS, STEPS)
    assert not (tmp / "resumed" / "worker").exists()
    # The replayed data (skip, then split) matches the lone process's restored iterator.
    examples = tf.constant([_example(r) for r in ROWS])
    together = _predict(tmp / "resumed" / "chief", examples)
    alone = _predict(tmp / "resumed" / "alone", examples)
    for key in ("big_probability", "fare_value", "kind_probabilities"):
        np.testing.assert_allclose(together[key], alone[key], rtol=1e-4, atol=1e-5)
    print(f"three resumed Trainer processes in {seconds:.1f}s")
