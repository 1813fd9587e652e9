"""The chart's namespaced install (``watchNamespaces``) on the dev cluster, with RBAC enforced.

The chart is rendered by the pinned Helm and applied (everything but the operator's own Deployment); the operator then
runs as a local process authenticated by a TokenRequest token of the chart's ServiceAccount, watching one namespace.
kopf's namespaced mode keeps its peering in a ``KopfPeering`` in each watched namespace; without that object and the
rights on it, an operator that was told to use a peering would never act there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.chart_helpers import WEBHOOK_CONFIGURATION, apply_docs, chart_operator, docs, template
from tests.integration.helpers import (
    Operator,
    apply,
    condition,
    free_port,
    install_crds_and_peering,
    operator_events_after_a_rollout,
    sample,
    wait_ready,
)
from tests.integration.operator_helpers import DENIED, token_kubeconfig

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

PEERING = "vlm-operator"
#: The one refusal a namespaced install expects: the rollout's cluster-wide pod count (free GPUs for a surge). The
#: reconciler catches it and replaces pods in place (operator/vlm_operator/rbac.py, namespaced_install).
EXPECTED_REFUSAL = "Could not read free GPUs"


@dataclass
class NamespacedInstall:
    operator_ns: str
    watched: str
    unwatched: str
    sa_user: str
    rendered: list[dict[str, Any]]
    kubeconfig: Path
    port: int


def can_i(cluster: Cluster, user: str, verb: str, resource: str, *extra: str) -> bool:
    res = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", *extra, check=False)
    return res.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def install(cluster: Cluster, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamespacedInstall]:
    uid = uuid.uuid4().hex[:8]
    op_ns, watched, unwatched = f"vlm-sys-{uid}", f"team-a-{uid}", f"team-b-{uid}"
    release, port = f"vlmop-{uid}", free_port()
    # the operator runs here, outside the cluster: the chart's webhook configuration points at it on loopback
    values = {"watchNamespaces": [watched], "webhook.url": f"https://127.0.0.1:{port}"}
    rendered = docs(template(helm, release=release, namespace=op_ns, values=values))
    sa = next(d for d in rendered if d["kind"] == "ServiceAccount")["metadata"]["name"]
    user = f"system:serviceaccount:{op_ns}:{sa}"
    cluster_scoped = [
        d for d in rendered if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration")
    ]
    for ns in (op_ns, watched, unwatched):
        cluster.kubectl("create", "namespace", ns)
    install_crds_and_peering(cluster)
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, "--ignore-not-found")
    try:
        # the chart's objects, but the operator runs here as a process instead of its Deployment
        apply_docs(cluster, [d for d in rendered if d["kind"] != "Deployment"])
        wait_until(
            lambda: can_i(cluster, user, "watch", "kopfpeerings.kopf.dev", "-n", watched),
            "the chart's bindings to take effect",
        )
        token = cluster.kubectl("create", "token", sa, "-n", op_ns, "--duration=1h").stdout.strip()
        kubeconfig = token_kubeconfig(cluster, token, tmp_path_factory.mktemp("ns-sa") / "kubeconfig.yaml")
        yield NamespacedInstall(op_ns, watched, unwatched, user, rendered, kubeconfig, port)
    finally:
        for d in cluster_scoped:
            cluster.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found", check=False)
        for ns in (op_ns, watched, unwatched):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def ns_operator(
    cluster: Cluster, install: NamespacedInstall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("ns-operator") / "operator.log"
    args = ("--namespace", install.watched, "--peering", PEERING)
    with chart_operator(cluster, log, install.kubeconfig, install.port, args=args) as op:
        yield op


def test_the_chart_renders_roles_and_a_namespaced_peering(install: NamespacedInstall) -> None:
    kinds = {(d["kind"], d["metadata"].get("namespace")) for d in install.rendered}
    assert ("KopfPeering", install.watched) in kinds
    assert not any(k == "ClusterKopfPeering" for k, _ in kinds)
    assert ("Role", install.watched) in kinds and ("RoleBinding", install.watched) in kinds
    (role,) = [d for d in install.rendered if d["kind"] == "ClusterRole"]
    cluster_resources = {r for rule in role["rules"] for r in rule["resources"]}
    # only what has no namespace stays cluster-wide
    assert "nodes" in cluster_resources and "customresourcedefinitions" in cluster_resources
    assert not cluster_resources & {"vlmdeployments", "deployments", "pods", "services", "clusterkopfpeerings"}
    # the admission webhook sees only the watched namespaces
    (vwc,) = [d for d in install.rendered if d["kind"] == "ValidatingWebhookConfiguration"]
    sel = vwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
    assert sel == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [install.watched]}
    dep = next(d for d in install.rendered if d["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--namespace") + 1] == install.watched
    assert args[args.index("--peering") + 1] == PEERING


def test_the_service_account_reaches_only_the_watched_namespace(cluster: Cluster, install: NamespacedInstall) -> None:
    u = install.sa_user
    assert can_i(cluster, u, "list", "vlmdeployments.vlmops.io", "-n", install.watched)
    assert can_i(cluster, u, "patch", "deployments.apps", "-n", install.watched)
    assert can_i(cluster, u, "patch", f"kopfpeerings.kopf.dev/{PEERING}", "-n", install.watched)
    assert can_i(cluster, u, "list", "nodes")
    for verb, resource in (("list", "vlmdeployments.vlmops.io"), ("patch", "deployments.apps"), ("list", "pods")):
        assert not can_i(cluster, u, verb, resource, "-n", install.unwatched), (verb, resource)
        assert not can_i(cluster, u, verb, resource, "-A"), (verb, resource)
    assert not can_i(cluster, u, "patch", f"clusterkopfpeerings.kopf.dev/{PEERING}")


def test_the_namespaced_operator_reconciles_in_its_namespace_and_does_not_pause(
    cluster: Cluster, install: NamespacedInstall, ns_operator: Operator
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", install.watched)
    name = doc["metadata"]["name"]
    apply(cluster, doc)  # through the chart's webhook configuration, whose CA the operator patched
    obj = wait_ready(cluster, install.watched, name)
    assert condition(obj, "FitsGPU")["status"] == "True"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    events = operator_events_after_a_rollout(cluster, doc)
    assert all(e["reason"].startswith("Rollout") for e in events), events
    # kopf keeps its liveness in the namespace's KopfPeering: the operator took part in peering, not paused on it
    peering = cluster.get_json("kopfpeering", PEERING, "-n", install.watched)
    assert peering.get("status"), peering

    # a VLMDeployment in a namespace it does not watch is never reconciled (and never could be: no rights there)
    other = sample("llava-1.5-7b-l4.yaml", install.unwatched)
    apply(cluster, other)
    with pytest.raises(AssertionError):
        wait_until(lambda: cluster.get_json("vlmd", name, "-n", install.unwatched).get("status"), "x", timeout=8)

    log = ns_operator.output()
    assert "Pausing" not in log, log[-3000:]
    denied = [line for line in log.splitlines() if DENIED.search(line) and EXPECTED_REFUSAL not in line]
    assert not denied, "the operator was refused:\n" + "\n".join(denied[:20])
    assert ns_operator.proc is not None and ns_operator.proc.poll() is None, log[-3000:]
