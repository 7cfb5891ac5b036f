# The two commands of the README: `make run` and `make test`.
# Both set up .venv first when needed (seconds when it is already up to date).
VENV   ?= .venv
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup run test constraints clean-runs

setup: $(STAMP)

$(STAMP): setup.py constraints.txt tools/setup_venv.sh tools/glibc_compat.py
	bash tools/setup_venv.sh $(VENV)
	touch $(STAMP)

run: setup
	$(VENV)/bin/tfx-mtl run $(ARGS)

test: setup
	$(VENV)/bin/python -m pytest --slow $(PYTEST_ARGS)

# Re-pins constraints.txt from the current venv (after changing setup.py).
constraints: setup
	{ echo "# Exact versions for a reproducible install (pip install -c constraints.txt -e .)."; \
	  echo "# Regenerate after changing setup.py: make constraints"; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -v '^pip==' | LC_ALL=C sort -f; } > constraints.txt

clean-runs:
	rm -rf runs
