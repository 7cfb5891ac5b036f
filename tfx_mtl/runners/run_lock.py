"""One ``tfx-mtl run`` per output directory at a time.

Two runs on one directory would share the MLMD store, the log and the pushed
versions. The lock is ``fcntl.flock`` on ``<output-dir>/run.lock``: the kernel
releases it when the holding process ends in any way (a ``kill -9`` too), so a
lock is never stale. The holder writes its pid, host and start time into the file
(for the refusal message) and empties it on a normal release; a lock file that
still names an owner when the lock is taken was left by a run that was killed.

Only ``tfx-mtl run`` writes into the directory; readers (``serve``, ``bench``, the
review notebooks, ``find_run``) never take the lock and are never blocked.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time

from tfx_mtl.errors import InputError

LOCK_FILE = "run.lock"
FIELD = "--output-dir"


class RunLock:
    """The held lock of one output directory; ``previous`` is what a killed run left
    in the lock file (its pid, host, start time), or None after a clean release."""

    def __init__(self, path: str, fd: int, previous: dict | None):
        self.path, self._fd, self.previous = path, fd, previous

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # a clean end: nothing to put right
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def acquire(output_dir: str) -> RunLock:
    """Creates ``output_dir`` if needed and locks it, or refuses at once (InputError on
    ``--output-dir``) when another run holds it or the directory cannot be written."""
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(output_dir, exist_ok=True)
        if not os.access(output_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise InputError(FIELD, f"cannot write to {output_dir}: {e.strerror or e} "
                                f"(give a directory you can write)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        raise InputError(FIELD, f"{output_dir} is in use by another run ({_describe(holder)}); "
                                "wait for it to end, or give another --output-dir") from None
    previous = _read(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
    return RunLock(path, fd, previous)


def _read(fd: int) -> dict | None:
    raw = os.pread(fd, 4096, 0)
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "pid unknown: it is just starting"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
