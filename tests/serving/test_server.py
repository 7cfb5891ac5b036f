"""The dev server (tfx_mtl.serving.server) over real gRPC on loopback, with raw TF Serving stubs.

Fast tests use the small SavedModels of tests/serving_support.py; the slow ones use the model
pushed by the real pipeline run (``taxi_run``). Expected messages are TF Serving's own (see the
source references in tfx_mtl/serving/server.py).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_support import (MODEL_NAME, example_bytes, expected, model_stub,
                             prediction_stub, serve, write_classify_model, write_model,
                             write_varlen_model)
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, inference_pb2, model_management_pb2,
                                     predict_pb2, regression_pb2)

from tfx_mtl.serving import server as server_mod

MAX_BYTES = 256 * 1024
ROWS = [{"trip_miles": 3.0, "trip_seconds": 120, "company": "A"},
        {"trip_miles": 0.5},
        {}]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("models") / MODEL_NAME
    write_model(d, 1)
    return d


@pytest.fixture(scope="module")
def srv(base):
    with serve(base, max_message_bytes=MAX_BYTES, poll_seconds=0.2) as s:
        yield s


@pytest.fixture(scope="module")
def stub(srv):
    return prediction_stub(srv.address)


def predict_request(rows=ROWS, signature="", name=MODEL_NAME, version=None):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([example_bytes(r) for r in rows],
                                                         dtype=tf.string))
    return req


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value


def assert_error(call, request, code, details):
    err = rpc_error(call, request)
    assert (err.code(), err.details()) == (code, details)


# -- Predict ------------------------------------------------------------------------------

def test_predict_task_signature_values_and_model_spec(stub):
    resp = stub.Predict(predict_request(signature="fare"), timeout=30)
    assert resp.model_spec.name == MODEL_NAME
    assert resp.model_spec.version.value == 1
    assert resp.model_spec.signature_name == "fare"
    assert set(resp.outputs) == {"value"}
    value = resp.outputs["value"]
    assert value.dtype == tf.float32.as_datatype_enum
    assert len(value.float_val) == 3 and not value.tensor_content  # AsProtoField, as TF Serving
    np.testing.assert_allclose(tf.make_ndarray(value), expected(ROWS, 1)["fare"]["value"])


def test_predict_default_signature_has_every_task_output(stub):
    resp = stub.Predict(predict_request(), timeout=30)
    assert resp.model_spec.signature_name == "serving_default"
    want = expected(ROWS, 1)
    assert set(resp.outputs) == {f"{t}_{k}" for t, o in want.items() for k in o}
    for task, outputs in want.items():
        for key, value in outputs.items():
            np.testing.assert_allclose(tf.make_ndarray(resp.outputs[f"{task}_{key}"]), value,
                                       rtol=1e-6)
    assert tf.make_ndarray(resp.outputs["big_tipper_class_id"]).dtype == np.int64


def test_predict_output_filter(stub):
    req = predict_request(signature="big_tipper")
    req.output_filter.append("probability")
    resp = stub.Predict(req, timeout=30)
    assert set(resp.outputs) == {"probability"}
    req.output_filter.append("nope")
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "output tensor alias not found in signature: nope Outputs expected to be in "
                 "the set {class_id,probability}.")


def test_predict_missing_feature_is_imputed(stub):
    resp = stub.Predict(predict_request(rows=[{}], signature="fare"), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["value"]), [1.0])


def test_unknown_model(stub):
    assert_error(stub.Predict, predict_request(name="nope"), grpc.StatusCode.NOT_FOUND,
                 "Servable not found for request: Latest(nope)")


def test_unknown_version(stub):
    assert_error(stub.Predict, predict_request(version=7), grpc.StatusCode.NOT_FOUND,
                 f"Servable not found for request: Specific({MODEL_NAME}, 7)")
    assert stub.Predict(predict_request(version=1), timeout=30).model_spec.version.value == 1


def test_unknown_version_label(stub):
    req = predict_request()
    req.model_spec.version_label = "stable"
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "Unrecognized servable version label: stable")


def test_unknown_signature(stub):
    assert_error(stub.Predict, predict_request(signature="nope"),
                 grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')


def test_missing_model_spec(stub):
    assert_error(stub.Predict, predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT,
                 "Missing ModelSpec")


def test_empty_inputs(stub):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "input size does not match signature: 0!=1 len({}) != len({examples}). "
                 "Sent extra: {}. Missing but required: {examples}.")


def test_extra_input_alias(stub):
    req = predict_request()
    req.inputs["extra"].CopyFrom(tf.make_tensor_proto([1.0]))
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "input size does not match signature: 2!=1 len({examples,extra}) != "
                 "len({examples}). Sent extra: {extra}. Missing but required: {}.")


def test_wrong_input_alias(stub):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    req.inputs["rows"].CopyFrom(tf.make_tensor_proto([example_bytes({})]))
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "input tensor alias not found in signature: rows. Inputs expected to be in "
                 "the set {examples}.")


def test_wrong_input_dtype(stub):
    req = predict_request()
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "Expected input examples to be string but get float.")


def test_wrong_input_shape(stub):
    req = predict_request()
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([[example_bytes({})]]))
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "input examples: shape [1,1] has rank 2; the signature takes rank 1, shape [?]")


def test_feature_of_the_wrong_type_names_it(stub):
    err = rpc_error(stub.Predict, predict_request(rows=[{"trip_miles": "three"}]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    # TF's ParseExample message, as TF Serving's session->Run returns it.
    assert err.details().startswith(
        "Name: <unknown>, Key: trip_miles, Index: 0.  Data types don't match. "
        "Data type: string but expected type: float"), err.details()
    assert "Graph execution error" not in err.details() and "[Op:" not in err.details()


def test_oversized_request(stub):
    rows = [{"company": "x" * 1000}] * (MAX_BYTES // 1000 + 10)
    err = rpc_error(stub.Predict, predict_request(rows=rows))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Received message larger than max" in err.details()
    assert f"vs. {MAX_BYTES})" in err.details()
    # the server is fine afterwards
    assert stub.Predict(predict_request(), timeout=30).model_spec.version.value == 1


# -- requests checked against the signature before any tensor is made ---------------------

def examples_tensor(dims, values, dtype=tf.string):
    """A TensorProto claiming shape ``dims`` that carries ``values`` (any count)."""
    proto = tf.make_tensor_proto(values, dtype=dtype)
    proto.tensor_shape.Clear()
    for d in dims:
        proto.tensor_shape.dim.add().size = d
    return proto


def predict_tensor(tensor, signature="fare"):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    req.model_spec.signature_name = signature
    req.inputs["examples"].CopyFrom(tensor)
    return req


def test_a_million_row_batch_dim_with_one_value_is_refused(stub):
    # The request: ~300 bytes claiming 1e6 rows; make_ndarray would broadcast the
    # one example to a million (8.7 s, 1.8 GB), then the model would run on them.
    req = predict_tensor(examples_tensor([1_000_000], [example_bytes(ROWS[0])]))
    assert req.ByteSize() < 300
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "input examples: shape [1000000]: batch size 1000000 exceeds this server's "
                 "limit of 1000 (--max-batch-size)")


def test_a_wrong_dtype_of_a_huge_shape_is_refused_before_allocating(stub):
    # The 72-byte request: DT_FLOAT of shape [250M] with one value; refused on the
    # dtype before make_ndarray allocates 1 GB (numpy reports its buffers to tracemalloc).
    req = predict_tensor(examples_tensor([250_000_000], [1.0], dtype=tf.float32))
    assert req.ByteSize() < 80
    tracemalloc.start()
    try:
        err = rpc_error(stub.Predict, req)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                           "Expected input examples to be string but get float.")
    assert peak < 64 * 2 ** 20, peak


@pytest.mark.parametrize("dims, values, message", [
    ([3], [b"x"], "input examples: shape [3] has 3 elements but the request carries 1 values "
                  "in string_val; send every value (no broadcasting)"),
    ([1], [b"x", b"y"], "input examples: shape [1] has 1 elements but the request carries 2 "
                        "values in string_val; send every value (no broadcasting)"),
    ([], [b"x"], "input examples: shape [] has rank 0; the signature takes rank 1, shape [?]"),
    ([2, -1], [b"x"], "input examples: shape [2,?] has a negative dimension"),
])
def test_a_shape_the_values_or_signature_do_not_fit_is_refused_naming_the_input(
        stub, dims, values, message):
    assert_error(stub.Predict, predict_tensor(examples_tensor(dims, values)),
                 grpc.StatusCode.INVALID_ARGUMENT, message)


def test_unknown_rank_is_refused(stub):
    tensor = examples_tensor([1], [b"x"])
    tensor.tensor_shape.unknown_rank = True
    assert_error(stub.Predict, predict_tensor(tensor), grpc.StatusCode.INVALID_ARGUMENT,
                 "input examples: tensor_shape has unknown_rank set; a request must give "
                 "its shape")


def test_the_batch_limit_is_configurable_and_covers_classify(tmp_path):
    base = tmp_path / "m"
    write_classify_model(base, 1)
    with serve(base, max_batch_size=2) as s:
        stub = prediction_stub(s.address)
        two = predict_request(rows=ROWS[:2], signature="serving_default")
        assert stub.Predict(two, timeout=30).model_spec.version.value == 1
        assert_error(stub.Predict, predict_request(rows=ROWS, signature="serving_default"),
                     grpc.StatusCode.INVALID_ARGUMENT,
                     "input examples: shape [3]: batch size 3 exceeds this server's limit of "
                     "2 (--max-batch-size)")
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name = MODEL_NAME
        req.model_spec.signature_name = "classify"
        for _ in range(3):
            req.input.example_list.examples.add()
        assert_error(stub.Classify, req, grpc.StatusCode.INVALID_ARGUMENT,
                     "input: 3 examples exceed this server's limit of 2 (--max-batch-size)")


# -- errors naming the input and the feature ----------------------------------------------

def test_an_example_that_does_not_parse_is_named(stub):
    # Non-UTF-8 garbage: TF quotes it in its error, which Python then cannot decode.
    req = predict_tensor(tf.make_tensor_proto([example_bytes({}), b"\xff\xfe garbage"],
                                              dtype=tf.string))
    assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                 "input examples: example 1 is not a serialized tf.Example (10 bytes that do "
                 "not parse)")


def test_a_multi_valued_feature_is_named(tmp_path):
    base = tmp_path / "m"
    write_varlen_model(base, 1)
    with serve(base) as s:
        stub = prediction_stub(s.address)
        rows = [example_bytes({"trip_miles": 1.0}), example_bytes({"trip_miles": [1.0, 2.0]})]
        req = predict_tensor(tf.make_tensor_proto(rows, dtype=tf.string), "serving_default")
        assert_error(stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT,
                     "input examples: example 1, feature 'trip_miles' has 2 values; the model "
                     "takes at most one value of each feature per example")
        req = predict_tensor(tf.make_tensor_proto(rows[:1], dtype=tf.string), "serving_default")
        np.testing.assert_allclose(tf.make_ndarray(stub.Predict(req, timeout=30)
                                                   .outputs["value"]), [2.0])


def test_classify_and_regress_on_a_predict_signature(stub):
    for call, req_type, what, method in (
            (stub.Classify, classification_pb2.ClassificationRequest, "classification", "classify"),
            (stub.Regress, regression_pb2.RegressionRequest, "regression", "regress")):
        req = req_type()
        req.model_spec.name = MODEL_NAME
        req.model_spec.signature_name = "fare"
        req.input.example_list.examples.add()
        assert_error(call, req, grpc.StatusCode.INVALID_ARGUMENT,
                     f"Expected {what} signature method_name to be tensorflow/serving/{method}. "
                     "Was: tensorflow/serving/predict")
        req.model_spec.signature_name = "nope"
        assert_error(call, req, grpc.StatusCode.INVALID_ARGUMENT,
                     "No signature was found with the name: nope")
        req.model_spec.name = "nope"
        assert_error(call, req, grpc.StatusCode.NOT_FOUND,
                     "Servable not found for request: Latest(nope)")


def test_unimplemented_methods(srv, stub):
    req = inference_pb2.MultiInferenceRequest()
    assert rpc_error(stub.MultiInference, req).code() == grpc.StatusCode.UNIMPLEMENTED
    err = rpc_error(model_stub(srv.address).HandleReloadConfigRequest,
                    model_management_pb2.ReloadConfigRequest())
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED


# -- GetModelMetadata / GetModelStatus ------------------------------------------------------

def metadata_request(name=MODEL_NAME, fields=("signature_def",), version=None):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    req.metadata_field.extend(fields)
    return req


def test_get_model_metadata_is_the_saved_models_signature_def_map(base, stub):
    from tensorflow.python.tools import saved_model_utils
    resp = stub.GetModelMetadata(metadata_request(), timeout=30)
    assert resp.model_spec.name == MODEL_NAME and resp.model_spec.version.value == 1
    assert not resp.model_spec.signature_name
    assert set(resp.metadata) == {"signature_def"}
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sig_map)
    on_disk = saved_model_utils.get_meta_graph_def(str(base / "1"), "serve").signature_def
    assert dict(sig_map.signature_def) == dict(on_disk)
    assert {"serving_default", "fare", "big_tipper", "transform_features", "fare__evaluation",
            "big_tipper__evaluation"} <= set(sig_map.signature_def)
    fare = sig_map.signature_def["fare"]
    assert fare.method_name == "tensorflow/serving/predict"
    assert fare.inputs["examples"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in fare.inputs["examples"].tensor_shape.dim] == [-1]
    assert set(fare.outputs) == {"value"}


def test_get_model_metadata_errors(stub):
    assert_error(stub.GetModelMetadata, metadata_request(fields=("foo",)),
                 grpc.StatusCode.INVALID_ARGUMENT, "Metadata field %s is not supportedfoo")
    assert_error(stub.GetModelMetadata, metadata_request(fields=()),
                 grpc.StatusCode.INVALID_ARGUMENT,
                 "GetModelMetadataRequest must specify at least one metadata_field")
    assert_error(stub.GetModelMetadata, metadata_request(name="nope"), grpc.StatusCode.NOT_FOUND,
                 "Servable not found for request: Latest(nope)")
    assert_error(stub.GetModelMetadata, metadata_request(version=3), grpc.StatusCode.NOT_FOUND,
                 f"Servable not found for request: Specific({MODEL_NAME}, 3)")
    assert_error(stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(),
                 grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def status_request(name=MODEL_NAME, version=None):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    return req


def test_get_model_status(srv):
    models = model_stub(srv.address)
    resp = models.GetModelStatus(status_request(), timeout=30)
    assert [(s.version, s.state, s.status.error_code, s.status.error_message)
            for s in resp.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0, "")]
    assert len(models.GetModelStatus(status_request(version=1), timeout=30)
               .model_version_status) == 1
    assert_error(models.GetModelStatus, status_request(name="nope"), grpc.StatusCode.NOT_FOUND,
                 "Could not find any versions of model nope")
    assert_error(models.GetModelStatus, status_request(version=9), grpc.StatusCode.NOT_FOUND,
                 f"Could not find version 9 of model {MODEL_NAME}")
    assert_error(models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(),
                 grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


# -- Classify / Regress on classify / regress signatures -----------------------------------

def test_classify_and_regress(tmp_path):
    write_classify_model(tmp_path / "m", 3)
    miles = [3.0, 0.0]
    with serve(tmp_path / "m", "iris") as s:
        stub = prediction_stub(s.address)
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name = "iris"
        req.model_spec.signature_name = "classify"
        for m in miles:
            req.input.example_list.examples.add().features.feature["trip_miles"].float_list.value.append(m)
        resp = stub.Classify(req, timeout=30)
        assert (resp.model_spec.name, resp.model_spec.version.value,
                resp.model_spec.signature_name) == ("iris", 3, "classify")
        p = 1 / (1 + np.exp(-(np.array(miles) - 1.0)))
        got = [[(c.label, c.score) for c in cl.classes] for cl in resp.result.classifications]
        assert [[label for label, _ in row] for row in got] == [["no", "yes"]] * 2
        np.testing.assert_allclose([[s for _, s in row] for row in got],
                                   np.stack([1 - p, p], axis=1), rtol=1e-5)

        rreq = regression_pb2.RegressionRequest()
        rreq.model_spec.name = "iris"
        rreq.model_spec.signature_name = "regress"
        rreq.input.CopyFrom(req.input)
        rresp = stub.Regress(rreq, timeout=30)
        np.testing.assert_allclose([r.value for r in rresp.result.regressions],
                                   [2 * m + 3 for m in miles])
        assert rresp.model_spec.signature_name == "regress"

        # context examples are merged into each example (util.cc InputToSerializedExampleTensor)
        creq = regression_pb2.RegressionRequest(model_spec=rreq.model_spec)
        ctx = creq.input.example_list_with_context
        ctx.context.features.feature["trip_miles"].float_list.value.append(5.0)
        ctx.examples.add()
        np.testing.assert_allclose(
            [r.value for r in stub.Regress(creq, timeout=30).result.regressions], [13.0])

        empty = classification_pb2.ClassificationRequest(model_spec=req.model_spec)
        assert_error(stub.Classify, empty, grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
        # serving_default is a predict signature; Classify with no signature name uses it.
        req.model_spec.signature_name = ""
        assert_error(stub.Classify, req, grpc.StatusCode.INVALID_ARGUMENT,
                     "Expected classification signature method_name to be "
                     "tensorflow/serving/classify. Was: tensorflow/serving/predict")
        # Predict accepts classify signatures (predict_util.cc VerifySignature).
        preq = predict_pb2.PredictRequest()
        preq.model_spec.name = "iris"
        preq.model_spec.signature_name = "classify"
        preq.inputs["inputs"].CopyFrom(tf.make_tensor_proto([example_bytes({"trip_miles": 3.0})]))
        out = stub.Predict(preq, timeout=30).outputs
        assert set(out) == {"classes", "scores"}
        assert tf.make_ndarray(out["classes"]).tolist() == [[b"no", b"yes"]]


# -- versions -----------------------------------------------------------------------------

def test_start_without_a_version_names_the_directory(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(server_mod.NoVersionError, match=str(missing)):
        server_mod.start(str(missing), "m")
    (tmp_path / "empty" / "1").mkdir(parents=True)  # no saved_model.pb: not a version
    with pytest.raises(server_mod.NoVersionError, match=str(tmp_path / "empty")):
        server_mod.start(str(tmp_path / "empty"), "m")


def test_half_written_and_broken_versions_are_skipped_then_retried(tmp_path, caplog):
    base = tmp_path / "m"
    write_model(base, 1)
    (base / "7").mkdir()                      # being pushed: no saved_model.pb yet
    (base / ".tmp-8").mkdir()                 # not a number
    with serve(base, poll_seconds=0.1) as s:
        assert s.versions() == [1]
        (base / "5").mkdir()
        (base / "5" / "saved_model.pb").write_bytes(b"not a SavedModel")
        with caplog.at_level(logging.WARNING, logger="tfx_mtl.serving.model_store"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                    "version 5" in r.getMessage() for r in caplog.records):
                time.sleep(0.1)
        assert any("version 5" in r.getMessage() and "failed" in r.getMessage()
                   for r in caplog.records)
        assert s.versions() == [1]
        stub = prediction_stub(s.address)
        assert stub.Predict(predict_request(), timeout=30).model_spec.version.value == 1
        shutil.rmtree(base / "5")
        write_model(base, 5)  # the retry on a later poll loads it
        wait_for_version(s, 5)


def store_failures(caplog):
    return [r for r in caplog.records
            if r.name == "tfx_mtl.serving.model_store" and r.levelno >= logging.WARNING]


def test_a_broken_newest_version_backs_off_is_logged_once_and_shown_in_status(tmp_path,
                                                                             caplog):
    base = tmp_path / "m"
    write_model(base, 1)
    with serve(base, poll_seconds=0.05) as s, \
            caplog.at_level(logging.DEBUG, logger="tfx_mtl.serving.model_store"):
        (base / "5").mkdir()
        (base / "5" / "saved_model.pb").write_bytes(b"not a SavedModel")
        time.sleep(3.0)  # 60 polls; with the backoff (1 s, then 2 s, ...) at most 3 tries
        assert 1 <= s.store.load_attempts[5] <= 3, s.store.load_attempts
        failed = store_failures(caplog)
        assert len(failed) == 1 and "version 5" in failed[0].getMessage(), failed
        # GetModelStatus over gRPC: the failure, with the version before it still serving.
        resp = model_stub(s.address).GetModelStatus(status_request(), timeout=30)
        got = [(v.version, v.state, v.status.error_code) for v in resp.model_version_status]
        assert got == [(5, get_model_status_pb2.ModelVersionStatus.END, 2),
                       (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]
        message = resp.model_version_status[0].status.error_message
        assert message.startswith("OSError: ") and "saved_model.pb" in message, message
        stub = prediction_stub(s.address)
        assert stub.Predict(predict_request(), timeout=30).model_spec.version.value == 1
        # Pushed again (new content): a new failure, tried again and logged again.
        attempts = s.store.load_attempts[5]
        (base / "5" / "saved_model.pb").write_bytes(b"still not a SavedModel!")
        deadline = time.monotonic() + 30
        while s.store.load_attempts[5] == attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.store.load_attempts[5] == attempts + 1
        assert len(store_failures(caplog)) == 2
        shutil.rmtree(base / "5")
        write_model(base, 5)
        wait_for_version(s, 5)
        resp = model_stub(s.address).GetModelStatus(status_request(version=5), timeout=30)
        assert [(v.state, v.status.error_code) for v in resp.model_version_status] == [
            (get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]


def wait_for_version(s, version, timeout=60):
    deadline = time.monotonic() + timeout
    while s.versions() != [version]:
        assert time.monotonic() < deadline, f"version {version} not picked up: {s.versions()}"
        time.sleep(0.05)


def test_new_version_is_picked_up_without_failed_requests(tmp_path):
    base = tmp_path / "m"
    write_model(base, 1)
    with serve(base, poll_seconds=0.1) as s:
        stub = prediction_stub(s.address)
        seen, failures = [], []
        per_thread = [[] for _ in range(4)]
        stop = threading.Event()

        def hammer(mine):
            while not stop.is_set():
                try:
                    resp = stub.Predict(predict_request(rows=ROWS[:1], signature="fare"),
                                        timeout=30)
                except grpc.RpcError as e:  # pragma: no cover - the assertion reports it
                    failures.append(e)
                    continue
                version = resp.model_spec.version.value
                value = tf.make_ndarray(resp.outputs["value"])
                np.testing.assert_allclose(value, expected(ROWS[:1], version)["fare"]["value"])
                seen.append(version)
                mine.append(version)

        threads = [threading.Thread(target=hammer, args=(p,)) for p in per_thread]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            write_model(base, 2)
            wait_for_version(s, 2)
            n = len(seen)
            deadline = time.monotonic() + 30
            while len(seen) < n + 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not failures, failures[:3]
        assert seen[0] == 1 and seen[-1] == 2
        for mine in per_thread:  # each client switches once and never goes back to 1
            assert mine == sorted(mine) and mine[-1] == 2
        assert_error(stub.Predict, predict_request(version=1), grpc.StatusCode.NOT_FOUND,
                     f"Servable not found for request: Specific({MODEL_NAME}, 1)")
        resp = model_stub(s.address).GetModelStatus(status_request(), timeout=30)
        assert [(v.version, v.state) for v in resp.model_version_status] == [
            (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
            (1, get_model_status_pb2.ModelVersionStatus.END)]


# -- the command line ---------------------------------------------------------------------

def test_cli_bad_model_base_exits_2(tmp_path, capsys):
    from tfx_mtl import cli
    missing = tmp_path / "nowhere"
    assert cli.main(["serve", "--model-base", str(missing), "--model-name", "m"]) == 2
    err = capsys.readouterr().err
    assert "--model-base" in err and str(missing) in err


@pytest.mark.subprocess
def test_cli_serves_until_sigterm(tmp_path):
    base = tmp_path / "m"
    write_model(base, 4)
    exe = Path(sys.executable).with_name("tfx-mtl")
    proc = subprocess.Popen([str(exe), "serve", "--model-base", str(base), "--model-name",
                             MODEL_NAME, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        line = proc.stdout.readline()
        assert f"serving model {MODEL_NAME} version 4" in line, (line, proc.stderr.read())
        address = line.rsplit(" on ", 1)[1].strip()
        assert address.startswith("127.0.0.1:")
        resp = prediction_stub(address).Predict(predict_request(signature="fare"), timeout=30)
        assert resp.model_spec.version.value == 4
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) "
                      r"tfx_mtl\.serving\.\w+: ")


@pytest.mark.subprocess
def test_cli_logs_loads_swaps_and_refusals_with_timestamps(tmp_path):
    base = tmp_path / "m"
    write_model(base, 4)
    # As in any process that imported tfx first: tfx puts a handler on the root logger,
    # which made the command's logging.basicConfig a no-op (INFO dropped, no timestamps).
    code = "import sys, tfx.v1; from tfx_mtl.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--model-base", str(base),
                             "--model-name", MODEL_NAME, "--port", "0", "--poll-seconds",
                             "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        line = proc.stdout.readline()
        assert f"serving model {MODEL_NAME} version 4" in line, (line, proc.stderr.read())
        address = line.rsplit(" on ", 1)[1].strip()
        stub = prediction_stub(address)
        bad = predict_request()
        bad.inputs["examples"].CopyFrom(tf.make_tensor_proto([1.0]))
        assert rpc_error(stub.Predict, bad).code() == grpc.StatusCode.INVALID_ARGUMENT
        write_model(base, 5)
        deadline = time.monotonic() + 120
        while stub.Predict(predict_request(), timeout=30).model_spec.version.value != 5:
            assert time.monotonic() < deadline, "version 5 not picked up"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    ours = [line for line in err.splitlines() if "tfx_mtl" in line]
    assert ours and all(LOG_LINE.match(line) for line in ours), ours
    assert any(f"Serving {MODEL_NAME} version 4 from" in line for line in ours), ours
    assert any(f"Serving {MODEL_NAME} version 5 from" in line and "unloaded version 4" in line
               for line in ours), ours
    assert any(" WARNING " in line and "refused predict (INVALID_ARGUMENT): Expected input "
               "examples to be string" in line for line in ours), ours


# -- slow: the model the real pipeline pushed -----------------------------------------------

def _taxi_examples(run, n=8):
    """Serialized tf.Examples of n raw rows, read from the run's ExampleGen output."""
    files = sorted(Path(run.output_dir).rglob("*.gz"))
    files = [f for f in files if "ExampleGen" in str(f) or "CsvExampleGen" in str(f)]
    assert files, f"no ExampleGen output under {run.output_dir}"
    ds = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP")
    return [r.numpy() for r in ds.take(n)]


