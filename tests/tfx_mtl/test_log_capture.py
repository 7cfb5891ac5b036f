"""Library chatter goes to a log file; the command's own messages reach the terminal."""
import logging
import os
import subprocess
import sys

import pytest

from tfx_mtl import log_capture
from taxi_support import tfx_mtl_bin

# What TensorFlow and TensorFlow Transform print on import, and that a user must not see.
# Start-up lines TensorFlow and TFT print on every machine (TF's "oneDNN custom
# operations" line only on CPUs where it turns oneDNN on: not on every CI machine; if
# printed, the exact-stderr checks still catch it leaking to the terminal).
CHATTER = ("absl::InitializeLog", "only compatible with Keras 2")


def test_descriptor_2_and_logging_go_to_the_log_and_come_back(tmp_path, capfd):
    log = tmp_path / "x.log"
    root_handlers = logging.getLogger().handlers[:]
    with log_capture.LogCapture(str(log)):
        os.write(2, b"from C++\n")
        logging.getLogger("some.library").warning("a library warning")
        logging.getLogger("some.library").info("a library note")
    os.write(2, b"after\n")
    captured = capfd.readouterr()
    assert captured.err == "after\n"
    text = log.read_text()
    assert "from C++" in text and "a library warning" in text and "a library note" in text
    assert logging.getLogger().handlers == root_handlers


def test_contexts_nest_and_each_restores_what_it_found(tmp_path, capfd):
    outer, inner = tmp_path / "outer.log", tmp_path / "inner.log"
    with log_capture.LogCapture(str(outer)):
        with log_capture.LogCapture(str(inner)):
            os.write(2, b"inner\n")
        os.write(2, b"outer\n")
    assert capfd.readouterr().err == ""
    assert inner.read_text() == "inner\n" and outer.read_text() == "outer\n"


def test_the_log_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TFX_MTL_LOG_DIR", str(tmp_path / "logs"))
    path = log_capture.command_log_file("compile")
    assert path == str(tmp_path / "logs" / "compile.log")
    assert "=== tfx-mtl compile" in open(path).read()
    monkeypatch.setenv("TFX_MTL_LOG_DIR", "/proc/no-such-dir")  # cannot be written: no log
    assert log_capture.command_log_file("compile") is None


@pytest.mark.subprocess
def test_importing_tensorflow_transform_says_nothing_on_the_terminal(tmp_path):
    log = tmp_path / "x.log"
    script = (
        "import sys\n"
        "from tfx_mtl.log_capture import LogCapture\n"
        f"with LogCapture({str(log)!r}):\n"
        "    import tensorflow_transform\n"
        "    print('the command speaks', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "the command speaks\n"
    text = log.read_text()
    for line in CHATTER:
        assert line in text, line


@pytest.mark.subprocess
def test_tfx_mtl_compile_prints_only_what_it_did(tmp_path):
    env = {**os.environ, "TFX_MTL_LOG_DIR": str(tmp_path / "logs")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [tfx_mtl_bin(), "compile", "--output", str(tmp_path / "p.json"), "--image", "img:1",
         "--pipeline-root", "gs://bucket/root"], capture_output=True, text=True, env=env,
        timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("compiled ")
    text = (tmp_path / "logs" / "compile.log").read_text()
    for line in CHATTER:
        assert line in text, line
