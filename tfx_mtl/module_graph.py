"""The project's import graph, read from the source, and the code versions built on it.

The pipeline references its module code by import path, so TFX cannot hash a
module file for a component's cache key; each component carries instead
:func:`code_version` of the modules it runs. That is the transitive closure of
its entry modules (``preprocessing_fn``'s, ``run_fn``'s, a custom executor's)
over every import of the project's own modules, lazy imports inside functions
included: a change anywhere in that closure re-runs the component, and a change
elsewhere (a command's help text, a benchmark) re-runs nothing.

The graph is read statically with :mod:`ast` (no module of the project runs, so
no TensorFlow start-up), and the project's packages are located the way the
installed package maps them (``setup.py``'s ``package_dir`` puts top-level
folders under ``tfx_mtl``), so the result is the same from a wheel, an editable
install or, with ``locations``, a copy of the tree. Stdlib only.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
from typing import Iterable, Mapping

ROOT = "tfx_mtl"
_ANY = "*"  # ends the known prefix of a module name computed at run time


def package_locations() -> dict[str, str]:
    """Each directory of the installed project: ``tfx_mtl`` -> its folder, and each
    top-level sub-package installed from a folder of its own -> that folder.

    The sub-packages' names come from the project's own imports (what no module
    imports is no component's code), their folders from the import system.
    """
    root = _search_location(ROOT)
    locations, checked, pending = {ROOT: root}, set(), [ROOT]
    while pending:
        package = pending.pop()
        for name, path in _modules_under(package, locations[package]).items():
            for base, names in _imports(name, path):
                for imported in [base, *(f"{base}.{n}" for n in names)]:
                    top = ".".join(imported.split(".")[:2])
                    if not top.startswith(ROOT + ".") or _ANY in top or top in checked:
                        continue
                    checked.add(top)
                    location = _search_location(top)
                    if location and location != os.path.join(root, top.split(".")[1]):
                        locations[top] = location
                        pending.append(top)
    return locations


def project_modules(locations: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every module of the project (packages by their ``__init__``) -> its file."""
    modules: dict[str, str] = {}
    for package, directory in (locations or package_locations()).items():
        modules.update(_modules_under(package, directory))
    return modules


def import_graph(locations: Mapping[str, str] | None = None) -> dict[str, set[str]]:
    """Every project module -> the project modules it imports, anywhere in its code.

    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
    else to ``pkg``. An import by name, ``importlib.import_module("pkg.mod")``,
    is an edge too; one by a computed name, ``import_module(f"pkg.{name}")``, is
    an edge to every module the name may give (under ``pkg.``): more than runs,
    never less. Packages a module's import runs on the way (``pkg`` for
    ``pkg.mod``) are not edges here: :func:`closure` adds them.
    """
    modules = project_modules(locations)
    graph = {}
    for name, path in modules.items():
        graph[name] = set()
        for base, names in _imports(name, path):
            if base.endswith(_ANY):
                targets = [m for m in modules if m.startswith(base[:-1]) and m != name]
            else:
                targets = [f"{base}.{n}" if f"{base}.{n}" in modules else base for n in names]
            graph[name].update(t for t in targets or [base] if t in modules)
    return graph


def closure(graph: Mapping[str, Iterable[str]], entries: Iterable[str]) -> set[str]:
    """The modules that importing ``entries`` runs: what they import, transitively,
    and the packages of each (importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    pending, seen = list(entries), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in graph:
            raise KeyError(f"{name!r} is not a module of the project")
        seen.add(name)
        pending.extend(graph[name])
        package = name.rpartition(".")[0]
        if package in graph:
            pending.append(package)
    return seen


def code_version(entries: Iterable[str], locations: Mapping[str, str] | None = None) -> str:
    """A short hash of the names and sources of :func:`closure` of ``entries``."""
    locations = locations or package_locations()
    modules = project_modules(locations)
    digest = hashlib.sha256()
    for name in sorted(closure(import_graph(locations), entries)):
        digest.update(name.encode() + b"\0")
        with open(modules[name], "rb") as f:
            digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def _search_location(package: str) -> str | None:
    spec = importlib.util.find_spec(package)
    return spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None


def _modules_under(package: str, directory: str) -> dict[str, str]:
    """The modules of ``package`` in ``directory`` and in its sub-packages (folders
    with an ``__init__.py``)."""
    modules = {}
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if entry == "__init__.py":
            modules[package] = path
        elif entry.endswith(".py"):
            modules[f"{package}.{entry[:-3]}"] = path
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            modules.update(_modules_under(f"{package}.{entry}", path))
    return modules


def _imports(module: str, path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each import in ``path``, anywhere in it, as (absolute module, names taken from it):
    ``import a.b`` -> ``("a.b", ())``, ``from ..a import x`` -> ``("<package>.a", ("x",))``."""
    with open(path, "rb") as f:
        source = f.read()
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    return _parsed_imports(source, package)


@functools.lru_cache(maxsize=None)
def _parsed_imports(source: bytes, package: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """By content, so each version of a file is parsed once per process."""
    imports = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imports.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            imports.append((base, tuple(alias.name for alias in node.names if alias.name != "*")))
        elif (isinstance(node, ast.Call) and node.args
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                imports.append((name.value, ()))
            elif (isinstance(name, ast.JoinedStr) and name.values
                  and isinstance(name.values[0], ast.Constant)):
                imports.append((name.values[0].value + _ANY, ()))
    return tuple(imports)
