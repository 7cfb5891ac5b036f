"""kubeflow/Dockerfile, checked statically (no Docker engine here): it installs what the
compiled pipeline imports, at the versions the tests ran with."""
import ast
import pathlib
import re

import pytest

from tfx_mtl.runners import kubeflow as compiler

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "kubeflow" / "Dockerfile"


def _instructions():
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def _pins():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version.strip()
    return pins


def _setup_constant(name):
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise KeyError(name)


def _args():
    return {arg.split("=")[0]: arg.split("=")[1]
            for kind, arg in _instructions() if kind == "ARG"}


def test_the_base_images_are_the_pinned_tfx_and_beam():
    pins, args = _pins(), _args()
    assert args["TFX_VERSION"] == pins["tfx"]
    assert args["BEAM_VERSION"] == pins["apache-beam"]
    froms = [arg for kind, arg in _instructions() if kind == "FROM"]
    assert froms[-1] == "tensorflow/tfx:${TFX_VERSION}"  # the official TFX image
    assert froms[0] == "apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam"
    assert "python_requires=\">=3.11,<3.12\"" in (REPO / "setup.py").read_text()


def test_keras_3_is_selected_and_the_project_installed_with_its_constraints():
    instructions = _instructions()
    env = " ".join(arg for kind, arg in instructions if kind == "ENV")
    assert "TF_USE_LEGACY_KERAS=0" in env
    copied = {arg.split()[0] for kind, arg in instructions if kind == "COPY"
              if not arg.startswith("--from")}
    assert {"tfx_mtl", *_setup_constant("_SUBPACKAGES")} <= copied
    runs = " ".join(arg for kind, arg in instructions if kind == "RUN")
    assert "pip install -c constraints.txt ." in runs


def test_the_bundled_data_lands_where_the_compiled_default_points():
    runs = " ".join(arg for kind, arg in _instructions() if kind == "RUN")
    assert f"{compiler.IMAGE_DATA_ROOT}/data.csv" in runs


def test_beam_workers_can_boot_the_image():
    instructions = _instructions()
    assert ("COPY", "--from=beam /opt/apache/beam /opt/apache/beam") in instructions
    assert instructions[-1] == ("ENTRYPOINT", '["/opt/apache/beam/boot"]')


@pytest.mark.parametrize("excluded", [".venv", "runs", ".git"])
def test_the_build_context_leaves_out_local_state(excluded):
    assert excluded in (REPO / ".dockerignore").read_text().split()
