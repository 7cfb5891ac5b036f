"""A small source tree of made-up project modules, for the tests of the import graph."""


def write_tree(root, files):
    """Writes ``files`` (path -> text) under ``root``; returns the locations argument of
    :mod:`tfx_mtl.module_graph` for a project whose package ``tfx_mtl`` is there."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"tfx_mtl": str(root / "tfx_mtl")}
