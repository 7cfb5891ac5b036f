"""The one real pipeline run that the end-to-end tests share (markers: pytest.ini)."""
import contextlib
import fcntl
import json
import os
import shutil
import tempfile

import pytest
from taxi_support import MISSING_FARE_EVERY, TaxiRun, run_tfx_mtl, taxi_spec, write_taxi_slice

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The commands' own logs (tfx_mtl.log_capture) go to a scratch directory, not the user's.
os.environ.setdefault("TFX_MTL_LOG_DIR", tempfile.mkdtemp(prefix="tfx-mtl-test-logs-"))


# One real pipeline run on a taxi slice, shared by the end-to-end and notebook tests. Under
# pytest-xdist (`make test` runs the tests on one worker per core) every worker would build
# its own session fixtures: these two are built once per test run, by the first worker that
# needs them, under a lock, in the run's common temporary directory; the others wait and
# read the same files (same paths, so the cache-reuse tests see the very run they follow).

def _shared_root(tmp_path_factory):
    """The test run's temporary directory, common to every xdist worker."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # a worker's is a child


def _built_once(tmp_path_factory, name, build):
    """``<the test run's temp dir>/name``, made by ``build(path)`` once for all workers."""
    root = _shared_root(tmp_path_factory)
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = root / f"{name}.done"
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)  # a failed earlier attempt's leftovers
            path.mkdir()
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def taxi_slice(tmp_path_factory):
    """The first TAXI_ROWS taxi trips, with the fare missing on every 25th (labels go missing)."""
    def blank_fare(i, row):
        return {**row, "fare": ""} if i % MISSING_FARE_EVERY == 0 else row
    data = _built_once(tmp_path_factory, "data",
                       lambda path: write_taxi_slice(path / "taxi.csv", blank_fare))
    return data / "taxi.csv"


@pytest.fixture(scope="session")
def taxi_run(taxi_slice, tmp_path_factory):
    """``tfx-mtl run`` on the taxi slice: 300 steps, every task with its baseline."""
    def run(out):
        spec_path = taxi_spec(out / "taxi.yaml")
        result = run_tfx_mtl("run", "--data", str(taxi_slice), "--spec", str(spec_path),
                             "--output-dir", str(out / "runs"), "--train-steps", "300",
                             "--eval-steps", "5", "--summary-json", str(out / "summary.json"))
        (out / "stdout.txt").write_text(result.stdout)

    out = _built_once(tmp_path_factory, "run", run)
    return TaxiRun(out / "runs", out / "taxi.yaml", (out / "stdout.txt").read_text(),
                   json.loads((out / "summary.json").read_text()))


@contextlib.contextmanager
def _taxi_run_lock(tmp_path_factory, mode):
    with open(_shared_root(tmp_path_factory) / "run.in-use.lock", "w") as lock:
        fcntl.flock(lock, mode)
        yield


@pytest.fixture(autouse=True)
def _reading_the_taxi_run(request, tmp_path_factory):
    """A test that reads the shared run holds it shared, so that a test that runs the
    pipeline again in its output directory (``taxi_run_in_place``) never runs beside it."""
    if "taxi_run" not in request.fixturenames or "taxi_run_in_place" in request.fixturenames:
        yield
        return
    with _taxi_run_lock(tmp_path_factory, fcntl.LOCK_SH):
        yield


@pytest.fixture
def taxi_run_in_place(taxi_run, tmp_path_factory):
    """The shared run, for a test that writes to its output directory: held exclusively."""
    with _taxi_run_lock(tmp_path_factory, fcntl.LOCK_EX):
        yield taxi_run
