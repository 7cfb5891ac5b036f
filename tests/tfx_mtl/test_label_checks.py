"""Label sanity before the run, on hand-made rows (and small files for the readers)."""
import collections
import dataclasses

import pytest

from tfx_mtl import label_checks, task_spec
from tfx_mtl.label_checks import LabelCheckError


def _spec(*tasks, missing=()):
    spec = task_spec.parse({"features": ["x"], "tasks": [
        {"name": f"t{i}", **task} for i, task in enumerate(tasks)]})
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, missing_values=missing))


def _rows(column, values, **others):
    return [{column: v, **{k: vs[i] for k, vs in others.items()}} for i, v in enumerate(values)]


def _check(spec, rows):
    scans = {"": label_checks.scan_rows(lambda: rows, spec, spec.data.missing_values)}
    label_checks.check(scans, spec)
    return scans[""]


def _refusal(spec, rows) -> tuple[str, str]:
    with pytest.raises(LabelCheckError) as e:
        _check(spec, rows)
    return e.value.field, e.value.message


def test_a_literal_no_row_holds_is_named_with_its_near_miss_first():
    """sex == 'Male' on male/female data: every label 0; the case-insensitive
    near-miss comes first though 'female' is more common."""
    spec = _spec({"type": "binary", "label": "sex == 'Male'"})
    field, message = _refusal(spec, _rows("sex", ["female"] * 3 + ["male"] * 2 + ["", None]))
    assert field == "tasks.t0.label"
    assert message == (
        "task 't0': \"sex == 'Male'\" is false on every one of the 5 labelled rows: a binary "
        "label needs both classes; 'Male' never occurs in column 'sex' (did you mean "
        "'male'?); it holds 'male' (2), 'female' (3)")


def test_a_backtick_quoted_column_is_looked_up_by_its_header_name():
    spec = _spec({"type": "binary", "label": "`marital-status` == 'Never married'"})
    _, message = _refusal(spec, _rows("marital-status", ["Never-married", "Divorced"]))
    assert message.endswith("'Never married' never occurs in column 'marital-status'; it holds "
                            "'Never-married' (1), 'Divorced' (1)")


def test_without_a_near_miss_the_most_common_values_come_first_and_the_rest_counted():
    spec = _spec({"type": "binary", "label": "colour != 'teal'"})
    values = ["red"] * 6 + ["blue"] * 5 + ["green"] * 4 + ["a", "b", "b", "c", "c", "c"]
    _, message = _refusal(spec, _rows("colour", values))
    assert "is true on every one of the 21 labelled rows" in message
    assert message.endswith("'teal' never occurs in column 'colour'; it holds 'red' (6), "
                            "'blue' (5), 'green' (4), 'c' (3), 'b' (2) and 1 more")


def test_a_binary_label_with_both_classes_passes():
    spec = _spec({"type": "binary", "label": "sex == 'male'"},
                 {"type": "binary", "label": "tips > 0.2 * fare"})
    scan = _check(spec, _rows("sex", ["male", "female", "male"], tips=["1", "0", ""],
                              fare=["2", "5", "3"]))
    assert scan.tasks["t0"].classes == {1: 2, 0: 1}
    assert scan.tasks["t1"].classes == {1: 1, 0: 1} and scan.tasks["t1"].labelled == 2


def test_a_constant_0_1_column_is_refused_and_numbers_are_parsed():
    spec = _spec({"type": "binary", "label": "clicked"})
    _, message = _refusal(spec, _rows("clicked", ["0", "0.0", "0", "nan"]))
    assert message == ("task 't0': 'clicked' is false on every one of the 3 labelled rows: "
                       "a binary label needs both classes")


def test_a_multiclass_label_needs_two_classes():
    """'NA' is a class unless data.missing_values says it means missing."""
    rows = _rows("species", ["Adelie", "Adelie", "NA"])
    assert _check(_spec({"type": "multiclass", "label": "species"}), rows).tasks["t0"].classes \
        == {"Adelie": 2, "NA": 1}
    spec = _spec({"type": "multiclass", "label": "species"}, missing=("NA",))
    field, message = _refusal(spec, rows)
    assert field == "tasks.t0.label"
    assert message == ("task 't0': one class on the data ('Adelie', all 2 labelled rows): "
                       "a multiclass label needs at least two")
    scan = _check(spec, _rows("species", ["Adelie", "Gentoo", "NA"]))
    assert scan.tasks["t0"].classes == {"Adelie": 1, "Gentoo": 1}


