"""docs/deploy.md's kubectl commands name what the manifests render: the
namespace, each workload, Service and Job, the label selectors, the
containers given with -c, the node labels, the overlay paths, the Service
ports given to port-forward, and the streams and consumer given to `nats`.
A renamed object or label breaks this test, not an operator's drain."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

import pytest

from mochi_contracts import streams
from test_deploy_support import OVERLAYS, REPO, WEIGHTS_LABEL, all_containers, render, selects

DOC = REPO / "docs" / "deploy.md"
NAMESPACE = "mochi"
KINDS = {"deploy": "Deployment", "deployment": "Deployment", "ds": "DaemonSet", "daemonset": "DaemonSet",
         "statefulset": "StatefulSet", "sts": "StatefulSet", "svc": "Service", "service": "Service",
         "job": "Job", "secret": "Secret", "pod": "Pod", "node": "Node", "nodes": "Node"}
# Node labels the manifests read (GPU operator's, the weights DaemonSet's).
NODE_LABELS = {"nvidia.com/gpu.present", WEIGHTS_LABEL}


def _commands() -> Iterator[str]:
    """Each kubectl command of the guide: fenced lines (with `\\` joined)
    and inline code spans that start with kubectl, comments cut off, split at
    pipes, `&&` and `;`."""
    text = DOC.read_text()
    found: list[str] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S):
        found += re.sub(r"\\\n\s*", " ", block).splitlines()
    found += re.findall(r"`(kubectl [^`]+)`", text)
    for line in found:
        line = re.sub(r"\s+#.*$", "", line).strip().rstrip("&").strip()
        for part in re.split(r"\s*(?:\||&&|;)\s*", line):
            if part.startswith("kubectl "):
                yield part


# Namespaces of other software the guide has commands for.
FOREIGN = {"gpu-operator"}


def _ours(words: list[str]) -> bool:
    """A command about the mochi namespace (or cluster-wide, for nodes)."""
    ns = words[words.index("-n") + 1] if "-n" in words else None
    return ns not in FOREIGN


def _words(command: str) -> list[str]:
    """kubectl's own words: <node>, <runner pod> are placeholders the operator
    fills in, and what follows `--` is the command run in the container."""
    words = shlex.split(re.sub(r"<[^>]+>", "PLACEHOLDER", command))
    return words[: words.index("--")] if "--" in words else words


def _remote(command: str) -> list[str]:
    words = shlex.split(command)
    return words[words.index("--") + 1:] if "--" in words else []


def _objects(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for overlay in OVERLAYS for o in render(overlay) if o["kind"] == kind}


def _pod_labels() -> list[dict]:
    return [o["spec"]["template"]["metadata"]["labels"] for overlay in OVERLAYS for o in render(overlay)
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def _refs(words: list[str]) -> list[tuple[str, str]]:
    """(kind, name) of every TYPE/NAME argument and of `TYPE NAME` after verbs that take it."""
    refs = [(KINDS[w.split("/", 1)[0]], w.split("/", 1)[1]) for w in words
            if "/" in w and w.split("/", 1)[0] in KINDS and not w.startswith(("deploy/kustomize", "-"))]
    for verb in ("delete", "get", "describe"):
        if verb in words:
            i = words.index(verb)
            if i + 2 < len(words) and words[i + 1] in KINDS and not words[i + 2].startswith("-"):
                refs.append((KINDS[words[i + 1]], words[i + 2]))
    if words[1:4] == ["-n", NAMESPACE, "create"] and words[4:6] == ["secret", "generic"]:
        refs.append(("Secret", words[6]))
    return refs


def test_the_guide_has_commands_to_check() -> None:
    commands = list(_commands())
    assert len(commands) > 30
    assert any("drain" in c for c in commands) and any("rollout status" in c for c in commands)


@pytest.mark.parametrize("command", sorted(set(_commands())))
def test_a_documented_command_names_rendered_objects(command: str) -> None:
    check(command)


@pytest.mark.parametrize("wrong", [
    "kubectl -n mochi logs -f ds/mochi-weight -c download",          # no such DaemonSet
    "kubectl -n mochi logs -f ds/mochi-weights -c downloader",       # no such container
    "kubectl -n mochi get pods -l app.kubernetes.io/name=runner",    # no pod has the label
    "kubectl get nodes -L mochi.dev/weights",                        # a label nothing sets
    "kubectl -n mochi-serve get pods",                               # another namespace
    "kubectl -n mochi port-forward svc/minio 9002",                  # no such port
    "kubectl -n mochi rollout status statefulset/nats deploy/mochi-runner",  # two resources
    "kubectl -n mochi exec deploy/nats-box -- nats stream info MOCHI_JOB",   # no such stream
])
def test_the_check_sees_a_wrong_command(wrong: str) -> None:
    with pytest.raises(AssertionError):
        check(wrong)


def check(command: str) -> None:
    words = _words(command)
    if not _ours(words):
        return  # another namespace (the GPU operator's)
    if "-n" in words:
        assert words[words.index("-n") + 1] == NAMESPACE
    for kind, name in _refs(words):
        if name == "PLACEHOLDER" or kind in ("Pod", "Node"):
            continue
        if kind == "Secret":
            specs = [o["spec"]["template"]["spec"] for overlay in OVERLAYS for o in render(overlay)
                     if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]
            referenced = {ref["name"] for spec in specs for c in all_containers(spec)
                          for e in c.get("env", []) if (ref := e.get("valueFrom", {}).get("secretKeyRef"))}
            referenced |= {v["secret"]["secretName"] for spec in specs for v in spec.get("volumes", [])
                           if "secret" in v}
            assert name in referenced, f"{command}: no manifest reads Secret {name}"
            continue
        objects = _objects(kind)
        assert name in objects, f"{command}: no {kind} {name} in any overlay"
        if "-c" in words:
            container = words[words.index("-c") + 1]
            names = {c["name"] for c in all_containers(objects[name]["spec"]["template"]["spec"])}
            assert container in names, f"{command}: {kind}/{name} has no container {container}"
        if kind == "Service" and "port-forward" in words:
            ports = {p["port"] for p in objects[name]["spec"]["ports"]}
            for spec in words[words.index("port-forward") + 2:]:
                if re.fullmatch(r"\d+(:\d+)?", spec):
                    assert int(spec.split(":")[-1]) in ports, f"{command}: {name} has no port {spec}"
    if "rollout" in words and "status" in words:
        # kubectl rollout status watches one resource ("only supported on individual resources").
        assert len(_refs(words)) == 1, f"{command}: one resource per rollout status"
    if "-l" in words:
        selector = dict(kv.split("=", 1) for kv in words[words.index("-l") + 1].split(","))
        assert any(selects({"matchLabels": selector}, labels) for labels in _pod_labels()), \
            f"{command}: no pod has the labels {selector}"
    if "-L" in words:
        for label in words[words.index("-L") + 1].split(","):
            assert label in NODE_LABELS, f"{command}: the manifests use no node label {label}"
    # `kubectl apply -k DIR`, `kubectl kustomize DIR` (bare mentions in prose name none).
    for after in ("-k", "kustomize"):
        if after in words[:-1] and "PLACEHOLDER" not in words[words.index(after) + 1]:
            path = words[words.index(after) + 1]
            assert (REPO / path / "kustomization.yaml").is_file(), f"{command}: no overlay {path}"
    remote = _remote(command)
    if remote[:1] == ["nats"]:
        names = {streams.JOBS_STREAM, streams.DEAD_LETTER_STREAM, streams.RUNNERS_CONSUMER}
        for w in remote[1:]:
            if re.fullmatch(r"MOCHI_[A-Z_]+", w) or w == "gpu-runners":
                assert w in names, f"{command}: no stream or consumer {w} in mochi_contracts.streams"


def test_the_model_check_path_is_the_runners() -> None:
    (command,) = [c for c in _commands() if "mochi model check" in c and "exec" in c]
    (runner,) = [o for o in render("h100x8") if o["kind"] == "Deployment" and o["metadata"]["name"] == "mochi-runner"]
    env = {e["name"]: e.get("value") for e in runner["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert command.split()[-1] == env["MOCHI_MODEL_DIR"]
