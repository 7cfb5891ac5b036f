"""Shared helpers for the serving tests (tests/serving/): small real SavedModels and a dev server.

Model writers (each writes ``<base>/<version>/`` atomically: into a temporary sibling
directory first, then ``os.rename`` to the version number, like a push):

* :func:`write_model` -- a tiny model with the pipeline's signature layout: every signature
  takes one input ``examples`` (DT_STRING [None], serialized tf.Examples of raw features);
  ``serving_default`` (outputs ``<task>_<output>``), one signature per task (bare output
  names), ``transform_features`` and ``<task>__evaluation``. All predict signatures.
  Raw features (:data:`FEATURES`): ``trip_miles`` (float), ``trip_seconds`` (int64),
  ``company`` (string); any may be missing (defaults 0 / 0 / "").
  Tasks (:data:`TASKS`): ``fare`` (regression) and ``big_tipper`` (binary).
  Outputs are closed-form (see :func:`expected`) and depend on ``version``, so a test can
  tell which version answered: ``fare.value = 2 * trip_miles + trip_seconds / 60 + version``.
* :func:`write_varlen_model` -- features parsed as the pipeline parses them (VarLen, then
  one dense value per example), for the errors of multi-valued features.
* :func:`write_classify_model` -- a TF1-style SavedModel with ``classify`` / ``regress``
  signatures (method names ``tensorflow/serving/classify`` / ``.../regress``, input ``inputs``,
  outputs ``classes``+``scores`` / ``outputs``) plus a ``serving_default`` predict signature,
  for Classify/Regress.

Examples: :func:`example_bytes` builds a serialized tf.Example from a plain dict
(float -> float_list, int -> int64_list, str/bytes -> bytes_list).

Server: :func:`serve` is a context manager (no pytest fixture needed)::

    with serve(base_dir, "m") as server:        # tfx_mtl.serving.server.DevServer
        stub = prediction_stub(server.address)
        ...
    # stopped here

or ``server = start_server(base, "m")`` ... ``server.stop()``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

FEATURES = {"trip_miles": "float", "trip_seconds": "int", "company": "string"}
TASKS = {"fare": "regression", "big_tipper": "binary"}
MODEL_NAME = "taxi"
# The raw features of the models written below, as a tensorflow_metadata Schema (text).
SCHEMA_TEXT = """
feature { name: "trip_miles" type: FLOAT }
feature { name: "trip_seconds" type: INT }
feature { name: "company" type: BYTES }
"""


def _tf():
    import tensorflow as tf  # imported lazily: collecting the tests stays fast
    return tf


def example_bytes(row: Mapping[str, object]) -> bytes:
    """A serialized tf.Example: float -> float_list, int -> int64_list, str/bytes -> bytes_list
    (a list/tuple value gives a multi-valued feature of its first element's type)."""
    tf = _tf()
    feats = {}
    for key, value in row.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        first = values[0] if values else 0.0
        if isinstance(first, (bool, int, np.integer)):
            feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
        elif isinstance(first, (float, np.floating)):
            feats[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
        else:
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v if isinstance(v, bytes) else str(v).encode() for v in values]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def expected(rows, version: int) -> dict[str, dict[str, np.ndarray]]:
    """What :func:`write_model`'s task signatures return for ``rows`` (dicts of raw features)."""
    miles = np.array([float(r.get("trip_miles", 0.0)) for r in rows], np.float32)
    secs = np.array([float(r.get("trip_seconds", 0)) for r in rows], np.float32)
    value = (2.0 * miles + secs / 60.0 + float(version)).astype(np.float32)
    prob = (1.0 / (1.0 + np.exp(-(miles - 1.0)))).astype(np.float32)
    return {"fare": {"value": value},
            "big_tipper": {"probability": prob, "class_id": (prob > 0.5).astype(np.int64)}}


def _atomic_dir(base: str | os.PathLike, version: int) -> tuple[Path, Path]:
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    final = base / str(int(version))
    if final.exists():
        raise FileExistsError(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    return tmp, final


def _publish(base: str | os.PathLike, version: int, save) -> Path:
    """``save(path)`` writes a SavedModel into a temporary directory beside the version,
    which is then renamed to ``<base>/<version>``, as a push appears to a server."""
    tmp, final = _atomic_dir(base, version)
    try:
        save(str(tmp / "m"))
        for entry in (tmp / "m").iterdir():
            entry.rename(tmp / entry.name)
        (tmp / "m").rmdir()
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_model(base: str | os.PathLike, version: int) -> Path:
    """Write the small pipeline-shaped SavedModel as ``<base>/<version>``; returns that path."""
    tf = _tf()
    spec = {"trip_miles": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            "trip_seconds": tf.io.FixedLenFeature([1], tf.int64, default_value=[0]),
            "company": tf.io.FixedLenFeature([1], tf.string, default_value=[""])}
    offset = float(version)
    sig = tf.TensorSpec([None], tf.string, name="examples")

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.offset = tf.Variable(offset, dtype=tf.float32, trainable=False)

        def _features(self, examples):
            parsed = tf.io.parse_example(examples, spec)
            return {k: tf.squeeze(v, axis=1) for k, v in parsed.items()}

        def _tasks(self, examples):
            f = self._features(examples)
            miles = f["trip_miles"]
            secs = tf.cast(f["trip_seconds"], tf.float32)
            value = 2.0 * miles + secs / 60.0 + self.offset
            prob = tf.sigmoid(miles - 1.0)
            return {"fare": {"value": value},
                    "big_tipper": {"probability": prob,
                                   "class_id": tf.cast(prob > 0.5, tf.int64)}}

        @tf.function(input_signature=[sig])
        def serving_default(self, examples):
            out = self._tasks(examples)
            return {f"{t}_{k}": v for t, o in out.items() for k, v in o.items()}

        @tf.function(input_signature=[sig])
        def fare(self, examples):
            return self._tasks(examples)["fare"]

        @tf.function(input_signature=[sig])
        def big_tipper(self, examples):
            return self._tasks(examples)["big_tipper"]

        @tf.function(input_signature=[sig])
        def fare_eval(self, examples):
            return {"fare": self._tasks(examples)["fare"]["value"]}

        @tf.function(input_signature=[sig])
        def big_tipper_eval(self, examples):
            return {"big_tipper": self._tasks(examples)["big_tipper"]["probability"]}

        @tf.function(input_signature=[sig])
        def transform_features(self, examples):
            f = self._features(examples)
            return {"trip_miles_xf": f["trip_miles"],
                    "trip_seconds_xf": tf.cast(f["trip_seconds"], tf.float32),
                    "company_xf": f["company"]}

    m = Model()
    signatures = {"serving_default": m.serving_default, "fare": m.fare,
                  "big_tipper": m.big_tipper, "transform_features": m.transform_features,
                  "fare__evaluation": m.fare_eval, "big_tipper__evaluation": m.big_tipper_eval}
    return _publish(base, version, lambda path: tf.saved_model.save(m, path, signatures=signatures))


def write_classify_model(base: str | os.PathLike, version: int) -> Path:
    """A TF1 SavedModel with ``classify`` (classes = ["no", "yes"], scores = [1-p, p],
    p = sigmoid(trip_miles - 1)), ``regress`` (outputs = 2 * trip_miles + version) and a
    ``serving_default`` predict signature (input ``examples``, output ``value``)."""
    tf = _tf()
    v1 = tf.compat.v1

    def save(path):
        with tf.Graph().as_default() as g, v1.Session(graph=g) as sess:
            serialized = v1.placeholder(tf.string, [None], name="tf_example")
            parsed = tf.io.parse_example(serialized, {
                "trip_miles": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])})
            miles = tf.squeeze(parsed["trip_miles"], axis=1)
            p = tf.sigmoid(miles - 1.0)
            scores = tf.stack([1.0 - p, p], axis=1)
            classes = tf.tile(tf.constant([["no", "yes"]]), [tf.shape(serialized)[0], 1])
            value = 2.0 * miles + float(version)
            sm = v1.saved_model
            builder = sm.Builder(path)
            builder.add_meta_graph_and_variables(sess, [sm.tag_constants.SERVING], signature_def_map={
                "classify": sm.classification_signature_def(serialized, classes, scores),
                "regress": sm.regression_signature_def(serialized, value),
                "serving_default": sm.predict_signature_def({"examples": serialized},
                                                            {"value": value}),
            })
            builder.save()

    return _publish(base, version, save)


