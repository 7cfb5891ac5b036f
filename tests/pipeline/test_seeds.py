"""Seeds: every model trained once per seed, all of them compared by ModelComparison;
seed 0 keeps today's node ids and is what the Evaluators, the gate and Pusher use."""
import dataclasses
import json

import pytest

from tfx_mtl import data, naming, task_spec
from tfx_mtl.components import model_comparison
from tfx_mtl.errors import InputError
from tfx_mtl.models.trainer_config import TrainerConfig
from tfx_mtl.pipeline import pipeline as pipeline_lib

SPEC = task_spec.load(data.bundled_spec())
TASKS = SPEC.task_names


def _pipeline(tmp_path, **kwargs):
    return pipeline_lib.create_pipeline(
        pipeline_name="p", pipeline_root=str(tmp_path), spec=SPEC,
        data=pipeline_lib.DataSource.from_path(data.bundled_taxi_csv()),
        serving_model_dir=str(tmp_path / "serving"), train_steps=5, **kwargs)


def _custom_config(component):
    return json.loads(component.exec_properties["custom_config"])


def _producers(component):
    return {key: channel.producer_component_id for key, channel in component.inputs.items()}


def test_two_seeds_train_every_model_twice_differing_only_in_the_seed(tmp_path):
    config = TrainerConfig.from_dict({"seed": 7, "learning_rate": 0.01})
    by_id = {c.id: c for c in _pipeline(tmp_path, seeds=2, trainer_config=config).components}
    trainers = {n for n in by_id if n.startswith(("Trainer", "baseline_"))}
    assert trainers == {"Trainer", "Trainer__seed1", *(f"baseline_{t}" for t in TASKS),
                        *(f"baseline_{t}__seed1" for t in TASKS)}
    for node in ("Trainer", *(f"baseline_{t}" for t in TASKS)):
        first, second = _custom_config(by_id[node]), _custom_config(by_id[f"{node}__seed1"])
        assert (first["trainer"]["seed"], second["trainer"]["seed"]) == (7, 8), node
        # Each seed's own checkpoints; nothing else differs.
        assert second.pop("checkpoint_root") == f"{tmp_path}/{node}__seed1/checkpoints"
        assert first.pop("checkpoint_root") == f"{tmp_path}/{node}/checkpoints"
        second["trainer"]["seed"] = 7
        assert first == second, node
        others = {k: v for k, v in by_id[node].exec_properties.items() if k != "custom_config"}
        assert others == {k: v for k, v in by_id[f"{node}__seed1"].exec_properties.items()
                          if k != "custom_config"}, node
    assert TrainerConfig.from_dict(_custom_config(by_id["baseline_fare__seed1"])["trainer"]) == (
        dataclasses.replace(config, seed=8).baseline_for("fare"))

    comparison = by_id[naming.MODEL_COMPARISON]
    assert _producers(comparison) == {
        "examples": "CsvExampleGen", "model_0": "Trainer", "model_1": "Trainer__seed1",
        **{model_comparison.baseline_key(t, 0): f"baseline_{t}" for t in TASKS},
        **{model_comparison.baseline_key(t, 1): f"baseline_{t}__seed1" for t in TASKS}}
    assert json.loads(comparison.exec_properties["seeds"]) == [7, 8]
    judged = task_spec.TaskSpec.from_dict(json.loads(comparison.exec_properties["spec"]))
    assert judged == SPEC.judging_view()
    assert comparison.exec_properties["confidence"] == SPEC.evaluation.confidence
    assert comparison.exec_properties["samples"] == SPEC.evaluation.bootstrap_samples

    # Per slice, the gate and the push: seed 0's models only.
    for task in TASKS:
        assert _producers(by_id[f"evaluate_{task}"])["model"] == "Trainer"
        assert _producers(by_id[f"evaluate_{task}"])["baseline_model"] == f"baseline_{task}"
    assert _producers(by_id["Pusher"])["model"] == "Trainer"
    assert _producers(by_id["BlessingGate"])["model"] == "Trainer"


