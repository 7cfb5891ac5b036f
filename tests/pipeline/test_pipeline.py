"""The pipeline definition: one DAG from the spec, with cache keys that follow content."""
import dataclasses
import json

import pytest

from tfx_mtl import data, module_graph, naming, task_spec
from tfx_mtl.components import missing_values_csv, streaming_write
from tfx_mtl.models.trainer_config import TrainerConfig
from tfx_mtl.pipeline import pipeline as pipeline_lib


def test_the_curated_schema_travels_by_content(tmp_path):
    """The schema's text is CuratedSchemaGen's parameter: an edit is a new input (cache
    key), a copy elsewhere is the same one, and no path is left in the pipeline."""
    spec = task_spec.load(data.bundled_spec())
    text = open(spec.schema).read()
    node = {c.id: c for c in _pipeline(tmp_path, spec).components}["CuratedSchemaGen"]
    assert node.exec_properties == {"schema_text": text}
    copy = tmp_path / "elsewhere" / "schema.pbtxt"
    copy.parent.mkdir()
    copy.write_text(text)
    moved = dataclasses.replace(spec, schema=str(copy))
    assert {c.id: c for c in _pipeline(tmp_path, moved).components}[
        "CuratedSchemaGen"].exec_properties == {"schema_text": text}
    copy.write_text(text.replace("type: INT", "type: FLOAT", 1))
    assert {c.id: c for c in _pipeline(tmp_path, moved).components}[
        "CuratedSchemaGen"].exec_properties["schema_text"] != text


def _pipeline(tmp_path, spec=None, source=None, **kwargs):
    spec = spec or task_spec.load(data.bundled_spec())
    return pipeline_lib.create_pipeline(
        pipeline_name="p", pipeline_root=str(tmp_path), spec=spec,
        data=source or pipeline_lib.DataSource.from_path(data.bundled_taxi_csv()),
        serving_model_dir=str(tmp_path / "serving"), train_steps=5, **kwargs)


def _trainer_config(component):
    return TrainerConfig.from_dict(
        json.loads(component.exec_properties["custom_config"])["trainer"])


def test_the_dag_has_every_component_wired_from_the_spec(tmp_path):
    spec = task_spec.load(data.bundled_spec())
    by_id = {c.id: c for c in _pipeline(tmp_path, spec).components}
    tasks = spec.task_names
    assert set(by_id) == {
        "CsvExampleGen", "CuratedSchemaGen", "StatisticsGen", "ExampleValidator",
        "SchemaGate", "Transform", "Trainer", "ModelComparison", "BlessingGate", "Pusher",
        *(f"baseline_{t}" for t in tasks), *(f"evaluate_{t}" for t in tasks)}
    # Transform reads the schema that passed the gate, so anomalies stop it.
    assert by_id["Transform"].inputs["schema"].producer_component_id == "SchemaGate"
    # Module code by import path: nothing in the pipeline points at a local file.
    assert by_id["Trainer"].exec_properties["run_fn"] == pipeline_lib.RUN_FN
    assert by_id["Transform"].exec_properties["preprocessing_fn"] == pipeline_lib.PREPROCESSING_FN
    for task in tasks:
        evaluator = by_id[f"evaluate_{task}"]
        # Each Evaluator compares the multi-task model with its own task's baseline.
        assert evaluator.inputs["model"].producer_component_id == "Trainer"
        assert evaluator.inputs["baseline_model"].producer_component_id == f"baseline_{task}"
        assert f"{task}__evaluation" in evaluator.exec_properties["eval_config"]
        # ... running each model once (pipeline/eval_extractors.py), by import path too.
        assert evaluator.exec_properties["module_path"] == "tfx_mtl.pipeline.eval_extractors"
        gate_inputs = by_id["BlessingGate"].inputs
        assert gate_inputs[f"{task}_evaluation"].producer_component_id == f"evaluate_{task}"
        assert gate_inputs[f"{task}_blessing"].producer_component_id == f"evaluate_{task}"
    assert by_id["Pusher"].inputs["model_blessing"].producer_component_id == "BlessingGate"
    assert by_id["Pusher"].inputs["model"].producer_component_id == "Trainer"


