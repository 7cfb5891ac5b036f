"""A client of TF Serving's gRPC API (``tensorflow.serving.PredictionService``).

Works against TF Serving itself and against the development server
(:mod:`tfx_mtl.serving.server`)::

    with ServingClient("127.0.0.1:8500", "taxi", encoder=RowEncoder.from_schema_file(p)) as c:
        c.tasks()                              # ['big_tipper', 'fare', 'trip_seconds']
        c.predict("fare", rows)                # {'value': array([...], dtype=float32)}
        c.predict_all(rows)                    # {'fare': {'value': ...}, 'big_tipper': {...}}

Rows are raw feature dicts (see :mod:`tfx_mtl.serving.examples`), or already serialized
``tf.Example`` bytes.

Retry policy: a call is retried, with exponential backoff (``backoff``, ``2*backoff``,
``4*backoff``, ...; at most ``retries`` retries after the first try), ONLY when it fails
with UNAVAILABLE: the server is not up (yet), restarting, or the connection dropped; the
request never ran, or it is a pure read, so sending it again is safe. Nothing else is
retried: INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION / RESOURCE_EXHAUSTED (a
request too large) fail the same way again; DEADLINE_EXCEEDED is not retried either,
because ``timeout`` is the caller's per-call budget, and a server too slow to answer in
time is usually overloaded, where retrying adds load and multiplies the wait. Every
error is a :class:`ServingError` with the status code, the server's message and the task.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Mapping

import grpc
import numpy as np

from tfx_mtl import naming
from tfx_mtl.serving.examples import RowEncoder

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Signatures of the exported model that are not tasks (see tfx_mtl/naming.py).
_NOT_TASKS = (naming.SERVING_DEFAULT, naming.TRANSFORM_FEATURES)


class ServingError(Exception):
    """A failed call: ``code`` (a ``grpc.StatusCode``), ``details`` (the server's
    message) and ``task`` (the signature called, or None)."""

    def __init__(self, code: grpc.StatusCode, details: str, task: str | None = None, *,
                 attempts: int = 1):
        self.code = code
        self.details = details
        self.task = task
        self.attempts = attempts
        where = f" (task {task!r})" if task else ""
        tries = f" after {attempts} tries" if attempts > 1 else ""
        super().__init__(f"{code.name}{where}{tries}: {details}")


class UnknownTaskError(ServingError, ValueError):
    """``predict`` with a task the model has no signature for (checked against the
    model's metadata before sending; FAILED_PRECONDITION, as TF Serving answers)."""


@dataclasses.dataclass(frozen=True)
class Signature:
    """One SignatureDef: ``inputs`` / ``outputs`` map a name to (dtype name, shape),
    e.g. ``("DT_STRING", [None])``; ``shape`` is None for an unknown rank."""
    name: str
    method_name: str
    inputs: dict
    outputs: dict


def _tensor_info(info) -> tuple[str, list | None]:
    from tensorflow.core.framework import types_pb2

    dtype = types_pb2.DataType.Name(info.dtype)
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else [d.size if d.size >= 0 else None for d in shape.dim]
    return dtype, dims


def _signature(name: str, sig) -> Signature:
    return Signature(name, sig.method_name,
                     {k: _tensor_info(v) for k, v in sig.inputs.items()},
                     {k: _tensor_info(v) for k, v in sig.outputs.items()})


def _to_numpy(tensor_proto) -> np.ndarray:
    import tensorflow as tf

    array = tf.make_ndarray(tensor_proto)
    if array.dtype == object:  # DT_STRING: bytes -> str
        array = np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes)
                             else b, otypes=[object])(array) if array.size else array
        array = array.astype(str)
    return array


def split_outputs(outputs: Mapping[str, Any], tasks: Iterable[str]) -> dict[str, dict]:
    """``serving_default``'s ``<task>_<output>`` keys -> {task: {output: value}}.

    The longest task name that prefixes a key wins (``fare`` and ``fare_total`` may both
    be tasks). A key no task prefixes is kept under its own name in the "" entry.
    """
    by_length = sorted(tasks, key=len, reverse=True)
    result: dict[str, dict] = {}
    for key, value in outputs.items():
        task = next((t for t in by_length if key.startswith(t + "_")), None)
        if task is None:
            result.setdefault("", {})[key] = value
        else:
            result.setdefault(task, {})[key[len(task) + 1:]] = value
    return result


