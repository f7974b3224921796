"""Day two on a cluster, read from the rendered manifests: where the scheduler
may put runners (only on nodes whose weights are checked), whether a drain
can finish, and the weights DaemonSet's own pieces run as real processes
(the node labeller against a stand-in API server, the shell loops under
SIGTERM as PID 1).

The scheduler and eviction models below are small on purpose: they apply
exactly the fields these manifests use (nodeSelector, required nodeAffinity,
taints and tolerations, requests against allocatable, required pod
anti-affinity and DoNotSchedule spreading on the hostname; PDB budgets as the
eviction API computes them), and fail on any field they do not know."""

from __future__ import annotations

import http.server
import json
import math
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from test_deploy_support import (
    GPU_OVERLAYS, ONE_NODE_OVERLAYS, WEIGHTS_LABEL, all_containers, objects, one, render, selects)

GPU = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
MULTI_NODE_OVERLAYS = tuple(o for o in GPU_OVERLAYS if o not in ONE_NODE_OVERLAYS)


# ---- a scheduler's view -----------------------------------------------------

def quantity(value: str | int) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def pod_requests(spec: dict) -> dict[str, float]:
    """What the scheduler reserves: the containers' sum, or the largest init
    container's request where that is more."""
    total: dict[str, float] = {}
    for c in spec["containers"]:
        for k, v in c.get("resources", {}).get("requests", {}).items():
            total[k] = total.get(k, 0.0) + quantity(v)
    for c in spec.get("initContainers", []):
        for k, v in c.get("resources", {}).get("requests", {}).items():
            total[k] = max(total.get(k, 0.0), quantity(v))
    return total


@dataclass
class Node:
    name: str
    labels: dict[str, str]
    allocatable: dict[str, float]
    taints: list[dict] = field(default_factory=list)
    unschedulable: bool = False

    def __post_init__(self) -> None:
        self.labels = {"kubernetes.io/hostname": self.name, **self.labels}


def gpu_node(name: str, weights: str | None) -> Node:
    labels = {"nvidia.com/gpu.present": "true"}
    if weights is not None:
        labels[WEIGHTS_LABEL] = weights
    return Node(name, labels, {"cpu": 128, "memory": quantity("1Ti"), GPU: 8}, [dict(GPU_TAINT)])


def cpu_node(name: str) -> Node:
    return Node(name, {}, {"cpu": 32, "memory": quantity("256Gi")})


@dataclass
class Pod:
    owner: str
    name: str
    labels: dict[str, str]
    spec: dict
    node: str | None = None
    ready: bool = False


def _expression(expr: dict, labels: dict[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values", [])
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        if key not in labels:
            return False
        a, b = int(labels[key]), int(values[0])
        return a > b if op == "Gt" else a < b
    raise AssertionError(f"unknown operator {op}")


def node_affinity_ok(spec: dict, node: Node) -> bool:
    if any(node.labels.get(k) != v for k, v in spec.get("nodeSelector", {}).items()):
        return False
    affinity = spec.get("affinity") or {}
    assert set(affinity) <= {"nodeAffinity", "podAntiAffinity"}, affinity
    required = affinity.get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    terms = required["nodeSelectorTerms"]
    for term in terms:
        assert set(term) == {"matchExpressions"}, term
    return any(all(_expression(e, node.labels) for e in term["matchExpressions"]) for term in terms)


def tolerates(spec: dict, node: Node) -> bool:
    # A cordoned node carries the unschedulable taint (the node lifecycle
    # controller sets it), which is what nodeTaintsPolicy: Honor sees.
    cordon = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}] if node.unschedulable else []
    for taint in [*node.taints, *cordon]:
        if taint["effect"] not in ("NoSchedule", "NoExecute"):
            continue
        ok = False
        for t in spec.get("tolerations", []):
            if t.get("effect") not in (None, taint["effect"]):
                continue
            if t.get("operator", "Equal") == "Exists":
                ok = ok or t.get("key") in (None, taint["key"])
            else:
                ok = ok or (t.get("key") == taint["key"] and t.get("value") == taint.get("value"))
        if not ok:
            return False
    return True


