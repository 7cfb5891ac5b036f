"""Submit a compiled KFP v2 pipeline package as a run or a recurring run through ``kfp.Client``.

The package is what TFX's ``KubeflowV2DagRunner`` writes: YAML holding the PipelineSpec
itself, or JSON holding a PipelineJob (``{"pipelineSpec": ..., "runtimeConfig": ...}``),
whose ``runtimeConfig`` may carry a pipeline root and compile-time parameter values that
the YAML form drops. ``kfp.Client`` only reads ``.yaml``/``.yml``/``.zip``/``.tar.gz``
packages, so any other package is handed to it as a temporary YAML copy of the spec.

Credentials (never written to a file nor printed):

* ``KFP_BEARER_TOKEN`` (:data:`TOKEN_ENV`): a bearer token, sent as
  ``Authorization: Bearer <token>`` (``kfp.Client(existing_token=...)``).
* ``KF_PIPELINES_SA_TOKEN_PATH``: a file holding a token (e.g. a projected service-account
  token), re-read before each request; without the variable, the kubelet's default
  ``/var/run/secrets/kubeflow/pipelines/token`` when it exists
  (``kfp.client.set_volume_credentials.ServiceAccountTokenVolumeCredentials``).
* Whatever ``kfp.Client`` picks up by itself: IAP OAuth (``KF_PIPELINES_IAP_OAUTH2_CLIENT_ID``,
  ``KF_PIPELINES_APP_OAUTH2_CLIENT_ID``/``_SECRET``), a Google access token for
  ``*.googleusercontent.com`` hosts, the cookie / header saved in ``~/.config/kfp/context.json``,
  and without a host (nor ``KF_PIPELINES_ENDPOINT``) the in-cluster service or the kube
  config's current context.

kfp's order decides: ``KFP_BEARER_TOKEN``, then IAP, then a googleusercontent host, then
the token file.
Everything except :func:`make_client` and :func:`submit` is pure and kfp-free.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import math
import os
import re
import tempfile
import warnings
from typing import Any, Iterator, Mapping, Sequence

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tfx_mtl.errors import InputError

TOKEN_ENV = "KFP_BEARER_TOKEN"
# Same names and default as kfp.client (KF_PIPELINES_SA_TOKEN_ENV / _PATH).
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
SA_TOKEN_DEFAULT_PATH = "/var/run/secrets/kubeflow/pipelines/token"
UI_ENDPOINT_ENV = "KF_PIPELINES_UI_ENDPOINT"
ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"
DEFAULT_EXPERIMENT = "tfx-mtl"
# The KFP API server refuses recurring runs outside this range.
MAX_CONCURRENCY = (1, 10)
# KFP UI routes (frontend/src/components/Router.tsx: RUN_DETAILS, RECURRING_RUN_DETAILS).
UI_ROUTES = {"run": "/#/runs/details/", "recurring run": "/#/recurringrun/details/"}

_YAML_SUFFIXES = (".yaml", ".yml")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,#-]+$")


class SubmitError(InputError):
    """Bad input; ``field`` names the flag, parameter or file at fault."""


@dataclasses.dataclass(frozen=True)
class Package:
    """A loaded pipeline package.

    ``spec`` is the PipelineSpec as written; ``platform_specs`` are the YAML documents after
    it (KFP PlatformSpecs); ``pipeline_root`` and ``compiled_values`` come from a JSON
    PipelineJob's ``runtimeConfig`` (``gcsOutputDirectory``, ``parameterValues``).
    """
    path: str
    spec: dict
    platform_specs: tuple = ()
    pipeline_root: str | None = None
    compiled_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec["pipelineInfo"]["name"]

    @property
    def parameters(self) -> dict[str, dict]:
        """Root parameter name -> its declaration (``parameterType``, ``defaultValue``...)."""
        return dict(self.spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


@dataclasses.dataclass(frozen=True)
class Submission:
    """Everything :func:`submit` sends, validated; ``cron`` set means a recurring run."""
    package: Package
    parameters: dict
    experiment: str
    run_name: str
    namespace: str | None = None
    cron: str | None = None
    max_concurrency: int | None = None
    pipeline_root: str | None = None


@dataclasses.dataclass(frozen=True)
class Submitted:
    kind: str  # "run" or "recurring run" (keys of UI_ROUTES)
    id: str
    experiment_id: str


# --- package --------------------------------------------------------------------------------

def _read_documents(path: str) -> list:
    """JSON first (TFX's .json), then YAML (possibly several documents)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SubmitError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SubmitError(path, f"cannot read it ({e})") from None
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as e:
        raise SubmitError(path, f"neither JSON nor YAML ({e})") from None


def load_package(path: str) -> Package:
    """Loads a compiled package; rejects anything that is not a KFP v2 PipelineSpec.

    A schema-2.0.0 spec (root parameters typed ``type: INT`` instead of ``parameterType``,
    what ``KubeflowV2DagRunner`` writes unless ``use_pipeline_spec_2_1=True``) is rejected
    too: the KFP v2 API server cannot run it.
    """
    docs = _read_documents(path)
    first = docs[0] if docs else None
    pipeline_root, compiled = None, {}
    if isinstance(first, dict) and isinstance(first.get("pipelineSpec"), dict):  # PipelineJob
        runtime = first.get("runtimeConfig") or {}
        pipeline_root = runtime.get("gcsOutputDirectory") or None
        compiled = dict(runtime.get("parameterValues") or {})
        first = first["pipelineSpec"]
    if not (isinstance(first, dict) and isinstance(first.get("pipelineInfo"), dict)
            and first["pipelineInfo"].get("name") and isinstance(first.get("root"), dict)):
        raise SubmitError(path, "not a KFP v2 pipeline spec (no pipelineInfo.name and root)")
    try:
        json_format.ParseDict(first, pipeline_spec_pb2.PipelineSpec())
        for doc in docs[1:]:
            json_format.ParseDict(doc, pipeline_spec_pb2.PlatformSpec())
    except (json_format.ParseError, TypeError, AttributeError) as e:
        raise SubmitError(path, f"not a valid KFP v2 pipeline spec: {e}") from None
    declared = first["root"].get("inputDefinitions", {}).get("parameters", {})
    old = sorted(n for n, p in declared.items() if "parameterType" not in p)
    if old:
        raise SubmitError(path, f"root parameters {', '.join(old)} have no parameterType "
                                f"(pipeline spec schema {first.get('schemaVersion', '?')}); "
                                "compile with KubeflowV2DagRunnerConfig("
                                "use_pipeline_spec_2_1=True)")
    # JSON numbers come back as floats: give compile-time values their declared type.
    compiled = {name: _coerce(value, declared[name]["parameterType"]) if name in declared
                else value for name, value in compiled.items()}
    return Package(path=path, spec=first, platform_specs=tuple(docs[1:]),
                   pipeline_root=pipeline_root, compiled_values=compiled)


def _coerce(value: Any, ptype: str) -> Any:
    if ptype == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- parameters -----------------------------------------------------------------------------

def convert_value(name: str, ptype: str, text: str) -> Any:
    """The typed value of ``--param name=text`` for a parameter declared as ``ptype``."""
    def bad(expected: str):
        return SubmitError(f"--param {name}", f"expected {expected} ({ptype}), got {text!r}")

    if ptype == "STRING":
        return text
    if ptype == "NUMBER_INTEGER":
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if ptype == "NUMBER_DOUBLE":
        try:
            value = float(text)
        except ValueError:
            raise bad("a number") from None
        if not math.isfinite(value):  # not representable in the JSON request
            raise bad("a finite number")
        return value
    if ptype == "BOOLEAN":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise bad("true or false")
    if ptype in ("LIST", "STRUCT"):
        kind = list if ptype == "LIST" else dict
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, kind):
            raise bad("a JSON array" if kind is list else "a JSON object")
        return value
    raise SubmitError(f"--param {name}", f"a {ptype} parameter cannot be set from the command line")


