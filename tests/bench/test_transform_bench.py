"""``python -m tfx_mtl.bench.transform_bench`` on tiny inputs: it runs the real pipeline's
Transform alone on both datasets and reports its cost; no timing is asserted."""
import json

import pytest

from tfx_mtl.bench import transform_bench


@pytest.mark.e2e  # real TFX components (ExampleGen .. Transform) on Beam
@pytest.mark.subprocess  # each dataset in a fresh Python
def test_the_bench_measures_transform_alone_on_both_datasets(tmp_path, capsys):
    assert transform_bench.main(["--rows", "120", "--features", "3", "--tasks", "2",
                                 "--taxi-rows", "120", "--workdir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("taxi", "synth_120x3"):
        assert report[name]["cpu_s"] > 0 and report[name]["peak_rss_mib"] > 0
        assert len(report[name]["load_before"]) == 3
        # Transform ran on the pipeline's own upstream outputs, and only it was timed.
        assert (tmp_path / name / "root" / "Transform" / "transform_graph").is_dir()
    assert report["ratio_cpu"] == pytest.approx(
        report["synth_120x3"]["cpu_s"] / report["taxi"]["cpu_s"], abs=0.01)
    assert report["cores"] >= 1 and "--rows 120" in report["command"]