class Cluster:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.pods: list[Pod] = []

    def on(self, node: str) -> list[Pod]:
        return [p for p in self.pods if p.node == node]

    def free(self, node: Node) -> dict[str, float]:
        free = dict(node.allocatable)
        for p in self.on(node.name):
            for k, v in pod_requests(p.spec).items():
                free[k] = free.get(k, 0.0) - v
        return free

    def fits(self, pod: Pod, node: Node) -> bool:
        if node.unschedulable or not node_affinity_ok(pod.spec, node) or not tolerates(pod.spec, node):
            return False
        free = self.free(node)
        if any(v > free.get(k, 0.0) + 1e-9 for k, v in pod_requests(pod.spec).items()):
            return False
        anti = (pod.spec.get("affinity") or {}).get("podAntiAffinity", {})
        for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution", []):
            assert term["topologyKey"] == "kubernetes.io/hostname", term
            if any(selects(term["labelSelector"], p.labels) for p in self.on(node.name)):
                return False
        for c in pod.spec.get("topologySpreadConstraints", []):
            if c["whenUnsatisfiable"] != "DoNotSchedule":
                continue
            assert c["topologyKey"] == "kubernetes.io/hostname", c
            # Domains: the nodes the pod's node affinity admits (nodeAffinityPolicy
            # Honor, the default) and, with nodeTaintsPolicy Honor, whose taints
            # it tolerates (a cordoned node drops out); Ignore, the default, counts
            # every node the affinity admits.
            assert c.get("nodeAffinityPolicy", "Honor") == "Honor", c
            honor_taints = c.get("nodeTaintsPolicy", "Ignore") == "Honor"
            domains = [n for n in self.nodes.values() if node_affinity_ok(pod.spec, n)
                       and (not honor_taints or tolerates(pod.spec, n))]
            counts = {n.name: sum(selects(c["labelSelector"], p.labels) for p in self.on(n.name))
                      for n in domains}
            if node.name in counts and counts[node.name] + 1 - min(counts.values()) > c["maxSkew"]:
                return False
        return True

    def schedule(self, pod: Pod) -> Pod:
        """Onto the fitting node with the fewest pods (the default scorers
        spread too); Pending (node None) where none fits."""
        self.pods.append(pod)
        fitting = [n for n in self.nodes.values() if self.fits(pod, n)]
        if fitting:
            pod.node = min(fitting, key=lambda n: (len(self.on(n.name)), n.name)).name
            pod.ready = True
        return pod

    def apply(self, overlay: str, replicas: dict[str, int] | None = None) -> None:
        """Every pod the overlay makes: one per DaemonSet node, `replicas` per
        Deployment or StatefulSet (the manifest's own count unless given)."""
        for obj in render(overlay):
            if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
                continue
            name, template = obj["metadata"]["name"], obj["spec"]["template"]
            if obj["kind"] == "DaemonSet":
                for node in self.nodes.values():
                    if node_affinity_ok(template["spec"], node) and tolerates(template["spec"], node):
                        self.pods.append(Pod(name, f"{name}-{node.name}", template["metadata"]["labels"],
                                             template["spec"], node.name, True))
                continue
            count = (replicas or {}).get(name, obj["spec"].get("replicas", 1))
            for i in range(count):
                self.schedule(Pod(name, f"{name}-{i}", template["metadata"]["labels"], template["spec"]))

    def where(self, owner: str) -> dict[str | None, int]:
        found: dict[str | None, int] = {}
        for p in self.pods:
            if p.owner == owner:
                found[p.node] = found.get(p.node, 0) + 1
        return found


def _two_gpu_nodes(overlay: str, b_weights: str | None) -> Cluster:
    revision = _revision(overlay)
    nodes = [gpu_node("gpu-a", revision), gpu_node("gpu-b", b_weights)]
    if overlay not in ONE_NODE_OVERLAYS:
        nodes += [cpu_node(f"cpu-{i}") for i in range(3)]
    return Cluster(nodes)


def _revision(overlay: str) -> str:
    download = _weights_container(overlay, "download")
    return next(e["value"] for e in download["env"] if e["name"] == "REVISION")