def parse_params(pairs: Sequence[str], declared: Mapping[str, dict]) -> dict:
    """``["k=v", ...]`` -> ``{k: typed v}``; each k must be declared and given once."""
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SubmitError("--param", f"expected NAME=VALUE, got {pair!r}")
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise SubmitError(f"--param {name}",
                              f"not a parameter of the pipeline; declared: {known}")
        if name in values:
            raise SubmitError(f"--param {name}", "given more than once")
        values[name] = convert_value(name, declared[name]["parameterType"], text)
    return values


def run_parameters(package: Package, pairs: Sequence[str]) -> dict:
    """The ``runtime_config.parameters`` to send: compile-time values overridden by ``--param``.

    A declared parameter with no value, no ``defaultValue`` and not ``isOptional`` would fail
    the run on the cluster, so it is reported here instead.
    """
    declared = package.parameters
    values = {**{k: v for k, v in package.compiled_values.items() if k in declared},
              **parse_params(pairs, declared)}
    missing = sorted(name for name, p in declared.items()
                     if name not in values and "defaultValue" not in p
                     and not p.get("isOptional"))
    if missing:
        raise SubmitError("--param", f"{', '.join(missing)} must be set: declared by "
                                     f"{package.path} without a default")
    return values


# --- schedule, names, links -----------------------------------------------------------------

