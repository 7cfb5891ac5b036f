"""Beam options for a distributed runner: parsed, checked per runner, worker image defaulted."""
import pytest

from tfx_mtl.kubeflow.beam_args import BeamArgsError, distributed, parse

IMAGE = "registry.example/tfx-mtl:1"


def test_parse_takes_both_spellings_and_flags():
    assert parse(["--runner=FlinkRunner", "--flink_master", "host:8081", "--save_main_session"]) \
        == {"runner": "FlinkRunner", "flink_master": "host:8081", "save_main_session": None}
    with pytest.raises(BeamArgsError, match="runner=X: expected --name=value"):
        parse(["runner=X"])


def test_dataflow_needs_its_options_and_gets_the_pipeline_image():
    args = ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t"]
    assert distributed(args, IMAGE) == (*args, f"--sdk_container_image={IMAGE}")
    own = [*args, "--sdk_container_image=other:2"]
    assert distributed(own, IMAGE) == tuple(own)
    with pytest.raises(BeamArgsError, match="--runner=DataflowRunner: needs --region, --temp_location"):
        distributed(["--runner=DataflowRunner", "--project=p"], IMAGE)
    with pytest.raises(BeamArgsError, match="--temp_location=/tmp/t: Dataflow needs a gs://"):
        distributed(["--runner=DataflowRunner", "--project=p", "--region=r",
                     "--temp_location=/tmp/t"], IMAGE)


@pytest.mark.parametrize("runner", ["FlinkRunner", "SparkRunner", "PortableRunner"])
def test_portable_runners_run_the_pipeline_image_as_their_sdk_harness(runner):
    assert distributed([f"--runner={runner}", "--job_endpoint=host:8099"], IMAGE) == (
        f"--runner={runner}", "--job_endpoint=host:8099", "--environment_type=DOCKER",
        f"--environment_config={IMAGE}")
    loopback = [f"--runner={runner}", "--environment_type=EXTERNAL",
                "--environment_config=localhost:50000"]
    assert distributed(loopback, IMAGE) == tuple(loopback)


def test_direct_runner_args_pass_through():
    assert distributed(["--direct_num_workers=4", "--direct_running_mode=multi_processing"],
                       IMAGE) == ("--direct_num_workers=4", "--direct_running_mode=multi_processing")
