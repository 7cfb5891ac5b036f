"""Runs the review notebooks headless against a real run and checks what they show.

The notebooks ship without outputs, so nothing else would notice one that no
longer runs against the current pipeline's records. Each is executed with
nbclient in the venv's own kernel, as a reviewer would run it from notebooks/.
"""
import math
import re
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.subprocess]  # a run's notebooks in a kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT = 600  # seconds; the machine is small and shared
WIDGET = "application/vnd.jupyter.widget-view+json"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _execute(name: str, output_dir: Path, tmp_path: Path, monkeypatch):
    import nbformat  # the test extra installs both (setup.py: notebooks)
    from nbclient import NotebookClient

    monkeypatch.setenv("TFX_MTL_OUTPUT_DIR", str(output_dir))
    # Only the venv's kernel spec: no user-level "python3" that runs another Python.
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells), f"{name} is committed with outputs"
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    probe = nb.cells.pop()
    assert probe.outputs[0]["text"].strip() == sys.executable
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert not errors, [f"{o['ename']}: {o['evalue']}" for o in errors]
    return nb, outputs


def _text(outputs) -> str:
    parts = []
    for output in outputs:
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get(kind, "") for kind in ("text/plain", "text/html", "text/markdown")]
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def _shown(value: float, numbers: list[float]) -> bool:
    """Whether ``value`` appears among the numbers shown, at display precision."""
    return any(math.isclose(value, n, rel_tol=1e-3, abs_tol=5e-5) for n in numbers)


def test_model_analysis(taxi_run, tmp_path, monkeypatch):
    from tfx_mtl.results import metadata, review

    nb, outputs = _execute("model_analysis.ipynb", taxi_run.output_dir, tmp_path, monkeypatch)
    text = _text(outputs)
    numbers = [float(n) for n in _NUMBER.findall(text)]
    tasks = taxi_run.summary["tasks"]
    for task, info in tasks.items():
        assert f"### Task `{task}`" in text
        for metric, value in info["baseline_metrics"].items():
            for who, shown in (("multi-task", info["metrics"][metric]), ("baseline", value)):
                # None: NaN or infinite (the reason is in not_finite); pandas shows NaN.
                assert shown is None or _shown(shown, numbers), (task, metric, who)
    assert taxi_run.summary["decision"] in text

    run = metadata.find_run(taxi_run.output_dir)
    assert run.slices, "the taxi spec has slices"
    plots = [o for o in outputs if "image/png" in o.get("data", {})]
    expected = sum(len(review.judged_metrics(run, task)) for task in tasks) * len(run.slices)
    assert len(plots) == expected
    views = [o["data"] for o in outputs if WIDGET in o.get("data", {})]
    assert len(views) == len(tasks) * len(run.slices)
    assert all(v["text/plain"].startswith("SlicingMetricsViewer") for v in views)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    for view in views:
        model = state[view[WIDGET]["model_id"]]
        assert model["model_name"] == "SlicingMetricsModel"
        assert model["state"]["data"], "the TFMA widget holds no slice"


def test_data_review(taxi_run, tmp_path, monkeypatch):
    from tfx_mtl.results import metadata, review

    _, outputs = _execute("data_review.ipynb", taxi_run.output_dir, tmp_path, monkeypatch)
    text = _text(outputs)
    assert "facets-overview" in text  # tfdv.visualize_statistics
    assert "present_pct" in text  # the static statistics table
    assert "Presence" in text  # tfdv.display_schema
    schema, _ = review.schema(metadata.find_run(taxi_run.output_dir))
    for feature in schema.feature:
        assert feature.name in text
    # SchemaGate let the run through, so ExampleValidator found nothing in any split.
    assert text.count("No anomalies found") == 3  # train, validation, test
