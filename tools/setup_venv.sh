#!/usr/bin/env bash
# Creates (or completes) the project's virtual environment: pinned versions from
# constraints.txt, the project in editable mode, and -- only on hosts whose glibc
# or libstdc++ are too old for the ml-metadata / tensorflow-data-validation wheels
# -- the compatibility step of tools/glibc_compat.py (see README).
# Idempotent; `make` only calls it when setup.py, constraints.txt or the tools changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "setup: Python 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }

# pip on some machines is configured with index locations that do not exist and
# warns about each of them for every package; keep the output readable.
quiet_pip() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

echo "setup: virtual environment $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
quiet_pip "$VENV/bin/pip" install --quiet --disable-pip-version-check "pip==25.3"

find_links=()
if "$PYTHON" tools/glibc_compat.py needs-compat; then
  echo "setup: this host's glibc/libstdc++ predate the ml-metadata and TFDV wheels: compatibility step on"
  # The exact versions come from constraints.txt, never from this script.
  mapfile -t wheels < <(grep -E '^(ml-metadata|tensorflow-data-validation)==' constraints.txt)
  quiet_pip "$PYTHON" tools/glibc_compat.py fetch-wheels --pip "$VENV/bin/pip" \
    --dest "$VENV/compat-wheels" "${wheels[@]}"
  find_links=(--find-links "$VENV/compat-wheels")
fi

echo "setup: installing pinned packages (constraints.txt) and the project"
quiet_pip "$VENV/bin/pip" install --quiet --disable-pip-version-check "${find_links[@]}" \
  -c constraints.txt -e '.[test]'
"$PYTHON" tools/glibc_compat.py apply --venv "$VENV"

# Fail here, not in the middle of a pipeline run, if the stack does not load.
# (TF_CPP_MIN_LOG_LEVEL quietens TF's C++ logging once it is initialised; the
# oneDNN/CUDA lines abseil prints before that still appear.)
TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" - <<'PY'
import ml_metadata, tensorflow_data_validation, tensorflow_transform, tfx.v1  # noqa: F401
import tfx_mtl.cli  # noqa: F401
print("setup: the TFX stack imports in", __import__("sys").prefix)
PY
