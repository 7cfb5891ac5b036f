"""Shared test options (slow end-to-end tests run only with --slow, as `make test` does)
and the one real pipeline run that the end-to-end and notebook tests share."""
import json
import os

import pytest
from taxi_support import MISSING_FARE_EVERY, TaxiRun, run_tfx_mtl, taxi_spec, write_taxi_slice

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: run with --slow (make test does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