class ServingClient:
    """A PredictionService client for one model (``version``: pin a version; default
    the newest the server has). ``timeout`` is per call (per try), in seconds;
    ``retries``/``backoff``: see the module docstring. ``encoder`` turns rows into
    tf.Examples (default: a schema-less :class:`RowEncoder`)."""

    def __init__(self, target: str, model_name: str, *, version: int | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff: float = 0.1,
                 encoder: RowEncoder | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 channel_options: Iterable[tuple[str, Any]] = ()):
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.encoder = encoder or RowEncoder()
        backoff_ms = max(1, int(backoff * 1000))
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # gRPC waits (1 s, growing) before reconnecting after a failed connection and
            # fails calls at once meanwhile: align it with our backoff so a retry really
            # tries the server again.
            ("grpc.initial_reconnect_backoff_ms", backoff_ms),
            ("grpc.min_reconnect_backoff_ms", backoff_ms),
            ("grpc.max_reconnect_backoff_ms", max(backoff_ms, int(backoff_ms * 2 ** retries))),
            *channel_options,
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._signatures: dict[str, Signature] | None = None
        self.last_version: int | None = None  # the version that answered the last call

    # -- plumbing ---------------------------------------------------------------------

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _model_spec(self, spec, signature: str | None = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = int(self.version)
        if signature is not None:
            spec.signature_name = signature

    def _call(self, method, request, task: str | None):
        """``method(request)`` with the timeout, retrying UNAVAILABLE with backoff."""
        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(self.backoff * 2 ** attempt)
                    attempt += 1
                    continue
                details = e.details() if hasattr(e, "details") else str(e)
                raise ServingError(code, details or code.name, task, attempts=attempt + 1) from None

    def _rows(self, rows) -> list[bytes]:
        rows = list(rows)
        if not rows:
            raise ValueError("no rows to send")
        if all(isinstance(r, (bytes, bytearray)) for r in rows):
            return [bytes(r) for r in rows]
        return self.encoder.encode_rows(rows)

    # -- metadata ---------------------------------------------------------------------

    def signatures(self, refresh: bool = False) -> dict[str, Signature]:
        """The model's signatures (GetModelMetadata) but internal ``__...`` ones, cached;
        ``refresh`` asks again."""
        if self._signatures is None or refresh:
            from tensorflow_serving.apis import get_model_metadata_pb2

            request = get_model_metadata_pb2.GetModelMetadataRequest()
            self._model_spec(request.model_spec)
            request.metadata_field.append("signature_def")
            response = self._call(self._stub.GetModelMetadata, request, None)
            packed = response.metadata["signature_def"]
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            if not packed.Unpack(sig_map):
                raise ServingError(grpc.StatusCode.INTERNAL,
                                   f"metadata 'signature_def' holds a {packed.TypeName()}, "
                                   "not a SignatureDefMap")
            self.last_version = response.model_spec.version.value or None
            # TF Serving lists the SavedModel's internal ``__saved_model_init_op`` too.
            self._signatures = {name: _signature(name, sig)
                                for name, sig in sorted(sig_map.signature_def.items())
                                if not name.startswith("__")}
        return self._signatures

    def tasks(self, refresh: bool = False) -> list[str]:
        """The model's tasks: its signatures but serving_default, transform_features and
        the ``<task>__...`` ones (task names never contain ``__``)."""
        return sorted(name for name in self.signatures(refresh)
                      if name not in _NOT_TASKS and "__" not in name)

    # -- prediction -------------------------------------------------------------------

    def _predict(self, signature: str, examples: list[bytes], task: str | None):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature)
        request.inputs[naming.EXAMPLES_INPUT].CopyFrom(
            tf.make_tensor_proto(examples, dtype=tf.string, shape=[len(examples)]))
        response = self._call(self._stub.Predict, request, task)
        self.last_version = response.model_spec.version.value or None
        return {name: _to_numpy(t) for name, t in response.outputs.items()}

    def predict(self, task: str, rows) -> dict[str, np.ndarray]:
        """Calls the signature named ``task`` on the rows: {output: array, one per row}."""
        signatures = self.signatures()
        if task not in signatures:
            signatures = self.signatures(refresh=True)  # a newer version may have it
        if task not in signatures:
            others = sorted(set(signatures) - set(self.tasks()))
            raise UnknownTaskError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {self.model_name!r} has no task {task!r}; its tasks: "
                f"{', '.join(self.tasks()) or '(none)'} (other signatures: {', '.join(others)})",
                task)
        return self._predict(task, self._rows(rows), task)

    def predict_all(self, rows) -> dict[str, dict[str, np.ndarray]]:
        """One ``serving_default`` call: {task: {output: array}} for every task."""
        examples = self._rows(rows)
        outputs = self._predict(naming.SERVING_DEFAULT, examples, naming.SERVING_DEFAULT)
        return split_outputs(outputs, self.tasks())