def test_transform_writes_its_graph_and_examples_only(tmp_path):
    """No pre/post-transform statistics (StatisticsGen's are the data's) and no analyzer
    cache (no run reads it): Transform's outputs are what the Trainers read."""
    by_id = {c.id: c for c in _pipeline(tmp_path).components}
    assert set(by_id["Transform"].outputs) == {"transform_graph", "transformed_examples"}


def test_each_trainer_keeps_checkpoints_under_the_pipeline_root_not_an_execution(tmp_path):
    """A stable root per Trainer node, so the re-run of a crashed Trainer finds the
    checkpoints (tests/models/test_checkpoint_key.py); it keys nothing else."""
    from tfx_mtl.models import checkpoint_key

    by_id = {c.id: c for c in _pipeline(tmp_path).components}
    trainers = [n for n in by_id if n == "Trainer" or n.startswith("baseline_")]
    assert len(trainers) == 4
    for node in trainers:
        config = json.loads(by_id[node].exec_properties["custom_config"])
        assert config[checkpoint_key.CHECKPOINT_ROOT_KEY] == f"{tmp_path}/{node}/checkpoints"
    assert checkpoint_key.root("gs://bucket/root/", "Trainer") == (
        "gs://bucket/root/Trainer/checkpoints")


@pytest.mark.parametrize("fmt, file", [("csv", "a.csv"), ("tfrecord", "a.tfrecord.gz")])
def test_the_data_format_picks_the_example_gen_with_the_same_splits(tmp_path, fmt, file):
    """CSV data is read by CsvExampleGen, TFRecord data by ImportExampleGen, each under
    its default id, into the same train/validation/test hash split (8/1/1 by default),
    for every downstream node."""
    source_dir = tmp_path / "data"
    source_dir.mkdir()
    (source_dir / file).write_bytes(b"")
    (source_dir / "tasks.yaml").write_text("")  # not data
    source = pipeline_lib.DataSource.from_path(str(source_dir))
    assert source == pipeline_lib.DataSource(str(source_dir), data.PATTERNS[fmt], fmt)
    by_id = {c.id: c for c in _pipeline(tmp_path, source=source).components}
    node = naming.EXAMPLE_GEN[fmt]
    assert set(naming.EXAMPLE_GEN.values()) & set(by_id) == {node}
    example_gen = by_id[node]
    assert type(example_gen) is {"csv": missing_values_csv.MissingValuesCsvExampleGen,
                                 "tfrecord": streaming_write.StreamingImportExampleGen}[fmt]
    assert example_gen.exec_properties["input_base"] == str(source_dir)
    assert json.loads(example_gen.exec_properties["input_config"]) == {
        "splits": [{"name": "single_split", "pattern": data.PATTERNS[fmt]}]}
    assert json.loads(example_gen.exec_properties["output_config"])["split_config"] == {
        "splits": [{"name": "train", "hash_buckets": 8}, {"name": "validation", "hash_buckets": 1},
                   {"name": "test", "hash_buckets": 1}]}
    readers = ["StatisticsGen", "Transform", *(n for n in by_id if n.startswith("evaluate_"))]
    for reader in readers:
        assert by_id[reader].inputs["examples"].producer_component_id == node, reader


def test_the_specs_hash_buckets_reach_example_gen(tmp_path):
    spec = dataclasses.replace(task_spec.load(data.bundled_spec()), data=task_spec.DataConfig(
        (("train", 6), ("validation", 2), ("test", 3))))
    example_gen = {c.id: c for c in _pipeline(tmp_path, spec).components}["CsvExampleGen"]
    assert json.loads(example_gen.exec_properties["output_config"])["split_config"] == {
        "splits": [{"name": "train", "hash_buckets": 6}, {"name": "validation", "hash_buckets": 2},
                   {"name": "test", "hash_buckets": 3}]}