def test_one_seed_keeps_the_node_ids_and_configs_of_before(tmp_path):
    """Seed 0 is the one-seed run's Trainers exactly, so --seeds 2 reuses their cache."""
    one = {c.id: c for c in _pipeline(tmp_path).components}
    two = {c.id: c for c in _pipeline(tmp_path, seeds=2).components}
    assert not any("__seed" in node for node in one)
    for node in ("Trainer", *(f"baseline_{t}" for t in TASKS)):
        assert one[node].exec_properties == two[node].exec_properties, node
    assert _producers(one[naming.MODEL_COMPARISON]) == {
        "examples": "CsvExampleGen", "model_0": "Trainer",
        **{model_comparison.baseline_key(t, 0): f"baseline_{t}" for t in TASKS}}
    assert json.loads(one[naming.MODEL_COMPARISON].exec_properties["seeds"]) == [
        TrainerConfig().seed]


def test_reused_baselines_are_resolved_per_task_and_seed(tmp_path):
    by_id = {c.id: c for c in _pipeline(tmp_path, seeds=2, baselines="reuse").components}
    assert not any(node.startswith("baseline_") for node in by_id)
    for task in TASKS:
        for i, node in enumerate((f"baseline_{task}", f"baseline_{task}__seed1")):
            resolver = by_id[f"latest_{node}"]
            channel = resolver.raw_inputs["model"]
            assert (channel.producer_component_id, channel.output_key) == (node, "model")
            assert _producers(by_id[naming.MODEL_COMPARISON])[
                model_comparison.baseline_key(task, i)] == f"latest_{node}"
        assert _producers(by_id[f"evaluate_{task}"])["baseline_model"] == f"latest_baseline_{task}"


@pytest.mark.parametrize("seeds", [0, -1, 1.5, True])
def test_a_seed_count_that_is_not_a_positive_whole_number_is_refused(tmp_path, seeds):
    with pytest.raises(InputError, match="seeds: must be a positive integer"):
        _pipeline(tmp_path, seeds=seeds)


def test_the_comparison_needs_a_model_and_baselines_for_every_seed():
    with pytest.raises(ValueError, match="one model per seed"):
        model_comparison.ModelComparison(examples=None, models=[None], baselines={},
                                         spec=SPEC, seeds=[1, 2])
    with pytest.raises(ValueError, match="one per task of the spec"):
        model_comparison.ModelComparison(examples=None, models=[None], baselines={"fare": [None]},
                                         spec=SPEC, seeds=[1])


@pytest.mark.parametrize("baselines", ["train", "reuse"])
def test_seeded_dag_compiles_for_kubeflow_pipelines_v2(tmp_path, baselines):
    """The seeded node ids and ModelComparison's per-spec inputs and custom output type
    survive TFX's Kubeflow V2 compiler."""
    from tfx import v1 as tfx

    output = tmp_path / "pipeline.json"
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="img:1"),
        output_filename=str(output)).run(_pipeline(tmp_path, seeds=2, baselines=baselines),
                                         write_out=True)
    job = json.loads(output.read_text())["pipelineSpec"]
    tasks = job["root"]["dag"]["tasks"]
    prefix = "baseline_" if baselines == "train" else "latest_baseline_"
    expected = {"Trainer", "Trainer__seed1", *(f"{prefix}{t}" for t in TASKS),
                *(f"{prefix}{t}__seed1" for t in TASKS)}
    assert set(tasks[naming.MODEL_COMPARISON]["dependentTasks"]) == expected | {"CsvExampleGen"}
    artifacts = tasks[naming.MODEL_COMPARISON]["inputs"]["artifacts"]
    assert artifacts["model_1"]["taskOutputArtifact"]["producerTask"] == "Trainer__seed1"
    assert artifacts[model_comparison.baseline_key("fare", 1)]["taskOutputArtifact"][
        "producerTask"] == f"{prefix}fare__seed1"
    outputs = job["components"][tasks[naming.MODEL_COMPARISON]["componentRef"]["name"]][
        "outputDefinitions"]["artifacts"]
    assert outputs["comparison"]["artifactType"]["instanceSchema"].startswith(
        f"title: {naming.MODEL_COMPARISON_TYPE}\n")


def test_the_comparison_keys_on_its_code_and_the_statistics_it_imports(tmp_path):
    """A change to the component or to tfx_mtl.comparison re-runs it (TFX's cache keys on
    parameters, not on executor code)."""
    from tfx_mtl import module_graph

    node = {c.id: c for c in _pipeline(tmp_path).components}[naming.MODEL_COMPARISON]
    assert node.exec_properties["code_version"] == module_graph.code_version(
        ["tfx_mtl.components.model_comparison"])
    graph = module_graph.import_graph()
    assert "tfx_mtl.comparison" in module_graph.closure(
        graph, ["tfx_mtl.components.model_comparison"])
