"""Record the weights' revision beside the checked model, then label this node
with it, so that runners (which require the label) may be scheduled here.

Runs as the last container of the mochi-weights DaemonSet pod, after the
download and `mochi model check` init containers succeeded. It stays up
afterwards (a DaemonSet pod that exits is restarted) and ends at once on
SIGTERM. A model already recorded at another revision is refused rather than
relabelled: the node would claim weights it does not hold.

Environment: REVISION, NODE_NAME, MODEL_DIR, WEIGHTS_LABEL; the API address
and token are the pod's own (KUBERNETES_SERVICE_HOST/PORT, SA_DIR).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import urllib.request
from pathlib import Path


def _stop(signum: int, _frame: object) -> None:
    # PID 1 gets no default action for SIGTERM: without this, a stop would
    # wait out the whole grace period.
    sys.exit(128 + signum)


def record(model_dir: Path, revision: str) -> Path:
    path = model_dir.with_name(model_dir.name + ".revision")
    if path.exists():
        held = path.read_text().strip()
        if held != revision:
            sys.exit(f"{model_dir} holds revision {held!r}, REVISION is {revision!r}: delete "
                     f"{model_dir} and {path} on the node to download {revision!r}")
        return path
    partial = path.with_name(path.name + ".partial")
    partial.write_text(revision + "\n")
    partial.replace(path)  # atomic: a reader sees no revision or the whole one
    return path


def label_node(node: str, key: str, value: str) -> None:
    sa_dir = Path(os.environ.get("SA_DIR", "/var/run/secrets/kubernetes.io/serviceaccount"))
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    body = json.dumps({"metadata": {"labels": {key: value}}}).encode()
    request = urllib.request.Request(
        f"https://{host}:{port}/api/v1/nodes/{node}", data=body, method="PATCH",
        headers={"Authorization": f"Bearer {(sa_dir / 'token').read_text().strip()}",
                 "Content-Type": "application/merge-patch+json", "Accept": "application/json"})
    context = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            labels = json.load(response)["metadata"]["labels"]
    except urllib.error.HTTPError as err:
        sys.exit(f"labelling node {node} failed: HTTP {err.code} {err.read()[:500]!r}")
    if labels.get(key) != value:
        sys.exit(f"node {node} answered without the label {key}={value}")


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    revision = os.environ["REVISION"]
    node = os.environ["NODE_NAME"]
    key = os.environ["WEIGHTS_LABEL"]
    model_dir = Path(os.environ["MODEL_DIR"])
    path = record(model_dir, revision)
    label_node(node, key, revision)
    Path(os.environ.get("READY_FILE", "/tmp/labelled")).write_text(f"{key}={revision}\n")
    print(f"{model_dir} checked at revision {revision} ({path}); node {node} labelled {key}={revision}",
          flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
