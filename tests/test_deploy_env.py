"""The MOCHI_* variables the manifests set are settings the services read.

Each service reads one settings Struct; its fields are the only variables it
looks at. A variable set in a manifest but read by no field is a typo or a
renamed setting, which would deploy and silently fall back to a default, so
it fails here. The settings that have no safe default in a cluster must be
set, and every value must load into the settings class."""

from __future__ import annotations

import json
import re

import msgspec
import pytest

from mochi_api.settings import ApiSettings
from mochi_catalog.settings import CatalogSettings
from mochi_common.settings import PREFIX, env_names, load_settings
from mochi_runner.settings import RunnerSettings
from mochi_webhooks.settings import WebhooksSettings
from test_deploy_support import OVERLAYS, REPO, objects, one, service_containers

SETTINGS: dict[str, type[msgspec.Struct]] = {
    "api": ApiSettings,
    "catalog": CatalogSettings,
    "runner": RunnerSettings,
    "webhooks": WebhooksSettings,
}

# Fields whose defaults suit one laptop, not a cluster; a manifest must set them.
MUST_SET = {
    "api": {"nats_url", "host", "port", "store_url", "jetstream_replicas", "api_keys_file", "web_dir"},
    "catalog": {"nats_url", "db_path", "jetstream_replicas", "health_port"},
    "runner": {"nats_url", "model_dir", "store_url", "jetstream_replicas", "health_port", "runner_id"},
    "webhooks": {"nats_url", "jetstream_replicas", "health_port", "webhook_secret"},
}

# An s3:// video store has no usable defaults for where and who.
MUST_SET_FOR_S3 = {"s3_endpoint", "s3_access_key", "s3_secret_key"}
MINIO = "http://minio:9000"


