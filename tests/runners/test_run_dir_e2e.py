"""Real `tfx-mtl run`s on one output directory: a second run is refused at once while the
first holds it; the first killed (SIGKILL) mid-pipeline leaves no stale lock, and the
next run marks the execution it left RUNNING as FAILED."""
import signal
import subprocess
import time

import pytest
from taxi_support import run_tfx_mtl, tfx_mtl_bin

from tfx_mtl.results import metadata
from tfx_mtl.runners import recovery

pytestmark = [pytest.mark.e2e, pytest.mark.subprocess]


def _wait_for(process, text, timeout=300):
    """Reads the run's terminal output until a line holds ``text``; the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"the run ended before {text!r}:\n{''.join(lines)}"
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in {timeout}s:\n{''.join(lines)}")


def test_a_second_run_is_refused_and_a_killed_run_is_put_right_by_the_next(taxi_slice, tmp_path):
    out = tmp_path / "runs"
    first = subprocess.Popen([tfx_mtl_bin(), "run", "--data", str(taxi_slice), "--output-dir",
                              str(out), "--train-steps", "5", "--eval-steps", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for(first, "Transform              started")
        time.sleep(3)  # Transform's execution is registered, RUNNING, for a while yet
        started = time.monotonic()
        second = run_tfx_mtl("run", "--data", str(taxi_slice), "--output-dir", str(out),
                             "--train-steps", "5", expect=2)
        assert time.monotonic() - started < 30  # at once: before anything heavy
        assert (f"tfx-mtl run: error: --output-dir: {out} is in use by another run "
                f"(pid {first.pid} on ") in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # Not refused; it stops later, at the baselines it cannot reuse.
    third = run_tfx_mtl("run", "--data", str(taxi_slice), "--output-dir", str(out),
                        "--reuse-baselines", expect=2)
    assert "no trained single-task baseline" in third.stderr and "in use" not in third.stderr
    assert (f"tfx-mtl: the run of pid {first.pid} on " in third.stdout
            and "was killed: marked 1 unfinished execution(s) FAILED" in third.stdout)
    store = metadata.open_store(str(out / "metadata.sqlite"))
    states = {}
    for execution in store.get_executions():
        states[metadata.node_id(store, execution, "tfx-mtl-chicago-taxi")] = execution
    transform = states["Transform"]
    assert metadata.execution_state(transform) == "FAILED"
    assert f"pid {first.pid}" in transform.custom_properties[
        recovery.ABANDONED_PROPERTY].string_value
    assert all(metadata.execution_state(e) in ("COMPLETE", "CACHED")
               for node, e in states.items() if node != "Transform")
