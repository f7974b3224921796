"""Policy over the rendered manifests: what every workload must carry to be
safe to run, and the shape the issue asks of each component."""

from __future__ import annotations

import json
import math
import re
import typing
from pathlib import Path

import pytest
import yaml

from mochi_contracts.streams import RUNNERS_CONSUMER
from test_deploy_support import (
    GPU_OVERLAYS, KUSTOMIZE, ONE_NODE_OVERLAYS, OVERLAYS, WORKLOAD_KINDS, all_containers, objects, one,
    pod_templates, render, selects)

# The one container allowed to start as root: it creates the node directory
# for the weights' hostPath volume and hands it to uid 10001 (see its manifest).
ROOT_ALLOWED = {("DaemonSet", "mochi-weights", "host-dirs")}
GPU = "nvidia.com/gpu"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def _name(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_one_namespace(overlay: str) -> None:
    # An object without a namespace would go wherever kubectl's context points.
    (ns,) = objects(overlay, "Namespace")
    for obj in render(overlay):
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == ns["metadata"]["name"], _name(obj)


# ---- runners ---------------------------------------------------------------

@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_runners_have_two_gpus_each(overlay: str) -> None:
    runner = one(overlay, "Deployment", "mochi-runner")
    (c,) = runner["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["requests"][GPU] == 2
    assert c["resources"]["limits"][GPU] == 2


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_runners_use_every_gpu_they_hold(overlay: str) -> None:
    (c,) = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    devices = [d for d in env["MOCHI_DEVICES"].split(",") if d]
    # Inside the pod its GPUs are numbered from 0, whichever the node gave it.
    assert devices == [f"cuda:{i}" for i in range(c["resources"]["limits"][GPU])]


def test_h100x8_schedules_everything_on_a_tainted_gpu_node() -> None:
    # One node: whatever runs must tolerate the GPU taint some providers set.
    for obj, template in pod_templates("h100x8"):
        tolerations = template["spec"].get("tolerations", [])
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in tolerations, _name(obj)


def test_h100x8_runs_four_runners() -> None:
    assert one("h100x8", "Deployment", "mochi-runner")["spec"]["replicas"] == 4


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_at_least_two_runners(overlay: str) -> None:
    assert one(overlay, "Deployment", "mochi-runner")["spec"]["replicas"] >= 2


def test_dev_runners_need_no_gpu() -> None:
    (c,) = one("dev", "Deployment", "mochi-runner")["spec"]["template"]["spec"]["containers"]
    assert GPU not in c["resources"]["requests"] and GPU not in c["resources"]["limits"]


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_runner_startup_and_shutdown_budgets(overlay: str) -> None:
    spec = one(overlay, "Deployment", "mochi-runner")["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    probe = c["startupProbe"]
    # Loading ~30 GB and warming up takes minutes; give it 15 min or more.
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 15 * 60
    assert probe["httpGet"]["path"] == "/readyz"
    # Time to finish a step (or a decode and upload) and nak the job back.
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 120
    # No spare GPUs on a full node: a rollout must not need a surge pod.
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] == 0


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_runner_liveness_is_the_step_stall_check(overlay: str) -> None:
    (c,) = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]["containers"]
    probe = c["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    stall = float(env["MOCHI_STEP_STALL_S"])
    # Long enough for the slowest honest step, and the probe acts within minutes of it.
    assert 120 <= stall <= 1800
    assert probe["periodSeconds"] * probe["failureThreshold"] <= 300


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_runner_weights_come_from_the_node(overlay: str) -> None:
    spec = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    weights = one(overlay, "DaemonSet", "mochi-weights")["spec"]["template"]["spec"]
    weights_models = next(v for v in weights["volumes"] if v["name"] == "models")
    assert models["hostPath"]["path"] == weights_models["hostPath"]["path"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert mount.get("readOnly") is True
    download = next(c for c in weights["initContainers"] if c["name"] == "download")
    env = {e["name"]: e for e in download["env"]}
    assert env["REPO"]["value"] == "genmo/mochi-1-preview"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mochi-hf-token"


# ---- every workload ----------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_have_probes(overlay: str) -> None:
    for obj, template in pod_templates(overlay, WORKLOAD_KINDS):
        for c in template["spec"]["containers"]:
            assert "livenessProbe" in c and "readinessProbe" in c, f"{_name(obj)}/{c['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for obj, template in pod_templates(overlay):
        for c in all_containers(template["spec"]):
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{_name(obj)}/{c['name']} {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_non_root_and_locked_down(overlay: str) -> None:
    for obj, template in pod_templates(overlay):
        spec = template["spec"]
        where = _name(obj)
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in all_containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            if (obj["kind"], obj["metadata"]["name"], c["name"]) in ROOT_ALLOWED:
                assert set(sc["capabilities"].get("add", [])) <= {"CHOWN", "FOWNER"}
                continue
            assert "add" not in sc["capabilities"], where
            run_as_non_root = sc.get("runAsNonRoot", spec["securityContext"].get("runAsNonRoot"))
            run_as_user = sc.get("runAsUser", spec["securityContext"].get("runAsUser"))
            assert run_as_non_root is True and run_as_user and run_as_user > 0, where


# The one container that talks to the Kubernetes API: it labels its node once
# the node's weights are checked (base/runner/rbac.yaml says why).
TOKEN_ALLOWED = {("DaemonSet", "mochi-weights", "label")}


def _token_mounts(spec: dict) -> dict[str, set[str]]:
    """Container name -> names of mounted volumes that carry an API token."""
    token_volumes = {v["name"] for v in spec.get("volumes", [])
                     if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))}
    return {c["name"]: {m["name"] for m in c.get("volumeMounts", [])} & token_volumes
            for c in all_containers(spec)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_service_account_tokens(overlay: str) -> None:
    for sa in objects(overlay, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False, sa["metadata"]["name"]
    for obj, template in pod_templates(overlay):
        assert template["spec"]["automountServiceAccountToken"] is False, _name(obj)
        for container, tokens in _token_mounts(template["spec"]).items():
            if tokens:
                assert (obj["kind"], obj["metadata"]["name"], container) in TOKEN_ALLOWED, \
                    f"{_name(obj)}/{container} mounts an API token"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_only_grant_is_patching_nodes_for_the_weights_label(overlay: str) -> None:
    assert not objects(overlay, "Role") and not objects(overlay, "RoleBinding")
    roles, bindings = objects(overlay, "ClusterRole"), objects(overlay, "ClusterRoleBinding")
    if overlay == "dev":  # no weights DaemonSet, so nothing to grant
        assert not roles and not bindings
        return
    (role,) = roles
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]}]
    (binding,) = bindings
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    ds = one(overlay, "DaemonSet", "mochi-weights")
    account = ds["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                    "namespace": ds["metadata"]["namespace"]}]
    mounts = _token_mounts(ds["spec"]["template"]["spec"])
    assert {c for c, tokens in mounts.items() if tokens} == {"label"}, "only the labeller holds the token"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o not in ONE_NODE_OVERLAYS])
