"""A development server speaking TF Serving's gRPC API, backed by pushed SavedModel versions.

``start(model_base, model_name)`` serves the newest version under ``model_base`` (see
:mod:`tfx_mtl.serving.model_store` for discovery, polling and the swap) through
``tensorflow.serving.PredictionService`` (Predict, Classify, Regress, GetModelMetadata;
MultiInference is UNIMPLEMENTED) and ``tensorflow.serving.ModelService`` (GetModelStatus;
HandleReloadConfigRequest is UNIMPLEMENTED), with the protos of ``tensorflow-serving-api``.

Errors carry the status codes and messages of TF Serving's own source; each is quoted below
with the file it comes from (github.com/tensorflow/serving, ``tensorflow_serving/...``).
For development and tests; production is TF Serving itself (kubeflow/serving/).
"""
from __future__ import annotations

import logging
import re
import threading
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from tfx_mtl.serving import input_errors
from tfx_mtl.serving.model_store import AVAILABLE, END, LOADING, ModelStore, NoVersionError
from tfx_mtl.serving.request_checks import (DEFAULT_MAX_BATCH_SIZE, RequestError, check_batch,
                                            check_input)

log = logging.getLogger(__name__)

__all__ = ["DevServer", "NoVersionError", "start"]

DEFAULT_SIGNATURE = "serving_default"  # tensorflow::kDefaultServingSignatureDefKey
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef

_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
# What the request got wrong (logged as a refusal, WARNING); other codes are errors (ERROR).
_REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                       grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.UNIMPLEMENTED})
_LOGGED_CHARS = 500  # of a message in a log line
_STATE_ENUM = {
    LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
    AVAILABLE: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    END: get_model_status_pb2.ModelVersionStatus.END,
}


class _Abort(Exception):
    """A TF Serving Status: a grpc code and its message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> _Abort:
    return _Abort(grpc.StatusCode.INVALID_ARGUMENT, message)


def _as_proto_field(array: np.ndarray):
    """A TensorProto as TF Serving's Predict fills it: ``Tensor::AsProtoField`` (typed repeated
    fields such as ``float_val``, not ``tensor_content``; predict_util.cc, kAsProtoField)."""
    import tensorflow as tf
    proto = tf.make_tensor_proto(array)
    if not proto.tensor_content:
        return proto
    flat = np.asarray(array).ravel()
    kind = flat.dtype
    field = {np.dtype(np.float32): "float_val", np.dtype(np.float64): "double_val",
             np.dtype(np.int64): "int64_val", np.dtype(np.int32): "int_val",
             np.dtype(np.int16): "int_val", np.dtype(np.int8): "int_val",
             np.dtype(np.uint8): "int_val", np.dtype(np.uint16): "int_val",
             np.dtype(np.bool_): "bool_val", np.dtype(np.uint32): "uint32_val",
             np.dtype(np.uint64): "uint64_val"}.get(kind)
    if field is None and kind == np.float16:
        proto.ClearField("tensor_content")
        proto.half_val.extend(flat.view(np.uint16).tolist())
        return proto
    if field is None:  # complex and the rest: keep tensor_content
        return proto
    proto.ClearField("tensor_content")
    getattr(proto, field).extend(flat.tolist())
    return proto


def _debug_string(message) -> str:
    from google.protobuf import text_format
    return text_format.MessageToString(message)


_EAGER_PREFIX = re.compile(r"^(?:Graph execution error:\n\n(?:Detected at node .*?\n"
                           r"<stack traces unavailable>\n)?|\{\{function_node [^}]*\}\} )",
                           re.S)
_EAGER_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


def _tf_message(message: str) -> str:
    """A TF runtime error as ``session->Run`` reports it in TF Serving: without the eager
    "Graph execution error: Detected at node ..." preamble and the "[Op:__inference...]" tail."""
    return _EAGER_SUFFIX.sub("", _EAGER_PREFIX.sub("", message))


def _run(fn, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Call a signature function; TF errors keep their own code and message, like
    ``session->Run`` errors do in TF Serving, unless the examples sent show which input
    and feature caused an INVALID_ARGUMENT (:mod:`tfx_mtl.serving.input_errors`)."""
    import tensorflow as tf
    try:
        outputs = fn(**inputs)
    except tf.errors.OpError as e:
        code = _GRPC_CODES.get(e.error_code, grpc.StatusCode.UNKNOWN)
        message = _tf_message(e.message)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            message = _explained(inputs, message)
        raise _Abort(code, message) from e
    except UnicodeDecodeError as e:
        # TF could not decode its own error message: it quotes bytes of the request.
        message = _tf_message(e.object.decode("utf-8", "backslashreplace")
                              if isinstance(e.object, bytes) else str(e))
        raise _invalid(_explained(inputs, message)) from e
    except (TypeError, ValueError) as e:  # e.g. a shape the signature does not accept
        raise _invalid(str(e)) from e
    return {k: v.numpy() for k, v in outputs.items()}


