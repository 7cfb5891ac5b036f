"""The README's commands run as written, and the docs' links lead somewhere.

Convention (stated at the top of the README's tour): in the README's shell blocks every
command follows a ``$ `` prompt, and every other line is a ``#`` comment. A command whose
line ends in ``# needs ...`` (a cluster or an image) is not run here; every other one is,
exactly as written, in order, in one fresh temporary directory with the venv's ``bin``
first on ``PATH``. Two are special:

- ``make run`` runs what the Makefile's ``run`` target runs (``make -n run`` must show
  ``<venv>/bin/tfx-mtl run <ARGS>``), i.e. ``tfx-mtl run <ARGS>`` in the temporary
  directory;
- ``make test`` is CI itself (``.ci/run``): checked to be its entry point, not run.

``tfx-mtl serve`` runs until stopped: it is started in the background, waited for (it
prints ``serving model ...``), used by the commands after it and stopped at the end.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_README_LINES = 200
SHELL_FENCES = {"sh", "shell", "bash", "console"}
PROMPT = "$ "
# `# needs a Kubeflow cluster`, `# needs an image`: the mark that a command is not run here.
NEEDS = re.compile(r"\s#\s*needs\s+(?P<what>.+)$")
COMMAND_TIMEOUT = 1800  # seconds; the bundled run takes about 90 s on 2 cores
SERVE_START_TIMEOUT = 300


@dataclasses.dataclass(frozen=True)
class Command:
    line: int  # in the README, 1-based
    text: str  # without the prompt
    needs: str | None  # what it needs, when marked as not runnable here

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text, comments=True)


def fenced_blocks(text: str):
    """(info string, [(line number, line)]) of every fenced code block."""
    block, info = None, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if block is None:
            if stripped.startswith("```"):
                block, info = [], stripped[3:].strip().lower()
        elif stripped.startswith("```"):
            yield info, block
            block = None
        else:
            block.append((number, line))
    assert block is None, "a code block is never closed"


def readme_commands(text: str) -> list[Command]:
    commands, problems = [], []
    for info, block in fenced_blocks(text):
        if info not in SHELL_FENCES:
            continue
        for number, line in block:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if not line.startswith(PROMPT):
                problems.append(f"README.md:{number}: not a `{PROMPT}` command nor a comment: {line}")
                continue
            command = line[len(PROMPT):].strip()
            mark = NEEDS.search(command)
            commands.append(Command(number, command, mark.group("what") if mark else None))
    assert not problems, "\n".join(problems)
    return commands


# -- fast: the README's form and every link -------------------------------------

def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; keep it to {MAX_README_LINES} and move detail to docs/")


def test_readme_commands_follow_the_convention():
    commands = readme_commands(README.read_text())
    texts = [c.text.split("#")[0].strip() for c in commands]
    # A fresh machine needs exactly these two: set up and run, and the tests.
    assert "make run" in texts and "make test" in texts
    for command in commands:
        assert command.words, f"README.md:{command.line}: empty command"
        if command.needs is not None:
            assert re.search(r"\b(cluster|image)\b", command.needs), (
                f"README.md:{command.line}: a command not run here must say that it needs "
                f"a cluster or an image, not {command.needs!r}")
        elif command.words[0] == "make":
            assert command.words[1:2] in (["run"], ["test"]), (
                f"README.md:{command.line}: tests/test_readme.py knows `make run` and "
                f"`make test` only: {command.text}")


def test_make_test_is_the_ci_entry_point():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert [line.strip() for line in ci if line.strip() and not line.startswith("#")][-1] == \
        "exec make test"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: pathlib.Path) -> set[str]:
    anchors, seen, fenced = set(), {}, False
    for line in path.read_text().splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            slug = _slug(line.lstrip("#"))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links(path: pathlib.Path):
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                yield number, target


def test_every_relative_link_leads_to_a_file_and_heading():
    problems = []
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for number, target in _links(page):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(REPO)}:{number}: {target}"
            if not linked.exists():
                problems.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                problems.append(f"{where}: no heading #{anchor} in {linked.relative_to(REPO)}")
    assert not problems, "\n".join(problems)


# -- slow: run them -------------------------------------------------------------

def _venv_bin() -> pathlib.Path:
    bin_dir = pathlib.Path(sys.executable).parent
    assert (bin_dir / "tfx-mtl").exists(), f"no tfx-mtl beside {sys.executable}"
    return bin_dir


def _make_run_equivalent(make_args: list[str]) -> list[str]:
    """What ``make run <make_args>`` runs: ``tfx-mtl run <ARGS>``, read off ``make -n``."""
    dry = subprocess.run(["make", "-n", "-C", str(REPO), "run", *make_args],
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    runs = [line for line in dry.stdout.splitlines() if re.search(r"/bin/tfx-mtl run\b", line)]
    assert len(runs) == 1, f"`make -n run` no longer runs <venv>/bin/tfx-mtl run:\n{dry.stdout}"
    match = re.fullmatch(r"\S+/bin/tfx-mtl run(?P<args>.*)", runs[0].strip())
    assert match, f"`make -n run` runs something else than <venv>/bin/tfx-mtl run: {runs[0]}"
    return ["tfx-mtl", "run", *shlex.split(match.group("args"))]


class _Server:
    """A ``tfx-mtl serve`` line started in the background, until it says it serves."""

    def __init__(self, command: Command, cwd, env, log_dir: pathlib.Path):
        words = command.words
        if words[-1] == "&":
            words = words[:-1]
        self.command = command
        self.stderr_path = log_dir / f"serve-{command.line}.stderr"
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [shutil.which(words[0], path=env["PATH"]), *words[1:]], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"), text=True,
            start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("serving model "):
                self.ready.set()

    def wait_ready(self, timeout: float):
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"README.md:{self.command.line}: `{self.command.text}` did not start "
                            f"serving (exit {self.proc.returncode}):\n{''.join(self.lines)}"
                            f"{self.stderr_path.read_text()[-4000:]}")
        print("".join(self.lines), end="")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the server stops gracefully
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.mark.e2e
@pytest.mark.subprocess
def test_readme_commands_run_as_written(tmp_path):
    commands = readme_commands(README.read_text())
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{_venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONUNBUFFERED": "1"}
    servers, timings = [], []
    try:
        for command in commands:
            words = command.words
            if command.needs is not None:
                timings.append((command, None, f"not run: needs {command.needs}"))
                continue
            if words[:2] == ["make", "test"]:
                test_make_test_is_the_ci_entry_point()
                timings.append((command, None, "not run: CI itself (.ci/run)"))
                continue
            start = time.monotonic()
            if words[:2] == ["tfx-mtl", "serve"]:
                server = _Server(command, work, env, tmp_path)
                servers.append(server)
                server.wait_ready(SERVE_START_TIMEOUT)
                timings.append((command, time.monotonic() - start, "started in the background"))
                continue
            if words[:2] == ["make", "run"]:
                argv = ["bash", "-c", shlex.join(_make_run_equivalent(words[2:]))]
            else:
                argv = ["bash", "-c", command.text]
            result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                                    timeout=COMMAND_TIMEOUT)
            print(f"$ {command.text}\n{result.stdout}", end="")
            assert result.returncode == 0, (
                f"README.md:{command.line}: `{command.text}` exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
            timings.append((command, time.monotonic() - start, "ok"))
    finally:
        for server in servers:
            server.stop()
        for command, seconds, what in timings:
            took = "" if seconds is None else f"{seconds:7.1f} s  "
            print(f"README.md:{command.line:<4} {took}{what}: {command.text}")
    assert any(seconds is not None for _, seconds, _ in timings)