def test_multi_replica_workloads_have_a_pdb(overlay: str) -> None:
    pdbs = objects(overlay, "PodDisruptionBudget")
    for obj, template in pod_templates(overlay, WORKLOAD_KINDS):
        if obj["spec"].get("replicas", 1) < 2:
            continue
        labels = template["metadata"]["labels"]
        assert any(selects(p["spec"]["selector"], labels) for p in pdbs), _name(obj)


@pytest.mark.parametrize("overlay", ONE_NODE_OVERLAYS)
def test_one_node_overlays_have_no_pdb(overlay: str) -> None:
    # A drain of the one node must take everything; see components/one-node/no-pdbs.yaml.
    assert not objects(overlay, "PodDisruptionBudget")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_unhealthy_pods_never_hold_a_drain(overlay: str) -> None:
    for pdb in objects(overlay, "PodDisruptionBudget"):
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", _name(pdb)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_and_catalog_are_highly_available(overlay: str) -> None:
    assert one(overlay, "Deployment", "mochi-api")["spec"]["replicas"] >= 2
    assert one(overlay, "Deployment", "mochi-catalog")["spec"]["replicas"] >= 2
    hpa = one(overlay, "HorizontalPodAutoscaler", "mochi-api")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mochi-api"}
    assert hpa["minReplicas"] >= 2
    rule = one(overlay, "Ingress", "mochi-api")["spec"]["rules"][0]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "mochi-api"
    assert one(overlay, "StatefulSet", "nats")["spec"]["replicas"] == 3


