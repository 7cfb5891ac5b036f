"""Collecting a test that does not need TensorFlow does not import it.

TensorFlow takes seconds to import; a test of the task spec, the command line's
refusals, the Kubeflow submit client or the import structure must not pay for it
just because a module it imports pulls TensorFlow in at import time.
"""
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# The test modules that need no TensorFlow; any other one may import it.
WITHOUT_TENSORFLOW = [
    "bench/test_serving_bench.py", "bench/test_train_bench.py",
    "cli/test_cli.py", "cli/test_query.py",
    "kubeflow/test_beam_args.py", "kubeflow/test_dockerfile.py", "kubeflow/test_submit.py",
    "notebooks/test_notebooks.py", "results/test_review.py",
    "runners/test_kubeflow_executors.py", "runners/test_local.py",
    "serving/test_manifests.py",
    "tfx_mtl/test_label_expr.py", "tfx_mtl/test_module_graph.py", "tfx_mtl/test_synth.py",
    "tfx_mtl/test_task_spec.py",
    "tools/test_glibc_compat.py",
    "test_collection.py", "test_import_structure.py", "test_readme.py",
]
_COLLECT = """
import sys, pytest
class Check:
    def pytest_collection_finish(self, session):
        print("collected", len(session.items), "tensorflow" in sys.modules)
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]],
                     plugins=[Check()]))
"""


@pytest.mark.subprocess
def test_collecting_the_tests_without_tensorflow_does_not_import_it():
    paths = [str(TESTS / path) for path in WITHOUT_TENSORFLOW]
    assert all(Path(p).is_file() for p in paths)
    result = subprocess.run([sys.executable, "-c", _COLLECT, *paths], capture_output=True,
                            text=True, cwd=TESTS.parent, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("collected")]
    _, count, imported = line.split()
    assert int(count) > 100 and imported == "False", line


@pytest.mark.subprocess
def test_the_check_sees_tensorflow_when_a_test_imports_it():
    result = subprocess.run([sys.executable, "-c", _COLLECT,
                             str(TESTS / "models" / "test_heads.py")], capture_output=True,
                            text=True, cwd=TESTS.parent, timeout=300)
    assert "True" in [line for line in result.stdout.splitlines()
                      if line.startswith("collected")][0].split()