@pytest.mark.parametrize("fmt, file", [("csv", "part.csv"), ("tfrecord", "part.tfrecord.gz")])
def test_a_directory_per_split_is_read_as_given(tmp_path, fmt, file):
    """One input split per directory and no output split config: TFX then writes the
    input splits as they are (no hashing), whatever the spec's buckets say."""
    source_dir = tmp_path / "data"
    for split in naming.SPLITS:
        (source_dir / split).mkdir(parents=True)
        (source_dir / split / file).write_bytes(b"")
    source = pipeline_lib.DataSource.from_path(str(source_dir))
    assert source == pipeline_lib.DataSource(str(source_dir), data.PATTERNS[fmt], fmt,
                                             ("train", "validation", "test"))
    example_gen = {c.id: c for c in _pipeline(tmp_path, source=source).components}[
        naming.EXAMPLE_GEN[fmt]]
    assert json.loads(example_gen.exec_properties["input_config"]) == {"splits": [
        {"name": split, "pattern": f"{split}/{data.PATTERNS[fmt]}"} for split in naming.SPLITS]}
    assert json.loads(example_gen.exec_properties["output_config"]) == {}


def test_transform_analyses_train_and_the_trainers_never_see_test(tmp_path):
    """Transform's statistics come from train only; every Trainer fits on train and
    evaluates (selects) on validation; each Evaluator judges on test, and only there."""
    by_id = {c.id: c for c in _pipeline(tmp_path).components}
    assert json.loads(by_id["Transform"].exec_properties["splits_config"]) == {
        "analyze": ["train"], "transform": ["train", "validation", "test"]}
    trainers = [n for n in by_id if n == "Trainer" or n.startswith("baseline_")]
    assert len(trainers) == 4
    for node in trainers:
        props = by_id[node].exec_properties
        assert json.loads(props["train_args"]) == {"num_steps": 5, "splits": ["train"]}, node
        assert json.loads(props["eval_args"]) == {"num_steps": 50, "splits": ["validation"]}, node
    evaluators = [n for n in by_id if n.startswith("evaluate_")]
    assert len(evaluators) == 3
    for node in evaluators:
        assert json.loads(by_id[node].exec_properties["example_splits"]) == ["test"], node


def _example_gen_output(tmp_path, source) -> dict[str, list]:
    """Runs the pipeline's ExampleGen alone on ``source``: each output split's
    tf.Examples, as the values of their feature ``x``."""
    from example_gen_support import run_example_gen

    per_split = run_example_gen(tmp_path, pipeline_lib.create_example_gen(source))
    # CsvExampleGen reads whole numbers as int64
    return {split: sorted((e.features.feature["x"].float_list.value
                           or e.features.feature["x"].int64_list.value)[0] for e in examples)
            for split, examples in per_split.items()}


def _tf_examples(values):
    import tensorflow as tf
    return [tf.train.Example(features=tf.train.Features(feature={"x": tf.train.Feature(
        float_list=tf.train.FloatList(value=[float(v)]))})) for v in values]


def _write_tfrecord(path, values, compression=None):
    import tensorflow as tf
    with tf.io.TFRecordWriter(str(path), options=compression) as writer:
        for example in _tf_examples(values):
            writer.write(example.SerializeToString())