# ---- images ------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    for obj, template in pod_templates(overlay):
        for c in all_containers(template["spec"]):
            image = c["image"]
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            assert "@sha256:" in image or (tag and tag != "latest"), f"{_name(obj)}: {image}"


def test_tags_are_set_in_one_place() -> None:
    # Manifests name images bare; kustomizations' `images:` tag them, in the
    # base, but for objects added after the base's list has run: the FA4
    # runner of overlays/h100x8 (its own name, tagged there alone) and the
    # scheduler of components/fair-share (tagged exactly as the base tags it).
    base = KUSTOMIZE / "base" / "kustomization.yaml"
    tagged: dict[str, dict[Path, dict]] = {}
    for path in KUSTOMIZE.rglob("kustomization.yaml"):
        for image in yaml.safe_load(path.read_text()).get("images", []):
            if "newTag" in image or "digest" in image:
                tagged.setdefault(image["name"], {})[path] = image
    outside_base = {(n, p.relative_to(KUSTOMIZE).parent.as_posix())
                    for n, paths in tagged.items() for p in paths if p != base}
    assert outside_base == {("mochi-serve-runner-fa4", "overlays/h100x8"), ("mochi-serve", "components/fair-share")}
    assert len(tagged["mochi-serve-runner-fa4"]) == 1
    assert tagged["mochi-serve"][KUSTOMIZE / "components" / "fair-share" / "kustomization.yaml"] == \
        tagged["mochi-serve"][base], "the component's tag drifted from the base's"
    for path in KUSTOMIZE.rglob("*.yaml"):
        text = path.read_text()
        if path.name == "kustomization.yaml":
            continue
        for image in re.findall(r"^\s*image:\s*(\S+)", text, re.M):
            assert ":" not in image and "@" not in image, f"{path}: {image}"


# ---- network -----------------------------------------------------------------

def _policies(overlay: str) -> list[dict]:
    return objects(overlay, "NetworkPolicy")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny_and_a_policy_per_component(overlay: str) -> None:
    pols = _policies(overlay)
    deny = [p for p in pols if p["spec"]["podSelector"] == {}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and "ingress" not in p["spec"] and "egress" not in p["spec"]]
    assert deny, "no default-deny policy"
    for obj, template in pod_templates(overlay):
        labels = template["metadata"]["labels"]
        own = [p for p in pols if p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], labels)]
        assert own, f"{_name(obj)} has no NetworkPolicy of its own"


def _egress_to(overlay: str, labels: dict, target: str, port: int) -> bool:
    for p in _policies(overlay):
        if not selects(p["spec"]["podSelector"], labels):
            continue
        for rule in p["spec"].get("egress", []):
            ports = {x["port"] for x in rule.get("ports", [])}
            peers = rule.get("to")
            if port in ports and (peers is None or any(
                    x.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == target
                    for x in peers)):
                return True
    return False