def _weights_container(overlay: str, name: str) -> dict:
    spec = one(overlay, "DaemonSet", "mochi-weights")["spec"]["template"]["spec"]
    (c,) = [c for c in all_containers(spec) if c["name"] == name]
    return c


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_runners_only_on_nodes_with_weights(overlay: str) -> None:
    # gpu-b has no weights yet: eight runners (KEDA's maximum) ask for 16 GPUs,
    # gpu-a takes four, the rest wait rather than sit on gpu-b without weights.
    cluster = _two_gpu_nodes(overlay, b_weights=None)
    cluster.apply(overlay, {"mochi-runner": 8})
    assert cluster.where("mochi-runner") == {"gpu-a": 4, None: 4}
    # The weights DaemonSet runs on both GPU nodes: gpu-b gets its download.
    assert cluster.where("mochi-weights") == {"gpu-a": 1, "gpu-b": 1}


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_a_node_with_other_weights_gets_no_runner(overlay: str) -> None:
    cluster = _two_gpu_nodes(overlay, b_weights="0123456789abcdef0123456789abcdef01234567")
    cluster.apply(overlay, {"mochi-runner": 8})
    assert "gpu-b" not in cluster.where("mochi-runner")


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_runners_use_both_nodes_once_both_are_labelled(overlay: str) -> None:
    cluster = _two_gpu_nodes(overlay, b_weights=_revision(overlay))
    cluster.apply(overlay, {"mochi-runner": 8})
    assert cluster.where("mochi-runner") == {"gpu-a": 4, "gpu-b": 4}


@pytest.mark.parametrize("overlay", MULTI_NODE_OVERLAYS)
def test_nats_servers_never_share_a_node(overlay: str) -> None:
    cluster = Cluster([cpu_node("cpu-0"), cpu_node("cpu-1"), gpu_node("gpu-a", _revision(overlay))])
    cluster.apply(overlay)
    # Two nodes NATS may use (the GPU node is tainted): the third server waits.
    assert cluster.where("nats") == {"cpu-0": 1, "cpu-1": 1, None: 1}


@pytest.mark.parametrize("overlay", MULTI_NODE_OVERLAYS)
def test_runner_spreading_is_hard(overlay: str) -> None:
    spec = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]
    (c,) = spec["topologySpreadConstraints"]
    assert c["whenUnsatisfiable"] == "DoNotSchedule" and c["maxSkew"] == 1
    # Five runners on two labelled nodes: three and two, never four and one.
    cluster = _two_gpu_nodes(overlay, b_weights=_revision(overlay))
    cluster.apply(overlay, {"mochi-runner": 5})
    assert sorted(cluster.where("mochi-runner").values()) == [2, 3]


def test_the_revision_is_the_same_everywhere() -> None:
    for overlay in GPU_OVERLAYS:
        revision = _revision(overlay)
        label = {e["name"]: e.get("value") for e in _weights_container(overlay, "label")["env"]}
        assert label["REVISION"] == revision and label["WEIGHTS_LABEL"] == WEIGHTS_LABEL
        spec = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]
        (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"]
        assert {"key": WEIGHTS_LABEL, "operator": "In", "values": [revision]} in term["matchExpressions"]
        runner_model = next(e["value"] for e in spec["containers"][0]["env"] if e["name"] == "MOCHI_MODEL_DIR")
        assert label["MODEL_DIR"] == runner_model
        check = _weights_container(overlay, "check")
        assert "command" not in check, "the image's entrypoint runs `mochi`"
        assert check["args"] == ["model", "check", runner_model]


def test_weights_pod_downloads_then_checks_then_labels() -> None:
    spec = one("h100x8", "DaemonSet", "mochi-weights")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["host-dirs", "download", "check"]
    assert [c["name"] for c in spec["containers"]] == ["label"]
    download = _weights_container("h100x8", "download")
    assert "/scripts/download-weights.sh" in " ".join(download["command"])
    (cm,) = [c for c in objects("h100x8", "ConfigMap") if c["metadata"]["name"].startswith("mochi-weights")]
    assert {"download-weights.sh", "label-node.py"} <= set(cm["data"])
    # The check must not be able to change what it checks.
    (mount,) = [m for m in _weights_container("h100x8", "check")["volumeMounts"] if m["name"] == "models"]
    assert mount["readOnly"] is True
    # Dev has no GPU nodes and no weights.
    assert not objects("dev", "DaemonSet")


# ---- a fresh node's directories -------------------------------------------------

def _unmountable(spec: dict, existing: set[str]) -> list[str]:
    """The hostPath volumes the kubelet refuses on a node holding `existing`
    paths. It mounts every volume before the first init container runs, so a
    `Directory` volume must exist before the pod starts, whatever its init
    containers would create."""
    return [v["hostPath"]["path"] for v in spec.get("volumes", [])
            if "hostPath" in v and v["hostPath"].get("type") == "Directory" and v["hostPath"]["path"] not in existing]


def _made_by_host_dirs(spec: dict) -> set[str]:
    """The node paths the weights pod's host-dirs container creates (its
    `install -d` arguments, under the mount of the `host` volume)."""
    (c,) = [c for c in spec["initContainers"] if c["name"] == "host-dirs"]
    assert c["command"][:2] == ["install", "-d"], c["command"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "host"]
    (host,) = [v["hostPath"]["path"] for v in spec["volumes"] if v["name"] == "host"]
    made = {host}
    for arg in c["command"][2:]:
        if arg.startswith(mount["mountPath"] + "/"):
            made.add(host + arg.removeprefix(mount["mountPath"]))
    return made


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_a_fresh_gpu_node_gets_its_directories_then_runners(overlay: str) -> None:
    weights = one(overlay, "DaemonSet", "mochi-weights")["spec"]["template"]["spec"]
    # A new node has no /var/lib/mochi: the weights pod must still start.
    assert _unmountable(weights, set()) == []
    made = _made_by_host_dirs(weights)
    assert {"/var/lib/mochi/models", "/var/lib/mochi/compile-cache"} <= made
    # A runner only lands on a labelled node, where that pod has run.
    runner = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]
    assert _unmountable(runner, made) == []
    # The model sees the failure it guards against: a Directory volume on a fresh node.
    strict = {**weights, "volumes": [{**v, "hostPath": {**v["hostPath"], "type": "Directory"}}
                                     if "hostPath" in v else v for v in weights["volumes"]]}
    assert "/var/lib/mochi/models" in _unmountable(strict, set())


