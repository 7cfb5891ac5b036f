"""Executors of the compiled Kubeflow pipeline, run locally exactly as their containers
would: the task's ExecutorInput built as KFP's driver builds it, the container's own
command (TFX's v2 entrypoint) and the real executor (see tests/kubeflow_support.py)."""
import json
import os

import pytest
from kubeflow_support import InputArtifact, executor_input, mlmd_outputs, root_defaults, run_task

from tfx_mtl import data, run_parameters, task_spec
from tfx_mtl.runners import kubeflow as compiler

pytestmark = pytest.mark.subprocess  # each task runs its container command

IMAGE = "registry.example/ml/tfx-mtl:1.2.3"
ROOT = "gs://bucket/tfx-mtl"
COMPILED_DEFAULTS = {"train_steps": run_parameters.DEFAULT_TRAIN_STEPS,
                     "architecture": "shared_bottom", "weighting": "uniform", "combine": "sum"}
RUN = {"train_steps": 30, "architecture": "mmoe", "weighting": "uncertainty",
       "combine": "pcgrad"}


def _compile(path, spec_path=None):
    job = compiler.compile_pipeline(
        compiler.CompileOptions(image=IMAGE, pipeline_root=ROOT, spec_path=spec_path),
        str(path))
    return job["pipelineSpec"]


def _failure(run) -> str:
    return f"exit {run.returncode}; command {run.command[:3]}...\n{run.output[-6000:]}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The bundled spec compiled (the PipelineSpec dict)."""
    return _compile(tmp_path_factory.mktemp("kfp") / "pipeline.json")


def test_executor_input_resolves_run_parameters_and_constants(compiled, tmp_path):
    splits = {"split_names": '["train", "validation", "test"]'}
    examples = InputArtifact("/data/examples", splits, "6")
    inputs = {"examples": examples, "transform_graph": "/data/transform_graph"}
    default = executor_input(compiled, "Trainer", str(tmp_path), {}, inputs)
    values = default["inputs"]["parameterValues"]
    assert {k: values[k] for k in COMPILED_DEFAULTS} == COMPILED_DEFAULTS
    assert values["run_fn"] == "tfx_mtl.models.trainer.run_fn"  # a runtimeValue.constant
    chosen = executor_input(compiled, "Trainer", str(tmp_path), RUN, inputs)
    assert {k: chosen["inputs"]["parameterValues"][k] for k in RUN} == RUN
    [runtime] = chosen["inputs"]["artifacts"]["examples"]["artifacts"]
    assert runtime["metadata"] == splits and runtime["name"] == "6"
    assert "title: tfx.Examples" in runtime["type"]["instanceSchema"]
    assert set(chosen["outputs"]["artifacts"]) == {"model", "model_run"}
    with pytest.raises(ValueError, match="train_steps"):
        executor_input(compiled, "Trainer", str(tmp_path), {"train_steps": "30"}, inputs)
    with pytest.raises(ValueError, match="not declared"):
        executor_input(compiled, "Trainer", str(tmp_path), {"epochs": 3}, inputs)


def test_curated_schema_gen_runs_through_its_container_command(compiled, tmp_path):
    run = run_task(compiled, "CuratedSchemaGen", tmp_path)
    assert run.returncode == 0, _failure(run)
    [uri] = run.outputs["schema"]
    expected = task_spec.load(data.bundled_spec()).schema
    with open(os.path.join(uri, "schema.pbtxt")) as got, open(expected) as want:
        assert got.read() == want.read()
    # The executor output KFP reads back names the artifact it was given.
    [out] = run.executor_output["artifacts"]["schema"]["artifacts"]
    assert out["uri"] == uri


def test_bad_run_time_value_fails_the_trainer_container(compiled, tmp_path):
    """The run options are checked before any input is read: placeholders suffice."""
    from tfx_mtl.models import weighting

    inputs = {"examples": InputArtifact(str(tmp_path / "examples"),
                                        {"split_names": '["train", "validation", "test"]'}),
              "transform_graph": str(tmp_path / "transform_graph")}
    run = run_task(compiled, "Trainer", tmp_path / "run", {"weighting": "nope"}, inputs)
    assert run.returncode != 0, _failure(run)
    assert run.executor_output is None  # nothing for KFP to record: the task fails
    lines = [line for line in run.output.splitlines() if "RunOptionError:" in line]
    assert lines, _failure(run)
    assert "weighting='nope'" in lines[-1], lines[-1]
    for known in weighting.names():
        assert known in lines[-1], lines[-1]


# --- slow: the Trainers on real Transform outputs ------------------------------------


@pytest.fixture(scope="module")
def trainer_inputs(taxi_run, tmp_path_factory):
    """(compiled spec of the taxi run's task spec, the Trainer's artifact inputs: the
    run's Transform outputs, with the metadata KFP would carry from MLMD)."""
    spec = _compile(tmp_path_factory.mktemp("kfp") / "taxi.json", str(taxi_run.spec_path))
    # The Trainers run here: the bucket their checkpoint roots name is a local directory.
    bucket = str(tmp_path_factory.mktemp("bucket"))
    spec = json.loads(json.dumps(spec).replace(f"{ROOT}/", f"{bucket}/"))
    transform = mlmd_outputs(taxi_run.output_dir / "metadata.sqlite", "Transform")
    return spec, {"examples": transform["transformed_examples"],
                  "transform_graph": transform["transform_graph"]}


def _report(run) -> dict:
    [model_run] = run.outputs["model_run"]
    with open(os.path.join(model_run, "training_report.json")) as f:
        return json.load(f)


@pytest.mark.e2e
def test_compiled_trainer_trains_with_the_run_parameters(trainer_inputs, tmp_path):
    spec, inputs = trainer_inputs
    assert {k: root_defaults(spec)[k] for k in RUN} == COMPILED_DEFAULTS != RUN
    run = run_task(spec, "Trainer", tmp_path, RUN, inputs)
    assert run.returncode == 0, _failure(run)
    [model] = run.outputs["model"]
    assert os.path.isfile(os.path.join(model, "Format-Serving", "saved_model.pb"))
    report = _report(run)
    assert report["steps"] == 30
    assert "/Trainer/checkpoints/" in report["checkpoint_dir"]  # under the compiled root's
    assert report["architecture"]["name"] == "mmoe"
    assert (report["weighting"], report["combine"]) == ("uncertainty", "pcgrad")
    written = {k: [a["uri"] for a in v["artifacts"]]
               for k, v in run.executor_output["artifacts"].items()}
    assert written == run.outputs


@pytest.mark.e2e
def test_compiled_baseline_follows_the_architecture_parameter(trainer_inputs, tmp_path):
    spec, inputs = trainer_inputs
    task = task_spec.load(data.bundled_spec()).task_names[0]
    run = run_task(spec, f"baseline_{task}", tmp_path,
                   {"train_steps": 20, "architecture": "mmoe"}, inputs)
    assert run.returncode == 0, _failure(run)
    [model] = run.outputs["model"]
    assert os.path.isfile(os.path.join(model, "Format-Serving", "saved_model.pb"))
    report = _report(run)
    assert report["steps"] == 20
    assert (report["architecture"]["name"], report["tasks"]) == ("mmoe", [task])
    assert (report["weighting"], report["combine"]) == ("uniform", "sum")  # one task