def test_numeric_classes_are_named_as_the_vocabulary_names_them():
    spec = _spec({"type": "multiclass", "label": "grade"})
    assert _check(spec, _rows("grade", ["1", "2", "1.0"])).tasks["t0"].classes == {"1": 2, "2": 1}


def test_a_regression_label_needs_variance_and_a_labelled_row():
    spec = _spec({"type": "regression", "label": "fare"})
    _, message = _refusal(spec, _rows("fare", ["7.5", "7.5", "", "inf"]))
    assert message == ("task 't0': every one of the 2 labelled rows has the value 7.5: a "
                       "regression label with zero variance cannot be learned or judged")
    spec = _spec({"type": "regression", "label": "fare - tolls"}, missing=("?",))
    _, message = _refusal(spec, _rows("fare", ["3", "", "4"], tolls=["?", "1", None]))
    assert message == ("task 't0': no row has a label: 'fare - tolls' reads 'fare', 'tolls', "
                       "and every row misses one of them (empty, a data.missing_values token, "
                       "or not a finite number)")
    scan = _check(spec, _rows("fare", ["3", "5", "4"], tolls=["1", "1", "?"]))
    assert (scan.tasks["t0"].labelled, scan.tasks["t0"].low, scan.tasks["t0"].high) == (2, 2, 4)


def test_a_missing_value_token_not_declared_is_text_in_a_numeric_label():
    """penguins' NA without data.missing_values: the column is text, named with an example."""
    spec = _spec({"type": "regression", "label": "mass"})
    _, message = _refusal(spec, _rows("mass", ["3750", "NA", "4000"]))
    assert message.startswith("task 't0': column 'mass' holds text (e.g. '3750'), but a "
                              "regression label reads numbers")
    assert "data.missing_values" in message
    spec = _spec({"type": "regression", "label": "mass"}, missing=("NA",))
    assert _check(spec, _rows("mass", ["3750", "NA", "4000"])).tasks["t0"].labelled == 2


def test_comparing_text_with_a_number_is_refused_naming_the_columns():
    spec = _spec({"type": "binary", "label": "sex > 0"})
    field, message = _refusal(spec, _rows("sex", ["male", "female"]))
    assert field == "tasks.t0.label"
    assert "mixes text and numbers: the data's column(s) 'sex' (text)" in message


def test_every_problem_is_reported_at_once():
    spec = _spec({"type": "binary", "label": "a > 1"}, {"type": "regression", "label": "b"})
    with pytest.raises(LabelCheckError) as e:
        _check(spec, _rows("a", ["0", "1"], b=["2", "2"]))
    assert [field for field, _ in e.value.problems] == ["tasks.t0.label", "tasks.t1.label"]


def test_a_column_found_to_hold_text_after_a_chunk_is_read_again_as_text(monkeypatch):
    """The first chunk looks numeric; the second has text: the literal is then found."""
    monkeypatch.setattr(label_checks, "CHUNK_ROWS", 2)
    spec = _spec({"type": "binary", "label": "code == 'x1'"})
    reads = []

    def rows():
        reads.append(1)
        return _rows("code", ["1", "2", "x1", "3"])

    scan = label_checks.scan_rows(rows, spec)
    assert scan.tasks["t0"].classes == {1: 1, 0: 3} and len(reads) == 2
    assert scan.rows == 4 and scan.values["code"] == {"1": 1, "2": 1, "x1": 1, "3": 1}


# -- small data --------------------------------------------------------------------
def _scan(rows, classes=None, labelled=None, low=0.0, high=1.0):
    tasks = {"t0": label_checks.TaskCounts(labelled=labelled if labelled is not None else rows,
                                           classes=collections.Counter(classes or {}),
                                           low=low, high=high)}
    return label_checks.Scan(rows=rows, tasks=tasks)