# ---- drains -----------------------------------------------------------------

def _budget(pdb: dict, expected: int) -> int:
    """Pods the budget requires healthy, as the disruption controller computes it."""
    spec = pdb["spec"]

    def scaled(value: int | str) -> int:
        if isinstance(value, str) and value.endswith("%"):
            return math.ceil(expected * int(value[:-1]) / 100)
        return int(value)

    if "minAvailable" in spec:
        return scaled(spec["minAvailable"])
    return expected - scaled(spec["maxUnavailable"])


def drain(cluster: Cluster, node_name: str, pdbs: list[dict], rounds: int = 50) -> list[Pod]:
    """`kubectl drain --ignore-daemonsets --delete-emptydir-data`: cordon, then
    evict each pod through the eviction API (which refuses while a PDB would
    drop below its budget) and retry the refused ones, as kubectl does; each
    evicted pod's controller makes a replacement, which the scheduler places
    elsewhere or leaves Pending. Returns the pods still on the node."""
    cluster.nodes[node_name].unschedulable = True
    expected: dict[str, int] = {}
    for p in cluster.pods:
        expected[p.owner] = expected.get(p.owner, 0) + 1
    for _ in range(rounds):
        left = [p for p in cluster.on(node_name) if p.owner != "mochi-weights"]  # DaemonSet
        if not left:
            return []
        for pod in left:
            covering = [b for b in pdbs if selects(b["spec"]["selector"], pod.labels)]
            assert len(covering) <= 1, f"{pod.name}: more than one PDB (the eviction API refuses)"
            if covering:
                budget = covering[0]
                healthy = sum(1 for p in cluster.pods if p.ready and selects(budget["spec"]["selector"], p.labels))
                allowed = healthy - _budget(budget, expected[pod.owner])
                if pod.ready and allowed <= 0:
                    continue  # 429: retried next round
                # An unready pod: always, or only while the budget is met.
                if not pod.ready and budget_policy(budget) != "AlwaysAllow" and allowed < 0:
                    continue
            cluster.pods.remove(pod)
            cluster.schedule(Pod(pod.owner, pod.name + "'", pod.labels, pod.spec))
    return [p for p in cluster.on(node_name) if p.owner != "mochi-weights"]


def budget_policy(pdb: dict) -> str:
    return pdb["spec"].get("unhealthyPodEvictionPolicy", "IfHealthyBudget")


@pytest.mark.parametrize("overlay", [o for o in ONE_NODE_OVERLAYS if o in GPU_OVERLAYS])
def test_a_one_node_drain_finishes(overlay: str) -> None:
    cluster = Cluster([gpu_node("gpu-a", _revision(overlay))])
    cluster.apply(overlay)
    assert cluster.where("mochi-runner") == {"gpu-a": 4}
    assert drain(cluster, "gpu-a", objects(overlay, "PodDisruptionBudget")) == []
    # Every replacement waits for the uncordon.
    assert all(p.node is None for p in cluster.pods if p.owner != "mochi-weights")


