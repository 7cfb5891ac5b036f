# The two commands of the README: `make run` and `make test` (everything, as CI runs it);
# `make test-fast`: the in-process tier a developer runs between changes.
# Both set up .venv first when needed (seconds when it is already up to date).
VENV   ?= .venv
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=
# `make test` runs the tests on this many pytest-xdist workers (one per core by default);
# --dist loadfile keeps a module on one worker (its module fixtures are built once);
# tests/conftest.py builds the shared taxi run once for all workers.
TEST_WORKERS ?= auto

# Markers of what makes a test slow (pytest.ini).
FAST_TIER := -m "not e2e and not subprocess and not grid"

.PHONY: setup run test test-fast constraints clean-runs

setup: $(STAMP)

$(STAMP): setup.py constraints.txt tools/setup_venv.sh tools/glibc_compat.py
	bash tools/setup_venv.sh $(VENV)
	touch $(STAMP)

run: setup
	$(VENV)/bin/tfx-mtl run $(ARGS)

test: setup
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=40 $(PYTEST_ARGS)

test-fast: setup
	$(VENV)/bin/python -m pytest $(FAST_TIER) $(PYTEST_ARGS)

# Re-pins constraints.txt from the current venv (after changing setup.py).
constraints: setup
	{ echo "# Exact versions for a reproducible install (pip install -c constraints.txt -e .)."; \
	  echo "# Regenerate after changing setup.py: make constraints"; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -v '^pip==' | LC_ALL=C sort -f; } > constraints.txt

clean-runs:
	rm -rf runs