@pytest.mark.e2e
def test_import_example_gen_reads_every_tfrecord_file_gzip_too(tmp_path):
    """The files data.columns reads are those ImportExampleGen reads: every *.tfrecord*
    file of the directory, a .gz one decompressed, all examples hashed into the three
    splits, train the largest."""
    source_dir = tmp_path / "data"
    source_dir.mkdir()
    _write_tfrecord(source_dir / "a.tfrecord", range(200))
    _write_tfrecord(source_dir / "b.tfrecord.gz", range(200, 300), "GZIP")
    assert data.columns(str(source_dir)) == ["x"]
    values = _example_gen_output(tmp_path, pipeline_lib.DataSource.from_path(str(source_dir)))
    assert set(values) == {"train", "validation", "test"}
    assert sorted(sum(values.values(), [])) == list(range(300))
    assert 0 < len(values["validation"]) < len(values["train"])
    assert 0 < len(values["test"]) < len(values["train"])


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["csv", "tfrecord"])
def test_a_directory_per_split_becomes_exactly_those_splits(tmp_path, fmt):
    """Pre-split CSV or TFRecord data: each output split holds exactly its directory's
    rows, none hashed elsewhere (a hash split of 30 rows would mix them)."""
    given = {"train": range(0, 20), "validation": range(20, 25), "test": range(25, 30)}
    source_dir = tmp_path / "data"
    for split, rows in given.items():
        (source_dir / split).mkdir(parents=True)
        if fmt == "csv":
            (source_dir / split / "part.csv").write_text(
                "x,y\n" + "".join(f"{v},a\n" for v in rows))
        else:
            _write_tfrecord(source_dir / split / "part.tfrecord.gz", rows, "GZIP")
    source = pipeline_lib.DataSource.from_path(str(source_dir))
    assert source.splits == naming.SPLITS
    assert _example_gen_output(tmp_path, source) == {
        split: [float(v) for v in rows] for split, rows in given.items()}


def test_a_single_file_is_its_own_pattern(tmp_path):
    path = tmp_path / "part.tfrecord"
    path.write_bytes(b"")
    assert pipeline_lib.DataSource.from_path(str(path)) == pipeline_lib.DataSource(
        str(tmp_path), "part.tfrecord", "tfrecord")


def test_each_baseline_is_the_same_family_and_budget_with_one_task(tmp_path):
    config = TrainerConfig.from_dict({
        "architecture": {"name": "mmoe", "experts": 3, "hidden_units": [32]},
        "weighting": "uncertainty", "combine": "pcgrad", "learning_rate": 0.01,
        "batch_size": 64, "seed": 3})
    by_id = {c.id: c for c in _pipeline(tmp_path, trainer_config=config).components}
    assert _trainer_config(by_id["Trainer"]) == config
    baseline = by_id["baseline_fare"]
    assert _trainer_config(baseline) == config.baseline_for("fare")
    trained = _trainer_config(baseline)
    arch = trained.architecture
    assert (arch.name, trained.tasks, arch.experts, arch.hidden_units) == (
        "mmoe", ("fare",), 3, (32,))
    assert (trained.weighting, trained.combine) == ("uniform", "sum")
    assert (trained.learning_rate, trained.batch_size, trained.seed) == (0.01, 64, 3)
    assert baseline.exec_properties["train_args"] == by_id["Trainer"].exec_properties["train_args"]
    assert baseline.inputs["examples"].producer_component_id == "Transform"


def test_reused_baselines_are_resolved_from_the_store_not_trained(tmp_path):
    by_id = {c.id: c for c in _pipeline(tmp_path, baselines="reuse").components}
    assert not any(node.startswith("baseline_") for node in by_id)
    resolver = by_id["latest_baseline_fare"]
    channel = resolver.raw_inputs["model"]
    assert (channel.producer_component_id, channel.output_key) == ("baseline_fare", "model")
    assert by_id["evaluate_fare"].inputs["baseline_model"].producer_component_id == (
        "latest_baseline_fare")


