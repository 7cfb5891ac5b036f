"""Which ``tf.distribute`` strategy the Trainer runs under, and who writes outputs.

- Several processes, each started by the platform (Vertex AI Training,
  Kubeflow's TFJob) with a ``TF_CONFIG`` that describes a cluster of more than
  one chief/worker task: ``MultiWorkerMirroredStrategy`` (synchronous
  all-reduce across the processes).
- Otherwise, several GPUs, or several logical CPU devices (as tests and laptops
  can set up with :func:`split_cpu`): ``MirroredStrategy`` over them.
- Otherwise the default (single-device) strategy.

The training loop is written for replica contexts, so one code path serves all.

Under the multi-worker strategy every process runs the same program, but only
the chief may write what others read (checkpoints, TensorBoard logs, the
SavedModel, the report): :func:`writes_outputs` says which process that is, and
:func:`output_dir` gives the others a throwaway directory for the saves they
must still take part in.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfx_mtl.errors import InputError

TF_CONFIG = "TF_CONFIG"
# The tasks that train under MultiWorkerMirroredStrategy; an evaluator, say, does not.
_TRAINING_JOBS = ("chief", "worker")


class DeviceSetupError(RuntimeError):
    """Logical devices can only be configured before TensorFlow initialises."""


class ClusterConfigError(InputError):
    """``TF_CONFIG`` is malformed; the message names the field."""

    def __init__(self, message: str):
        super().__init__(TF_CONFIG, message)


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster that ``TF_CONFIG`` describes."""

    cluster: Mapping[str, tuple[str, ...]]  # job name -> "host:port" of each task
    task_type: str
    task_index: int

    @property
    def size(self) -> int:
        """Training processes: chief and worker tasks."""
        return sum(len(self.cluster.get(job, ())) for job in _TRAINING_JOBS)

    @property
    def is_chief(self) -> bool:
        """TF's convention: the ``chief`` task, or worker 0 when the cluster has no chief."""
        return chief_rule(self.cluster, self.task_type, self.task_index)


def chief_rule(cluster: Mapping[str, Sequence[str]], task_type: str | None,
               task_index: int | None) -> bool:
    """Whether (task_type, task_index) is the chief of ``cluster`` (no task: a lone process)."""
    return (task_type in (None, "chief")
            or (task_type == "worker" and task_index == 0 and not cluster.get("chief")))


