"""What `tfx-mtl run` shows while the DAG runs, and how it reports a failure."""
import io
import logging
import os

import pytest

from tfx_mtl.runners import local as local_run


def _record(msg, *args):
    return logging.LogRecord("absl", logging.INFO, "x.py", 1, msg, args, None)


def test_progress_shows_each_component_and_marks_cache_hits():
    out = io.StringIO()
    progress = local_run.ComponentProgress(out)
    progress.handle(_record("Component %s is running.", "Transform"))
    assert progress.running == "Transform"
    progress.handle(_record("Component %s is finished.", "Transform"))
    progress.handle(_record("Component %s is running.", "Trainer"))
    progress.handle(_record("A cached execution %d is used.", 7))
    progress.handle(_record("Component %s is finished.", "Trainer"))
    progress.handle(_record("Some other message %s", "Trainer"))
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["Transform", "started"]
    assert lines[1].split()[:2] == ["Transform", "finished"]
    assert lines[3].split()[:2] == ["Trainer", "cached"]
    assert len(lines) == 4 and progress.running is None


def test_a_failure_names_the_component_and_the_log_file():
    error = local_run.PipelineFailed("Trainer", ValueError("loss is nan"), "/runs/logs/run.log")
    assert str(error).startswith("component Trainer failed: ValueError: loss is nan")
    assert "/runs/logs/run.log" in str(error)


def test_logging_context_sends_logs_and_fd2_to_the_file_and_restores_them(tmp_path):
    log_file = tmp_path / "run.log"
    log_file.touch()
    out = io.StringIO()
    root = logging.getLogger()
    handlers_before = root.handlers[:]
    fd2_before = os.fstat(2)
    with pytest.raises(RuntimeError):
        with local_run._logging_to(str(log_file), local_run.ComponentProgress(out)):
            logging.getLogger("absl").info("Component %s is running.", "Pusher")
            os.write(2, b"a C++ library writes to fd 2\n")
            raise RuntimeError("boom")
    text = log_file.read_text()
    assert "Component Pusher is running." in text
    assert "a C++ library writes to fd 2" in text
    assert "Traceback" in text and "RuntimeError: boom" in text  # traceback kept
    assert "Pusher" in out.getvalue()
    assert root.handlers == handlers_before
    fd2_after = os.fstat(2)
    assert (fd2_after.st_dev, fd2_after.st_ino) == (fd2_before.st_dev, fd2_before.st_ino)