@pytest.mark.e2e
def test_every_task_signature_matches_the_saved_model(taxi_run):
    pushed = Path(taxi_run.summary["pushed"])
    base, version = pushed.parent, int(pushed.name)
    examples = _taxi_examples(taxi_run)
    loaded = tf.saved_model.load(str(pushed))
    with serve(base, "taxi_mtl") as s:
        stub = prediction_stub(s.address)
        meta = stub.GetModelMetadata(metadata_request(name="taxi_mtl"), timeout=60)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(sig_map)
        assert set(loaded.signatures) <= set(sig_map.signature_def)
        for key in loaded.signatures:
            sig = sig_map.signature_def[key]
            assert set(sig.inputs) == {"examples"} and sig.outputs, key
        for key, fn in loaded.signatures.items():
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "taxi_mtl"
            req.model_spec.signature_name = key
            req.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
            resp = stub.Predict(req, timeout=60)
            assert resp.model_spec.version.value == version
            direct = {k: v.numpy() for k, v in fn(examples=tf.constant(examples)).items()}
            assert set(resp.outputs) == set(direct), key
            for out, want in direct.items():
                got = tf.make_ndarray(resp.outputs[out])
                if want.dtype == object:
                    assert got.tolist() == want.tolist(), (key, out)
                else:
                    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"{key}/{out}")


