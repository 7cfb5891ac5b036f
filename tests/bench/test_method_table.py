"""docs/methods.md's table: every registered method, its level, parameters, paper and
measured cost, generated from the registries and the recorded benchmark."""
import pathlib

import pytest

from tfx_mtl.bench import method_table, train_bench
from tfx_mtl.models import combination, weighting
from tfx_mtl.models.combination import base as combination_base
from tfx_mtl.models.combination import plain_sum

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "methods.md"


def test_the_methods_doc_carries_the_current_table():
    text = DOC.read_text()
    assert method_table.rewrite(text, method_table.load_bench()) == text, (
        "docs/methods.md's table is stale: run "
        "`.venv/bin/python -m tfx_mtl.bench.method_table --write docs/methods.md`")


def test_every_registered_method_has_a_paper_and_every_paper_a_method():
    registered = ({("weighting", n) for n in weighting.names()}
                  | {("combine", n) for n in combination.names()})
    assert set(method_table.PAPERS) == registered


def test_every_method_gets_a_row_at_each_level_it_runs_at():
    rows = {row.method: row for row in method_table.rows(None)}
    for name in combination.names():
        if name == "sum":
            continue
        method = combination.REGISTRY.get(name)
        expected = ({method.forced_level} if method.forced_level
                    else set(combination.levels(name)))
        got = {row.level for row in rows.values() if row.flags.startswith(f"`--combine {name}`")}
        assert got == expected, name
    for name in weighting.names():
        if name != "uniform":
            assert any(row.flags == f"`--weighting {name}`" for row in rows.values()), name
    assert rows["db_mtl"].level == "parameters" and "db_mtl@representation" not in rows
    assert rows["cagrad"].parameters == "`c=0.5`"
    assert rows["dwa"].parameters == "`period=100`, `temperature=2.0`"
    assert "state in the checkpoint" in rows["gradvac"].cost


def test_a_method_registered_without_a_paper_is_refused(monkeypatch):
    class Unpublished(plain_sum.Sum):
        name = "unpublished"
        needs_task_gradients = True

    monkeypatch.setattr(combination_base.REGISTRY, "_methods",
                        {**combination_base.REGISTRY._methods})
    combination_base.REGISTRY.register(Unpublished)
    with pytest.raises(KeyError, match="unpublished"):
        list(method_table.rows(None))


def test_the_ratios_shown_are_the_recorded_runs_by_k_and_thread_setting():
    bench = {"command": "tfx-mtl bench train --ks 5 8",
             "runs": [{"threads": 1, "K=5": {"sum": 1.0, "pcgrad": 1.234},
                       "K=8": {"sum": 1.0, "pcgrad": 2.5}},
                      {"threads": 0, "K=5": {"sum": 1.0, "pcgrad": 1.111}}]}
    table = method_table.markdown(bench)
    header = table.splitlines()[0]
    assert header.endswith("| K=5, 1 thread | K=5, default threads | K=8, 1 thread "
                           "| K=8, default threads |")
    pcgrad = next(line for line in table.splitlines() if line.startswith("| `pcgrad` |"))
    assert pcgrad.endswith("| 1.23 | 1.11 | 2.50 | - |")
    assert "`tfx-mtl bench train --ks 5 8`" in table
    assert set(train_bench.THREADS) == {1, 0}