def test_judging_changes_do_not_touch_what_training_sees(tmp_path):
    """Transform's and the Trainers' cache keys ignore the policy, slices and bounds."""
    spec = task_spec.load(data.bundled_spec())
    stricter = dataclasses.replace(
        spec, evaluation=task_spec.Evaluation(policy="primary", slices=(("company",),)),
        tasks=tuple(dataclasses.replace(t, metrics=(task_spec.Metric(
            t.metrics[0].name, task_spec.Threshold(lower_bound=0.0),
            task_spec.MaxRegression(0.5, True)),) + t.metrics[1:]) for t in spec.tasks))
    before = {c.id: c for c in _pipeline(tmp_path, spec).components}
    after = {c.id: c for c in _pipeline(tmp_path, stricter).components}
    for node in ("Transform", "Trainer", "baseline_fare"):
        assert (before[node].exec_properties["custom_config"]
                == after[node].exec_properties["custom_config"]), node
    assert (before["evaluate_fare"].exec_properties["eval_config"]
            != after["evaluate_fare"].exec_properties["eval_config"])
    assert before["BlessingGate"].exec_properties["spec"] != after["BlessingGate"].exec_properties["spec"]


def test_a_single_task_model_is_judged_on_its_one_task(tmp_path):
    config = TrainerConfig.from_dict({"tasks": ["fare"]})
    by_id = {c.id: c for c in _pipeline(tmp_path, trainer_config=config).components}
    assert {n for n in by_id if n.startswith(("baseline_", "evaluate_"))} == {
        "baseline_fare", "evaluate_fare"}


def _code_version(component):
    return json.loads(component.exec_properties["custom_config"])["code_version"]


@pytest.mark.parametrize("vertex", [False, True])
def test_each_component_keys_on_the_code_it_runs(tmp_path, vertex):
    """Transform: preprocessing_fn's module; each Trainer: its executor's and run_fn's; the
    gate: its own; an Evaluator: the custom TFMA metric's, where its task uses one. Each with
    what it imports (which edits change which key: tests/tfx_mtl/test_module_graph.py)."""
    scale = pipeline_lib.Scale(vertex_training={"project": "p"} if vertex else None)
    by_id = {c.id: c for c in _pipeline(tmp_path, scale=scale).components}
    executor = "tfx_mtl.components." + ("vertex_trainer" if vertex else "mtl_trainer")
    trainer_code = module_graph.code_version([executor, "tfx_mtl.models.trainer"])
    assert _code_version(by_id["Trainer"]) == _code_version(by_id["baseline_fare"]) == trainer_code
    assert _code_version(by_id["Transform"]) == module_graph.code_version(
        ["tfx_mtl.models.preprocessing"]) != trainer_code
    assert by_id["BlessingGate"].exec_properties["code_version"] == module_graph.code_version(
        ["tfx_mtl.components.blessing_gate"])
    metric_code = module_graph.code_version(["tfx_mtl.pipeline.tfma_metrics"])
    assert metric_code in by_id["evaluate_fare"].exec_properties["eval_config"]  # RMSE
    # big_tipper's log_loss is the project's too (clipped; TFMA's is NaN at 0 and 1)
    assert metric_code in by_id["evaluate_big_tipper"].exec_properties["eval_config"]


