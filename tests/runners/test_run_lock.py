"""One run per output directory: a second is refused at once, a killed one leaves no
stale lock, and an output directory that cannot be written is refused by name."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from tfx_mtl import cli
from tfx_mtl.runners import run_lock


def test_a_second_run_on_a_directory_in_use_is_refused_naming_it_and_the_pid(tmp_path, capsys):
    out = tmp_path / "runs"
    with run_lock.acquire(str(out)):  # another open file: flock conflicts as across processes
        code = cli.main(["run", "--output-dir", str(out), "--train-steps", "5"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"tfx-mtl run: error: --output-dir: {out} is in use by another run (pid {os.getpid()} " in err
    assert "Traceback" not in err
    assert not (out / "logs").exists()  # refused before it wrote anything


def test_a_released_lock_is_taken_again_with_nothing_to_recover(tmp_path):
    with run_lock.acquire(str(tmp_path)) as first:
        assert first.previous is None
    with run_lock.acquire(str(tmp_path)) as second:
        assert second.previous is None
        assert f'"pid": {os.getpid()}' in (tmp_path / run_lock.LOCK_FILE).read_text()


@pytest.mark.subprocess
def test_a_killed_holder_leaves_no_stale_lock_and_is_named_by_the_next(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom tfx_mtl.runners import run_lock\n"
         "run_lock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(run_lock.InputError, match=f"in use by another run \\(pid {holder.pid} "):
            run_lock.acquire(str(tmp_path))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock.acquire(str(tmp_path)) as lock:  # the kernel released it
        assert lock.previous["pid"] == holder.pid


def test_an_output_dir_that_cannot_be_created_is_refused_naming_the_option(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")  # works as root too: no directory under a file
    out = tmp_path / "a_file" / "runs"
    code = cli.main(["run", "--output-dir", str(out), "--train-steps", "5"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"tfx-mtl run: error: --output-dir: cannot write to {out}: Not a directory" in err
    assert "Traceback" not in err


@pytest.mark.subprocess
def test_a_read_only_output_dir_is_refused_naming_the_option(tmp_path):
    """As root (CI), chmod stops no write: the command then runs as nobody (setpriv), in a
    directory nobody can reach (pytest's tmp_path is root's alone)."""
    command = [os.path.join(os.path.dirname(sys.executable), "tfx-mtl"), "run", "--train-steps", "5"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root writes into a read-only directory, and there is no setpriv")
        tmp_path = pathlib.Path(tempfile.mkdtemp())
        tmp_path.chmod(0o755)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    try:
        out = tmp_path / "runs"
        out.mkdir(mode=0o555)
        result = subprocess.run([*command, "--output-dir", str(out)], capture_output=True,
                                text=True, timeout=300)
    finally:
        if os.geteuid() == 0:
            shutil.rmtree(tmp_path)
    assert result.returncode == 2, result.stderr
    assert (f"tfx-mtl run: error: --output-dir: cannot write to {out}: Permission denied"
            in result.stderr)
