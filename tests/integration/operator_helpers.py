"""Running the operator subprocess for a test module, with the cluster's own kubeconfig or another identity's (a
ServiceAccount token: :func:`token_kubeconfig`), and reading its health endpoints (:func:`probe`)."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cluster
from tests.fakehub import FakeHub
from tests.integration.helpers import WEBHOOK, Operator, install_crds_and_peering, wait_webhook

SA_NAMESPACE, SA_NAME = "vlm-operator", "vlm-operator"
SA_USER = f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"
RBAC_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
#: What an authorization refusal looks like in the operator's log: the API server's RBAC message, or kopf's own
#: warnings when it lacks a permission. (Other 403s, such as NamespaceTerminating for objects left by earlier tests'
#: namespaces, are not about RBAC.)
DENIED = re.compile(
    rf'User "{re.escape(SA_USER)}" cannot|cannot (get|list|watch|create|patch|update|delete) resource|'
    r"Not enough (RBAC )?permissions",
    re.IGNORECASE,
)


@contextmanager
def running_operator(
    cluster: Cluster,
    log: Path,
    kubeconfig: Path | None = None,
    args: tuple[str, ...] = (),
    hub: FakeHub | None = None,
) -> Iterator[Operator]:
    """Start the operator (with the Hub resolver pointed at ``hub`` when given), wait until it registered its
    webhook, and stop it (and drop the webhook) afterwards."""
    install_crds_and_peering(cluster)
    # a webhook left by an earlier operator points at a dead port; kopf re-patches it, but start clean
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    op = Operator(cluster, log, hub, kubeconfig=kubeconfig, args=args)
    op.start()
    try:
        wait_webhook(cluster, op)
        yield op
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")


def token_kubeconfig(cluster: Cluster, token: str, out: Path) -> Path:
    """A kubeconfig for the cluster's server and CA, authenticated only by ``token``."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx_name = admin.get("current-context") or admin["contexts"][0]["name"]
    ctx = next(c["context"] for c in admin["contexts"] if c["name"] == ctx_name)
    cl = next(c["cluster"] for c in admin["clusters"] if c["name"] == ctx["cluster"])
    cluster_entry: dict[str, Any] = {"server": cl["server"]}
    if "certificate-authority-data" in cl:
        cluster_entry["certificate-authority-data"] = cl["certificate-authority-data"]
    else:
        ca = Path(cl["certificate-authority"])
        if not ca.is_absolute():
            ca = cluster.kubeconfig.parent / ca
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster_entry}],
        "users": [{"name": SA_NAME, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": SA_NAME}}],
        "current-context": "sa",
    }
    out.write_text(yaml.safe_dump(cfg))
    out.chmod(0o600)
    return out


def probe(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
            return rsp.status, json.loads(rsp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}