def _explained(inputs: dict[str, Any], message: str) -> str:
    arrays = {k: v.numpy() for k, v in inputs.items() if hasattr(v, "numpy")}
    return input_errors.explain(arrays, message) or message


def _model_spec(name: str, signature_name: str | None, version: int | None, spec) -> None:
    """tensorflow_serving/servables/tensorflow/util.cc MakeModelSpec."""
    spec.Clear()
    spec.name = name
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE
    if version is not None:
        spec.version.value = version


def _serialized_examples(input_proto, max_batch_size: int) -> list[bytes]:
    """util.cc InputToSerializedExampleTensor: one serialized tf.Example per example;
    with ExampleListWithContext, context bytes + example bytes (proto merge semantics).
    More than ``max_batch_size`` examples are refused before any is serialized."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        _check_batch(len(input_proto.example_list.examples), max_batch_size)
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        _check_batch(len(input_proto.example_list_with_context.examples), max_batch_size)
        ctx = input_proto.example_list_with_context.context.SerializeToString()
        examples = [ctx + e.SerializeToString()
                    for e in input_proto.example_list_with_context.examples]
    else:
        examples = []
    if not examples:
        # util.cc: errors::InvalidArgument("Input is empty.")
        raise _invalid("Input is empty.")
    return examples


def _check_batch(count: int, max_batch_size: int) -> None:
    try:
        check_batch(count, max_batch_size)
    except RequestError as e:
        raise _invalid(str(e)) from None


class _Service(prediction_service_pb2_grpc.PredictionServiceServicer,
               model_service_pb2_grpc.ModelServiceServicer):

    def __init__(self, store: ModelStore, method_name_check: bool = True,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, check_requests: bool = True):
        self.store = store
        self.method_name_check = method_name_check
        self.max_batch_size = max_batch_size
        self.check_requests = check_requests

    # -- helpers ------------------------------------------------------------------------

    def _servable(self, request):
        """ServerCore::GetServableHandle for ``request.model_spec``."""
        if not request.HasField("model_spec"):
            # predict_impl.cc / get_model_metadata_impl.cc: "Missing ModelSpec"
            raise _invalid("Missing ModelSpec")
        spec = request.model_spec
        servable = self.store.current  # one lock-free read: this request keeps this version
        which = spec.WhichOneof("version_choice")
        if which == "version_label":
            # model_servers/server_core.cc GetModelVersionForLabel: no labels configured here.
            raise _invalid(f"Unrecognized servable version label: {spec.version_label}")
        if which == "version":
            request_str = f"Specific({spec.name}, {spec.version.value})"
        else:
            request_str = f"Latest({spec.name})"
        if (servable is None or spec.name != self.store.name
                or (which == "version" and spec.version.value != servable.version)):
            # core/basic_manager.cc ServingMap::GetUntypedServableHandle:
            #   errors::NotFound("Servable not found for request: ", request.DebugString())
            # with core/manager.h ServableRequest::DebugString "Specific(name, v)"/"Latest(name)".
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request_str}")
        return servable

    @staticmethod
    def _respond(context, fn, *args):
        """``fn(*args)``; a refusal is logged as a WARNING, any other error as an ERROR."""
        what = fn.__name__.lstrip("_")
        try:
            return fn(*args)
        except _Abort as a:
            abort = a
            (log.warning if a.code in _REFUSALS else log.error)(
                "%s %s (%s): %s", "refused" if a.code in _REFUSALS else "failed", what,
                a.code.name, a.message[:_LOGGED_CHARS])
        except Exception as e:  # a bug: log it with its traceback, answer UNKNOWN
            log.exception("%s failed", what)
            abort = _Abort(grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}")
        context.abort(abort.code, abort.message)

    # -- PredictionService --------------------------------------------------------------

    def Predict(self, request, context):
        return self._respond(context, self._predict, request)

    def _predict(self, request):
        import tensorflow as tf
        servable = self._servable(request)
        # predict_util.cc RunPredict
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(signature_name)
        if signature is None:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                         f'Serving signature key "{signature_name}" not found.')
        response = predict_pb2.PredictResponse()
        _model_spec(request.model_spec.name, signature_name, servable.version,
                    response.model_spec)
        # predict_util.cc VerifySignature (errors::Internal)
        if self.method_name_check and signature.method_name not in (
                PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise _Abort(grpc.StatusCode.INTERNAL,
                         "Expected prediction signature method_name to be one of {"
                         f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. "
                         f"Was: {signature.method_name}")
        # predict_util.cc VerifyRequestInputsSize
        request_inputs = sorted(request.inputs)
        signature_inputs = sorted(signature.inputs)
        if len(request_inputs) != len(signature_inputs):
            extra = sorted(set(request_inputs) - set(signature_inputs))
            missing = sorted(set(signature_inputs) - set(request_inputs))
            raise _invalid(
                f"input size does not match signature: {len(request_inputs)}!="
                f"{len(signature_inputs)} len({{{','.join(request_inputs)}}}) != "
                f"len({{{','.join(signature_inputs)}}}). Sent extra: {{{','.join(extra)}}}. "
                f"Missing but required: {{{','.join(missing)}}}.")
        # predict_util.cc PreProcessPrediction
        inputs = {}
        for alias in request_inputs:
            if alias not in signature.inputs:
                raise _invalid(f"input tensor alias not found in signature: {alias}. Inputs "
                               f"expected to be in the set {{{','.join(signature_inputs)}}}.")
            tensor_proto = request.inputs[alias]
            expected = signature.inputs[alias].dtype
            if self.check_requests:
                # dtype, rank, fixed dims, --max-batch-size, values sent = shape claimed:
                # on the proto, before make_ndarray allocates (and broadcasts) anything.
                try:
                    check_input(alias, tensor_proto, signature.inputs[alias],
                                self.max_batch_size)
                except RequestError as e:
                    raise _invalid(str(e)) from None
            try:
                array = tf.make_ndarray(tensor_proto)
            except Exception as e:
                raise _invalid(f"tensor parsing error: {alias}") from e
            inputs[alias] = tf.constant(array, dtype=tf.as_dtype(expected))
        aliases = list(request.output_filter)
        seen = set()
        for alias in aliases:
            if alias not in signature.outputs:
                raise _invalid(f"output tensor alias not found in signature: {alias} Outputs "
                               f"expected to be in the set {{{','.join(sorted(signature.outputs))}}}.")
            if alias in seen:
                raise _invalid(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        if not aliases:
            aliases = list(signature.outputs)
        fn = servable.functions.get(signature_name)
        if fn is None:  # e.g. __saved_model_init_op: a SignatureDef that is no function
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                         f'Serving signature key "{signature_name}" not found.')
        outputs = _run(fn, inputs)
        for alias in aliases:
            response.outputs[alias].CopyFrom(_as_proto_field(outputs[alias]))
        return response

    def _signature_for(self, servable, model_spec, method: str, what: str):
        """classifier.cc GetClassificationSignatureDef / regressor.cc GetRegressionSignatureDef."""
        signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(signature_name)
        if signature is None:
            raise _invalid(f"No signature was found with the name: {signature_name}")
        if self.method_name_check and signature.method_name != method:
            raise _invalid(f"Expected {what} signature method_name to be {method}. "
                           f"Was: {signature.method_name}")
        return signature_name, signature

    def Classify(self, request, context):
        return self._respond(context, self._classify, request)

    def _classify(self, request):
        servable = self._servable(request)
        name, signature = self._signature_for(servable, request.model_spec, CLASSIFY_METHOD,
                                              "classification")
        # classifier.cc PreProcessClassification
        if len(signature.inputs) != 1:
            raise _invalid("Expected one input Tensor.")
        if len(signature.outputs) not in (1, 2):
            raise _invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if "inputs" not in signature.inputs:
            raise _invalid(f"No classification inputs found in SignatureDef: "
                           f"{_debug_string(signature)}")
        has_classes, has_scores = "classes" in signature.outputs, "scores" in signature.outputs
        if not (has_classes or has_scores):
            raise _invalid('Expected classification signature outputs to contain at least one '
                           f'of "classes" or "scores". Signature was: {_debug_string(signature)}')
        response = classification_pb2.ClassificationResponse()
        _model_spec(request.model_spec.name, request.model_spec.signature_name,
                    servable.version, response.model_spec)
        examples = _serialized_examples(request.input, self.max_batch_size)
        import tensorflow as tf
        out = _run(servable.functions[name], {"inputs": tf.constant(examples, dtype=tf.string)})
        n = len(examples)
        # classifier.cc PostProcessClassificationResult
        classes = out.get("classes") if has_classes else None
        scores = out.get("scores") if has_scores else None
        for label, t in (("classes", classes), ("scores", scores)):
            if t is None:
                continue
            if t.ndim != 2:
                raise _invalid(f"Expected Tensor shape: [batch_size num_classes] but got "
                               f"[{','.join(map(str, t.shape))}]")
            if label == "classes" and t.dtype != object:
                raise _invalid(f"Expected classes Tensor of DT_STRING. Got: DT_{t.dtype.name.upper()}")
            if label == "scores" and t.dtype != np.float32:
                raise _invalid(f"Expected scores Tensor of DT_FLOAT. Got: DT_{t.dtype.name.upper()}")
            if t.shape[0] != n:
                raise _invalid(f"Expected {label} output batch size of {n}. Got: {t.shape[0]}")
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise _invalid("Tensors class and score should match in dim_size(1). Got "
                           f"{classes.shape[1]} vs. {scores.shape[1]}")
        num_classes = (classes if classes is not None else scores).shape[1]
        for i in range(n):
            c = response.result.classifications.add()
            for k in range(num_classes):
                cl = c.classes.add()
                if classes is not None:
                    cl.label = classes[i, k].decode("utf-8", "replace") \
                        if isinstance(classes[i, k], bytes) else str(classes[i, k])
                if scores is not None:
                    cl.score = float(scores[i, k])
        return response

    def Regress(self, request, context):
        return self._respond(context, self._regress, request)

    def _regress(self, request):
        servable = self._servable(request)
        name, signature = self._signature_for(servable, request.model_spec, REGRESS_METHOD,
                                              "regression")
        # regressor.cc PreProcessRegression
        if len(signature.inputs) != 1:
            raise _invalid("Expected one input Tensor.")
        if len(signature.outputs) != 1:
            raise _invalid("Expected one output Tensor.")
        if "inputs" not in signature.inputs:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                         f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
        if "outputs" not in signature.outputs:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                         f"No regression outputs found in SignatureDef: {_debug_string(signature)}")
        response = regression_pb2.RegressionResponse()
        _model_spec(request.model_spec.name, request.model_spec.signature_name,
                    servable.version, response.model_spec)
        examples = _serialized_examples(request.input, self.max_batch_size)
        import tensorflow as tf
        out = _run(servable.functions[name], {"inputs": tf.constant(examples, dtype=tf.string)})
        t = out["outputs"]
        n = len(examples)
        # regressor.cc PostProcessRegressionResult
        if not (t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1)):
            raise _invalid("Expected output Tensor shape to be either [batch_size] or "
                           f"[batch_size, 1] but got [{','.join(map(str, t.shape))}]")
        if t.shape[0] != n:
            raise _invalid(f"Input batch size did not match output batch size: {n} vs. {t.shape[0]}")
        if t.dtype != np.float32:
            raise _invalid(f"Expected output Tensor of DT_FLOAT.  Got: DT_{t.dtype.name.upper()}")
        for value in t.ravel():
            response.result.regressions.add().value = float(value)
        return response

    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "MultiInference is not implemented by the tfx-mtl dev server")

    def GetModelMetadata(self, request, context):
        return self._respond(context, self._metadata, request)

    def _metadata(self, request):
        # servables/tensorflow/get_model_metadata_impl.cc
        if not request.HasField("model_spec"):
            raise _invalid("Missing ModelSpec")
        if not request.metadata_field:
            raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                # errors::InvalidArgument("Metadata field %s is not supported", metadata_field):
                # errors::InvalidArgument StrCats its arguments, so TF Serving really answers
                # with a literal "%s" followed by the field name; reproduced as is.
                raise _invalid(f"Metadata field %s is not supported{field}")
        servable = self._servable(request)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.meta_graph_def.signature_def.items():
            sig_map.signature_def[key].CopyFrom(sig)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(sig_map)
        return response

    # -- ModelService -------------------------------------------------------------------

    def GetModelStatus(self, request, context):
        return self._respond(context, self._status, request)

    def _status(self, request):
        # model_servers/get_model_status_impl.cc
        if not request.HasField("model_spec"):
            raise _invalid("Missing ModelSpec")
        spec = request.model_spec
        states = self.store.states() if spec.name == self.store.name else {}
        failures = self.store.failures() if spec.name == self.store.name else {}
        response = get_model_status_pb2.GetModelStatusResponse()
        if spec.HasField("version"):
            v = spec.version.value
            if v not in states:
                raise _Abort(grpc.StatusCode.NOT_FOUND,
                             f"Could not find version {v} of model {spec.name}")
            versions = [v]
        else:
            if not states:
                raise _Abort(grpc.StatusCode.NOT_FOUND,
                             f"Could not find any versions of model {spec.name}")
            versions = sorted(states, reverse=True)  # ServableStateMonitor::VersionMap order
        for v in versions:
            status = response.model_version_status.add()
            status.version = v
            status.state = _STATE_ENUM[states[v]]
            # util/status_util.cc ToStatusProto: OK, or the load error of a version that
            # failed to load (state END, as ServableStateMonitor reports it).
            failure = failures.get(v) if states[v] == END else None
            status.status.error_code = failure.code if failure else 0
            status.status.error_message = failure.message if failure else ""
        return response

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "HandleReloadConfigRequest is not implemented by the tfx-mtl dev server: "
                      "it serves one model from --model-base")


class DevServer:
    """A running dev server: ``port``, ``address``, ``stop()``, ``wait()``, ``versions()``."""

    def __init__(self, grpc_server, store: ModelStore, host: str, port: int):
        self._server = grpc_server
        self.store = store
        self.host = host
        self.port = port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.model_name = store.name
        self._stopped = threading.Event()

    def versions(self) -> list[int]:
        """The loaded (served) version numbers."""
        return self.store.versions()

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting requests and the version polling; running requests get ``grace``
        seconds to finish (grpc's semantics: None or 0 aborts them at once)."""
        if self._stopped.is_set():
            return
        self.store.stop()
        self._server.stop(grace).wait()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); True once stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(0)


