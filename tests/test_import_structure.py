"""The project's import structure: no cycle among its modules (imports inside functions
included) nor among its packages, and no module using another's private names.

Read from the same graph as the components' code versions (tfx_mtl.module_graph).
A package is ``tfx_mtl.<sub>`` for each sub-package (with its own sub-packages); the
core modules directly in ``tfx_mtl/`` are the package ``tfx_mtl``.
"""
import ast
import collections
import importlib.util

from source_tree_support import write_tree

from tfx_mtl import module_graph


def _cycles(graph):
    """Each cycle, as a chain ``a -> b -> a``: the shortest one back to each node, once."""
    cycles = {}
    for start in sorted(graph):
        parent, queue = {}, collections.deque([start])
        while queue and start not in parent:
            node = queue.popleft()
            for target in sorted(graph[node]):
                if target not in parent:
                    parent[target] = node
                    queue.append(target)
        if start in parent:
            chain = [start]
            while len(chain) == 1 or chain[-1] != start:
                chain.append(parent[chain[-1]])
            chain.reverse()
            cycles.setdefault(frozenset(chain), " -> ".join(chain))
    return sorted(cycles.values())


def _package_graph(graph, modules):
    def package(module):
        top = ".".join(module.split(".")[:2])
        return top if modules.get(top, "").endswith("__init__.py") else module_graph.ROOT
    packages = collections.defaultdict(set)
    for module, imported in graph.items():
        packages[package(module)].update(package(m) for m in imported)
    return {p: targets - {p} for p, targets in packages.items()}


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(modules):
    """``path:line: module uses other._name`` for each private name of another project module
    taken by ``from other import _name`` or read as ``other._name``."""
    found = []
    for name, path in sorted(modules.items()):
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        bound = {}  # local name -> the project module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"
                    elif base in modules and base != name and _private(alias.name):
                        found.append(f"{path}:{node.lineno}: {name} uses {base}.{alias.name}")

        def module_of(node):
            if isinstance(node, ast.Name):
                return bound.get(node.id)
            if isinstance(node, ast.Attribute):
                base = module_of(node.value)
                return base and f"{base}.{node.attr}"
            return None
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                other = module_of(node.value)
                if other in modules and other != name:
                    found.append(f"{path}:{node.lineno}: {name} uses {other}.{node.attr}")
    return found


def test_no_module_imports_itself_back_through_others():
    assert _cycles(module_graph.import_graph()) == []


def test_no_package_imports_itself_back_through_others():
    graph = _package_graph(module_graph.import_graph(), module_graph.project_modules())
    assert {"tfx_mtl", "tfx_mtl.cli", "tfx_mtl.models", "tfx_mtl.pipeline"} <= set(graph)
    assert _cycles(graph) == []


def test_no_module_uses_a_private_name_of_another():
    assert _private_uses(module_graph.project_modules()) == []


def _tree(tmp_path, files):
    return write_tree(tmp_path, {"tfx_mtl/__init__.py": "", **files})


def test_a_cycle_is_reported_as_a_chain_even_through_an_import_inside_a_function(tmp_path):
    locations = _tree(tmp_path, {
        "tfx_mtl/a.py": "from tfx_mtl import b\n",
        "tfx_mtl/b.py": "def f():\n    import tfx_mtl.a\n",
        "tfx_mtl/cli/__init__.py": "",
        "tfx_mtl/cli/main.py": "from tfx_mtl.runners import local\n",
        "tfx_mtl/runners/__init__.py": "",
        "tfx_mtl/runners/local.py": "def f():\n    from tfx_mtl.cli.options import X\n",
        "tfx_mtl/cli/options.py": "",
    })
    graph = module_graph.import_graph(locations)
    assert _cycles(graph) == ["tfx_mtl.a -> tfx_mtl.b -> tfx_mtl.a"]
    # No module cycle between cli and runners, but a package one.
    packages = _package_graph(graph, module_graph.project_modules(locations))
    assert _cycles(packages) == ["tfx_mtl.cli -> tfx_mtl.runners -> tfx_mtl.cli"]


def test_private_names_of_other_modules_are_reported(tmp_path):
    locations = _tree(tmp_path, {
        "tfx_mtl/a.py": "_X = 1\n__all__ = []\n",
        "tfx_mtl/b.py": "from tfx_mtl.a import _X, __all__\n",
        "tfx_mtl/c.py": "def f():\n    import tfx_mtl.a as m\n    return m._X + m.__all__\n",
        "tfx_mtl/d.py": "import tfx_mtl.a\nY = tfx_mtl.a._X\n",
    })
    found = _private_uses(module_graph.project_modules(locations))
    assert [line.split(": ", 1)[1] for line in found] == [
        "tfx_mtl.b uses tfx_mtl.a._X", "tfx_mtl.c uses tfx_mtl.a._X", "tfx_mtl.d uses tfx_mtl.a._X"]
