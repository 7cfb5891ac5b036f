"""``tfx-mtl submit`` against a LOCAL HTTP LISTENER, with the real ``kfp.Client``.

No kfp code is mocked: the submit command builds its requests through kfp 2.17's own client
(``kfp.Client`` -> ``kfp_server_api`` -> urllib3), and a ``ThreadingHTTPServer`` on
127.0.0.1 (port 0) that implements just enough of the KFP v2beta1 REST API (healthz,
experiments list/create, runs create, recurringruns create) records every request: method,
path, query, headers and JSON body. The only kfp attribute touched is the location of its
per-user context file (``Client._LOCAL_KFP_CONTEXT``), pointed into tmp so a developer's
``~/.config/kfp/context.json`` (saved cookies, namespace) cannot leak into the tests.

The packages are real: a tiny TFX pipeline (CsvExampleGen whose input_base is the
``data_root`` RuntimeParameter, StatisticsGen, and a function component taking int / float /
str RuntimeParameters) compiled by ``KubeflowV2DagRunner`` into .json and .yaml.
"""
from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tfx_mtl import cli
from tfx_mtl.kubeflow import submit

API = "/apis/v2beta1"
TOKEN = "tok-3f9a1c-secret"  # a credential: must show up in the header and nowhere else
ALL_PARAMS = ["--param", "data_root=gs://bucket/data", "--param", "train_steps=250",
              "--param", "learning_rate=0.05", "--param", "architecture=mmoe"]


# --- the listener ---------------------------------------------------------------------------

class FakeKfp:
    """A KFP v2beta1 API stand-in that records every request and hands out ids."""

    def __init__(self, experiments=None, fail=None):
        self.requests = []
        self.experiments = dict(experiments or {})  # display_name -> experiment_id
        self.fail = dict(fail or {})  # (method, path) -> (status, body dict)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def posts(self, path):
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == API + path]

    def _respond(self, method, path, query, body):
        if (method, path) in self.fail:
            return self.fail[(method, path)]
        if method == "GET" and path == API + "/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and path == API + "/experiments":
            wanted = json.loads(query["filter"][0])["predicates"][0]["stringValue"]
            found = [{"experiment_id": i, "display_name": n}
                     for n, i in self.experiments.items() if n == wanted]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if method == "POST" and path == API + "/experiments":
            new_id = f"exp-{len(self.experiments) + 1}"
            self.experiments[body["display_name"]] = new_id
            return 200, {**body, "experiment_id": new_id}
        if method == "POST" and path == API + "/runs":
            return 200, {"run_id": f"run-{len(self.posts('/runs'))}",
                         "display_name": body["display_name"],
                         "experiment_id": body["experiment_id"]}
        if method == "POST" and path == API + "/recurringruns":
            return 200, {"recurring_run_id": f"rr-{len(self.posts('/recurringruns'))}",
                         "display_name": body["display_name"],
                         "experiment_id": body["experiment_id"]}
        return 404, {"code": 5, "message": f"no route {method} {path}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method):
                url = urllib.parse.urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                with fake._lock:
                    fake.requests.append({"method": method, "path": url.path,
                                          "query": urllib.parse.parse_qs(url.query),
                                          "headers": {k.lower(): v for k, v in
                                                      self.headers.items()},
                                          "raw": raw.decode(), "body": body})
                    status, reply = fake._respond(method, url.path,
                                                  urllib.parse.parse_qs(url.query), body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def log_message(self, *args):
                pass

        return Handler


# --- packages and the command ---------------------------------------------------------------

def knobs(train_steps, learning_rate, architecture):
    """A component function taking int / float / str parameters (decorated in _compile,
    which TFX only allows for module-level functions)."""
    del train_steps, learning_rate, architecture


def _compile(out_dir, filename, spec_2_1=True, parameter_values=None):
    from tfx import v1 as tfx

    rp = tfx.dsl.experimental.RuntimeParameter
    parameter = tfx.dsl.components.Parameter
    # Typed here so that importing this module does not import tfx (slow).
    knobs.__annotations__ = {"train_steps": parameter[int], "learning_rate": parameter[float],
                             "architecture": parameter[str]}
    Knobs = tfx.dsl.components.component(knobs)

    example_gen = tfx.components.CsvExampleGen(
        input_base=rp(name="data_root", ptype=str, default="gs://b/d"))
    stats = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    knob_node = Knobs(train_steps=rp(name="train_steps", ptype=int, default=100),
                  learning_rate=rp(name="learning_rate", ptype=float, default=0.1),
                  architecture=rp(name="architecture", ptype=str, default="shared_bottom"))
    pipeline = tfx.dsl.Pipeline(pipeline_name="tiny-mtl", pipeline_root="gs://b/root",
                                components=[example_gen, stats, knob_node])
    config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
        default_image="img:1", use_pipeline_spec_2_1=spec_2_1)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=config, output_dir=str(out_dir), output_filename=filename,
    ).run(pipeline, parameter_values=parameter_values)
    return out_dir / filename


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    out = tmp_path_factory.mktemp("packages")
    return {"yaml": _compile(out, "pipeline.yaml"),
            "json": _compile(out, "pipeline.json"),
            # compile-time values: only the JSON form (a PipelineJob) keeps them
            "json_values": _compile(out, "values.json",
                                    parameter_values={"data_root": "gs://b/compiled",
                                                      "train_steps": 7}),
            "spec_2_0": _compile(out, "old.json", spec_2_1=False)}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    import kfp.client.client as kfp_client_module

    for name in (submit.TOKEN_ENV, submit.SA_TOKEN_ENV, submit.UI_ENDPOINT_ENV,
                 submit.ENDPOINT_ENV, "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
                 "KF_PIPELINES_APP_OAUTH2_CLIENT_ID", "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp_client_module.Client, "_LOCAL_KFP_CONTEXT",
                        str(tmp_path / "kfp-context.json"))


