"""docs/reliability.md names, for each case, the test that pins it: each must exist."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
# `file.py::test` or `::test` (the last file named before it in the row).
_REFERENCE = re.compile(r"`((?:[\w/]+/)?\w+\.py)?(?:::(\w+))?`")


def references(text: str) -> list[tuple[str, str | None]]:
    """(test file under tests/, test name or None) for every reference in ``text``."""
    found, last = [], None
    for line in text.splitlines():
        for path, test in _REFERENCE.findall(line):
            if not path and not test:
                continue
            last = path or last
            found.append((last, test or None))
    return found


def test_every_test_the_reliability_table_names_exists():
    refs = references((ROOT / "docs" / "reliability.md").read_text())
    assert len(refs) > 40
    missing = []
    for path, test in refs:
        source = ROOT / "tests" / path
        if not source.is_file():
            missing.append(path)
        elif test and not re.search(rf"^def {test}\(", source.read_text(), re.M):
            missing.append(f"{path}::{test}")
    assert not missing, missing


def test_a_renamed_test_would_be_reported():
    refs = references("| case | now | `models/test_loop.py::no_such_test`, `::another` |")
    assert refs == [("models/test_loop.py", "no_such_test"), ("models/test_loop.py", "another")]
