"""An operator started before its peering object exists: one loud warning, 503 on /readyz, and it resumes by itself.

kopf pauses an operator whose named peering object does not exist and says so only at DEBUG. The operator runs here
as a real subprocess against the local control plane, watching one namespace (so its peering is a KopfPeering in
that namespace, with a name no other test uses).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import (
    WEBHOOK,
    Operator,
    apply,
    free_port,
    install_crds_and_peering,
    sample,
    wait_webhook,
)
from tests.integration.operator_helpers import probe

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


@pytest.fixture
def paused_operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[tuple[Operator, str, int]]:
    install_crds_and_peering(cluster)
    cluster.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    name = f"p-{uuid.uuid4().hex[:8]}"
    health = free_port()
    op = Operator(
        cluster,
        tmp_path / "operator.log",
        args=[
            "--namespace",
            namespace,
            "--peering",
            name,
            "--liveness",
            f"http://127.0.0.1:{health}/healthz",
            "--peering-check-interval",
            "0.5",
        ],
    )
    op.start()
    try:
        yield op, name, health
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")


def test_missing_peering_warns_once_reports_not_ready_and_resumes(
    cluster: Cluster, namespace: str, paused_operator: tuple[Operator, str, int]
) -> None:
    op, peering_name, health = paused_operator
    wait_until(lambda: "PAUSED" in op.output(), "the paused warning", timeout=60)
    warning = op.output()
    assert f"KopfPeering '{peering_name}' in namespace '{namespace}' does not exist" in warning
    assert '"kind": "KopfPeering"' in warning and "--standalone" in warning
    assert probe(health, "/healthz")[0] == 200  # alive: restarting it would not help
    _, body = wait_until(
        lambda: (r := probe(health, "/readyz")) and r[0] == 503 and r, "/readyz to answer 503", timeout=30
    )
    assert body["peering"] == "missing-object" and "does not exist" in body["reasons"][0]

    # it serves the webhook while paused (admission works), but reconciles nothing
    wait_webhook(cluster)
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    wait_until(lambda: apply(cluster, doc, check=False).returncode == 0, "the webhook to admit the sample", timeout=60)
    wait_until(lambda: probe(health, "/readyz")[0] == 503, "still not ready", timeout=5)
    assert not cluster.exists("deployment", name, namespace)

    # the object appears: kopf resumes by itself, readiness turns 200, and the spec is reconciled
    obj = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": peering_name, "namespace": namespace},
    }
    apply(cluster, obj)
    wait_until(lambda: probe(health, "/readyz")[0] == 200, "/readyz to answer 200", timeout=30)
    wait_until(
        lambda: cluster.exists("deployment", name, namespace),
        "the paused operator to resume and create the Deployment",
        timeout=60,
    )
    out = op.output()
    assert out.count("PAUSED") == 1, out  # once, not per poll
    assert "resuming" in out
