"""``tfx-mtl run``'s Beam options: parsed, checked before anything runs, and passed to
the local runner."""
import pytest

from tfx_mtl import cli


@pytest.mark.parametrize("argv, message", [
    (["--beam-runner", "in-process", "--beam-workers", "2"], "--beam-workers: 2 workers"),
    (["--beam-runner", "multi-process", "--dask-scheduler", "tcp://h:8786"],
     "--dask-scheduler: only with --beam-runner dask"),
    (["--dask-scheduler", "h"], "--dask-scheduler: must be a scheduler address"),
    (["--beam-arg", "runner=X"], "--beam-arg: must be a Beam option"),
    (["--beam-runner", "dask"], "--beam-runner: dask: Beam's Dask runner"),
    (["--dask-scheduler", "tcp://h:8786"], "--beam-runner: dask"),
])
def test_bad_beam_options_are_refused_before_the_pipeline_runs(tmp_path, capsys, argv, message):
    code = cli.main(["run", "--output-dir", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--beam-runner", "spark"], ["--beam-workers", "0"]])
def test_a_bad_runner_or_worker_count_is_a_usage_error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", *argv])
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err


def test_the_options_reach_the_local_runner(monkeypatch):
    from tfx_mtl.runners import local

    seen = {}
    monkeypatch.setattr(local, "run", lambda **kwargs: seen.update(kwargs) or {})
    assert cli.main(["run", "--beam-runner", "multi-process", "--beam-workers", "3",
                     "--beam-arg=--a=1", "--beam-arg=--b=2"]) == 0
    assert (seen["beam_runner"], seen["beam_workers"], seen["dask_scheduler"],
            seen["beam_args"]) == ("multi-process", 3, None, ("--a=1", "--b=2"))
