"""Version discovery, loading, polling and the atomic swap behind the dev server.

Mirrors TF Serving's file-system source with its default ``latest`` version policy
(``tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc`` and
``core/availability_preserving_policy.cc``):

* a version is a sub-directory of the model base whose name is a non-negative integer
  (anything else, e.g. a ``.tmp-*`` directory being written, is ignored);
* it is *ready* once it holds ``saved_model.pb`` -- TFX's Pusher copies every other file
  first and ``saved_model.pb`` last, exactly so that servers take its presence as "complete"
  (``tfx/components/pusher/executor.py``);
* only the newest ready version is served. A new one is loaded fully and warmed up (one
  call of every signature) *before* it is swapped in; the old one is unloaded only then
  (availability preserving: requests never see "no version"). A request already running
  on the old version keeps its own reference and finishes normally.
* a version that fails to load stays listed (state END with its error, as TF Serving's
  GetModelStatus shows a failed load) while the version before it keeps serving, and is
  retried with exponential backoff: after ``retry_base`` seconds, then twice as long each
  time, at most ``retry_cap`` (defaults 1 s and 300 s). The failure is logged once; a retry
  that fails the same way is not logged again. A version whose files change (a size or
  mtime, e.g. pushed again) is a new candidate: it is tried on the next poll, and its
  failure, if it fails again, is logged again.

The current servable is one attribute read without a lock (a reference assignment is
atomic in CPython); TF functions are thread safe.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tfx_mtl.errors import InputError

log = logging.getLogger(__name__)

SAVED_MODEL_PB = "saved_model.pb"
SERVING_TAG = "serve"

# tensorflow_serving/apis/get_model_status.proto ModelVersionStatus.State names.
AVAILABLE = "AVAILABLE"
LOADING = "LOADING"
END = "END"


RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0


class NoVersionError(InputError):
    """The model base directory is missing or holds no loadable version."""

    def __init__(self, message: str):
        super().__init__("model_base", message)


@dataclass
class Servable:
    """One loaded version: the SavedModel object, its signature functions and SignatureDefs."""
    name: str
    version: int
    path: str
    model: Any                      # the object tf.saved_model.load returned (kept alive)
    functions: dict[str, Any]       # signature key -> concrete function
    signature_defs: dict[str, Any]  # signature key -> tensorflow SignatureDef proto
    meta_graph_def: Any = field(repr=False, default=None)


def list_versions(base: str) -> list[int]:
    """Ready versions under ``base`` (numeric dirs holding saved_model.pb), ascending."""
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    versions = []
    for entry in entries:
        if not entry.isdigit():
            continue
        if os.path.isfile(os.path.join(base, entry, SAVED_MODEL_PB)):
            versions.append(int(entry))
    return sorted(versions)


def _files_identity(path: str) -> tuple:
    """(relative path, size, mtime_ns) of every file under ``path``: changes when a
    version is pushed again or edited in place."""
    found = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            found.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(found))


@dataclass
class LoadFailure:
    """A version that failed to load: the error (``code``: a TF/gRPC status code number,
    2 = UNKNOWN for a non-TF exception), how often it failed, when it is tried again."""
    message: str
    code: int
    files: tuple = field(repr=False, default=())
    failures: int = 1
    retry_at: float = 0.0


def _error_code(e: BaseException) -> int:
    code = getattr(e, "error_code", None)  # tf.errors.OpError
    return code if isinstance(code, int) and code > 0 else 2


def _version_dir(base: str, version: int) -> str:
    # Pusher names directories str(int); keep whatever spelling is on disk (e.g. "007").
    for entry in os.listdir(base):
        if entry.isdigit() and int(entry) == version:
            return os.path.join(base, entry)
    return os.path.join(base, str(version))


def load_servable(name: str, version: int, path: str, *, warm_up: bool = True) -> Servable:
    """Load the SavedModel at ``path`` (tag ``serve``), read its SignatureDefs, warm it up."""
    import tensorflow as tf
    from tensorflow.python.tools import saved_model_utils

    meta_graph_def = saved_model_utils.get_meta_graph_def(path, SERVING_TAG)
    model = tf.saved_model.load(path, tags=[SERVING_TAG])
    functions = dict(model.signatures)
    signature_defs = dict(meta_graph_def.signature_def)
    servable = Servable(name, version, path, model, functions, signature_defs, meta_graph_def)
    if warm_up:
        _warm_up(servable)
    return servable


def _warm_up(servable: Servable) -> None:
    """One call per signature whose inputs are all string vectors (serialized tf.Examples),
    with one empty Example: the first call of a function is the slow one."""
    import tensorflow as tf
    for key, fn in servable.functions.items():
        sig = servable.signature_defs.get(key)
        if sig is None or not sig.inputs:
            continue
        if any(info.dtype != tf.string.as_datatype_enum for info in sig.inputs.values()):
            continue
        try:
            fn(**{alias: tf.constant([b""]) for alias in sig.inputs})
        except Exception as e:  # a signature that needs a feature; serving it will still work
            log.debug("warm-up of %s signature %r failed: %s", servable.path, key, e)


class ModelStore:
    """Serves the newest version of one model under ``base``; polls for new ones."""

    def __init__(self, base: str, name: str, *, poll_seconds: float = 1.0,
                 loader: Callable[[str, int, str], Servable] = load_servable,
                 retry_base: float = RETRY_BASE_SECONDS, retry_cap: float = RETRY_CAP_SECONDS):
        self.base = os.path.abspath(base)
        self.name = name
        self.poll_seconds = poll_seconds
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._loader = loader
        self.load_attempts: dict[int, int] = {}  # version -> loads tried (for status/tests)
        self._current: Servable | None = None
        self._states: dict[int, str] = {}
        self._states_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: dict[int, LoadFailure] = {}

    # -- reading (lock free) -------------------------------------------------------------

    @property
    def current(self) -> Servable | None:
        return self._current

    def versions(self) -> list[int]:
        """Loaded (served) version numbers."""
        cur = self._current
        return [cur.version] if cur is not None else []

    def states(self) -> dict[int, str]:
        """Every version this store has seen: AVAILABLE, LOADING or END (unloaded, or
        failed to load: see :meth:`failures`)."""
        with self._states_lock:
            return dict(self._states)

    def failures(self) -> dict[int, LoadFailure]:
        """The versions whose last load failed, with the error."""
        with self._states_lock:
            return dict(self._failed)

    # -- loading ------------------------------------------------------------------------

    def load_initial(self) -> Servable:
        """Load the newest ready version, or raise NoVersionError naming the directory."""
        if not os.path.isdir(self.base):
            raise NoVersionError(f"model base directory {self.base} does not exist")
        versions = list_versions(self.base)
        if not versions:
            raise NoVersionError(
                f"model base directory {self.base} holds no version: expected a numeric "
                f"sub-directory with {SAVED_MODEL_PB} (as Pusher writes <base>/<version>/)")
        errors = []
        for version in reversed(versions):  # newest first; fall back if it is broken
            if self._try_load(version):
                return self._current
            errors.append(f"{version}: {self._failed[version].message}")
        raise NoVersionError(f"no version under {self.base} could be loaded ({'; '.join(errors)})")

    def poll_once(self) -> bool:
        """Load and swap in the newest ready version if it is not the one served."""
        versions = list_versions(self.base)
        if not versions:
            return False
        newest = versions[-1]
        cur = self._current
        if cur is not None and cur.version == newest:
            return False
        failed = self._failed.get(newest)
        if failed is not None and time.monotonic() < failed.retry_at and \
                _files_identity(_version_dir(self.base, newest)) == failed.files:
            return False  # backing off, and nothing changed since it failed
        return self._try_load(newest)

    def _set_state(self, version: int, state: str) -> None:
        with self._states_lock:
            self._states[version] = state

    def _try_load(self, version: int) -> bool:
        path = _version_dir(self.base, version)
        files = _files_identity(path)
        self._set_state(version, LOADING)
        self.load_attempts[version] = self.load_attempts.get(version, 0) + 1
        start = time.monotonic()
        try:
            servable = self._loader(self.name, version, path)
        except Exception as e:
            self._record_failure(version, path, files, e)
            return False
        with self._states_lock:
            self._failed.pop(version, None)
        old = self._current
        self._current = servable  # the swap: one reference assignment
        self._set_state(version, AVAILABLE)
        if old is not None:
            self._set_state(old.version, END)  # unloaded: the store drops its reference
        log.info("Serving %s version %d from %s (loaded in %.1f s)%s", self.name, version, path,
                 time.monotonic() - start, f"; unloaded version {old.version}" if old else "")
        return True

    def _record_failure(self, version: int, path: str, files: tuple, e: Exception) -> None:
        """END with the error; the next try after the backoff; one log line per new failure."""
        message = f"{type(e).__name__}: {e}"
        with self._states_lock:
            last = self._failed.get(version)
            same = last is not None and last.files == files and last.message == message
            failures = last.failures + 1 if same else 1
            delay = min(self.retry_cap, self.retry_base * 2 ** (failures - 1))
            self._failed[version] = LoadFailure(message, _error_code(e), files, failures,
                                                time.monotonic() + delay)
            self._states[version] = END
        if not same:
            log.error("Loading servable %s version %d from %s failed (retrying in %.0f s, "
                      "backing off to %.0f s; logged again only if it fails differently): %s",
                      self.name, version, path, delay, self.retry_cap, message)
        else:
            log.debug("Loading %s version %d failed again (%d times); next try in %.0f s",
                      self.name, version, failures, delay)

    # -- polling ------------------------------------------------------------------------

    def start_polling(self) -> None:
        if self.poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll_loop, name=f"model-store-{self.name}",
                                        daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # never let the poller die
                log.exception("polling %s failed", self.base)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
