"""Keeps library chatter off the terminal and in a log file.

TensorFlow prints its start-up lines (oneDNN, CUDA, CPU features) from C++
straight to file descriptor 2, once per shared library that links it, and
TensorFlow Transform warns through absl that it wants Keras 2 (this project runs
Keras 3 on purpose: README, "Compatibility"). None of it is for the user, and all
of it reads as "this is broken". :class:`LogCapture` points descriptor 2 and all
Python logging at a log file for as long as a command runs, while the command's
own messages (``print(..., file=sys.stderr)``, handlers it attaches to
``sys.stderr`` inside) still reach the terminal.
"""
from __future__ import annotations

import io
import logging
import os
import sys
import time
from typing import Iterable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"
# A command's log is appended to; past this size the old one becomes ``<name>.1``.
MAX_LOG_BYTES = 10 * 2**20


def command_log_file(command: str) -> str | None:
    """Where ``tfx-mtl <command>`` keeps its full log: ``$TFX_MTL_LOG_DIR`` or the XDG
    state directory (``~/.local/state/tfx-mtl``); None when it cannot be written."""
    directory = os.environ.get("TFX_MTL_LOG_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                         "state"), "tfx-mtl")
    path = os.path.join(directory, f"{command}.log")
    try:
        os.makedirs(directory, exist_ok=True)
        if os.path.exists(path) and os.path.getsize(path) > MAX_LOG_BYTES:
            os.replace(path, path + ".1")
        with open(path, "a") as f:
            f.write(time.strftime(f"\n=== tfx-mtl {command}, %Y-%m-%d %H:%M:%S, pid {os.getpid()}\n"))
    except OSError:
        return None
    return path


class LogCapture:
    """Within the context, descriptor 2 and Python logging (at INFO, absl's verbosity
    too, which TFX's libraries save and restore around noisy sections) go to
    ``log_file``; ``handlers`` (e.g. a run's component progress) are kept beside it.

    ``sys.stderr``, when it is the process's descriptor 2 (a terminal, not a test's
    capture), is re-pointed at a copy of the original descriptor, so Python-level
    messages to stderr still reach the user. Contexts nest.
    """

    def __init__(self, log_file: str, handlers: Iterable[logging.Handler] = ()):
        self.log_file, self.handlers = log_file, list(handlers)

    def __enter__(self) -> "LogCapture":
        from absl import logging as absl_logging

        root = logging.getLogger()
        self.saved = (root.handlers[:], root.level, absl_logging.get_verbosity(), sys.stderr)
        self.file_handler = logging.FileHandler(self.log_file)
        self.file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.handlers = [self.file_handler, *self.handlers]
        root.setLevel(logging.INFO)
        absl_logging.set_verbosity(absl_logging.INFO)
        # Nested contexts leave warnings captured as the outer one set them.
        self.warnings_captured = getattr(logging, "_warnings_showwarning", None) is not None
        logging.captureWarnings(True)
        sys.stderr.flush()
        self.saved_fd = os.dup(2)
        if _is_descriptor_2(sys.stderr):
            sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(self.saved_fd), "wb", buffering=0),
                                          encoding=sys.stderr.encoding, errors="backslashreplace",
                                          line_buffering=True)
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from absl import logging as absl_logging

        if exc is not None:
            logging.getLogger(__name__).error("failed", exc_info=(exc_type, exc, tb))
        handlers, level, verbosity, stderr = self.saved
        if sys.stderr is not stderr:
            sys.stderr.close()
            sys.stderr = stderr
        sys.stderr.flush()
        os.dup2(self.saved_fd, 2)
        os.close(self.saved_fd)
        root = logging.getLogger()
        root.handlers = handlers
        root.setLevel(level)
        absl_logging.set_verbosity(verbosity)
        logging.captureWarnings(self.warnings_captured)
        self.file_handler.close()
        return False


def _is_descriptor_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
