"""AtomicPusher: TFX's Pusher, whose pushed version appears whole or not at all.

TFX's filesystem push copies straight into ``<base>/<unix seconds>/``: a killed
push leaves a partial version there (TF Serving tries to load it), and two pushes
in one second share one directory while ML Metadata records two pushed models.
This executor copies into a hidden temporary directory beside the versions
(``.push-*``: TF Serving's file-system source and :mod:`tfx_mtl.serving.model_store`
take only all-digit names as versions) and renames it into place under a version
that does not exist yet: the time in seconds, or one more than the newest version
when that is not newer (so the newest push is always the served one). The rename
refuses an existing target, so a push never overwrites or shares a version.
What it records in MLMD (``pushed``, ``pushed_destination``, ``pushed_version``
on the PushedModel artifact) is TFX's.

On a filesystem without POSIX rename (``gs://`` and other URLs) the copy goes
straight into the reserved version directory, ``saved_model.pb`` last, as TFX does.
A killed push's temporary directory is removed by the next run
(:func:`tfx_mtl.runners.recovery.clean_push_temporaries`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import time
import uuid

from absl import logging
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from tfx_mtl import naming

SAVED_MODEL_PB = "saved_model.pb"
_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


def push(model_path: str, base: str, now: float | None = None) -> tuple[str, str]:
    """Copies the SavedModel at ``model_path`` to a new version under ``base``;
    returns (version directory, version)."""
    version = next_version(base, now)
    if "://" in base:  # an object store: no atomic rename
        while fileio.exists(os.path.join(base, str(version))):
            version += 1
        target = os.path.join(base, str(version))
        _copy_model(model_path, target)
        return target, str(version)
    os.makedirs(base, exist_ok=True)
    temp = os.path.join(base, f"{naming.PUSH_TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    _copy_model(model_path, temp)
    while True:
        target = os.path.join(base, str(version))
        try:
            rename_no_replace(temp, target)
            return target, str(version)
        except FileExistsError:
            version += 1  # pushed meanwhile by someone else: the next one


def next_version(base: str, now: float | None = None) -> int:
    """The time in whole seconds, or one more than the newest version under ``base``."""
    try:
        existing = [int(e) for e in fileio.listdir(base) if e.isdigit()]
    except OSError:  # fileio's NotFoundError too
        existing = []
    return max([int(time.time() if now is None else now), *(v + 1 for v in existing)])


def _copy_model(model_path: str, target: str) -> None:
    """TFX's copy: every file, then ``saved_model.pb`` (what readers take as complete)."""
    io_utils.copy_dir(model_path, target, deny_regex_patterns=[r"saved_model\.pb"])
    if fileio.exists(os.path.join(model_path, SAVED_MODEL_PB)):
        io_utils.copy_file(os.path.join(model_path, SAVED_MODEL_PB),
                           os.path.join(target, SAVED_MODEL_PB))


def rename_no_replace(src: str, dst: str) -> None:
    """Renames directory ``src`` to ``dst`` atomically; FileExistsError if ``dst`` exists,
    even empty (plain ``rename`` replaces an empty directory)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                     _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: the filesystem lacks the flag
            raise OSError(err, os.strerror(err), dst)
    # No RENAME_NOREPLACE: reserve the name (mkdir fails if it exists), then replace
    # our own empty directory; it is empty, so no reader takes it for a version.
    os.mkdir(dst)
    os.rename(src, dst)


class Executor(pusher_executor.Executor):
    """TFX's Pusher executor with :func:`push` for the filesystem destination."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        kind = destination.WhichOneof("destination")
        if kind != "filesystem" or destination.filesystem.versioning not in (
                pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP):
            raise NotImplementedError(f"AtomicPusher pushes to a filesystem with "
                                      f"UNIX_TIMESTAMP versions, not {destination}")
        serving_path, version = push(model_path, destination.filesystem.base_directory)
        logging.info("Model version %s written to serving path %s.", version, serving_path)
        io_utils.copy_dir(model_path, model_push.uri)  # the archived copy, as TFX's
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class AtomicPusher(pusher_component.Pusher):
    """TFX's Pusher (same inputs, outputs and MLMD records) with :class:`Executor`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
