"""The tfx-mtl command refuses bad input before anything runs."""
import os
import subprocess
import sys

import pytest

from tfx_mtl import cli
from tfx_mtl.cli import options as cli_options

BIN = os.path.join(os.path.dirname(sys.executable), "tfx-mtl")


def _csv(tmp_path, header="fare,tips,trip_miles\n1,2,3\n"):
    path = tmp_path / "data.csv"
    path.write_text(header)
    return path


def test_a_label_column_the_data_lacks_is_refused_naming_the_data_file(tmp_path, capsys):
    """A dropped or renamed column is the data's problem: the data file and the column
    are named, not 'invalid task spec'."""
    spec = tmp_path / "tasks.yaml"
    spec.write_text("features: [trip_miles]\ntasks: [{name: x, type: regression, label: fair}]\n")
    data = _csv(tmp_path)
    code = cli.main(["run", "--data", str(data), "--spec", str(spec),
                     "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert (f"tfx-mtl run: error: {data}: the data lacks 1 column(s) the spec reads:\n"
            "  no column 'fair' (the label of task 'x' reads it)\n"
            "  its header has: fare, tips, trip_miles") in err
    assert "invalid task spec" not in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_missing_data_names_the_path(tmp_path, capsys):
    code = cli.main(["run", "--data", str(tmp_path / "nope.csv"), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "nope.csv: no such file" in capsys.readouterr().err


def test_directory_with_mismatched_headers_is_refused(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("fare,tips\n1,2\n")
    (tmp_path / "b.csv").write_text("fare,tip\n1,2\n")
    code = cli.main(["run", "--data", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "b.csv: header differs" in capsys.readouterr().err


def test_tfrecord_data_is_checked_against_the_spec_before_anything_runs(tmp_path, capsys):
    from tfx_mtl import synth

    synth.write(synth.SynthConfig(rows=5, tasks=1, features=2), tmp_path / "d", fmt="tfrecord")
    spec = tmp_path / "tasks.yaml"
    spec.write_text("features: [x_0, x_1]\ntasks: [{name: y, type: regression, label: task_2}]\n")
    code = cli.main(["run", "--data", str(tmp_path / "d"), "--spec", str(spec),
                     "--output-dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'd'}: the data lacks 1 column(s)" in err
    assert "no column 'task_2' (the label of task 'y' reads it)" in err
    assert "(the first 1,000 of each file) has: task_1, x_0, x_1" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--train-steps", "--seeds"])
def test_bad_step_or_seed_count_is_an_argument_error(capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", option, "0"])
    assert exit_info.value.code == 2 and option in capsys.readouterr().err


@pytest.mark.subprocess
def test_console_script_is_installed_with_a_run_subcommand():
    result = subprocess.run([BIN, "run", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for option in ("--data", "--spec", "--output-dir", "--train-steps", "--summary-json"):
        assert option in result.stdout


def test_training_options_become_trainer_config_fields():
    args = cli.build_parser().parse_args([
        "run", "--model", "mmoe", "--experts", "8", "--hidden-units", "256,256",
        "--weighting", "gradnorm", "--weighting-param", "alpha=0.5", "--combine", "cagrad",
        "--combine-param", "c=0.4", "--tasks", "fare,big_tipper",
        "--checkpoint-every", "0", "--eval-every", "100", "--early-stopping", "3"])
    options = cli_options.trainer_options(args)
    assert options == {"batch_size": 128, "weighting": "gradnorm", "combine": "cagrad",
                       "checkpoint_every": 0, "eval_every": 100, "early_stopping_patience": 3,
                       "weighting_params": {"alpha": 0.5}, "combine_params": {"c": 0.4},
                       "tasks": ("fare", "big_tipper"),
                       "architecture": {"name": "mmoe", "experts": 8,
                                        "hidden_units": (256, 256)}}
    from tfx_mtl.models.trainer_config import TrainerConfig
    config = TrainerConfig.from_dict(options)
    assert config.architecture.experts == 8 and config.architecture.hidden_units == (256, 256)


@pytest.mark.parametrize("argv,field", [
    (["--combine", "pcgard"], "trainer.combine: unknown gradient combination 'pcgard'"),
    (["--weighting", "uncertainty", "--weighting-param", "alpha=1"],
     "trainer.weighting_params.alpha: weighting 'uncertainty': unknown parameter 'alpha'"),
    (["--combine", "cagrad", "--combine-param", "c=-1"],
     "parameter 'c' must be a number >= 0, got -1"),
    (["--combine-param", "c=1", "--combine-param", "c=2"], "--combine-param: c given more"),
    (["--model", "single_task"], "unknown architecture 'single_task'"),
    (["--tasks", "fare,tip"], "trainer.tasks: 'tip' is not a task of the spec"),
    (["--eval-every", "0"], "early_stopping_patience: needs trainer.eval_every"),
])
def test_bad_training_options_are_refused_before_the_pipeline_runs(tmp_path, capsys, argv, field):
    code = cli.main(["run", "--output-dir", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and field in err, err
    assert not (tmp_path / "out" / "pipeline_root").exists()


def _run_spec(tmp_path, text):
    spec = tmp_path / "tasks.yaml"
    spec.write_text(text)
    return cli.main(["run", "--data", str(_csv(tmp_path)), "--spec", str(spec),
                     "--output-dir", str(tmp_path / "out")])


@pytest.mark.parametrize("name", ["../escaped", "a/../../../b"])
def test_a_spec_name_that_would_climb_out_of_the_output_dir_is_refused(tmp_path, capsys, name):
    code = _run_spec(tmp_path, f"name: {name}\nfeatures: [trip_miles]\n"
                               "tasks: [{name: x, type: regression, label: fare}]\n")
    err = capsys.readouterr().err
    assert code == 2 and f"name: {name!r} is not a valid spec name" in err, err
    assert not (tmp_path / "out").exists()


def test_a_spec_name_too_long_for_tfx_is_refused_before_compiling(tmp_path, capsys):
    spec = tmp_path / "tasks.yaml"
    spec.write_text("name: " + "n" * 56 + "\nfeatures: [trip_miles]\n"
                    "tasks: [{name: x, type: regression, label: fare}]\n")
    code = cli.main(["compile", "--image", "img:1", "--pipeline-root", "gs://b/r",
                     "--spec", str(spec), "--output", str(tmp_path / "p.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "name: 'nnn" in err and "at most 55 characters" in err, err
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("label, needle", [
    (" + ".join(["fare"] * 20000), "characters long"),
    ("'a' * 100000000000", "a string may only be compared"),
    ("42", "reads no column"),
])
def test_a_label_that_could_blow_up_is_refused_naming_the_task(tmp_path, capsys, label, needle):
    code = _run_spec(tmp_path, "features: [trip_miles]\n"
                               f"tasks: [{{name: x, type: regression, label: \"{label}\"}}]\n")
    err = capsys.readouterr().err
    assert code == 2 and "tasks.x.label: " in err and needle in err, err[:500]
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_an_unknown_type_is_not_also_reported_as_a_missing_primary(tmp_path, capsys):
    code = _run_spec(tmp_path, "features: [trip_miles]\ntasks:\n"
                               "  - {name: x, type: ranking, label: fare}\n"
                               "  - {name: y, type: regression, label: tips, role: auxiliary}\n")
    err = capsys.readouterr().err
    assert code == 2 and "tasks.x.type: unknown task type 'ranking'" in err
    assert "primary" not in err, err


def test_a_label_with_one_class_on_the_data_is_refused_before_the_dag_runs(tmp_path, capsys):
    """sex == 'Male' where the data says male/female: exit 2 naming the task, the literal
    and the values that occur; no output directory, so no MLMD store, was made."""
    spec = tmp_path / "tasks.yaml"
    spec.write_text("features: [age]\ntasks:\n"
                    "  - {name: is_male, type: binary, label: \"sex == 'Male'\"}\n"
                    "  - {name: age2, type: regression, label: age2}\n")
    data = tmp_path / "adult.csv"
    data.write_text("age,sex,age2\n" + "".join(f"{20 + i},{'male' if i % 3 else 'female'},"
                                               f"{20 + i}\n" for i in range(30)))
    code = cli.main(["run", "--data", str(data), "--spec", str(spec),
                     "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert ("tfx-mtl run: error: tasks.is_male.label: task 'is_male': \"sex == 'Male'\" is "
            "false on every one of the 30 labelled rows: a binary label needs both classes; "
            "'Male' never occurs in column 'sex' (did you mean 'male'?); it holds 'male' (20), "
            "'female' (10)") in err
    assert not (tmp_path / "out").exists()


def test_train_steps_and_train_epochs_are_one_budget(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["run", "--train-steps", "10", "--train-epochs", "2"])
    assert e.value.code == 2
    assert "argument --train-epochs: not allowed with argument --train-steps" \
        in capsys.readouterr().err
    args = cli.build_parser().parse_args(["compile", "--image", "i", "--output", "o.yaml",
                                          "--pipeline-root", "gs://b", "--train-epochs", "2.5"])
    assert cli_options.trainer_options(args)["train_epochs"] == 2.5
    assert cli_options.train_steps(args) == cli_options.TRAIN_STEPS  # not used by the Trainer
    args = cli.build_parser().parse_args(["run", "--train-steps", "7"])
    # --train-steps wins over a spec's trainer.train_epochs; neither: the spec's stands.
    assert cli_options.trainer_options(args)["train_epochs"] is None
    assert cli_options.train_steps(args) == 7
    assert "train_epochs" not in cli_options.trainer_options(cli.build_parser().parse_args(["run"]))