@pytest.mark.parametrize("baselines", ["train", "reuse"])
def test_the_dag_compiles_for_kubeflow_pipelines_v2(tmp_path, baselines):
    """The gate's per-spec inputs and its report type (``<namespace>.<Type>``, as KFP v2
    requires of custom types) survive TFX's Kubeflow V2 compiler, in both baseline modes."""
    from tfx import v1 as tfx

    output = tmp_path / "pipeline.json"
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="img:1"),
        output_filename=str(output)).run(_pipeline(tmp_path, baselines=baselines), write_out=True)
    tasks = json.loads(output.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    gate = tasks["BlessingGate"]
    assert set(gate["dependentTasks"]) >= {f"evaluate_{t}" for t in ("big_tipper", "fare")}
    assert "fare_evaluation" in gate["inputs"]["artifacts"]
    baseline = "baseline_fare" if baselines == "train" else "latest_baseline_fare"
    assert baseline in tasks


@pytest.mark.e2e
def test_the_trainers_never_read_the_test_split(tmp_path):
    """The pipeline's real components up to Transform, then its Transform output's
    Split-test files replaced by garbage, then the pipeline's own Trainer node (a partial
    run on that output): it trains, and the file patterns TFX builds from the arguments
    MLMD recorded for it name train and validation only. The control: the same data
    accessor over Split-test fails, so a Trainer reading it could not have succeeded."""
    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx import v1 as tfx
    from tfx.components.trainer import fn_args_utils
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.types import standard_component_specs as keys
    from tfx_bsl.public import tfxio

    from tfx_mtl import synth
    from tfx_mtl.results import metadata

    written = synth.write(synth.SynthConfig(rows=300, tasks=2, features=3), tmp_path / "data")
    metadata_path = str(tmp_path / "metadata.sqlite")
    pipeline = _pipeline(
        tmp_path, task_spec.load(written["spec"]),
        pipeline_lib.DataSource.from_path(written["data"]), eval_steps=2,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path))
    runner = tfx.orchestration.LocalDagRunner()
    runner.run(pipeline, run_options=tfx_pipeline.RunOptions(to_nodes=["Transform"]))
    store = metadata.open_store(metadata_path)
    (transformed,) = [a for a in store.get_artifacts_by_type("Examples")
                      if "/Transform/" in a.uri]
    test_files = tf.io.gfile.glob(f"{transformed.uri}/Split-test/*")
    assert test_files
    for path in test_files:
        with open(path, "wb") as f:
            f.write(b"not a gzipped TFRecord of tf.Examples" * 64)

    runner.run(pipeline, run_options=tfx_pipeline.RunOptions(from_nodes=["Trainer"],
                                                             to_nodes=["Trainer"]))

    (execution,) = [e for e in store.get_executions() if e.last_known_state == e.COMPLETE
                    and store.get_execution_types_by_id([e.type_id])[0].name.endswith("Trainer")]
    events = store.get_events_by_execution_ids([execution.id])
    assert transformed.id in [e.artifact_id for e in events if e.type == e.INPUT]
    examples = tfx.types.standard_artifacts.Examples()
    examples.set_mlmd_artifact(transformed)
    graph = tfx.types.standard_artifacts.TransformGraph()
    (graph_artifact,) = store.get_artifacts_by_type("TransformGraph")
    graph.set_mlmd_artifact(graph_artifact)
    recorded = {k: execution.custom_properties[k].string_value
                for k in (keys.TRAIN_ARGS_KEY, keys.EVAL_ARGS_KEY)}
    fn_args = fn_args_utils.get_common_fn_args(
        {keys.EXAMPLES_KEY: [examples], keys.TRANSFORM_GRAPH_KEY: [graph]}, recorded)
    assert fn_args.train_files == [f"{transformed.uri}/Split-train/*"]
    assert fn_args.eval_files == [f"{transformed.uri}/Split-validation/*"]

    schema = tft.TFTransformOutput(graph.uri).transformed_metadata.schema

    def first_batch(files):
        return next(iter(fn_args.data_accessor.tf_dataset_factory(
            files, tfxio.TensorFlowDatasetOptions(batch_size=4, num_epochs=1), schema)))
    first_batch(fn_args.eval_files)
    with pytest.raises(tf.errors.OpError):
        first_batch([f"{transformed.uri}/Split-test/*"])


def test_a_class_weight_retrains_without_re_running_transform(tmp_path):
    """Only the Trainers read class weights: Transform's cache key ignores them."""
    spec = task_spec.load(data.bundled_spec())
    weighted = dataclasses.replace(spec, tasks=tuple(
        dataclasses.replace(t, pos_weight=3.0) if t.type == "binary" else t for t in spec.tasks))
    before = {c.id: c for c in _pipeline(tmp_path, spec).components}
    after = {c.id: c for c in _pipeline(tmp_path, weighted).components}
    assert (before["Transform"].exec_properties["custom_config"]
            == after["Transform"].exec_properties["custom_config"])
    assert (before["Trainer"].exec_properties["custom_config"]
            != after["Trainer"].exec_properties["custom_config"])
