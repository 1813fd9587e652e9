"""The chart's optional NetworkPolicy: off by default, refused without the API server's CIDRs, and when on it admits
only those CIDRs to the webhook port (and the given peers to the metrics port). The API server accepts the object
(server-side dry run); the dev cluster has no CNI, so enforcement itself is not exercised here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cluster
from tests.integration.chart_helpers import CHART, docs, run_helm, template
from tests.integration.helpers import apply

pytestmark = [pytest.mark.integration, pytest.mark.portable]


def test_network_policy_is_optional_and_admits_only_the_api_server(
    cluster: Cluster, helm: Path, namespace: str
) -> None:
    assert not [d for d in docs(template(helm, namespace=namespace)) if d["kind"] == "NetworkPolicy"]
    res = run_helm(helm, "template", "x", str(CHART), "--set", "networkPolicy.enabled=true", check=False)
    assert res.returncode != 0 and "networkPolicy.apiServerCIDRs" in res.stderr
    values = {
        "networkPolicy": {
            "enabled": True,
            "apiServerCIDRs": ["10.0.0.10/32"],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        }
    }
    [policy] = [d for d in docs(template(helm, namespace=namespace, values=values)) if d["kind"] == "NetworkPolicy"]
    webhook, metrics = policy["spec"]["ingress"]
    assert webhook == {"from": [{"ipBlock": {"cidr": "10.0.0.10/32"}}], "ports": [{"protocol": "TCP", "port": 9443}]}
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9090}]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    apply(cluster, policy, "--dry-run=server", namespace=namespace)