def test_a_laptop_cluster_drain_finishes() -> None:
    # The dev overlay on its one CPU node: nothing holds the drain either.
    cluster = Cluster([cpu_node("laptop")])
    cluster.apply("dev")
    assert set(cluster.where("mochi-runner")) == {"laptop"}
    assert drain(cluster, "laptop", objects("dev", "PodDisruptionBudget")) == []
    assert all(p.node is None for p in cluster.pods)


def test_the_drain_model_can_fail() -> None:
    # The multi-node budgets on the one node hold the drain: the model sees it.
    cluster = Cluster([gpu_node("gpu-a", _revision("h100x8"))])
    cluster.apply("h100x8")
    stuck = drain(cluster, "gpu-a", objects("multi-node", "PodDisruptionBudget"))
    assert {p.owner for p in stuck} >= {"nats", "mochi-api", "mochi-catalog"}


@pytest.mark.parametrize("overlay", MULTI_NODE_OVERLAYS)
def test_draining_a_full_gpu_node_finishes(overlay: str) -> None:
    # Two full GPU nodes and no spare GPU: the drained node's runners cannot
    # start elsewhere, and the runner budget still lets them all go.
    cluster = _two_gpu_nodes(overlay, b_weights=_revision(overlay))
    cluster.apply(overlay, {"mochi-runner": 8})
    assert drain(cluster, "gpu-a", objects(overlay, "PodDisruptionBudget")) == []
    assert cluster.where("mochi-runner") == {"gpu-b": 4, None: 4}


@pytest.mark.parametrize("overlay", MULTI_NODE_OVERLAYS)
def test_a_drained_nodes_runners_restart_where_there_is_room(overlay: str) -> None:
    # Three labelled GPU nodes, eight runners: 3, 3, 2. Draining one must not
    # leave its runners Pending while the other two have six free GPUs: the
    # cordoned node drops out of the spreading's domains (nodeTaintsPolicy:
    # Honor), or its zero runners would cap every other node at one.
    nodes = [gpu_node(name, _revision(overlay)) for name in ("gpu-a", "gpu-b", "gpu-c")]
    cluster = Cluster([*nodes, *(cpu_node(f"cpu-{i}") for i in range(3))])
    cluster.apply(overlay, {"mochi-runner": 8})
    assert sorted(cluster.where("mochi-runner").values()) == [2, 3, 3]
    drained = max(("gpu-a", "gpu-b", "gpu-c"), key=lambda n: cluster.where("mochi-runner").get(n, 0))
    assert drain(cluster, drained, objects(overlay, "PodDisruptionBudget")) == []
    others = sorted({"gpu-a", "gpu-b", "gpu-c"} - {drained})
    assert cluster.where("mochi-runner") == {others[0]: 4, others[1]: 4}


@pytest.mark.parametrize("overlay", MULTI_NODE_OVERLAYS)
def test_draining_a_nats_node_keeps_quorum(overlay: str) -> None:
    cluster = _two_gpu_nodes(overlay, b_weights=_revision(overlay))
    cluster.apply(overlay)
    node = next(p.node for p in cluster.pods if p.owner == "nats")
    assert drain(cluster, node, objects(overlay, "PodDisruptionBudget")) == []
    assert sum(1 for p in cluster.pods if p.owner == "nats" and p.ready) == 2


# ---- the labeller, against a stand-in Kubernetes API --------------------------

