"""The one real pipeline run that the end-to-end tests share (markers: pytest.ini)."""
import json
import os
import tempfile

import pytest
from taxi_support import MISSING_FARE_EVERY, TaxiRun, run_tfx_mtl, taxi_spec, write_taxi_slice

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The commands' own logs (tfx_mtl.log_capture) go to a scratch directory, not the user's.
os.environ.setdefault("TFX_MTL_LOG_DIR", tempfile.mkdtemp(prefix="tfx-mtl-test-logs-"))


# One real pipeline run on a taxi slice, shared by the end-to-end and notebook tests.

@pytest.fixture(scope="session")
def taxi_slice(tmp_path_factory):
    """The first TAXI_ROWS taxi trips, with the fare missing on every 25th (labels go missing)."""
    def blank_fare(i, row):
        return {**row, "fare": ""} if i % MISSING_FARE_EVERY == 0 else row
    return write_taxi_slice(tmp_path_factory.mktemp("data") / "taxi.csv", blank_fare)


@pytest.fixture(scope="session")
def taxi_run(taxi_slice, tmp_path_factory):
    """``tfx-mtl run`` on the taxi slice: 300 steps, every task with its baseline."""
    out = tmp_path_factory.mktemp("run")
    spec_path = taxi_spec(out / "taxi.yaml")
    summary_path = out / "summary.json"
    result = run_tfx_mtl("run", "--data", str(taxi_slice), "--spec", str(spec_path),
                         "--output-dir", str(out / "runs"), "--train-steps", "300",
                         "--eval-steps", "5", "--summary-json", str(summary_path))
    return TaxiRun(out / "runs", spec_path, result.stdout, json.loads(summary_path.read_text()))