def test_an_unsplit_input_s_splits_get_their_share_of_the_buckets():
    """8/1/1 buckets of 1,000 rows, 200 positives: validation and test ~100 rows, 20 positive."""
    whole = _scan(1000, {1: 200, 0: 800})
    splits = label_checks.expected_split_counts({"": whole}, (("train", 8), ("validation", 1),
                                                               ("test", 1)))
    assert splits["train"].rows == 800 and splits["test"].rows == 100
    assert splits["validation"].tasks["t0"].classes == {1: 20, 0: 80}
    split_dirs = {"train": whole, "validation": whole, "test": whole}
    assert label_checks.expected_split_counts(split_dirs, ()) == split_dirs


def test_an_eval_split_with_fewer_than_30_of_a_class_warns_and_30_do_not():
    spec = _spec({"type": "binary", "label": "y"})
    few = {"train": _scan(900), "validation": _scan(300, {1: 29, 0: 271}),
           "test": _scan(300, {1: 30, 0: 270})}
    (warning,) = label_checks.small_split_warnings(few, spec)
    assert warning["task"] == "t0" and warning["split"] == "validation"
    assert warning["message"] == (
        "task 't0': the validation split holds about 300 labelled examples, 29 of its rarest "
        "class (1): fewer than 30 per class, too few for a meaningful selection")
    spec = _spec({"type": "regression", "label": "y"})
    regression = {"validation": _scan(40, labelled=30), "test": _scan(40, labelled=29)}
    (warning,) = label_checks.small_split_warnings(regression, spec)
    assert warning["split"] == "test" and "about 29 labelled examples" in warning["message"]
    assert warning["message"].endswith("too few for a meaningful verdict")


def test_a_budget_of_more_than_100_epochs_warns():
    splits = {"train": _scan(640)}
    assert label_checks.epoch_warning(splits, 64, steps=1000) is None  # exactly 100 epochs
    warning = label_checks.epoch_warning(splits, 64, steps=1010)
    assert warning["message"].startswith("the budget, 1,010 steps of batch 64, is 101 epochs "
                                         "over a train split of about 640 examples")
    assert label_checks.epoch_warning(splits, 64, steps=10 ** 6, epochs=20) is None
    assert "--train-epochs 150" in label_checks.epoch_warning(splits, 64, epochs=150)["message"]


# -- the readers -------------------------------------------------------------------
def test_a_csv_and_split_directories_are_scanned_per_input_split(tmp_path):
    spec = _spec({"type": "binary", "label": "sex == 'f'"})
    (tmp_path / "one.csv").write_text("x,sex\n1,f\n2,m\n3,\n\n4,f\n")
    (scan,) = label_checks.scan(str(tmp_path / "one.csv"), spec).values()
    assert scan.rows == 4 and scan.tasks["t0"].classes == {1: 2, 0: 1}
    for i, split in enumerate(("train", "validation", "test")):
        (tmp_path / "d" / split).mkdir(parents=True)
        (tmp_path / "d" / split / "a.csv").write_text("x,sex\n" + "1,m\n" * (i + 1))
    scans = label_checks.scan(str(tmp_path / "d"), spec)
    assert {s: v.rows for s, v in scans.items()} == {"train": 1, "validation": 2, "test": 3}
    with pytest.raises(LabelCheckError, match="'f' never occurs in column 'sex'; it holds "
                                              r"'m' \(6\)"):
        label_checks.check(scans, spec)


def test_tfrecord_examples_are_scanned(tmp_path):
    from tfx_mtl import synth

    synth.write(synth.SynthConfig(rows=50, tasks=1, features=2), tmp_path / "d", fmt="tfrecord")
    spec = _spec({"type": "regression", "label": "task_1"}, {"type": "binary", "label": "x_0 > 99"})
    scans = label_checks.scan(str(tmp_path / "d"), spec)
    whole = label_checks.total(scans)
    assert whole.rows == 50 and whole.tasks["t0"].labelled == 50
    assert whole.tasks["t0"].low < whole.tasks["t0"].high
    with pytest.raises(LabelCheckError, match="'x_0 > 99' is false on every one of the 50"):
        label_checks.check(scans, spec)
