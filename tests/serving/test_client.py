"""ServingClient against the real dev server on loopback (real gRPC, a real small SavedModel)."""
import socket
import threading
import time

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from serving_support import (MODEL_NAME, SCHEMA_TEXT, expected, serve, start_server,
                             write_model)
from tensorflow_metadata.proto.v0 import schema_pb2

from tfx_mtl.serving.client import ServingClient, ServingError, UnknownTaskError, split_outputs
from tfx_mtl.serving.examples import RowEncoder

VERSION = 3
SCHEMA = SCHEMA_TEXT
ROWS = [{"trip_miles": 0.5, "trip_seconds": 600, "company": "Flash Cab"},
        {"trip_miles": "3", "trip_seconds": "120"},          # CSV-style strings
        {"trip_miles": 1, "company": None},                  # missing -> imputed
        {}]


def _encoder():
    return RowEncoder(text_format.Parse(SCHEMA, schema_pb2.Schema()))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    path = write_model(base, VERSION)
    with serve(base) as server:
        yield server, path


@pytest.fixture
def client(model):
    server, _ = model
    with ServingClient(server.address, MODEL_NAME, encoder=_encoder(), timeout=20) as c:
        yield c


def _direct(path, signature, rows):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures[signature](examples=tf.constant(_encoder().encode_rows(rows)))
    return {k: v.numpy() for k, v in out.items()}


def _typed_rows():
    """ROWS as the model sees them (for serving_support.expected)."""
    return [{k: float(v) for k, v in r.items() if k != "company" and v is not None}
            for r in ROWS]


def test_signatures_and_tasks_come_from_the_model_metadata(client):
    signatures = client.signatures()
    assert set(signatures) == {"serving_default", "fare", "big_tipper", "transform_features",
                               "fare__evaluation", "big_tipper__evaluation"}
    for sig in signatures.values():
        assert sig.inputs == {"examples": ("DT_STRING", [None])}
        assert sig.method_name == "tensorflow/serving/predict"
    assert signatures["fare"].outputs == {"value": ("DT_FLOAT", [None])}
    assert signatures["big_tipper"].outputs == {"probability": ("DT_FLOAT", [None]),
                                                "class_id": ("DT_INT64", [None])}
    assert set(signatures["serving_default"].outputs) == {
        "fare_value", "big_tipper_probability", "big_tipper_class_id"}
    assert client.tasks() == ["big_tipper", "fare"]
    assert client.last_version == VERSION


def test_predict_equals_calling_the_saved_model(client, model):
    _, path = model
    want = expected(_typed_rows(), VERSION)
    for task in ("fare", "big_tipper"):
        got = client.predict(task, ROWS)
        direct = _direct(path, task, ROWS)
        assert set(got) == set(direct) == set(want[task])
        for name, value in got.items():
            assert value.dtype == direct[name].dtype and value.shape == (len(ROWS),)
            np.testing.assert_array_equal(value, direct[name])
            np.testing.assert_allclose(value, want[task][name], rtol=1e-6)
    assert client.last_version == VERSION


def test_predict_all_splits_serving_default_by_task(client, model):
    _, path = model
    got = client.predict_all(ROWS)
    direct = _direct(path, "serving_default", ROWS)
    assert set(got) == {"fare", "big_tipper"}
    assert set(got["big_tipper"]) == {"probability", "class_id"}
    for task, outputs in got.items():
        for name, value in outputs.items():
            np.testing.assert_array_equal(value, direct[f"{task}_{name}"])
    # serialized tf.Examples go through as they are
    again = client.predict_all(_encoder().encode_rows(ROWS))
    np.testing.assert_array_equal(again["fare"]["value"], got["fare"]["value"])


def test_string_outputs_are_decoded(client):
    out = client.predict("transform_features", ROWS)
    assert out["company_xf"].tolist() == ["Flash Cab", "", "", ""]
    assert out["company_xf"].dtype.kind == "U"


def test_split_outputs_takes_the_longest_task_prefix():
    outputs = {"fare_value": 1, "fare_total_value": 2, "big_tipper_class_id": 3, "odd": 4}
    assert split_outputs(outputs, ["fare", "fare_total", "big_tipper"]) == {
        "fare": {"value": 1}, "fare_total": {"value": 2}, "big_tipper": {"class_id": 3},
        "": {"odd": 4}}


def test_an_unknown_task_is_named_with_the_models_tasks(client):
    with pytest.raises(UnknownTaskError) as info:
        client.predict("tip", ROWS)
    e = info.value
    assert isinstance(e, ValueError) and isinstance(e, ServingError)
    assert e.task == "tip" and e.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "no task 'tip'" in str(e) and "its tasks: big_tipper, fare" in str(e)


