"""``helm install`` of the chart onto the dev cluster (RBAC enforced), and the operator running with nothing but the
chart's rights: a TokenRequest token of the chart's ServiceAccount.

The operator runs as a local process (the chart's Deployment is scaled to 0: the dev cluster's pods are simulated and
cannot run the image); the chart's ValidatingWebhookConfiguration points at it through ``webhook.url``. It must
reconcile, write events, serve the webhook and autoscale through /scale; a verb removed from the chart's ClusterRole
must make it fail visibly. Then ``helm upgrade`` with a changed CRD (Helm leaves CRDs alone; the documented
``kubectl apply --server-side`` updates them) and ``helm uninstall`` (users' VLMDeployments and the CRD stay).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.chart_helpers import CHART, ROOT, WEBHOOK_CONFIGURATION, chart_operator, run_helm
from tests.integration.helpers import (
    Operator,
    apply,
    assert_too_wide_is_refused,
    condition,
    free_port,
    operator_events_after_a_rollout,
    sample,
    vlmd,
    wait_condition,
    wait_ready,
)
from tests.integration.operator_helpers import DENIED, token_kubeconfig
from tests.integration.simulated import SimWatcher
from tests.integration.workloads import SLOW_SIM, internal

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.timeout(600)]

CRD = "vlmdeployments.vlmops.io"


@dataclass
class Release:
    helm: Path
    name: str
    namespace: str
    fullname: str
    peering: str
    port: int
    kubeconfig: Path
    sa_user: str

    def helm_args(self, cluster: Cluster) -> list[str]:
        return ["--namespace", self.namespace, "--kubeconfig", str(cluster.kubeconfig)]


def can_i(cluster: Cluster, user: str, verb: str, resource: str, *extra: str) -> bool:
    res = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", *extra, check=False)
    return res.stdout.strip() == "yes"


def values_args(port: int, peering: str) -> list[str]:
    return [
        "--set",
        "replicaCount=0",
        "--set",
        f"peering.name={peering}",
        "--set-json",
        f'webhook.url="https://127.0.0.1:{port}"',
    ]


@pytest.fixture(scope="module")
def release(cluster: Cluster, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    uid = uuid.uuid4().hex[:8]
    name, ns, peering, port = f"vlmop-{uid}", f"vlm-sys-{uid}", f"vlmop-{uid}", free_port()
    fullname = f"{name}-vlm-operator"
    # a configuration left by an operator-managed run of another test module would clash with the chart's
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, "--ignore-not-found")
    args = ["--namespace", ns, "--kubeconfig", str(cluster.kubeconfig)]
    run_helm(helm, "install", name, str(CHART), "--create-namespace", *values_args(port, peering), *args)
    user = f"system:serviceaccount:{ns}:{fullname}"
    try:
        wait_until(lambda: can_i(cluster, user, "list", "vlmdeployments.vlmops.io", "-A"), "the chart's binding")
        token = cluster.kubectl("create", "token", fullname, "-n", ns, "--duration=1h").stdout.strip()
        kubeconfig = token_kubeconfig(cluster, token, tmp_path_factory.mktemp("helm-sa") / "kubeconfig.yaml")
        yield Release(helm, name, ns, fullname, peering, port, kubeconfig, user)
    finally:
        run_helm(helm, "uninstall", name, *args, check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def chart_op(cluster: Cluster, release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("helm-operator") / "operator.log"
    with chart_operator(cluster, log, release.kubeconfig, release.port, args=("--peering", release.peering)) as op:
        yield op


def denied_lines(op: Operator) -> list[str]:
    # the rollout's cluster-wide free-GPU count is granted cluster-wide; nothing may be refused
    return [line for line in op.output().splitlines() if DENIED.search(line)]


def test_the_installed_objects_are_the_charts(cluster: Cluster, release: Release) -> None:
    manifest = run_helm(release.helm, "get", "manifest", release.name, *release.helm_args(cluster)).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(manifest) if d)
    assert "ValidatingWebhookConfiguration" in kinds and "ClusterRole" in kinds and "Deployment" in kinds, kinds
    u = release.sa_user
    assert not can_i(cluster, u, "create", "validatingwebhookconfigurations.admissionregistration.k8s.io")
    assert not can_i(cluster, u, "create", "mutatingwebhookconfigurations.admissionregistration.k8s.io")
    assert can_i(
        cluster, u, "patch", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{WEBHOOK_CONFIGURATION}"
    )
    assert not can_i(cluster, u, "get", "secrets", "-A")


def test_with_the_charts_rights_it_reconciles_writes_events_and_serves_the_webhook(
    cluster: Cluster, namespace: str, release: Release, chart_op: Operator
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    obj = wait_ready(cluster, namespace, name)
    assert condition(obj, "FitsGPU")["status"] == "True"
    events = operator_events_after_a_rollout(cluster, doc)
    assert all(e["reason"].startswith("Rollout") for e in events), events
    # the webhook (the chart's configuration, the operator's CA): TP x PP above the largest L4 node is refused
    assert_too_wide_is_refused(cluster, namespace)
    assert not denied_lines(chart_op), "\n".join(denied_lines(chart_op)[:20])


def test_with_the_charts_rights_it_autoscales_through_scale(
    cluster: Cluster, namespace: str, release: Release, chart_op: Operator, watcher: SimWatcher
) -> None:
    doc = internal(
        namespace,
        annotations=SLOW_SIM,
        replicas=2,
        minReplicas=1,
        maxReplicas=2,
        scaleDownStabilizationSeconds=2,
        cooldownSeconds=1,
    )
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    # idle pods: down to minReplicas, written through /scale by the autoscaler under the chart's ServiceAccount
    wait_until(lambda: vlmd(cluster, namespace, name)["spec"]["scaling"]["replicas"] == 1, "a scale-down", timeout=90)
    wait_condition(cluster, namespace, name, "ScalingActive", "True", "AtMin")
    obj = cluster.get_json("vlmd", name, "-n", namespace, "--show-managed-fields")
    managers = {m["manager"] for m in obj["metadata"]["managedFields"] if "spec" in json.dumps(m.get("fieldsV1", {}))}
    assert "vlm-operator-autoscaler" in managers, managers
    assert not denied_lines(chart_op), "\n".join(denied_lines(chart_op)[:20])
    # the autoscaler's finalizer goes with the object while the operator still runs (a later test stops it, and a
    # finalizer nobody removes would leave this namespace Terminating for good)
    cluster.kubectl("delete", "vlmd", name, "-n", namespace, "--timeout=60s")


def test_a_verb_removed_from_the_chart_role_fails_visibly(
    cluster: Cluster, namespace: str, release: Release, chart_op: Operator
) -> None:
    role = cluster.get_json("clusterrole", release.fullname)
    idx = next(i for i, r in enumerate(role["rules"]) if r["resources"] == ["vlmdeployments/status"])
    cut = [{"op": "remove", "path": f"/rules/{idx}"}]
    cluster.kubectl("patch", "clusterrole", release.fullname, "--type=json", "-p", json.dumps(cut))
    try:
        wait_until(
            lambda: (
                not can_i(
                    cluster,
                    release.sa_user,
                    "patch",
                    "vlmdeployments.vlmops.io",
                    "--subresource=status",
                    "-n",
                    namespace,
                )
            ),
            "the narrower role to take effect",
        )
        doc = sample("llava-1.5-7b-l4.yaml", namespace)
        doc["metadata"]["name"] = "no-status-rights"
        apply(cluster, doc)
        line = wait_until(
            lambda: next((x for x in denied_lines(chart_op) if "vlmdeployments/status" in x), None),
            "the refusal in the operator's log",
            timeout=60,
        )
        print("refused:", line)
        assert not vlmd(cluster, namespace, "no-status-rights").get("status", {}).get("conditions")
    finally:
        # Helm 4 upgrades by server-side apply: a plain `helm upgrade` refuses to take back a field another manager
        # (here kubectl-patch) changed; --force-conflicts puts the chart's role back
        res = run_helm(
            release.helm,
            "upgrade",
            release.name,
            str(CHART),
            *values_args(release.port, release.peering),
            *release.helm_args(cluster),
            check=False,
        )
        assert res.returncode != 0 and "conflict" in res.stderr and "kubectl-patch" in res.stderr, res.stderr
        run_helm(
            release.helm,
            "upgrade",
            release.name,
            str(CHART),
            "--force-conflicts",
            *values_args(release.port, release.peering),
            *release.helm_args(cluster),
        )
    wait_until(
        lambda: can_i(
            cluster, release.sa_user, "patch", "vlmdeployments.vlmops.io", "--subresource=status", "-n", namespace
        ),
        "helm upgrade to restore the rule",
    )
    wait_ready(cluster, namespace, "no-status-rights")


def test_helm_upgrade_leaves_crds_and_server_side_apply_updates_them(
    cluster: Cluster, release: Release, tmp_path: Path
) -> None:
    chart = tmp_path / "vlm-operator"
    shutil.copytree(CHART, chart)
    crd_file = chart / "crds" / "vlmops.io_vlmdeployments.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    marker = f"upgrade-test {uuid.uuid4().hex[:6]}"
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = marker
    crd_file.write_text(yaml.safe_dump(crd))

    def live_description() -> str:
        live = cluster.get_json("crd", CRD)
        return str(live["spec"]["versions"][0]["schema"]["openAPIV3Schema"].get("description", ""))

    run_helm(
        release.helm,
        "upgrade",
        release.name,
        str(chart),
        *values_args(release.port, release.peering),
        *release.helm_args(cluster),
    )
    assert live_description() != marker  # Helm never upgrades crds/ (install-only, v4 as v3)
    try:
        # the documented path: apply the chart's CRDs server-side before `helm upgrade`
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_file))
        assert live_description() == marker
    finally:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / crd_file.name))
    assert live_description() != marker


def test_helm_uninstall_leaves_users_vlmdeployments_and_the_crd(
    cluster: Cluster, namespace: str, release: Release, chart_op: Operator
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    chart_op.stop()
    run_helm(release.helm, "uninstall", release.name, *release.helm_args(cluster))
    assert not cluster.exists("clusterrole", release.fullname)
    assert cluster.kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, check=False).returncode
    assert cluster.exists("crd", CRD)
    obj = vlmd(cluster, namespace, name)
    assert obj["metadata"]["name"] == name and condition(obj, "Ready")["status"] == "True"
    # its children stay too (owned by the VLMDeployment, which stays)
    assert cluster.exists("deployment", name, namespace)
