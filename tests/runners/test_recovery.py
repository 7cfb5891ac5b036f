"""The next run puts right what a killed one left: executions still RUNNING in the real
MLMD store are marked FAILED (saying why), and a push's temporary directory goes."""
import io

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_mtl import naming
from tfx_mtl.results import metadata
from tfx_mtl.runners import local, recovery, run_lock

Execution = metadata_store_pb2.Execution


def _store_with(path, states):
    """A real SQLite MLMD store holding one execution in each of ``states``; their ids."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(
        name="tfx.components.transform.component.Transform"))
    return store.put_executions([Execution(type_id=type_id, last_known_state=s) for s in states])


def _states(path):
    store = metadata.open_store(str(path))
    return [(metadata.execution_state(e), e.custom_properties.get(recovery.ABANDONED_PROPERTY))
            for e in sorted(store.get_executions(), key=lambda e: e.id)]


def test_running_and_new_executions_are_marked_failed_with_the_reason(tmp_path):
    path = tmp_path / "metadata.sqlite"
    _store_with(path, [Execution.RUNNING, Execution.COMPLETE, Execution.NEW, Execution.CACHED])
    assert recovery.abandon_stale_executions(str(path), "the run of pid 42 was killed") == 2
    states = _states(path)
    assert [s for s, _ in states] == ["FAILED", "COMPLETE", "FAILED", "CACHED"]
    assert states[0][1].string_value.startswith(
        "was RUNNING when its run ended without finishing it (the run of pid 42 was killed)")
    assert states[2][1].string_value.startswith("was NEW when")
    assert states[1][1] is None and states[3][1] is None
    assert recovery.abandon_stale_executions(str(path), "again") == 0  # nothing left to mark


def test_no_store_is_nothing_to_mark(tmp_path):
    assert recovery.abandon_stale_executions(str(tmp_path / "metadata.sqlite"), "x") == 0
    assert not (tmp_path / "metadata.sqlite").exists()


def test_the_next_run_marks_a_killed_runs_executions_and_removes_its_partial_push(tmp_path):
    """local.run itself, on a directory a killed run left: a RUNNING execution, a lock
    file naming the dead run, a push's temporary directory. (It then stops at the
    refusal to reuse baselines the store does not have, before the pipeline.)"""
    paths = metadata.RunPaths(str(tmp_path))
    _store_with(paths.metadata, [Execution.COMPLETE, Execution.RUNNING])
    (tmp_path / run_lock.LOCK_FILE).write_text(
        '{"pid": 999999, "host": "h", "started": "2026-11-30T06:00:00+0000"}')
    pipeline_dir = tmp_path / "serving_model" / "tfx-mtl-chicago-taxi"
    partial = pipeline_dir / f"{naming.PUSH_TEMP_PREFIX}123-abc" / "variables"
    partial.mkdir(parents=True)
    (pipeline_dir / "1700000000").mkdir()  # a pushed version: kept
    out = io.StringIO()
    with pytest.raises(run_lock.InputError, match="no trained single-task baseline"):
        local.run(output_dir=str(tmp_path), train_steps=5, baselines="reuse", out=out)
    assert ("tfx-mtl: the run of pid 999999 on h, started 2026-11-30T06:00:00+0000, was "
            f"killed: marked 1 unfinished execution(s) FAILED in {paths.metadata}") in out.getvalue()
    assert [s for s, _ in _states(paths.metadata)] == ["COMPLETE", "FAILED"]
    assert "a push that did not finish" in out.getvalue()
    assert sorted(p.name for p in pipeline_dir.iterdir()) == ["1700000000"]
    assert (tmp_path / run_lock.LOCK_FILE).read_text() == ""  # released cleanly