def _ingress_from(overlay: str, target: str, port: int, labels: dict) -> bool:
    for p in _policies(overlay):
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") != target:
            continue
        for rule in p["spec"].get("ingress", []):
            ports = {x["port"] for x in rule.get("ports", [])}
            peers = rule.get("from")
            if port in ports and (peers is None or any(
                    "podSelector" in x and selects(x["podSelector"], labels) for x in peers)):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clients_can_reach_what_they_use(overlay: str) -> None:
    for obj, template in pod_templates(overlay):
        labels = template["metadata"]["labels"]
        env = " ".join(str(e.get("value", "")) for c in all_containers(template["spec"])
                       for e in c.get("env", []))
        where = _name(obj)
        if "@nats:4222" in env or "nats://nats:4222" in env:
            assert labels.get("mochi-serve/nats-client") == "true", where
            assert _egress_to(overlay, labels, "nats", 4222), where
            assert _ingress_from(overlay, "nats", 4222, labels), where
        if "http://minio:9000" in env:
            assert labels.get("mochi-serve/minio-client") == "true", where
        if labels.get("mochi-serve/minio-client") == "true":
            assert _egress_to(overlay, labels, "minio", 9000), where
            assert _ingress_from(overlay, "minio", 9000, labels), where


# ---- KEDA (a custom resource: no core schema, so its fields are checked here) ---

def _keda_replicas(spec: dict, values: dict[str, float], formula: str | None = None) -> int:
    """The HPA's answer to KEDA's composite metric (AverageValue: desired =
    ceil(metric / target)), clamped to the ScaledObject's bounds. The formula
    is a sum of trigger names, all these manifests use."""
    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["metricType"] == "AverageValue"
    terms = [t.strip() for t in (formula or modifiers["formula"]).split("+")]
    assert all(re.fullmatch(r"[a-z_]+", t) for t in terms), formula
    metric = sum(values[t] for t in terms)
    if metric <= float(modifiers["activationTarget"]):
        return spec["minReplicaCount"]  # not active: KEDA leaves the minimum
    desired = math.ceil(metric / float(modifiers["target"]))
    return max(spec["minReplicaCount"], min(spec["maxReplicaCount"], desired))


def test_keda_scales_runners_on_the_work_that_needs_them() -> None:
    (so,) = objects("keda", "ScaledObject")
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == "mochi-runner"
    one("keda", "Deployment", "mochi-runner")
    assert spec["minReplicaCount"] >= 2 and spec["maxReplicaCount"] >= spec["minReplicaCount"]
    # cooldownPeriod only matters when scaling to zero; above zero it would mislead.
    assert "cooldownPeriod" not in spec or spec["minReplicaCount"] == 0
    # Not nats-jetstream: metrics-api on the catalog's gauges, named for the formula.
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert {t["type"] for t in triggers.values()} == {"metrics-api"}
    from mochi_catalog import metrics
    gauges = {"waiting": (metrics.QUEUE_DEPTH, "num_pending"),
              "held": (metrics.CONSUMER_ACK_PENDING, "num_ack_pending")}
    assert set(triggers) == set(gauges)
    for name, (gauge, field) in gauges.items():
        meta = triggers[name]["metadata"]
        assert all(isinstance(v, str) for v in meta.values())  # KEDA metadata values are strings
        assert meta["format"] == "prometheus"
        assert meta["valueLocation"] == f'{gauge._name}{{consumer="{RUNNERS_CONSUMER}"}}'
        assert field in gauge._documentation
    # The fleet follows the work: eight renders and an empty queue keep eight
    # runners; four renders and three waiting jobs ask for seven; nothing, the minimum.
    assert _keda_replicas(spec, {"waiting": 0, "held": 8}) == 8
    assert _keda_replicas(spec, {"waiting": 3, "held": 4}) == 7
    assert _keda_replicas(spec, {"waiting": 0, "held": 0}) == spec["minReplicaCount"]
    assert _keda_replicas(spec, {"waiting": 30, "held": 8}) == spec["maxReplicaCount"]
    # The model can fail: on the waiting jobs alone a busy fleet would shrink to the minimum.
    assert _keda_replicas(spec, {"waiting": 0, "held": 8}, formula="waiting") == spec["minReplicaCount"]
    # The URL reaches a catalog replica's health port through a Service.
    for meta in (t["metadata"] for t in triggers.values()):
        host, port = meta["url"].removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
        name, namespace = host.split(".")[:2]
        service = one("keda", "Service", name)
        assert namespace == service["metadata"]["namespace"]
        catalog = one("keda", "Deployment", "mochi-catalog")["spec"]["template"]
        assert selects({"matchLabels": service["spec"]["selector"]}, catalog["metadata"]["labels"])
        (svc_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        (c,) = catalog["spec"]["containers"]
        assert svc_port["targetPort"] in {p["name"] for p in c["ports"]} | {p["containerPort"] for p in c["ports"]}
        assert _ingress_from("keda", "mochi-catalog", int(port), {}), "KEDA's operator cannot reach the catalog"
    # Scale-in: slow, and never faster than a runner can hand its job back.
    down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 600
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])
    runner = one("keda", "Deployment", "mochi-runner")["spec"]["template"]["spec"]
    assert runner["terminationGracePeriodSeconds"] >= 120


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_video_ingress_routes_only_the_bucket(overlay: str) -> None:
    ingress = one(overlay, "Ingress", "minio-videos")
    bucket_job = one(overlay, "Job", "minio-create-bucket")["spec"]["template"]["spec"]["containers"][0]
    bucket = next(e["value"] for e in bucket_job["env"] if e["name"] == "BUCKET")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [(f"/{bucket}/", "Prefix")]


