"""What a killed run leaves in its output directory, put right at the next run's start.

Called with the directory's lock held (:mod:`tfx_mtl.runners.run_lock`), so no other
run is live there and whatever looks unfinished was abandoned:

* executions still NEW or RUNNING in the MLMD store. LocalDagRunner never looks at
  them again (each run registers new executions), so they would say "running"
  forever. They are marked FAILED -- TFX's own state for an execution that did not
  finish (``execution_publish_utils.publish_failed_execution``); CANCELED means a
  deliberate stop by an orchestrator, which this was not -- with a custom property
  saying why;
* a push's hidden temporary directory (:mod:`tfx_mtl.components.atomic_pusher`),
  removed.
"""
from __future__ import annotations

import os
import shutil
import time

from tfx_mtl import naming

ABANDONED_PROPERTY = "tfx_mtl_abandoned"


def abandon_stale_executions(sqlite_path: str, why: str) -> int:
    """Marks every NEW or RUNNING execution in the store FAILED, recording ``why`` in
    its :data:`ABANDONED_PROPERTY`; returns how many it marked."""
    if not os.path.isfile(sqlite_path):
        return 0
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = sqlite_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(config)
    Execution = metadata_store_pb2.Execution
    stale = [e for e in store.get_executions()
             if e.last_known_state in (Execution.NEW, Execution.RUNNING)]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for execution in stale:
        state = Execution.State.Name(execution.last_known_state)
        execution.last_known_state = Execution.FAILED
        execution.custom_properties[ABANDONED_PROPERTY].string_value = (
            f"was {state} when its run ended without finishing it ({why}); "
            f"marked FAILED at {stamp}")
    if stale:
        store.put_executions(stale)
    return len(stale)


def describe_previous(previous: dict | None) -> str:
    """Why executions are stale, from what the lock file says of the run that left them."""
    if previous:
        return (f"the run of pid {previous.get('pid')} on {previous.get('host')}, started "
                f"{previous.get('started')}, was killed")
    return "the run that started them is gone (no run holds the output directory)"


def clean_push_temporaries(serving_root: str) -> list[str]:
    """Removes the temporary directories killed pushes left under ``serving_root``
    (``<root>/<pipeline>/.push-*``); returns them."""
    removed = []
    if not os.path.isdir(serving_root):
        return removed
    for pipeline in sorted(os.listdir(serving_root)):
        base = os.path.join(serving_root, pipeline)
        if not os.path.isdir(base):
            continue
        for entry in sorted(os.listdir(base)):
            if entry.startswith(naming.PUSH_TEMP_PREFIX):
                shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
                removed.append(os.path.join(base, entry))
    return removed
