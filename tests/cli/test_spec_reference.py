"""docs/task_spec.md's table of spec fields is generated from the code and stays current."""
import dataclasses
import pathlib

import pytest

from tfx_mtl import task_spec
from tfx_mtl.cli import spec_reference

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "task_spec.md"
MINIMAL = {"features": [{"name": "x"}],
           "tasks": [{"name": "y", "type": "regression", "label": "y"}]}


@pytest.fixture(scope="module")
def table():
    return {path: (default, meaning) for path, default, meaning in spec_reference.rows()}


def test_the_task_spec_doc_carries_the_current_table():
    text = DOC.read_text()
    assert spec_reference.rewrite(text) == text, (
        "docs/task_spec.md's spec table is stale: run "
        "`.venv/bin/python -m tfx_mtl.cli.spec_reference --write docs/task_spec.md`")


def test_every_field_has_a_meaning_and_every_meaning_a_field(table):
    assert set(table) == set(spec_reference.MEANINGS)
    assert all(meaning for _, meaning in table.values())


def test_a_field_without_a_meaning_is_refused(monkeypatch):
    meanings = dict(spec_reference.MEANINGS)
    del meanings["features[].top_k"]
    monkeypatch.setattr(spec_reference, "MEANINGS", meanings)
    with pytest.raises(KeyError, match="features\\[\\].top_k"):
        list(spec_reference.rows())


def test_the_defaults_shown_are_what_the_parser_fills_in(table):
    """A field left out of a spec gets the default the table shows (the parser keeps
    defaults of its own for some fields: they must agree with the dataclasses')."""
    spec = task_spec.parse(MINIMAL)
    checked = 0
    for prefix, value in (("features[].", spec.features[0]), ("tasks[].", spec.tasks[0]),
                          ("evaluation.", spec.evaluation), ("data.", spec.data)):
        for f in dataclasses.fields(value):
            path = prefix + f.name
            if table[path][0] == spec_reference.REQUIRED or f.name in ("metrics", "loss"):
                continue
            assert table[path][0] == spec_reference._yaml(path, getattr(value, f.name)), path
            checked += 1
    assert checked >= 15
    assert table["tasks[].loss"][0].endswith(f"regression: `{spec.tasks[0].loss}`")
    assert f"regression: `{spec.tasks[0].metrics[0].name}`" in table["tasks[].metrics"][0]
    assert f"`{spec.name}`" == table["name"][0]


def test_the_metric_keys_are_the_ones_the_parser_accepts():
    spec = {**MINIMAL, "tasks": [{**MINIMAL["tasks"][0], "metrics": [{"name": "mae", "nope": 1}]}]}
    with pytest.raises(task_spec.TaskSpecError) as e:
        task_spec.parse(spec)
    allowed = str(e.value).split("allowed: ", 1)[1].split(")", 1)[0].split(", ")
    assert sorted(allowed) == sorted(spec_reference.METRIC_KEYS)