def must_set(service: str, env: dict[str, dict]) -> set[str]:
    store = env.get("MOCHI_STORE_URL", {}).get("value", "")
    return MUST_SET[service] | (MUST_SET_FOR_S3 if store.startswith("s3://") else set())


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _containers(overlay: str) -> list[tuple[str, dict]]:
    found = [(service, c) for service, _, c in service_containers(overlay)]
    assert sorted({s for s, _ in found}) == sorted(SETTINGS), f"{overlay}: {found}"
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifest_variables_are_settings(overlay: str) -> None:
    for service, container in _containers(overlay):
        cls = SETTINGS[service]
        env = _env(container)
        mochi = {n for n in env if n.startswith(PREFIX)}
        unknown = mochi - env_names(cls)
        assert not unknown, f"{overlay}/{service}: {sorted(unknown)} are not fields of {cls.__name__}"
        missing = {PREFIX + f.upper() for f in must_set(service, env)} - mochi
        assert not missing, f"{overlay}/{service}: must set {sorted(missing)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_other_variables_only_feed_settings(overlay: str) -> None:
    # A non-MOCHI variable is allowed only as a secret spliced into a setting
    # with $(NAME), e.g. the NATS password in MOCHI_NATS_URL.
    for service, container in _containers(overlay):
        env = _env(container)
        used = {ref for n, e in env.items() if n.startswith(PREFIX)
                for ref in _REF.findall(str(e.get("value", "")))}
        for name, e in env.items():
            if name.startswith(PREFIX):
                continue
            assert "secretKeyRef" in e.get("valueFrom", {}), f"{overlay}/{service}: {name}"
            assert name in used, f"{overlay}/{service}: {name} is set but no setting uses it"
        names = list(env)
        for ref in used:
            # Kubernetes expands $(NAME) only from variables defined earlier.
            assert ref in env, f"{overlay}/{service}: $({ref}) is not defined"
            user = next(n for n in names if f"$({ref})" in str(env[n].get("value", "")))
            assert names.index(ref) < names.index(user), f"{overlay}/{service}: {ref} after {user}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_values_load_into_the_settings(overlay: str) -> None:
    for service, container in _containers(overlay):
        environ = {}
        for name, e in _env(container).items():
            value = e.get("value")
            if value is None:  # from a Secret or the downward API
                value = "from-the-cluster"
            environ[name] = _REF.sub("secret", value)
        settings = load_settings(SETTINGS[service], environ)
        for field in must_set(service, _env(container)):
            assert getattr(settings, field) is not None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_agree_with_the_rest_of_the_manifests(overlay: str) -> None:
    nats_replicas = one(overlay, "StatefulSet", "nats")["spec"]["replicas"]
    for service, container in _containers(overlay):
        env = {n: e.get("value") for n, e in _env(container).items()}
        assert int(env["MOCHI_JETSTREAM_REPLICAS"]) == nats_replicas == 3
        assert env["MOCHI_NATS_URL"].startswith(f"nats://{service}:")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        port_var = "MOCHI_PORT" if service == "api" else "MOCHI_HEALTH_PORT"
        port_name = "http" if service == "api" else "health"
        assert int(env[port_var]) == ports[port_name], f"{overlay}/{service}"
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in (port_name, ports[port_name])
        if service == "runner":
            model_dir = env["MOCHI_MODEL_DIR"]
            mounts = [m["mountPath"] for m in container["volumeMounts"]]
            assert any(model_dir.startswith(m + "/") for m in mounts), model_dir
            spec = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]
            for init in spec.get("initContainers", []):
                # The wait for the weights Job must wait for the model the runner loads.
                assert f"{model_dir}/model_index.json" in " ".join(init["command"]), init["name"]
        if env.get("MOCHI_STORE_URL", "").startswith("file://"):
            path = env["MOCHI_STORE_URL"].removeprefix("file://")
            mounts = [m["mountPath"] for m in container["volumeMounts"]]
            assert path in mounts, f"{overlay}/{service}: the video store is not a mounted volume"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_video_store_is_the_deployed_minio(overlay: str) -> None:
    bucket_job = one(overlay, "Job", "minio-create-bucket")["spec"]["template"]["spec"]["containers"][0]
    bucket = next(e["value"] for e in bucket_job["env"] if e["name"] == "BUCKET")
    minio = one(overlay, "Service", "minio")
    (cm,) = [c for c in objects(overlay, "ConfigMap") if c["metadata"]["name"].startswith("minio-bucket")]
    resources = {r for st in json.loads(cm["data"]["videos-policy.json"])["Statement"] for r in st["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}, "the user's policy names another bucket"
    for service, container in _containers(overlay):
        env = _env(container)
        if "MOCHI_STORE_URL" not in env:
            continue
        assert env["MOCHI_STORE_URL"]["value"] == f"s3://{bucket}", f"{overlay}/{service}"
        host, port = env["MOCHI_S3_ENDPOINT"]["value"].removeprefix("http://").split(":")
        assert host == minio["metadata"]["name"] and int(port) in {p["port"] for p in minio["spec"]["ports"]}
        # The bucket-only user the bucket Job creates, never MinIO's root login.
        for var, key in (("MOCHI_S3_ACCESS_KEY", "app-access-key"), ("MOCHI_S3_SECRET_KEY", "app-secret-key")):
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "mochi-minio", "key": key}
    # Presigned download URLs point at the Ingress in front of MinIO.
    if overlay != "dev":
        (api,) = [c for s, _, c in service_containers(overlay) if s == "api"]
        public = _env(api)["MOCHI_S3_PUBLIC_ENDPOINT"]["value"]
        rule = one(overlay, "Ingress", "minio-videos")["spec"]["rules"][0]
        assert public == f"https://{rule['host']}"
        assert rule["http"]["paths"][0]["backend"]["service"]["name"] == minio["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_keys_and_web_app_are_where_the_settings_say(overlay: str) -> None:
    (api,) = [c for s, c in _containers(overlay) if s == "api"]
    env = {n: e.get("value") for n, e in _env(api).items()}
    assert env.get("MOCHI_ALLOW_ANONYMOUS", "false") == "false", "a deployed API always checks keys"
    spec = one(overlay, "Deployment", "mochi-api")["spec"]["template"]["spec"]
    secret_mounts = {m["mountPath"]: v["secret"]["secretName"] for m in api["volumeMounts"]
                     for v in spec["volumes"] if v["name"] == m["name"] and "secret" in v}
    keys_dir, key = env["MOCHI_API_KEYS_FILE"].rsplit("/", 1)
    assert secret_mounts.get(keys_dir) == "mochi-api-keys" and key == "keys"
    dockerfile = (REPO / "deploy" / "docker" / "api.Dockerfile").read_text()
    assert re.search(rf"^COPY web {re.escape(env['MOCHI_WEB_DIR'])}$", dockerfile, re.M)


def test_dev_builds_the_tiny_model() -> None:
    (c,) = one("dev", "Deployment", "mochi-runner")["spec"]["template"]["spec"]["containers"]
    env = {n: e.get("value") for n, e in _env(c).items()}
    assert env["MOCHI_BUILD_TINY_MODEL"] == "true"
    assert env["MOCHI_DEVICE"] == "cpu"