def parse_tf_config(text: str | None) -> ClusterTask | None:
    """The cluster and task of a ``TF_CONFIG`` value; None when unset or without a cluster.

    Raises :class:`ClusterConfigError` naming the field when the value is not
    what Vertex AI, TFJob and TF's own ``TFConfigClusterResolver`` agree on.
    """
    if text is None or not text.strip():
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ClusterConfigError(f"not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(f"must be a JSON object, got {_kind(config)}")
    cluster = config.get("cluster")
    if not cluster:
        return None  # e.g. only {"task": ...} or {"environment": ...}: a single process
    if not isinstance(cluster, dict):
        raise ClusterConfigError(f"cluster must be an object of job name -> "
                                 f"list of \"host:port\", got {_kind(cluster)}")
    jobs = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(
                isinstance(a, str) and a for a in addresses):
            raise ClusterConfigError(f"cluster.{job} must be a list of "
                                     f"\"host:port\" strings, got {addresses!r}")
        jobs[job] = tuple(addresses)
    if "ps" in jobs:
        raise ClusterConfigError(
            "cluster.ps: parameter servers are not supported; the Trainer "
            "runs under MultiWorkerMirroredStrategy (chief and worker tasks only)")
    task = config.get("task")
    if not isinstance(task, dict):
        raise ClusterConfigError(f"task must be an object with type and index, "
                                 f"got {_kind(task)}")
    task_type, index = task.get("type"), task.get("index")
    if isinstance(index, str) and index.isdigit():  # TF's resolver accepts "1" too
        index = int(index)
    if not isinstance(task_type, str) or task_type not in jobs:
        raise ClusterConfigError(f"task.type must name a job of the cluster "
                                 f"({', '.join(sorted(jobs))}), got {task_type!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < len(jobs[task_type])):
        raise ClusterConfigError(f"task.index must be an integer in "
                                 f"[0, {len(jobs[task_type])}) for job {task_type!r}, "
                                 f"got {index!r}")
    result = ClusterTask(jobs, task_type, index)
    if result.size < 1:
        raise ClusterConfigError(f"cluster has no chief or worker task "
                                 f"(jobs: {', '.join(sorted(jobs))})")
    return result


def split_cpu(replicas: int) -> None:
    """Splits the host CPU into ``replicas`` logical devices (before TF initialises)."""
    if replicas < 1:
        raise ValueError(f"cpu replicas: must be a positive integer, got {replicas}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * replicas
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as e:
        raise DeviceSetupError(
            f"cannot split the CPU into {replicas} devices: TensorFlow is already "
            f"initialised in this process ({e}); set it up before any TensorFlow op runs"
        ) from None


def strategy(tf_config: str | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy for a ``TF_CONFIG`` cluster of several processes;
    else MirroredStrategy over several GPUs or logical CPUs; else the default strategy.

    ``tf_config`` defaults to the environment's. Call this before any other
    TensorFlow op of the process: the multi-worker strategy configures the
    runtime's collective ops, which it cannot do once the eager context exists.
    """
    if tf_config is None:
        tf_config = os.environ.get(TF_CONFIG)
    task = parse_tf_config(tf_config)
    if task is not None and task.size > 1:
        if task.task_type not in _TRAINING_JOBS:
            raise ClusterConfigError(
                f"task.type {task.task_type!r} does not train; the Trainer runs "
                f"as one of {', '.join(_TRAINING_JOBS)}")
        # It reads TF_CONFIG itself. Its default communication (AUTO) is NCCL with GPUs
        # and ring all-reduce over gRPC on CPU-only hosts.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if gpus:
        return tf.distribute.get_strategy()
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        # Logical CPU devices have no NCCL; reduce on the host.
        return tf.distribute.MirroredStrategy(
            [d.name for d in cpus],
            cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=cpus[0].name))
    return tf.distribute.get_strategy()


def _task_of(strategy_: tf.distribute.Strategy) -> tuple[Mapping[str, Sequence[str]],
                                                          str | None, int | None]:
    """(cluster, task type, task index) of a multi-worker strategy; ({}, None, None) else."""
    if not isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy):
        return {}, None, None
    resolver = strategy_.cluster_resolver
    return resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id


def writes_outputs(strategy_: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, logs, the SavedModel and the report
    (only the chief does when several processes train together)."""
    return chief_rule(*_task_of(strategy_))


@contextlib.contextmanager
def output_dir(path: str | None, strategy_: tf.distribute.Strategy) -> Iterator[str | None]:
    """``path`` for the process that writes outputs; a temporary directory, deleted on
    exit, for the other workers.

    Under MultiWorkerMirroredStrategy checkpoint and SavedModel saves are
    collective: every worker must save, or the chief blocks, but only the chief's
    copy is kept (TF's "multi-worker training" guides). The other workers'
    copies go to local scratch space, never beside the chief's on shared storage.
    """
    if path is None or writes_outputs(strategy_):
        yield path
        return
    _, task_type, task_id = _task_of(strategy_)
    scratch = tempfile.mkdtemp(prefix=f"tfx-mtl-{task_type}-{task_id}-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def barrier(strategy_: tf.distribute.Strategy) -> None:
    """Returns once every worker has got here; a no-op in one process.

    After the chief's export, this makes the workers wait for it: TFX's executor
    fails a worker whose ``run_fn`` returns before the (shared) serving directory
    exists, and a platform may end the job as soon as one worker fails.
    """
    if not isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy):
        return

    @tf.function
    def count():
        return strategy_.run(lambda: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.constant(1)))

    count()  # an all-reduce completes only once every replica has joined it


def shard_by_data(dataset: tf.data.Dataset, strategy_: tf.distribute.Strategy
                  ) -> tf.data.Dataset:
    """``dataset`` set to be split across workers by element, under the multi-worker strategy.

    tf.data's default (AUTO) shards by input *file* when it can; a TFX split is
    often a single file, fewer than the workers, and file sharding would then
    fail or leave workers idle. DATA sharding has each worker read the whole
    input and keep its share of every global batch, which is correct for any
    number of files because every worker reads the same (seeded) order.
    Single-process strategies are left alone (nothing to shard).
    """
    if not isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def fingerprint(variables: Sequence[Any]) -> str:
    """A short digest of the variables' values, for the log: workers in sync log the same."""
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(np.ascontiguousarray(np.asarray(variable)).tobytes())
    return digest.hexdigest()[:16]


def name(strategy_: tf.distribute.Strategy) -> str:
    """The strategy's public name (MultiWorkerMirroredStrategy's class is called
    CollectiveAllReduceStrategy)."""
    if isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy_).__name__


def describe(strategy_: tf.distribute.Strategy) -> str:
    """One line for the log: the strategy's class, its replicas and, across processes,
    this process's task."""
    try:
        devices = tuple(strategy_.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        devices = ()
    line = f"{name(strategy_)} with {strategy_.num_replicas_in_sync} replica(s)"
    if devices:
        line += f" on {', '.join(devices)}"
    _, task_type, task_id = _task_of(strategy_)
    if task_type:
        line += f" as {task_type} {task_id}" + (" (chief)" if writes_outputs(strategy_) else "")
    return line


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
