"""Code versions: each component's cache key covers exactly the project code it runs."""
import shutil

import pytest
from source_tree_support import write_tree

from tfx_mtl import module_graph

# What each component runs (as pipeline.py keys them; tests/pipeline/test_pipeline.py checks it).
COMPONENTS = {
    "Transform": ["tfx_mtl.models.preprocessing"],
    "Trainer": ["tfx_mtl.components.mtl_trainer", "tfx_mtl.models.trainer"],
    "Evaluator (RMSE)": ["tfx_mtl.pipeline.tfma_metrics"],
    "BlessingGate": ["tfx_mtl.components.blessing_gate"],
}


def test_every_import_is_an_edge_lazy_relative_and_by_name_included(tmp_path):
    locations = write_tree(tmp_path, {
        "tfx_mtl/__init__.py": "",
        "tfx_mtl/a.py": "import os\n\ndef f():\n    from tfx_mtl import b, CONSTANT\n",
        "tfx_mtl/b.py": "class C:\n    def m(self):\n        import tfx_mtl.sub.c\n",
        "tfx_mtl/sub/__init__.py": "from . import c\n",
        "tfx_mtl/sub/c.py": "from .. import b\nfrom ..sub import d as _\n",
        "tfx_mtl/sub/d.py": "",
        "tfx_mtl/e.py": "import tfx_mtl.a\n",
        "tfx_mtl/f.py": "import importlib\n\ndef f(x):\n    importlib.import_module('tfx_mtl.e')\n"
                        "    return importlib.import_module(f'tfx_mtl.sub.{x}')\n",
    })
    graph = module_graph.import_graph(locations)
    assert graph == {
        "tfx_mtl": set(),
        "tfx_mtl.a": {"tfx_mtl.b", "tfx_mtl"},  # CONSTANT is no module: the package
        "tfx_mtl.b": {"tfx_mtl.sub.c"},
        "tfx_mtl.sub": {"tfx_mtl.sub.c"},
        "tfx_mtl.sub.c": {"tfx_mtl.b", "tfx_mtl.sub.d"},
        "tfx_mtl.sub.d": set(),
        "tfx_mtl.e": {"tfx_mtl.a"},
        "tfx_mtl.f": {"tfx_mtl.e", "tfx_mtl.sub.c", "tfx_mtl.sub.d"},  # any the name may give
    }
    # Importing sub.c runs the package sub first, and what it imports.
    assert module_graph.closure(graph, ["tfx_mtl.b"]) == {
        "tfx_mtl", "tfx_mtl.b", "tfx_mtl.sub", "tfx_mtl.sub.c", "tfx_mtl.sub.d"}
    with pytest.raises(KeyError, match="tfx_mtl.gone"):
        module_graph.closure(graph, ["tfx_mtl.gone"])


def test_the_installed_project_is_found_with_its_folders_mapped_under_tfx_mtl():
    locations = module_graph.package_locations()
    assert {"tfx_mtl", "tfx_mtl.models", "tfx_mtl.pipeline", "tfx_mtl.components",
            "tfx_mtl.bench", "tfx_mtl.serving"} <= set(locations)
    modules = module_graph.project_modules()
    assert {"tfx_mtl.cli.run", "tfx_mtl.models.trainer", "tfx_mtl.runners.local"} <= set(modules)


def test_the_trainer_runs_the_models_it_uses_and_no_command_line_code():
    graph = module_graph.import_graph()
    trainer = module_graph.closure(graph, COMPONENTS["Trainer"])
    assert {"tfx_mtl.models", "tfx_mtl.models.loop", "tfx_mtl.models.heads", "tfx_mtl.models.mmoe",
            "tfx_mtl.models.preprocessing", "tfx_mtl.task_spec", "tfx_mtl"} <= trainer
    assert not any(m.startswith(("tfx_mtl.cli", "tfx_mtl.bench", "tfx_mtl.serving",
                                 "tfx_mtl.runners", "tfx_mtl.results")) for m in trainer)
    transform = module_graph.closure(graph, COMPONENTS["Transform"])
    assert "tfx_mtl.models.preprocessing" in transform and "tfx_mtl.models.loop" not in transform
    # The command line reaches the runners only through imports inside functions.
    assert "tfx_mtl.runners.local" in graph["tfx_mtl.cli.run"]


def _copy_project(tmp_path):
    """The installed project's folders copied under tmp_path: locations for module_graph."""
    return {package: shutil.copytree(directory, tmp_path / package,
                                     ignore=shutil.ignore_patterns("__pycache__"))
            for package, directory in module_graph.package_locations().items()}


def test_a_key_depends_on_the_code_not_on_where_it_is_installed(tmp_path):
    locations = _copy_project(tmp_path)
    for modules in COMPONENTS.values():
        assert module_graph.code_version(modules, locations) == module_graph.code_version(modules)


@pytest.mark.parametrize("module, edit, changed", [
    ("tfx_mtl.models.heads", None, {"Trainer"}),
    ("tfx_mtl.models.mmoe", None, {"Trainer"}),  # imported by a computed name
    ("tfx_mtl.models.preprocessing", None, {"Transform", "Trainer"}),
    ("tfx_mtl.task_spec", None, {"Transform", "Trainer", "BlessingGate"}),
    ("tfx_mtl.components.mtl_trainer", None, {"Trainer"}),
    ("tfx_mtl.pipeline.tfma_metrics", None, {"Evaluator (RMSE)"}),
    # the project's metrics' formulas: the Evaluator's and the comparison's (the gate's)
    ("tfx_mtl.metric_formulas", None, {"Evaluator (RMSE)", "BlessingGate"}),
    ("tfx_mtl.pipeline", None, {"Evaluator (RMSE)"}),  # the package's __init__ runs too
    ("tfx_mtl.results.evaluation", None, {"BlessingGate"}),
    ("tfx_mtl.cli.run", ('help="run the whole TFX DAG', 'help="run the TFX DAG'), set()),
    ("tfx_mtl.bench.train_bench", None, set()),
    ("tfx_mtl.serving.server", None, set()),
    ("tfx_mtl.pipeline.pipeline", None, set()),  # defines the DAG; runs in no component
])
def test_an_edit_changes_the_keys_of_the_components_that_run_it_and_no_other(
        tmp_path, module, edit, changed):
    locations = _copy_project(tmp_path)
    before = {c: module_graph.code_version(m, locations) for c, m in COMPONENTS.items()}
    path = module_graph.project_modules(locations)[module]
    with open(path) as f:
        text = f.read()
    assert edit is None or edit[0] in text
    with open(path, "w") as f:
        f.write(text.replace(*edit, 1) if edit else text + "# edited\n")
    after = {c: module_graph.code_version(m, locations) for c, m in COMPONENTS.items()}
    assert {c for c in COMPONENTS if before[c] != after[c]} == changed