def write_varlen_model(base: str | os.PathLike, version: int) -> Path:
    """A model that parses its features as the pipeline's do (schema without ``shape``:
    VarLenFeature, then densified to one value per example, ``models/preprocessing.py``),
    so a feature with two values fails inside the graph (``SparseToDense``). One signature,
    ``serving_default``: ``value = trip_miles + version``."""
    tf = _tf()
    sig = tf.TensorSpec([None], tf.string, name="examples")

    class Model(tf.Module):
        @tf.function(input_signature=[sig])
        def serving_default(self, examples):
            x = tf.io.parse_example(examples, {"trip_miles": tf.io.VarLenFeature(tf.float32)})
            x = x["trip_miles"]
            dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values,
                                                       [x.dense_shape[0], 1]))
            return {"value": tf.squeeze(dense, axis=1) + float(version)}

    m = Model()
    return _publish(base, version, lambda path: tf.saved_model.save(
        m, path, signatures={"serving_default": m.serving_default}))


def copy_version(base: str | os.PathLike, src_version: int, new_version: int) -> Path:
    """Push a copy of ``<base>/<src_version>`` as ``<base>/<new_version>`` (temp name + rename)."""
    base = Path(base)
    tmp = base / f".tmp-copy-{new_version}"
    shutil.copytree(base / str(src_version), tmp)
    final = base / str(new_version)
    os.rename(tmp, final)
    return final


def start_server(model_base, model_name: str = MODEL_NAME, **kwargs):
    """``tfx_mtl.serving.server.start`` on 127.0.0.1, an ephemeral port and a fast poll."""
    from tfx_mtl.serving import server
    kwargs.setdefault("poll_seconds", 0.2)
    return server.start(str(model_base), model_name, **kwargs)


@contextlib.contextmanager
def serve(model_base, model_name: str = MODEL_NAME, **kwargs) -> Iterator[object]:
    """Run a dev server for the ``with`` block; stops it (grace 0) afterwards."""
    srv = start_server(model_base, model_name, **kwargs)
    try:
        yield srv
    finally:
        srv.stop(0)


def prediction_stub(address: str, **channel_options):
    """A raw ``PredictionServiceStub`` on a fresh insecure channel (closed with the process)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    channel = grpc.insecure_channel(address, options=list(channel_options.items()))
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def model_stub(address: str):
    """A raw ``ModelServiceStub`` on a fresh insecure channel."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc
    return model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(address))