def test_the_video_bucket_is_private_so_the_ingress_passes_only_signed_requests() -> None:
    # An Ingress cannot match methods (ingress-nginx only through snippet
    # annotations, off by default). What holds GET/HEAD is MinIO: the bucket
    # has no anonymous policy, so every request through the Ingress needs a
    # SigV4 signature, which covers the method, and the API presigns GET and HEAD only.
    (cm,) = [c for c in objects("h100x8", "ConfigMap") if c["metadata"]["name"].startswith("minio-bucket")]
    script = "\n".join(line for line in cm["data"]["create-bucket.sh"].splitlines()
                       if not line.lstrip().startswith("#"))
    assert "mc mb" in script and "anonymous" not in script and "public" not in script
    policy = json.loads(cm["data"]["videos-policy.json"])
    # An identity policy for the app user (no Principal), not a bucket policy for anyone.
    assert all("Principal" not in st and st["Effect"] == "Allow" for st in policy["Statement"])
    ingress = one("h100x8", "Ingress", "minio-videos")
    assert not any(k.endswith(("-snippet", "auth-url")) for k in ingress["metadata"].get("annotations", {}))
    from mochi_common.storage import s3
    source = Path(s3.__file__).read_text()
    # The one presigning call, for GET or HEAD only (a HEAD needs its own signature).
    assert not re.search(r"presigned_(put|post|get_object)", source)
    assert source.count("get_presigned_url(") == 1
    hints = typing.get_type_hints(s3.S3VideoStore.presigned_url)
    assert typing.get_args(hints["method"]) == ("GET", "HEAD")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_webhook_egress_is_http_and_https_only(overlay: str) -> None:
    (policy,) = [p for p in _policies(overlay) if p["metadata"]["name"] == "mochi-webhooks"]
    for rule in policy["spec"]["egress"]:
        ports = {(x["protocol"], x["port"]) for x in rule.get("ports", [])}
        assert ports, "a rule without ports opens every port"
        if any("ipBlock" in peer for peer in rule.get("to", [])):
            assert ports == {("TCP", 80), ("TCP", 443)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dns_egress_works_with_node_local_dns(overlay: str) -> None:
    (policy,) = [p for p in _policies(overlay) if p["metadata"]["name"] == "allow-dns"]
    assert policy["spec"]["podSelector"] == {}
    (rule,) = policy["spec"]["egress"]
    assert {(x["protocol"], x["port"]) for x in rule["ports"]} == {("UDP", 53), ("TCP", 53)}
    peers = rule["to"]
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in peers  # NodeLocal DNSCache's address
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}} in peers


def test_only_the_keda_overlay_has_scaled_objects() -> None:
    for overlay in OVERLAYS:
        if overlay != "keda":
            assert not objects(overlay, "ScaledObject")
    assert render("keda")