class _FakeApi(http.server.BaseHTTPRequestHandler):
    patches: list[tuple[str, str, dict]] = []

    def do_PATCH(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).patches.append((self.path, self.headers["Content-Type"], body))
        assert self.headers["Authorization"] == "Bearer test-token"
        reply = json.dumps({"metadata": {"name": "gpu-a", "labels": body["metadata"]["labels"]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_api(tmp_path: Path):
    sa = tmp_path / "sa"
    sa.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(sa / "ca.crt"),
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    (sa / "token").write_text("test-token\n")
    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeApi)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(sa / "ca.crt"), str(tmp_path / "key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _FakeApi.patches = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], sa
    server.shutdown()


def _labeller_env(tmp_path: Path, port: int, sa: Path, revision: str) -> dict[str, str]:
    label = {e["name"]: e.get("value") for e in _weights_container("h100x8", "label")["env"]}
    models = tmp_path / "models"
    (models / "mochi-1-preview").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "REVISION": revision, "NODE_NAME": "gpu-a", "WEIGHTS_LABEL": label["WEIGHTS_LABEL"],
            "MODEL_DIR": str(models / "mochi-1-preview"), "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(port), "SA_DIR": str(sa), "READY_FILE": str(tmp_path / "ready")}


def _labeller(tmp_path: Path) -> Path:
    (cm,) = [c for c in objects("h100x8", "ConfigMap") if c["metadata"]["name"].startswith("mochi-weights")]
    script = tmp_path / "label-node.py"
    script.write_text(cm["data"]["label-node.py"])
    return script


def test_labeller_records_labels_and_stops_on_sigterm(tmp_path: Path, fake_api) -> None:
    port, sa = fake_api
    revision = _revision("h100x8")
    env = _labeller_env(tmp_path, port, sa, revision)
    proc = subprocess.Popen([sys.executable, str(_labeller(tmp_path))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the labeller never became ready"
            time.sleep(0.05)
        assert _FakeApi.patches == [("/api/v1/nodes/gpu-a", "application/merge-patch+json",
                                     {"metadata": {"labels": {WEIGHTS_LABEL: revision}}})]
        recorded = Path(env["MODEL_DIR"] + ".revision")
        assert recorded.read_text().strip() == revision
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
        assert time.monotonic() - started < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_labeller_refuses_a_model_of_another_revision(tmp_path: Path, fake_api) -> None:
    port, sa = fake_api
    env = _labeller_env(tmp_path, port, sa, _revision("h100x8"))
    Path(env["MODEL_DIR"] + ".revision").write_text("an-older-revision\n")
    done = subprocess.run([sys.executable, str(_labeller(tmp_path))], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "an-older-revision" in done.stderr and "delete" in done.stderr
    assert _FakeApi.patches == [], "a node must not be labelled for weights it does not hold"


# ---- shell loops end at once on SIGTERM, as PID 1 ------------------------------

def _pid1_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "-rpf", "--mount-proc", "/bin/sh", "-c", "echo $$"],
                          capture_output=True, text=True, timeout=10)
    return done.returncode == 0 and done.stdout.strip() == "1"


def _shell_loops() -> list[tuple[str, list[str]]]:
    found = []
    for overlay in GPU_OVERLAYS:
        for obj in render(overlay):
            if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                continue
            for c in all_containers(obj["spec"]["template"]["spec"]):
                command = c.get("command") or []
                if command[:2] == ["/bin/sh", "-c"]:
                    found.append((f"{overlay}/{obj['metadata']['name']}/{c['name']}", command))
    return found


def test_every_shell_container_traps_sigterm() -> None:
    loops = _shell_loops()
    assert {n.split("/", 1)[1] for n, _ in loops} >= {"mochi-runner/wait-for-weights", "mochi-weights/download"}
    for name, command in loops:
        assert "trap " in command[2] and "wait $!" in command[2], name
    # The bucket Job's script retries until MinIO answers: the same, inside it.
    (cm,) = [c for c in objects("h100x8", "ConfigMap") if c["metadata"]["name"].startswith("minio-bucket")]
    script = cm["data"]["create-bucket.sh"]
    assert "trap 'exit 143' TERM" in script and "sleep 3 & wait $!" in script


@pytest.mark.skipif(not _pid1_available(), reason="needs unprivileged user and PID namespaces (unshare -rpf)")
@pytest.mark.parametrize("name", ["mochi-runner/wait-for-weights", "mochi-weights/download"])
def test_shell_container_ends_at_once_as_pid1(name: str, tmp_path: Path) -> None:
    (command,) = {tuple(c) for n, c in _shell_loops() if n.split("/", 1)[1] == name}
    # The download's script stands in as one that takes its time.
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "download-weights.sh").write_text("sleep 300\n")
    script = command[2].replace("/scripts/", f"{scripts}/").replace("/models/", f"{tmp_path}/models/")

    def run(text: str) -> float:
        proc = subprocess.Popen(["unshare", "-rpf", "--kill-child", "--mount-proc", "/bin/sh", "-c", text],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            assert proc.poll() is None, "it should still be waiting"
            # The shell is PID 1 of the namespace: signal it, not unshare.
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
            (pid1,) = children.stdout.split()
            started = time.monotonic()
            os.kill(int(pid1), signal.SIGTERM)
            proc.wait(8)
            return time.monotonic() - started
        finally:
            # --kill-child: the shell (the loop without a trap ignores SIGTERM)
            # dies with unshare instead of looping on after the test.
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert run(script) < 2
    # Without the trap the same loop ignores SIGTERM as PID 1: the check bites.
    with pytest.raises(subprocess.TimeoutExpired):
        run(script.split("; ", 1)[1])