@pytest.mark.e2e
def test_load_32_clients_with_a_new_version_pushed(taxi_run, tmp_path):
    pushed = Path(taxi_run.summary["pushed"])
    base = tmp_path / "taxi_mtl"
    base.mkdir()
    shutil.copytree(pushed, base / pushed.name)
    old = int(pushed.name)
    examples = _taxi_examples(taxi_run, 2)
    clients = 32
    with serve(base, "taxi_mtl", poll_seconds=0.2, max_workers=16) as s:
        stubs = [prediction_stub(s.address) for _ in range(4)]
        failures, versions = [], [[] for _ in range(clients)]
        started, stop = threading.Barrier(clients + 1), threading.Event()

        def client(i):
            stub = stubs[i % len(stubs)]
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "taxi_mtl"
            req.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
            started.wait()
            while not stop.is_set():  # load until every client has seen the new version
                try:
                    versions[i].append(stub.Predict(req, timeout=60).model_spec.version.value)
                except grpc.RpcError as e:
                    failures.append((e.code(), e.details()))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        staged = base / f".tmp-{old + 1}"
        shutil.copytree(base / str(old), staged)  # the copy under a temp name ...
        started.wait()
        t0 = time.monotonic()
        time.sleep(0.5)
        os.rename(staged, base / str(old + 1))  # ... then the rename: the push, mid-load
        pushed_at = time.monotonic() - t0
        deadline = t0 + 300  # however loaded the machine, the swap is not timed
        while s.versions() != [old + 1] and time.monotonic() < deadline:
            time.sleep(0.02)
        swapped_at = time.monotonic() - t0
        while (not all(vs and vs[-1] == old + 1 for vs in versions)
               and time.monotonic() < deadline and not failures):
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        assert not failures, failures[:5]
        assert s.versions() == [old + 1], "the new version was not picked up during the load"
        total = sum(len(v) for v in versions)
        answered = [v for vs in versions for v in vs]
        assert old + 1 in answered and old in answered
        for vs in versions:  # each client switches once, to the new version, never back
            assert vs == sorted(vs) and vs[-1] == old + 1
        print(f"{total} requests in {elapsed:.1f} s ({total / elapsed:.0f}/s); pushed at "
              f"{pushed_at:.1f} s, serving the new version from {swapped_at:.1f} s")
