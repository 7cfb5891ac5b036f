"""Shared test options: slow end-to-end tests run only with --slow (as `make test` does)."""
import os

import pytest

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
