"""The TF Serving Kubernetes manifests in kubeflow/serving/ hang together.

No cluster and no TF Serving binary here: these checks parse every file with the
parsers the real consumers use (YAML for kubectl, the ModelServerConfig proto from
tensorflow-serving-api for tensorflow_model_server) and check that the pieces
reference each other consistently.
"""
import os
import posixpath
import re

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SERVING = os.path.join(ROOT, "kubeflow", "serving")
YAML_FILES = ("configmap.yaml", "deployment.yaml", "service.yaml", "kustomization.yaml")
# The bundled spec's pipeline name (naming.pipeline_name: "tfx-mtl-" + spec name, "_" -> "-").
MODEL_NAME = "tfx-mtl-chicago-taxi"
GRPC_PORT, REST_PORT = 8500, 8501


def _docs(name):
    with open(os.path.join(SERVING, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _one(name, kind):
    docs = [d for d in _docs(name) if d.get("kind") == kind]
    assert len(docs) == 1, f"{name}: expected one {kind}, found {len(docs)}"
    return docs[0]


def _parse_config(text):
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


@pytest.fixture(scope="module")
def config_text():
    with open(os.path.join(SERVING, "models.config")) as f:
        return f.read()


@pytest.fixture(scope="module")
def deployment():
    return _one("deployment.yaml", "Deployment")


@pytest.fixture(scope="module")
def container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _flags(container):
    flags = {}
    for arg in container["args"]:
        match = re.fullmatch(r"--([a-z_]+)=(.*)", arg)
        assert match, f"arg {arg!r} is not --flag=value"
        flags[match.group(1)] = match.group(2)
    return flags


@pytest.mark.parametrize("name", YAML_FILES)
def test_every_yaml_file_parses_into_objects_with_kind(name):
    docs = _docs(name)
    assert docs
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), name


def test_kustomization_lists_every_manifest():
    kustomization = _one("kustomization.yaml", "Kustomization")
    assert sorted(kustomization["resources"]) == sorted(
        n for n in YAML_FILES if n != "kustomization.yaml")


def test_models_config_is_a_model_server_config_naming_the_pipeline(config_text):
    config = _parse_config(config_text)
    (model,) = config.model_config_list.config
    assert model.name == MODEL_NAME
    assert model.model_platform == "tensorflow"
    assert posixpath.isabs(model.base_path)
    assert posixpath.basename(model.base_path.rstrip("/")) == MODEL_NAME
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"


def test_configmap_holds_the_same_config(config_text):
    configmap = _one("configmap.yaml", "ConfigMap")
    assert _parse_config(configmap["data"]["models.config"]) == _parse_config(config_text)
    assert configmap["data"]["models.config"] == config_text


def test_image_is_the_official_one_pinned_to_a_version(container):
    image, _, tag = container["image"].partition(":")
    assert image == "tensorflow/serving"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"image tag {tag!r} is not a pinned version"


def test_ports_and_flags(container):
    flags = _flags(container)
    assert flags["port"] == str(GRPC_PORT) and flags["rest_api_port"] == str(REST_PORT)
    assert int(flags["file_system_poll_wait_seconds"]) > 0
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "http": REST_PORT}


def test_config_file_flag_points_into_the_configmap_mount(deployment, container):
    config_path = _flags(container)["model_config_file"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    configmap = _one("configmap.yaml", "ConfigMap")
    matching = [m for m in mounts.values()
                if posixpath.dirname(config_path) == m["mountPath"].rstrip("/")]
    assert len(matching) == 1, f"no volume mounted at {posixpath.dirname(config_path)}"
    volume = volumes[matching[0]["name"]]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    # A ConfigMap volume holds one file per data key.
    assert posixpath.basename(config_path) in configmap["data"]


def test_base_path_lies_in_the_model_volume(deployment, container, config_text):
    (model,) = _parse_config(config_text).model_config_list.config
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    holding = [m for m in container["volumeMounts"]
               if model.base_path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(holding) == 1, f"base_path {model.base_path} is in no mounted volume"
    assert holding[0].get("readOnly") is True
    volume = volumes[holding[0]["name"]]
    assert "persistentVolumeClaim" in volume and "configMap" not in volume
    # The pushed layout: <mount>/<pipeline name>/<version>/saved_model.pb.
    assert posixpath.relpath(model.base_path, holding[0]["mountPath"]) == model.name


def test_readiness_probe_asks_for_the_model_status_on_the_rest_port(container, config_text):
    (model,) = _parse_config(config_text).model_config_list.config
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == f"/v1/models/{model.name}"
    assert probe["port"] in (REST_PORT, "http")
    assert container["livenessProbe"]


def test_resources_are_requested_and_limited(container):
    resources = container["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"}
    assert set(resources["limits"]) >= {"cpu", "memory"}


def test_service_selects_the_pods_and_exposes_both_ports(deployment):
    service = _one("service.yaml", "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector and all(pod_labels.get(k) == v for k, v in selector.items())
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {n: p["port"] for n, p in ports.items()} == {"grpc": GRPC_PORT, "http": REST_PORT}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container_ports = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports


def test_model_name_is_the_bundled_pipeline_name():
    from tfx_mtl import naming, task_spec

    spec = task_spec.load(os.path.join(ROOT, "schemas", "chicago_taxi", "tasks.yaml"))
    assert naming.pipeline_name(spec.name) == MODEL_NAME
