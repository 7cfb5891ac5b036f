"""The local Beam runner: pinned (no Prism, no download), and the ``--beam-*`` options
turned into the data-parallel components' Beam args.

The pin is checked on real Beam pipelines run with the project's own args; the args'
construction on values worked out from the options.
"""
import logging

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import fn_runner

from tfx_mtl.errors import InputError
from tfx_mtl.pipeline import pipeline as pipeline_lib
from tfx_mtl.runners import beam_runner
from tfx_mtl.runners.beam_runner import DASK, IN_PROCESS, MULTI_PROCESS
from tfx_mtl.runners.direct_runner import PinnedDirectRunner


def _run_tiny_pipeline(args, caplog):
    """A real Beam pipeline with a shuffle; returns its result and what Beam logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        p = beam.Pipeline(argv=list(args))
        counts = (p | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.CombinePerKey(sum))
        seen = []
        _ = counts | beam.Map(seen.append)
        result = p.run()
        result.wait_until_finish()
    return result, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("args", [
    pipeline_lib.DIRECT_BEAM_ARGS,
    beam_runner.beam_args(beam_runner.check(IN_PROCESS)),
    pytest.param(beam_runner.beam_args(beam_runner.check(MULTI_PROCESS, 2)),
                 marks=pytest.mark.subprocess),  # starts two Beam worker processes
], ids=["pipeline-default", "in-process", "multi-process"])
def test_the_project_s_beam_args_run_on_the_fn_api_runner_and_never_try_prism(args, caplog):
    result, messages = _run_tiny_pipeline(args, caplog)
    assert result.state == beam.runners.runner.PipelineState.DONE
    # The FnApiRunner ran it (its result type), and Prism was not even tried: Beam's
    # unpinned DirectRunner logs "Running pipeline with PrismRunner." and a download.
    assert isinstance(result, fn_runner.RunnerResult)
    tried = [m for m in messages if "prism" in m.lower() or "download" in m.lower()]
    assert not tried, tried


def test_every_runner_arg_names_the_pinned_runner():
    """The direct runs (light components, in-process, multi-process) all name the pin."""
    assert pipeline_lib.DIRECT_BEAM_ARGS == beam_runner.IN_PROCESS_ARGS
    assert beam_runner.PINNED_RUNNER_ARG == (
        f"--runner={PinnedDirectRunner.__module__}.{PinnedDirectRunner.__name__}")
    for options in (beam_runner.check(IN_PROCESS), beam_runner.check(MULTI_PROCESS, 3)):
        assert beam_runner.beam_args(options)[0] == beam_runner.PINNED_RUNNER_ARG


def test_in_process_args():
    assert beam_runner.beam_args(beam_runner.check()) == (
        beam_runner.PINNED_RUNNER_ARG, "--direct_running_mode=in_memory",
        "--direct_num_workers=1")


def test_multi_process_args_and_default_workers(monkeypatch):
    assert beam_runner.beam_args(beam_runner.check(MULTI_PROCESS, 3)) == (
        beam_runner.PINNED_RUNNER_ARG, "--direct_running_mode=multi_processing",
        "--direct_num_workers=3")
    monkeypatch.setattr(beam_runner.os, "cpu_count", lambda: 6)
    assert beam_runner.check(MULTI_PROCESS).workers == 6
    assert beam_runner.check(DASK).workers == 6
    assert beam_runner.check(IN_PROCESS).workers == 1


def test_dask_args_name_the_scheduler_and_extra_args_come_last():
    options = beam_runner.check(DASK, 2, extra=["--dask_npartitions=8"])
    assert beam_runner.beam_args(options, "tcp://127.0.0.1:4000") == (
        beam_runner.DASK_RUNNER_ARG, "--dask_client_address=tcp://127.0.0.1:4000",
        "--dask_npartitions=8")
    given = beam_runner.check(dask_scheduler="tcp://sched:8786")  # implies dask
    assert given.runner == DASK
    assert beam_runner.beam_args(given)[1] == "--dask_client_address=tcp://sched:8786"
    with beam_runner.session(given) as args:  # a given scheduler: no cluster started
        assert args == beam_runner.beam_args(given)
    assert beam_runner.beam_args(beam_runner.check(extra=["--a=1", "--b=2"]))[-2:] == (
        "--a=1", "--b=2")


def test_describe_says_which_runner_runs():
    assert beam_runner.check().describe().startswith("in-process (Beam FnApiRunner")
    assert "2 worker processes" in beam_runner.check(MULTI_PROCESS, 2).describe()
    assert "local cluster of 2" in beam_runner.check(DASK, 2).describe()
    assert "tcp://s:1" in beam_runner.check(dask_scheduler="tcp://s:1").describe()


@pytest.mark.parametrize("kwargs, field", [
    ({"runner": "spark"}, "--beam-runner"),
    ({"runner": MULTI_PROCESS, "workers": 0}, "--beam-workers"),
    ({"runner": DASK, "workers": -2}, "--beam-workers"),
    ({"runner": IN_PROCESS, "workers": 2}, "--beam-workers"),
    ({"runner": MULTI_PROCESS, "dask_scheduler": "tcp://s:8786"}, "--dask-scheduler"),
    ({"dask_scheduler": "not an address"}, "--dask-scheduler"),
    ({"dask_scheduler": "tcp://s:8786", "workers": 2}, "--beam-workers"),
    ({"extra": ["direct_num_workers=2"]}, "--beam-arg"),
])
def test_bad_options_name_their_flag(kwargs, field):
    with pytest.raises(InputError) as e:
        beam_runner.check(**kwargs)
    assert e.value.field == field