def kfp_cron(text: str) -> str:
    """A 5-field cron (minute first) or KFP's 6-field one (seconds first) -> the 6-field form."""
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
        raise SubmitError("--recurring", "expected a cron schedule of 5 fields (minute hour "
                                         "day-of-month month day-of-week) or 6 (seconds "
                                         f"first), got {text!r}")
    return " ".join(fields)


def check_max_concurrency(value: int | None, recurring: bool) -> int | None:
    if value is None:
        return None
    if not recurring:
        raise SubmitError("--max-concurrency", "only applies with --recurring")
    low, high = MAX_CONCURRENCY
    if not low <= value <= high:
        raise SubmitError("--max-concurrency", f"expected {low} to {high} (the KFP API's "
                                               f"limit), got {value}")
    return value


def check_name(flag: str, name: str) -> str:
    if not name or name.isspace():
        raise SubmitError(flag, "must not be empty")
    return name


def default_run_name(package: Package, now: datetime.datetime | None = None) -> str:
    """``<pipeline name> <timestamp>``, as kfp's ``create_run_from_pipeline_package`` names runs."""
    return f"{package.name} {(now or datetime.datetime.now()):%Y-%m-%d %H-%M-%S}"


def ui_base(host: str | None, environ: Mapping[str, str]) -> str:
    """The KFP UI's base URL by kfp.Client's rule: KF_PIPELINES_UI_ENDPOINT, else the host;
    with neither, the in-cluster relative ``/pipeline``."""
    ui = environ.get(UI_ENDPOINT_ENV) or host
    if not ui:
        return "/pipeline"
    if not ui.startswith(("http://", "https://")):
        ui = "http://" + ui
    return ui.rstrip("/")


def ui_url(base: str, kind: str, id_: str) -> str:
    return f"{base}{UI_ROUTES[kind]}{id_}"


# --- the kfp client -------------------------------------------------------------------------

def auth_kwargs(environ: Mapping[str, str], host: str | None) -> dict:
    """``kfp.Client`` keyword arguments for the credentials this module adds (see above)."""
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return {"existing_token": token}
    path = environ.get(SA_TOKEN_ENV)
    if path and not os.path.isfile(path):
        raise SubmitError(SA_TOKEN_ENV, f"no token file at {path}")
    # Without a host kfp.Client uses the default token file by itself (in-cluster).
    if path or (host and os.path.isfile(SA_TOKEN_DEFAULT_PATH)):
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials
        return {"credentials": ServiceAccountTokenVolumeCredentials(path or SA_TOKEN_DEFAULT_PATH)}
    return {}


def make_client(host: str | None, environ: Mapping[str, str] = os.environ):
    """A ``kfp.Client``; it calls the API's healthz unless a namespace is in its context file."""
    import kfp

    kwargs = auth_kwargs(environ, host)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This client only works", category=FutureWarning)
        return kfp.Client(host=host, **kwargs)


@contextlib.contextmanager
def _spec_file(package: Package) -> Iterator[str]:
    """A path kfp.Client can read: the package itself if YAML, else a temporary YAML copy."""
    if package.path.endswith(_YAML_SUFFIXES):
        yield package.path
        return
    with tempfile.TemporaryDirectory(prefix="tfx-mtl-submit-") as tmp:
        path = os.path.join(tmp, "pipeline.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump_all([package.spec, *package.platform_specs], f, sort_keys=False)
        yield path


def submit(client, sub: Submission) -> Submitted:
    """Gets or creates the experiment, then creates the run or recurring run.

    REST calls (v2beta1): GET experiments?filter=<display_name>, POST experiments if absent,
    then POST runs or POST recurringruns. kfp's own "details" links are not printed.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        experiment = client.create_experiment(name=sub.experiment, namespace=sub.namespace)
        with _spec_file(sub.package) as path:
            if sub.cron:
                kwargs = {} if sub.max_concurrency is None else {
                    "max_concurrency": sub.max_concurrency}
                made = client.create_recurring_run(
                    experiment_id=experiment.experiment_id, job_name=sub.run_name,
                    cron_expression=sub.cron, params=sub.parameters,
                    pipeline_package_path=path, pipeline_root=sub.pipeline_root, **kwargs)
                return Submitted("recurring run", made.recurring_run_id, experiment.experiment_id)
            made = client.run_pipeline(
                experiment_id=experiment.experiment_id, job_name=sub.run_name,
                pipeline_package_path=path, params=sub.parameters,
                pipeline_root=sub.pipeline_root)
            return Submitted("run", made.run_id, experiment.experiment_id)


def api_error_message(body: Any, reason: str | None) -> str:
    """The server's message from an error response body (grpc-gateway JSON or plain text)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("message", "error", "error_message"):
                if data.get(key):
                    return str(data[key])
        return str(body).strip()[:500]
    return reason or "no message"