def tfx_mtl_submit(*argv):
    """Runs `tfx-mtl submit ARGV`: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["submit", *map(str, argv)])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def spec_of(path):
    """The PipelineSpec dict as written in the package."""
    text = path.read_text()
    return json.loads(text)["pipelineSpec"] if path.suffix == ".json" else yaml.safe_load(text)


# --- runs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["yaml", "json"])
def test_run_posts_spec_typed_params_experiment_and_name(packages, kind):
    with FakeKfp(experiments={"nightly": "exp-seeded"}) as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages[kind],
                                        "--experiment", "nightly", "--run-name", "try 1",
                                        *ALL_PARAMS)
    assert code == 0, err
    assert not kfp_api.posts("/experiments")  # "nightly" exists: its id is reused
    (run,) = kfp_api.posts("/runs")
    body = run["body"]
    assert body["pipeline_spec"] == spec_of(packages[kind])
    assert body["runtime_config"]["parameters"] == {
        "data_root": "gs://bucket/data", "train_steps": 250, "learning_rate": 0.05,
        "architecture": "mmoe"}
    assert type(body["runtime_config"]["parameters"]["train_steps"]) is int
    assert body["experiment_id"] == "exp-seeded"
    assert body["display_name"] == "try 1"
    # TFX's JSON carries the pipeline root in runtimeConfig; the YAML form has none.
    assert body["runtime_config"].get("pipeline_root") == ("gs://b/root" if kind == "json"
                                                           else None)
    assert "run id: run-1" in out
    assert f"run details: {kfp_api.host}/#/runs/details/run-1" in out


def test_run_creates_default_experiment_and_keeps_compiled_values(packages):
    with FakeKfp() as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host + "/", "--package",
                                        packages["json_values"], "--namespace", "team-a",
                                        "--param", "train_steps=9",
                                        "--param", "learning_rate=1e-3",
                                        "--param", "architecture=ple")
    assert code == 0, err
    (created,) = kfp_api.posts("/experiments")
    assert created["body"]["display_name"] == "tfx-mtl"
    assert created["body"]["namespace"] == "team-a"
    lookup = [r for r in kfp_api.requests if r["method"] == "GET"
              and r["path"] == API + "/experiments"]
    assert lookup[0]["query"]["namespace"] == ["team-a"]
    (run,) = kfp_api.posts("/runs")
    assert run["body"]["experiment_id"] == "exp-1"
    assert run["body"]["runtime_config"]["parameters"] == {
        "data_root": "gs://b/compiled", "train_steps": 9, "learning_rate": 0.001,
        "architecture": "ple"}
    assert run["body"]["display_name"].startswith("tiny-mtl ")
    assert f"{kfp_api.host}/#/runs/details/run-1" in out  # no doubled slash


def test_recurring_run(packages):
    with FakeKfp() as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["yaml"],
                                        "--recurring", "30 2 * * 1-5", "--max-concurrency", 3,
                                        "--run-name", "weekdays", *ALL_PARAMS)
    assert code == 0, err
    assert not kfp_api.posts("/runs")
    (rr,) = kfp_api.posts("/recurringruns")
    body = rr["body"]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * 1-5"}}
    assert body["max_concurrency"] == 3
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "weekdays"
    assert body["experiment_id"] == "exp-1"
    assert body["pipeline_spec"] == spec_of(packages["yaml"])
    assert body["runtime_config"]["parameters"]["train_steps"] == 250
    assert body["runtime_config"]["parameters"]["learning_rate"] == 0.05
    assert "recurring run id: rr-1" in out
    assert f"recurring run details: {kfp_api.host}/#/recurringrun/details/rr-1" in out


def test_recurring_six_field_cron_kept(packages):
    with FakeKfp() as kfp_api:
        code, _, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["json"],
                                      "--recurring", "15 0 3 * * ?", *ALL_PARAMS)
    assert code == 0, err
    (rr,) = kfp_api.posts("/recurringruns")
    assert rr["body"]["trigger"]["cron_schedule"]["cron"] == "15 0 3 * * ?"
    assert rr["body"]["max_concurrency"] == 1  # kfp's default


# --- credentials ----------------------------------------------------------------------------

def test_bearer_token_only_in_authorization_header(packages, monkeypatch):
    monkeypatch.setenv(submit.TOKEN_ENV, TOKEN)
    before = packages["json"].read_bytes()
    with FakeKfp() as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["json"],
                                        *ALL_PARAMS)
    assert code == 0, err
    assert {r["path"] for r in kfp_api.requests} >= {API + "/healthz", API + "/experiments",
                                                     API + "/runs"}
    for request in kfp_api.requests:
        assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in request["raw"]
        assert TOKEN not in request["path"] + json.dumps(request["query"])
    assert TOKEN not in out + err
    assert packages["json"].read_bytes() == before


def test_token_file_from_kf_pipelines_sa_token_path(packages, monkeypatch, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv(submit.SA_TOKEN_ENV, str(token_file))
    with FakeKfp() as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["yaml"],
                                        *ALL_PARAMS)
    assert code == 0, err
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in kfp_api.requests)
    assert TOKEN not in out + err


def test_no_credentials_no_authorization_header(packages):
    with FakeKfp() as kfp_api:
        code, _, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["yaml"],
                                      *ALL_PARAMS)
    assert code == 0, err
    assert all("authorization" not in r["headers"] for r in kfp_api.requests)


# --- bad input: exit 2, named, nothing sent --------------------------------------------------

def params(**values):
    """--param flags: ALL_PARAMS with ``values`` replacing (or adding) some."""
    merged = {**dict(a.split("=", 1) for a in ALL_PARAMS[1::2]), **values}
    return [x for name, value in merged.items() for x in ("--param", f"{name}={value}")]


BAD_INPUT = {
    "undeclared param": (params(epochs=3),
                         ["--param epochs", "architecture, data_root, learning_rate, "
                                            "train_steps"]),
    "bad int": (params(train_steps=2.5), ["--param train_steps", "NUMBER_INTEGER", "'2.5'"]),
    "bad double": (params(learning_rate="fast"), ["--param learning_rate", "NUMBER_DOUBLE"]),
    # Values the Trainer would refuse are refused before the run (KFP checks only types).
    "unknown architecture": (params(architecture="transformer"),
                             ["--param architecture", "'transformer' is not one of "
                                                      "shared_bottom, mmoe, ple, cross_stitch"]),
    "zero steps": (params(train_steps=0), ["--param train_steps", "positive integer, got 0"]),
    "duplicate param": ([*ALL_PARAMS, "--param", "architecture=mmoe"],
                        ["--param architecture", "more than once"]),
    "no equals": ([*ALL_PARAMS, "--param", "train_steps"], ["--param", "NAME=VALUE"]),
    "bad cron": ([*ALL_PARAMS, "--recurring", "*/5 * * *"], ["--recurring", "'*/5 * * *'"]),
    "cron junk": ([*ALL_PARAMS, "--recurring", "0 0 * * * ; rm"], ["--recurring"]),
    "concurrency without recurring": ([*ALL_PARAMS, "--max-concurrency", "2"],
                                      ["--max-concurrency", "only applies with --recurring"]),
    "concurrency too high": ([*ALL_PARAMS, "--recurring", "0 * * * *", "--max-concurrency", "11"],
                             ["--max-concurrency", "1 to 10"]),
    "concurrency zero": ([*ALL_PARAMS, "--recurring", "0 * * * *", "--max-concurrency", "0"],
                         ["--max-concurrency"]),
    "empty run name": ([*ALL_PARAMS, "--run-name", " "], ["--run-name"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_exits_2_and_sends_nothing(packages, case):
    argv, expected = BAD_INPUT[case]
    with FakeKfp() as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["yaml"],
                                        *argv)
    assert code == 2
    for text in expected:
        assert text in err
    assert kfp_api.requests == []
    assert "Traceback" not in err and out == ""


def test_missing_param_without_default_is_named(packages):
    with FakeKfp() as kfp_api:
        code, _, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["yaml"],
                                      "--param", "data_root=gs://x")
    assert code == 2
    assert "architecture, learning_rate, train_steps must be set" in err
    assert kfp_api.requests == []


@pytest.mark.parametrize("which", ["missing", "argo", "not yaml", "spec 2.0"])
def test_bad_package_exits_2_naming_the_file(packages, tmp_path, which):
    path = {"missing": tmp_path / "nope.yaml",
            "argo": tmp_path / "argo.yaml",
            "not yaml": tmp_path / "junk.yaml",
            "spec 2.0": packages["spec_2_0"]}[which]
    if which == "argo":
        path.write_text("apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n")
    if which == "not yaml":
        path.write_text("root: [unclosed\n")
    with FakeKfp() as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host, "--package", path,
                                        "--param", "data_root=gs://x")
    assert code == 2
    assert str(path) in err
    if which == "spec 2.0":
        assert "use_pipeline_spec_2_1=True" in err
    assert kfp_api.requests == []


# --- API errors -----------------------------------------------------------------------------

def test_api_error_on_run_create_exits_1_with_status_and_message(packages):
    error = {"error": "internal", "code": 13, "message": "database is unavailable"}
    with FakeKfp(fail={("POST", API + "/runs"): (500, error)}) as kfp_api:
        code, out, err = tfx_mtl_submit("--host", kfp_api.host, "--package", packages["yaml"],
                                        *ALL_PARAMS)
    assert code == 1
    assert "HTTP 500" in err and "database is unavailable" in err
    assert "Traceback" not in err
    assert len(kfp_api.posts("/runs")) == 1


def test_unreachable_host_exits_1(packages):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = tfx_mtl_submit("--host", f"http://127.0.0.1:{port}", "--package",
                                  packages["yaml"], *ALL_PARAMS)
    assert code == 1
    assert f"127.0.0.1:{port}" in err and "Traceback" not in err


# --- pure functions -------------------------------------------------------------------------

@pytest.mark.parametrize("ptype,text,value", [
    ("STRING", "a=b c", "a=b c"), ("NUMBER_INTEGER", "-3", -3), ("NUMBER_DOUBLE", "2", 2.0),
    ("BOOLEAN", "True", True), ("BOOLEAN", "false", False), ("LIST", "[1, \"x\"]", [1, "x"]),
    ("STRUCT", "{\"k\": {\"n\": 1}}", {"k": {"n": 1}}),
])
def test_convert_value(ptype, text, value):
    converted = submit.convert_value("p", ptype, text)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize("ptype,text", [
    ("NUMBER_INTEGER", "1.0"), ("NUMBER_INTEGER", ""), ("NUMBER_DOUBLE", "nan"),
    ("NUMBER_DOUBLE", "inf"), ("BOOLEAN", "yes"), ("BOOLEAN", "1"), ("LIST", "{}"),
    ("LIST", "a,b"), ("STRUCT", "[]"), ("TASK_FINAL_STATUS", "x"),
])
def test_convert_value_rejects(ptype, text):
    with pytest.raises(submit.SubmitError) as e:
        submit.convert_value("p", ptype, text)
    assert e.value.field == "--param p" and ptype in e.value.message


def test_parse_params_splits_on_first_equals():
    declared = {"q": {"parameterType": "STRING"}}
    assert submit.parse_params(["q=a=b"], declared) == {"q": "a=b"}
    assert submit.parse_params(["q="], declared) == {"q": ""}


@pytest.mark.parametrize("text,cron", [
    ("0 3 * * *", "0 0 3 * * *"), ("  */15 * * * MON-FRI ", "0 */15 * * * MON-FRI"),
    ("5 0 3 * * ?", "5 0 3 * * ?"), ("0 0 12 1W * *", "0 0 12 1W * *"),
])
def test_kfp_cron(text, cron):
    assert submit.kfp_cron(text) == cron


@pytest.mark.parametrize("text", ["", "* * * *", "0 0 0 * * * *", "@daily", "0 3 * * $"])
def test_kfp_cron_rejects(text):
    with pytest.raises(submit.SubmitError, match="--recurring"):
        submit.kfp_cron(text)


def test_ui_base_follows_kfp_client_rule():
    assert submit.ui_base("https://kfp.example/", {}) == "https://kfp.example"
    assert submit.ui_base("kfp.example:8080", {}) == "http://kfp.example:8080"
    assert submit.ui_base("http://api", {submit.UI_ENDPOINT_ENV: "https://ui"}) == "https://ui"
    assert submit.ui_base(None, {}) == "/pipeline"
    assert (submit.ui_url("https://u", "recurring run", "r1")
            == "https://u/#/recurringrun/details/r1")


def test_load_package_json_keeps_compile_time_values_typed(packages):
    package = submit.load_package(str(packages["json_values"]))
    assert package.compiled_values == {"data_root": "gs://b/compiled", "train_steps": 7}
    assert type(package.compiled_values["train_steps"]) is int
    assert package.pipeline_root == "gs://b/root"
    assert package.name == "tiny-mtl"
    assert package.parameters["train_steps"]["parameterType"] == "NUMBER_INTEGER"


def test_auth_kwargs(tmp_path):
    assert submit.auth_kwargs({submit.TOKEN_ENV: " t0k \n"}, "http://h") == {
        "existing_token": "t0k"}
    with pytest.raises(submit.SubmitError, match=submit.SA_TOKEN_ENV):
        submit.auth_kwargs({submit.SA_TOKEN_ENV: str(tmp_path / "absent")}, "http://h")