def test_server_errors_carry_code_details_and_task_and_are_not_retried(model):
    server, _ = model
    # a wrong type (a string for the FLOAT trip_miles, no schema to type it): INVALID_ARGUMENT
    with ServingClient(server.address, MODEL_NAME, retries=5, backoff=1.0) as c:
        start = time.monotonic()
        with pytest.raises(ServingError) as info:
            c.predict("fare", [{"trip_miles": "far"}])
        assert time.monotonic() - start < 1.0  # no backoff sleep: not retried
    e = info.value
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT and e.task == "fare" and e.attempts == 1
    assert "trip_miles" in e.details
    assert str(e).startswith("INVALID_ARGUMENT (task 'fare'): ")
    # an unknown model / version: NOT_FOUND
    with ServingClient(server.address, "nope", retries=5, backoff=1.0) as c:
        with pytest.raises(ServingError) as info:
            c.tasks()
        assert info.value.code == grpc.StatusCode.NOT_FOUND and info.value.attempts == 1
    with ServingClient(server.address, MODEL_NAME, version=VERSION + 1) as c:
        with pytest.raises(ServingError) as info:
            c.predict_all(ROWS)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
    with ServingClient(server.address, MODEL_NAME, version=VERSION, encoder=_encoder()) as c:
        assert c.predict("fare", ROWS)["value"].shape == (4,)
        assert c.last_version == VERSION


def _write_slow_model(base):
    """A SavedModel whose ``fare`` sleeps ``delay_ms`` (a feature) before answering."""
    import tensorflow as tf
    from tensorflow.python.data.experimental.ops import testing

    sig = tf.TensorSpec([None], tf.string, name="examples")

    class Slow(tf.Module):
        @tf.function(input_signature=[sig])
        def fare(self, examples):
            delay = tf.io.parse_example(examples, {"delay_ms": tf.io.FixedLenFeature(
                [1], tf.int64, default_value=[0])})["delay_ms"]
            slept = tf.data.Dataset.range(1).apply(testing.sleep(tf.reduce_max(delay) * 1000))
            zero = slept.reduce(tf.constant(0, tf.int64), lambda a, b: a + b)
            return {"value": tf.cast(tf.squeeze(delay, 1) + zero, tf.float32)}

    model = Slow()
    tf.saved_model.save(model, str(base / "1"),
                        signatures={"serving_default": model.fare, "fare": model.fare})


def test_a_call_past_its_timeout_is_deadline_exceeded_and_not_retried(tmp_path):
    _write_slow_model(tmp_path)
    with serve(tmp_path, "slow") as server:
        with ServingClient(server.address, "slow", timeout=0.1, backoff=1.0) as c:
            c.tasks()  # connected, metadata cached
            start = time.monotonic()
            with pytest.raises(ServingError) as info:
                c.predict("fare", [{"delay_ms": 400}])
            assert time.monotonic() - start < 1.0  # not retried after a 1 s backoff
            e = info.value
            assert e.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert e.task == "fare" and e.attempts == 1
            c.timeout = 30.0  # the same call within its time answers
            assert c.predict("fare", [{"delay_ms": 400}])["value"].tolist() == [400.0]


def test_no_rows_is_refused_before_sending(client):
    with pytest.raises(ValueError, match="no rows"):
        client.predict_all([])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unavailable_is_retried_until_the_server_comes_up(model):
    _, path = model
    port = _free_port()
    started = []

    def start_later():
        time.sleep(0.5)
        started.append(start_server(path.parent, port=port))

    thread = threading.Thread(target=start_later)
    begin = time.monotonic()
    thread.start()
    try:
        # backoff 0.1 s doubling, 8 retries: a 25 s window, enough for a slow start
        with ServingClient(f"127.0.0.1:{port}", MODEL_NAME, retries=8, backoff=0.1,
                           encoder=_encoder()) as c:
            out = c.predict("fare", ROWS)
        assert time.monotonic() - begin >= 0.5  # it did wait for the server
        np.testing.assert_allclose(out["value"], expected(_typed_rows(), VERSION)["fare"]["value"],
                                   rtol=1e-6)
    finally:
        thread.join()
        for server in started:
            server.stop(0)


def test_with_the_server_down_unavailable_after_every_retry_fast():
    port = _free_port()
    start = time.monotonic()
    with ServingClient(f"127.0.0.1:{port}", MODEL_NAME, retries=3, backoff=0.05) as c:
        with pytest.raises(ServingError) as info:
            c.predict_all([{"trip_miles": 1.0}])
    elapsed = time.monotonic() - start
    e = info.value
    assert e.code == grpc.StatusCode.UNAVAILABLE and e.attempts == 4
    assert "after 4 tries" in str(e)
    assert 0.35 <= elapsed < 5.0  # slept 0.05 + 0.1 + 0.2 between the tries
