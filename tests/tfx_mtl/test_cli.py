"""The tfx-mtl command refuses bad input before anything runs."""
import os
import subprocess
import sys

import pytest

from tfx_mtl import cli

BIN = os.path.join(os.path.dirname(sys.executable), "tfx-mtl")


def _csv(tmp_path, header="fare,tips,trip_miles\n1,2,3\n"):
    path = tmp_path / "data.csv"
    path.write_text(header)
    return path


def test_unknown_label_column_is_refused_naming_the_field(tmp_path, capsys):
    spec = tmp_path / "tasks.yaml"
    spec.write_text("features: [trip_miles]\ntasks: [{name: x, type: regression, label: fair}]\n")
    code = cli.main(["run", "--data", str(_csv(tmp_path)), "--spec", str(spec),
                     "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "tasks.x.label: unknown column 'fair'" in err and str(spec) in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_missing_data_names_the_path(tmp_path, capsys):
    code = cli.main(["run", "--data", str(tmp_path / "nope.csv"), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "nope.csv: no such file" in capsys.readouterr().err


def test_directory_with_mismatched_headers_is_refused(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("fare,tips\n1,2\n")
    (tmp_path / "b.csv").write_text("fare,tip\n1,2\n")
    code = cli.main(["run", "--data", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "b.csv: header differs" in capsys.readouterr().err


def test_bad_step_count_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--train-steps", "0"])
    assert exit_info.value.code == 2 and "--train-steps" in capsys.readouterr().err


def test_console_script_is_installed_with_a_run_subcommand():
    result = subprocess.run([BIN, "run", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for option in ("--data", "--spec", "--output-dir", "--train-steps", "--summary-json"):
        assert option in result.stdout
