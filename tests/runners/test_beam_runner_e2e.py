"""``tfx-mtl run --beam-runner multi-process``: the real DAG with the data-parallel
components on Beam worker processes, the rest in the run's own process."""
import glob
import json

import pytest
from taxi_support import run_tfx_mtl, taxi_spec, write_taxi_slice

pytestmark = [pytest.mark.e2e, pytest.mark.subprocess]  # the installed tfx-mtl, the real DAG


def test_a_multi_process_run_uses_worker_processes_and_says_so(tmp_path):
    data = write_taxi_slice(tmp_path / "taxi.csv", rows=1000)
    spec = taxi_spec(tmp_path / "taxi.yaml")
    out, summary_path = tmp_path / "runs", tmp_path / "summary.json"
    result = run_tfx_mtl("run", "--data", str(data), "--spec", str(spec), "--output-dir",
                         str(out), "--train-steps", "20", "--eval-steps", "2",
                         "--beam-runner", "multi-process", "--beam-workers", "2",
                         "--summary-json", str(summary_path))
    assert "  beam: multi-process (Beam FnApiRunner, 2 worker processes)" in result.stdout
    beam = json.loads(summary_path.read_text())["beam"]
    assert beam["runner"] == "multi-process" and beam["workers"] == 2
    assert "--direct_running_mode=multi_processing" in beam["args"]
    log = "".join(open(f).read() for f in glob.glob(str(out / "logs" / "*.log")))
    assert "Python sdk harness starting" in log  # a Beam worker process ran bundles
    assert "PrismRunner" not in log and "Downloading prism" not in log
