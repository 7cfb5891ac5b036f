"""The ExampleGen memory benchmark: a tiny real run of both executors in child processes."""
import json

import pytest

from tfx_mtl.bench import example_gen_bench as eb


def test_unknown_executors_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        eb.main(["--executors", "tfx,fast"])
    assert info.value.code == 2 and "--executors" in capsys.readouterr().err


@pytest.mark.subprocess
def test_a_tiny_run_measures_both_executors_and_cleans_up(tmp_path):
    work, out = tmp_path / "work", tmp_path / "r.json"
    assert eb.main(["--rows", "300", "--features", "3", "--files", "2",
                    "--work-dir", str(work), "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [(r["executor"], r["rows"], r["files"]) for r in runs] == [
        ("tfx", 300, 2), ("streaming", 300, 2)]
    for r in runs:
        # a Python with TensorFlow and Beam loaded: hundreds of MiB, some CPU-seconds
        assert r["peak_rss_bytes"] > 200 * 2**20 and r["cpu_s"] > 1, r
        assert r["cpu_us_per_row"] == pytest.approx(1e6 * r["cpu_s"] / 300, abs=0.1)
    assert list(work.iterdir()) == []  # data, pipeline roots and TMPDIR removed
