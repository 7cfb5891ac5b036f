"""The pipeline definition: one DAG from the spec, with cache keys that follow content."""
import os

from tfx_mtl import data, task_spec
from tfx_mtl.pipeline import pipeline as pipeline_lib


def test_curated_schema_is_staged_by_content(tmp_path):
    schema = tmp_path / "schema.pbtxt"
    schema.write_text('feature { name: "a" type: INT }\n')
    root = str(tmp_path / "root")
    first = pipeline_lib.stage_schema(str(schema), root)
    assert pipeline_lib.stage_schema(str(schema), root) == first  # same content, same input
    assert open(first).read() == schema.read_text()
    schema.write_text('feature { name: "a" type: FLOAT }\n')
    edited = pipeline_lib.stage_schema(str(schema), root)
    assert edited != first and "FLOAT" in open(edited).read()


def test_the_dag_has_every_component_wired_from_the_spec(tmp_path):
    spec = task_spec.load(data.bundled_spec())
    pipeline = pipeline_lib.create_pipeline(
        pipeline_name="p", pipeline_root=str(tmp_path), spec=spec,
        data=pipeline_lib.DataSource.from_path(data.bundled_taxi_csv()),
        serving_model_dir=str(tmp_path / "serving"), train_steps=5)
    assert {c.id for c in pipeline.components} == {
        "CsvExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator",
        "SchemaGate", "Transform", "Trainer", "Evaluator", "Pusher"}
    by_id = {c.id: c for c in pipeline.components}
    # Transform reads the schema that passed the gate, so anomalies stop it.
    assert by_id["Transform"].inputs["schema"].producer_component_id == "SchemaGate"
    # Module code by import path: nothing in the pipeline points at a local file.
    assert by_id["Trainer"].exec_properties["run_fn"] == pipeline_lib.RUN_FN
    assert by_id["Transform"].exec_properties["preprocessing_fn"] == pipeline_lib.PREPROCESSING_FN
    eval_config = by_id["Evaluator"].exec_properties["eval_config"]
    assert all(task in eval_config for task in spec.task_names)


def test_code_version_changes_with_the_module_code(tmp_path, monkeypatch):
    before = pipeline_lib.code_version()
    assert before == pipeline_lib.code_version() and len(before) == 16
    import tfx_mtl.models as models_pkg
    extra = os.path.join(models_pkg.__path__[0], "zz_test_probe.py")
    try:
        with open(extra, "w") as f:
            f.write("X = 1\n")
        assert pipeline_lib.code_version() != before
    finally:
        os.remove(extra)
