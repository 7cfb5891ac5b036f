"""`tfx-mtl compile`: the local DAG as a KFP v2 spec, loaded back with kfp-pipeline-spec's protos."""
import json
import os
import re

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tfx_mtl import cli, data, naming, run_parameters, task_spec
from tfx_mtl.errors import InputError
from tfx_mtl.models import combination, weighting
from tfx_mtl.runners import kubeflow as compiler
from tfx_mtl.pipeline import pipeline as pipeline_lib

IMAGE = "registry.example/ml/tfx-mtl:1.2.3"
ROOT = "gs://bucket/tfx-mtl"
SECRET = "s3cr3t-token-value-0123456789"
HEAVY = ("CsvExampleGen", "StatisticsGen", "Transform")  # + every evaluate_<task>


def _compile(path, **options):
    return compiler.compile_pipeline(
        compiler.CompileOptions(image=IMAGE, pipeline_root=ROOT, **options), str(path))


def _load(path) -> pipeline_spec_pb2.PipelineSpec:
    """The compiled file as KFP's own proto (unknown fields refused)."""
    text = open(path).read()
    if str(path).endswith(".json"):
        job = pipeline_spec_pb2.PipelineJob()
        json_format.Parse(text, job)
        return json_format.ParseDict(json_format.MessageToDict(job.pipeline_spec),
                                     pipeline_spec_pb2.PipelineSpec())
    return json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The bundled spec compiled to YAML, with credentials in the environment."""
    tmp = tmp_path_factory.mktemp("kfp")
    key_file = tmp / "service-account.json"
    key_file.write_text(json.dumps({"private_key": SECRET}))
    saved = dict(os.environ)
    os.environ.update(KFP_BEARER_TOKEN=SECRET, GOOGLE_APPLICATION_CREDENTIALS=str(key_file),
                      AWS_SECRET_ACCESS_KEY=SECRET)
    try:
        _compile(tmp / "pipeline.yaml")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return tmp / "pipeline.yaml"


def _local_dag(tmp_path, spec=None):
    spec = spec or task_spec.load(data.bundled_spec())
    return pipeline_lib.create_pipeline(
        pipeline_name="local", pipeline_root=str(tmp_path / "root"), spec=spec,
        data=pipeline_lib.DataSource.from_path(data.bundled_taxi_csv()),
        serving_model_dir=str(tmp_path / "serving"), train_steps=5)


def test_every_local_component_is_a_task_with_the_same_edges(compiled, tmp_path):
    spec = _load(compiled)
    local = {c.id: {u.id for u in c.upstream_nodes} for c in _local_dag(tmp_path).components}
    tasks = spec.root.dag.tasks
    assert set(tasks) == set(local)
    for name, task in tasks.items():
        assert set(task.dependent_tasks) == local[name], name
        producers = {a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()}
        assert producers == local[name], name  # every edge carries an artifact


def test_every_executor_runs_the_image_through_tfx_v2_entrypoint(compiled):
    spec = _load(compiled)
    executors = spec.deployment_spec.fields["executors"].struct_value.fields
    assert len(executors) == len(spec.root.dag.tasks)
    for label, executor in executors.items():
        container = json_format.MessageToDict(executor.struct_value)["container"]
        assert container["image"] == IMAGE, label
        assert container["command"] == list(compiler.ENTRYPOINT), label
        assert container["args"][0] == "--executor_class_path"
    container = json_format.MessageToDict(executors["Trainer_executor"].struct_value)["container"]
    assert container["args"][1] == "tfx_mtl.components.mtl_trainer.Executor"


def test_run_time_parameters_are_declared_with_their_defaults_and_wired(compiled):
    spec = _load(compiled)
    declared = spec.root.input_definitions.parameters
    P = pipeline_spec_pb2.ParameterType
    expected = {"data_root": (P.STRING, compiler.IMAGE_DATA_ROOT),
                "train_steps": (P.NUMBER_INTEGER, run_parameters.DEFAULT_TRAIN_STEPS),
                "architecture": (P.STRING, "shared_bottom"),
                "weighting": (P.STRING, "uniform"), "combine": (P.STRING, "sum")}
    assert set(declared) == set(expected) == set(run_parameters.PARAMETERS)
    assert spec.default_pipeline_root == ROOT
    for name, (ptype, default) in expected.items():
        assert declared[name].parameter_type == ptype, name
        assert json_format.MessageToDict(declared[name].default_value) == default, name
        assert declared[name].is_optional

    tasks = task_spec.load(data.bundled_spec()).task_names
    trainers = {"Trainer", *(f"baseline_{t}" for t in tasks)}
    # SchemaGate names the data it refuses.
    assert _users(spec, "data_root") == {("CsvExampleGen", "input_base"),
                                         ("SchemaGate", "data_root")}
    assert _users(spec, "train_steps") == {(t, "train_steps") for t in trainers}
    assert _users(spec, "architecture") == {(t, "architecture") for t in trainers}
    # Baselines have one task: nothing to weigh or combine, so they stay cached.
    assert _users(spec, "weighting") == {("Trainer", "weighting")}
    assert _users(spec, "combine") == {("Trainer", "combine")}


def _users(spec, parameter):
    """(task, input) pairs that read the run-time ``parameter``."""
    return {(task, key) for task, t in spec.root.dag.tasks.items()
            for key, p in t.inputs.parameters.items()
            if p.component_input_parameter == parameter}


def test_tfrecord_data_compiles_with_import_example_gen(compiled, tmp_path, capsys):
    """--data-format tfrecord: ImportExampleGen reads data_root's *.tfrecord* files, in
    place of CsvExampleGen and wired alike; the image's bundled data is CSV, so a
    TFRecord pipeline needs its own --data-root."""
    out = tmp_path / "p.yaml"
    args = ["compile", "--image", IMAGE, "--output", str(out), "--pipeline-root", ROOT,
            "--data-format", "tfrecord"]
    assert cli.main(args) == 2
    assert "--data-format: tfrecord needs --data-root" in capsys.readouterr().err
    assert cli.main([*args, "--data-root", "gs://bucket/examples"]) == 0
    spec, csv = _load(out), _load(compiled)
    node, csv_node = naming.EXAMPLE_GEN["tfrecord"], naming.EXAMPLE_GEN["csv"]
    assert set(spec.root.dag.tasks) == set(csv.root.dag.tasks) - {csv_node} | {node}
    for name, task in csv.root.dag.tasks.items():
        renamed = {node if t == csv_node else t for t in task.dependent_tasks}
        assert set(spec.root.dag.tasks[name.replace(csv_node, node)].dependent_tasks) == renamed
    assert _users(spec, "data_root") == {(node, "input_base"), ("SchemaGate", "data_root")}
    assert json_format.MessageToDict(
        spec.root.input_definitions.parameters["data_root"].default_value) == "gs://bucket/examples"
    input_config = spec.root.dag.tasks[node].inputs.parameters["input_config"]
    assert json.loads(input_config.runtime_value.constant.string_value)["splits"] == [
        {"name": "single_split", "pattern": "*.tfrecord*"}]
    # TFX's ImportExampleGen, writing its splits without the reshuffle (streaming_write).
    assert _container(spec, node)["args"][1] == (
        "tfx_mtl.components.streaming_write.ImportExecutor")


def test_split_directories_compile_with_an_input_split_per_directory(tmp_path):
    """--data-layout split-dirs: data_root, a run-time value the compiler cannot look at,
    holds train/, validation/ and test/; ExampleGen reads each as its split, hashes nothing."""
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", "--image", IMAGE, "--output", str(out), "--pipeline-root", ROOT,
                     "--data-root", "gs://bucket/split", "--data-layout", "split-dirs"]) == 0
    parameters = _load(out).root.dag.tasks["CsvExampleGen"].inputs.parameters

    def constant(name):
        return json.loads(parameters[name].runtime_value.constant.string_value)
    assert constant("input_config")["splits"] == [
        {"name": split, "pattern": f"{split}/*.csv"} for split in naming.SPLITS]
    assert constant("output_config") == {}
    _compile(tmp_path / "q.yaml", data_root="gs://bucket/split")  # the same DAG otherwise
    assert set(_load(tmp_path / "q.yaml").root.dag.tasks) == set(_load(out).root.dag.tasks)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])(/[\w.@-]+(?:/[\w.@-]+)+)")


def test_no_credential_or_local_path_leaks(compiled):
    text = compiled.read_text()
    assert SECRET not in text
    for local in (os.getcwd(), os.path.expanduser("~"), str(compiled.parent), "/tmp",
                  os.path.dirname(data.bundled_spec()), os.path.dirname(pipeline_lib.__file__)):
        assert local not in text, local
    # Constants nest JSON in strings: scan the decoded text too.
    decoded = text.encode().decode("unicode_escape")
    assert set(_ABSOLUTE_PATH.findall(decoded)) <= {compiler.IMAGE_DATA_ROOT}
    assert "service-account" not in text and "AWS_SECRET" not in text


def test_compiling_is_deterministic(compiled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # another directory, another output path: same bytes
    _compile(tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_bytes() == compiled.read_bytes()
    _compile(tmp_path / "a.json")
    _compile(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    job = json.loads((tmp_path / "a.json").read_text())
    assert job["runtimeConfig"]["parameterValues"]["train_steps"] == run_parameters.DEFAULT_TRAIN_STEPS
    assert _load(tmp_path / "a.json") == _load(compiled)


def test_a_fourth_task_shows_up_in_the_compiled_spec(compiled, tmp_path):
    raw = yaml.safe_load(open(data.bundled_spec()))
    raw["schema"] = os.path.join(os.path.dirname(data.bundled_spec()), raw["schema"])
    raw["tasks"].append({"name": "long_trip", "type": "binary", "label": "trip_seconds > 1200",
                         "role": "auxiliary", "metrics": [{"name": "auc", "max_regression": 0.01}]})
    spec_path = tmp_path / "four.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    _compile(tmp_path / "four.yaml.out.yaml", spec_path=str(spec_path))
    before, after = _load(compiled), _load(tmp_path / "four.yaml.out.yaml")
    added = set(after.root.dag.tasks) - set(before.root.dag.tasks)
    assert added == {"baseline_long_trip", "evaluate_long_trip"}
    gate = after.root.dag.tasks["BlessingGate"]
    assert {"long_trip_evaluation", "long_trip_blessing"} <= set(gate.inputs.artifacts)
    trainer_config = json.loads(after.root.dag.tasks["Trainer"].inputs.parameters[
        "custom_config"].runtime_value.constant.string_value)
    assert "long_trip" in [t["name"] for t in trainer_config["task_spec"]["tasks"]]
    eval_config = after.root.dag.tasks["evaluate_long_trip"].inputs.parameters["eval_config"]
    assert "long_trip__evaluation" in eval_config.runtime_value.constant.string_value


def _container(spec, task):
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    return executors[f"{task}_executor"]["container"]


def test_beam_args_go_to_the_data_parallel_components_only(tmp_path):
    beam = ("--runner=DataflowRunner", "--project=p", "--region=europe-west4",
            "--temp_location=gs://bucket/tmp")
    _compile(tmp_path / "p.yaml", beam_args=beam)
    spec = _load(tmp_path / "p.yaml")
    heavy = {*HEAVY, *(t for t in spec.root.dag.tasks if t.startswith("evaluate_"))}
    for task in spec.root.dag.tasks:
        args = _container(spec, task)["args"]
        if task in heavy:
            assert "--runner=DataflowRunner" in args and f"--sdk_container_image={IMAGE}" in args
        else:
            # The light ones stay on the pinned local runner (no Prism download).
            runners = [a for a in args if a.startswith("--runner")]
            assert runners == [pipeline_lib.DIRECT_BEAM_ARGS[0]], (task, runners)
    driver = _container(spec, "CsvExampleGen")["lifecycle"]["preCacheCheck"]["args"]
    assert "--runner=DataflowRunner" in driver


def test_trainer_gpus_are_requested_for_every_trainer(tmp_path):
    _compile(tmp_path / "p.yaml", trainer=compiler.TrainerScale(gpus=2, memory_gb=16))
    spec = _load(tmp_path / "p.yaml")
    for task in spec.root.dag.tasks:
        resources = _container(spec, task).get("resources")
        if task == "Trainer" or task.startswith("baseline_"):
            assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "2"}, task
            assert resources["memoryLimit"] == 16
        else:
            assert resources is None, task


def test_several_trainer_workers_train_as_a_vertex_custom_job(tmp_path):
    _compile(tmp_path / "p.yaml", trainer=compiler.TrainerScale(
        workers=3, gpus=1, gpu_type="NVIDIA_TESLA_T4", vertex_project="proj",
        vertex_region="us-central1"))
    spec = _load(tmp_path / "p.yaml")
    container = _container(spec, "Trainer")
    assert container["args"][1] == "tfx_mtl.components.vertex_trainer.VertexTrainingExecutor"
    config = json.loads(spec.root.dag.tasks["Trainer"].inputs.parameters[
        "custom_config"].runtime_value.constant.string_value)
    job = config["ai_platform_training_args"]
    assert job["project"] == "proj" and config["ai_platform_vertex_region"] == "us-central1"
    assert [p["replica_count"] for p in job["worker_pool_specs"]] == [1, 2]
    for pool in job["worker_pool_specs"]:
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert pool["machine_spec"]["accelerator_count"] == 1
    assert "resources" not in container  # the job's machines hold the GPUs


@pytest.mark.parametrize("options, message", [
    ({"pipeline_root": "/tmp/root"}, "--pipeline-root"),
    ({"pipeline_root": "relative/root"}, "--pipeline-root"),
    ({"data_root": "/home/me/data"}, "--data-root"),
    ({"data_format": "parquet", "data_root": "gs://b/d"}, "--data-format"),
    ({"data_layout": "split-dirs"}, "--data-layout: split-dirs needs --data-root"),
    ({"data_layout": "nested", "data_root": "gs://b/d"}, "--data-layout: must be one of"),
    ({"image": "not an image"}, "--image"),
    ({"beam_args": ("--runner=DataflowRunner", "--project=p")}, "--region, --temp_location"),
    ({"trainer": compiler.TrainerScale(workers=2)}, "--vertex-project"),
    ({"trainer_options": {"weighting": "nope"}}, "trainer.weighting"),
])
def test_bad_options_are_refused_naming_the_option(tmp_path, options, message):
    kwargs = {"image": IMAGE, "pipeline_root": ROOT, **options}
    with pytest.raises(ValueError, match=re.escape(message)):
        compiler.compile_pipeline(compiler.CompileOptions(**kwargs), str(tmp_path / "p.yaml"))
    assert not (tmp_path / "p.yaml").exists()


def test_reused_baselines_cannot_compile(tmp_path):
    raw = yaml.safe_load(open(data.bundled_spec()))
    raw["schema"] = os.path.join(os.path.dirname(data.bundled_spec()), raw["schema"])
    raw["evaluation"]["baselines"] = "reuse"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(compiler.CompileError, match="baselines: reuse"):
        _compile(tmp_path / "p.yaml", spec_path=str(tmp_path / "s.yaml"))


def test_the_cli_compiles_and_lists_the_parameters(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", "--image", IMAGE, "--output", str(out), "--pipeline-root", ROOT,
                     "--model", "mmoe", "--weighting", "uncertainty", "--train-steps", "3000"]) == 0
    printed = capsys.readouterr().out
    assert "--param architecture=mmoe" in printed and "--param train_steps=3000" in printed
    declared = _load(out).root.input_definitions.parameters
    assert json_format.MessageToDict(declared["weighting"].default_value) == "uncertainty"
    assert cli.main(["compile", "--image", IMAGE, "--output", str(tmp_path / "q.yaml"),
                     "--pipeline-root", str(tmp_path)]) == 2
    assert "--pipeline-root" in capsys.readouterr().err


def test_run_values_the_trainer_would_refuse_are_named():
    assert compiler.run_value_problems({"architecture": "ple", "weighting": "dwa",
                                        "combine": "cagrad", "train_steps": 5,
                                        "data_root": "gs://b/d", "other": "x"}) == []
    assert compiler.run_value_problems({"weighting": "nope", "combine": "avg",
                                        "architecture": "single_task", "train_steps": -1}) == [
        ("architecture", "'single_task' is not one of shared_bottom, mmoe, ple, cross_stitch"),
        ("weighting", f"'nope' is not one of {', '.join(weighting.names())}"),
        ("combine", f"'avg' is not one of {', '.join(combination.names())}"),
        ("train_steps", "must be a positive integer, got -1")]


def test_the_longest_spec_name_is_a_pipeline_name_tfx_and_kubeflow_accept():
    """task_spec bounds the spec name by TFX's pipeline-name limit and Kubeflow's pattern."""
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.kubeflow.v2 import pipeline_builder

    longest = "a1_" * (naming.MAX_SPEC_NAME_LENGTH // 3) + "z" * (naming.MAX_SPEC_NAME_LENGTH % 3)
    assert task_spec.parse({"name": longest, "features": ["x"],
                            "tasks": [{"name": "y", "type": "regression", "label": "y"}]})
    name = naming.pipeline_name(longest)
    assert tfx_pipeline.Pipeline(pipeline_name=name, pipeline_root=ROOT).pipeline_name == name
    pipeline_builder._check_name(name)
    with pytest.raises(ValueError, match="exceeds maximum allowed length"):
        tfx_pipeline.Pipeline(pipeline_name=name + "z", pipeline_root=ROOT)


def test_seeds_are_fixed_at_compile_time_from_the_option_or_the_spec(tmp_path, capsys):
    """--seeds N (default: the spec's evaluation.seeds) compiles N of every Trainer, all
    into ModelComparison; the seeds are no run-time parameter (the DAG's shape)."""
    raw = yaml.safe_load(open(data.bundled_spec()))
    raw["schema"] = os.path.join(os.path.dirname(data.bundled_spec()), raw["schema"])
    raw["evaluation"]["seeds"] = 2
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    tasks = task_spec.load(data.bundled_spec()).task_names

    def trainers(**options):
        dag = _compile(tmp_path / "p.yaml", **options)["pipelineSpec"]["root"]["dag"]["tasks"]
        assert set(dag[naming.MODEL_COMPARISON]["dependentTasks"]) >= {
            n for n in dag if n.startswith(("Trainer", "baseline_"))}
        return {n for n in dag if n.startswith(("Trainer", "baseline_"))}

    one = {"Trainer", *(f"baseline_{t}" for t in tasks)}
    assert trainers() == one
    two = one | {"Trainer__seed1", *(f"baseline_{t}__seed1" for t in tasks)}
    assert trainers(spec_path=str(tmp_path / "s.yaml")) == two
    assert trainers(spec_path=str(tmp_path / "s.yaml"), seeds=1) == one
    assert trainers(seeds=2) == two
    args = ["compile", "--image", IMAGE, "--output", str(tmp_path / "c.yaml"),
            "--pipeline-root", ROOT]
    assert cli.main([*args, "--seeds", "3"]) == 0
    assert "Trainer__seed2" in _load(tmp_path / "c.yaml").root.dag.tasks
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--seeds", "0"])
    assert exit_info.value.code == 2 and "--seeds" in capsys.readouterr().err
    with pytest.raises(InputError, match="--seeds: must be a positive integer"):
        _compile(tmp_path / "p.yaml", seeds=0)


def test_missing_values_compile_into_example_gen_with_its_executor(tmp_path):
    """The spec's data.missing_values reach the compiled CsvExampleGen: our executor, the
    tokens in its custom_config."""
    raw = yaml.safe_load(open(data.bundled_spec()))
    raw["schema"] = os.path.join(os.path.dirname(data.bundled_spec()), raw["schema"])
    raw["data"] = {"missing_values": ["NA", "?"]}
    spec_path = tmp_path / "na.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    _compile(tmp_path / "na.out.yaml", spec_path=str(spec_path))
    spec = _load(tmp_path / "na.out.yaml")
    node = naming.EXAMPLE_GEN["csv"]
    container = _container(spec, node)
    assert "tfx_mtl.components.missing_values_csv.Executor" in json.dumps(container)
    config = spec.root.dag.tasks[node].inputs.parameters["custom_config"]
    assert '"NA"' in config.runtime_value.constant.string_value
    assert '"?"' in config.runtime_value.constant.string_value


def test_an_epoch_budget_is_compiled_into_every_trainer_s_config(tmp_path, capsys):
    """The data is unknown at compile time: the epochs travel in the Trainer config, and
    each Trainer (multi-task and baselines) works out its steps when it runs."""
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", "--image", IMAGE, "--output", str(out), "--pipeline-root", ROOT,
                     "--train-epochs", "3"]) == 0
    assert "budget: 3 epochs over the train split" in capsys.readouterr().out
    tasks = _load(out).root.dag.tasks
    trainers = [name for name in tasks if name == "Trainer" or name.startswith("baseline_")]
    assert len(trainers) == 4
    for name in trainers:
        config = json.loads(tasks[name].inputs.parameters[
            "custom_config"].runtime_value.constant.string_value)
        assert config["trainer"]["train_epochs"] == 3, name
