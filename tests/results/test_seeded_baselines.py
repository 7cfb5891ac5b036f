"""Reading a run with seeded Trainer ids (``baseline_<task>__seed<i>``): each seed's
baselines apart, and ``baselines: reuse`` refused when any seed has none."""
import io

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_mtl.errors import InputError
from tfx_mtl.results import metadata
from tfx_mtl.runners import local


def _store(path, nodes_with_model, nodes_without):
    """A real MLMD SQLite store with a node context per node id, a live Model in some."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    node_type = store.put_context_type(metadata_store_pb2.ContextType(name="node"))
    model_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Model"))
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))
    for node in nodes_with_model + nodes_without:
        (context,) = store.put_contexts([metadata_store_pb2.Context(
            type_id=node_type, name=f"p.{node}")])
        if node in nodes_without:
            continue
        (artifact,) = store.put_artifacts([metadata_store_pb2.Artifact(
            type_id=model_type, uri=f"/models/{node}", state=metadata_store_pb2.Artifact.LIVE)])
        (execution,) = store.put_executions([metadata_store_pb2.Execution(type_id=execution_type)])
        store.put_attributions_and_associations(
            [metadata_store_pb2.Attribution(artifact_id=artifact, context_id=context)],
            [metadata_store_pb2.Association(execution_id=execution, context_id=context)])


def test_a_baseline_missing_for_any_seed_is_named(tmp_path):
    path = tmp_path / "metadata.sqlite"
    _store(path, ["baseline_fare", "baseline_big__seed1"], ["baseline_fare__seed1"])
    assert metadata.missing_baselines(str(path), "p", ["big", "fare"], seeds=2) == [
        "baseline_big", "baseline_fare__seed1"]
    assert metadata.missing_baselines(str(path), "p", ["big", "fare"]) == ["baseline_big"]
    assert metadata.missing_baselines(str(tmp_path / "none.sqlite"), "p", ["fare"], 2) == [
        "baseline_fare", "baseline_fare__seed1"]


def test_reuse_with_two_seeds_is_refused_naming_each_seeds_missing_baseline(tmp_path):
    with pytest.raises(InputError, match=r"trip_seconds \(seed index 1\) in .*--seeds 2"):
        local.run(output_dir=str(tmp_path), train_steps=5, baselines="reuse", seeds=2,
                  out=io.StringIO())


@pytest.mark.parametrize("seeds", [0, -2])
def test_a_seed_count_below_one_is_refused_before_the_run(tmp_path, seeds):
    with pytest.raises(InputError, match="--seeds: must be a positive integer"):
        local.run(output_dir=str(tmp_path), train_steps=5, seeds=seeds, out=io.StringIO())
    assert not (tmp_path / "logs").exists()


def test_trained_baselines_are_one_seeds():
    run = metadata.Run(
        pipeline="p", run_id="r", metadata="m", pipeline_root="/nowhere", components=(),
        # Seed 1 after seed 0, as it runs: a reader keyed by task alone would keep seed 1's.
        outputs={"baseline_fare": {"model": "/fare0"}, "baseline_fare__seed1": {"model": "/fare1"},
                 "Trainer__seed1": {"model": "/mt1"}, "baseline_big": {"model": "/big0"}},
        spec=None, report=None, pushed=None)
    assert run.trained_baselines() == {"big": "/big0", "fare": "/fare0"}
    assert run.trained_baselines(1) == {"fare": "/fare1"}