def start(model_base: str, model_name: str, *, host: str = "127.0.0.1", port: int = 0,
          poll_seconds: float = 1.0, max_message_bytes: int = 4 * 1024 * 1024,
          max_workers: int = 16, method_name_check: bool = True,
          max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, check_requests: bool = True
          ) -> DevServer:
    """Load the newest version under ``model_base`` and serve it over gRPC; returns at once.

    Raises :class:`NoVersionError` (bad input) naming the directory when there is
    no loadable version, OSError when the port cannot be bound. ``max_message_bytes`` is
    grpc's ``grpc.max_receive_message_length`` (bigger requests: RESOURCE_EXHAUSTED).
    ``method_name_check``: TF Serving's ``--enable_signature_method_name_check`` (Classify /
    Regress need a classify / regress signature; TF Serving's own default is off).
    ``max_batch_size``: the most rows (first dimension of a Predict input, examples of a
    Classify/Regress) a request may have; ``check_requests=False`` skips the checks of
    Predict inputs against the signature (:mod:`tfx_mtl.serving.request_checks`), only to
    measure what they cost.
    """
    store = ModelStore(model_base, model_name, poll_seconds=poll_seconds)
    store.load_initial()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="serving"),
        options=[("grpc.max_receive_message_length", int(max_message_bytes)),
                 ("grpc.max_send_message_length", -1),
                 ("grpc.so_reuseport", 0)])
    service = _Service(store, method_name_check=method_name_check,
                       max_batch_size=max_batch_size, check_requests=check_requests)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(target)
    except RuntimeError as e:
        bound = 0
        err = e
    else:
        err = None
    if not bound:
        store.stop()
        raise OSError(f"cannot bind {target}" + (f": {err}" if err else ""))
    server.start()
    store.start_polling()
    log.info("Serving model %s version %d on %s:%d", model_name, store.current.version, host, bound)
    return DevServer(server, store, host, bound)
