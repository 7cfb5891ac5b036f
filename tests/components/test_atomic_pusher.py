"""AtomicPusher's executor, run as TFX runs it: a pushed version appears whole, under a
version no other push has, and a killed push leaves only a hidden temporary directory."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_mtl import naming
from tfx_mtl.components import atomic_pusher
from tfx_mtl.runners import recovery
from tfx_mtl.serving import model_store


def _model(root, marker="model"):
    """A Trainer's Model artifact whose Format-Serving holds a SavedModel's files."""
    serving = root / "model" / "Format-Serving"
    (serving / "variables").mkdir(parents=True)
    (serving / "variables" / "variables.index").write_text(marker)
    (serving / "saved_model.pb").write_text(marker)
    model = standard_artifacts.Model()
    model.uri = str(root / "model")
    return model


def _push(root, base, model):
    """One Do() of the executor; the PushedModel artifact it wrote."""
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(root / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(root / f"pushed-{time.monotonic_ns()}")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    atomic_pusher.Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)})
    return pushed


def test_pushes_never_share_or_overwrite_a_version(tmp_path):
    base = tmp_path / "serving" / "pipe"
    # Versions already there, from now on (another push, a clock ahead): TFX's Pusher
    # would skip the copy yet record a push into one of them.
    now = int(time.time())
    for version in range(now, now + 3):
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / "saved_model.pb").write_text(f"other {version}")
    (base / str(now + 3)).mkdir()  # reserved, empty: a plain rename would replace it
    model = _model(tmp_path)
    first, second = _push(tmp_path, base, model), _push(tmp_path, base, model)
    destinations = [p.get_string_custom_property("pushed_destination") for p in (first, second)]
    assert destinations == [str(base / str(now + 4)), str(base / str(now + 5))]
    for pushed, destination in zip((first, second), destinations):
        assert pushed.get_int_custom_property("pushed") == 1
        assert pushed.get_string_custom_property("pushed_version") == os.path.basename(destination)
        assert open(os.path.join(destination, "saved_model.pb")).read() == "model"
        assert open(os.path.join(destination, "variables", "variables.index")).read() == "model"
    for version in range(now, now + 3):  # untouched
        assert (base / str(version) / "saved_model.pb").read_text() == f"other {version}"
    assert not any((base / str(now + 3)).iterdir())
    assert model_store.list_versions(str(base))[-1] == now + 5  # the newest push is served
    assert not [e for e in os.listdir(base) if e.startswith(naming.PUSH_TEMP_PREFIX)]


def test_a_rename_onto_an_existing_empty_directory_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    (tmp_path / "dst").mkdir()
    with pytest.raises(FileExistsError):
        atomic_pusher.rename_no_replace(str(tmp_path / "src"), str(tmp_path / "dst"))
    assert (tmp_path / "src" / "f").exists() and not any((tmp_path / "dst").iterdir())


@pytest.mark.subprocess
def test_a_killed_push_leaves_no_version_and_its_temporary_is_cleaned(tmp_path):
    """The push is killed (SIGKILL) mid-copy: a FIFO in the model blocks the copy there."""
    model = _model(tmp_path)
    os.mkfifo(os.path.join(model.uri, "Format-Serving", "variables", "blocks_the_copy"))
    base = tmp_path / "serving" / "pipe"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import pathlib, test_atomic_pusher as t
        from tfx.types import standard_artifacts
        model = standard_artifacts.Model()
        model.uri = {model.uri!r}
        t._push(pathlib.Path({str(tmp_path)!r}), pathlib.Path({str(base)!r}), model)
    """)
    pusher = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not (base.is_dir() and any(base.rglob("variables.index"))):
            assert pusher.poll() is None and time.monotonic() < deadline, "the push never began"
            time.sleep(0.1)
        time.sleep(0.5)  # now blocked opening the FIFO
        assert pusher.poll() is None
    finally:
        pusher.send_signal(signal.SIGKILL)
        pusher.wait()
    entries = os.listdir(base)
    assert not [e for e in entries if e.isdigit()], entries  # no partial version
    assert model_store.list_versions(str(base)) == []
    (temp,) = entries
    assert temp.startswith(naming.PUSH_TEMP_PREFIX)
    assert recovery.clean_push_temporaries(str(tmp_path / "serving")) == [str(base / temp)]
    assert os.listdir(base) == []
