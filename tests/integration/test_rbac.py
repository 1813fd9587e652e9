"""The ClusterRole in deploy/operator.yaml is enough for the operator, and no more.

The operator runs as a real subprocess authenticated by a ServiceAccount token (``kubectl create token``) against the
session's API server, which authorizes with ``Node,RBAC``: every call it makes is checked against exactly the rules
that deploy/operator.yaml grants.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import (
    ROOT,
    Operator,
    apply,
    assert_too_wide_is_refused,
    condition,
    install_crds_and_peering,
    sample,
    wait_ready,
)
from tests.integration.operator_helpers import (
    DENIED,
    RBAC_KINDS,
    SA_NAME,
    SA_NAMESPACE,
    SA_USER,
    running_operator,
    token_kubeconfig,
)
from vlm_operator import rbac

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


def deploy_docs(*kinds: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy" / "operator.yaml").read_text()) if d and d["kind"] in kinds]


@pytest.fixture(scope="module")
def sa_kubeconfig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    docs = deploy_docs(*RBAC_KINDS)
    assert sorted(d["kind"] for d in docs) == sorted(RBAC_KINDS)
    apply(cluster, docs)
    install_crds_and_peering(cluster)
    # the RBAC authorizer learns of the new binding through its informers: wait until it answers for the SA
    wait_until(lambda: can_i(cluster, "list", "vlmdeployments.vlmops.io", "-A"), "the binding to take effect")
    token = cluster.kubectl("create", "token", SA_NAME, "-n", SA_NAMESPACE, "--duration=1h").stdout.strip()
    assert token.count(".") == 2, "expected a JWT"
    try:
        yield token_kubeconfig(cluster, token, tmp_path_factory.mktemp("sa") / "kubeconfig.yaml")
    finally:
        for d in reversed(docs):
            if d["kind"] != "Namespace":
                cluster.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "-n", SA_NAMESPACE, check=False)


@pytest.fixture(scope="module")
def sa_operator(cluster: Cluster, sa_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log", sa_kubeconfig) as op:
        yield op


def can_i(cluster: Cluster, verb: str, resource: str, *extra: str) -> bool:
    res = cluster.kubectl("auth", "can-i", verb, resource, f"--as={SA_USER}", *extra, check=False)
    return res.stdout.strip() == "yes"


def test_the_service_account_is_granted_every_rule_of_the_table(cluster: Cluster, sa_kubeconfig: Path) -> None:
    for rule in rbac.RULES:
        for resource in rule.resources:
            base, _, sub = resource.partition("/")
            target = f"{base}.{rule.group}" if rule.group else base
            for verb in rule.verbs:
                extra = ["--subresource", sub] if sub else []
                if rule.resource_names:
                    target_named = f"{target}/{rule.resource_names[0]}"
                    assert can_i(cluster, verb, target_named, "-A", *extra), (verb, target_named)
                    assert not can_i(cluster, verb, f"{target}/someone-elses", "-A", *extra), (verb, target)
                else:
                    assert can_i(cluster, verb, target, "-A", *extra), (verb, target, sub)


def test_the_service_account_cannot_read_secrets_or_delete(cluster: Cluster, sa_kubeconfig: Path) -> None:
    for verb, resource in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("get", "configmaps"),
        ("delete", "deployments.apps"),
        ("delete", "vlmdeployments.vlmops.io"),
        ("create", "pods"),
        ("update", "clusterroles.rbac.authorization.k8s.io"),
        ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("get", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ):
        assert not can_i(cluster, verb, resource, "-A"), f"the operator's ServiceAccount may {verb} {resource}"
    # and the API server itself refuses the token (not only `can-i`'s view of the rules)
    res = cluster.kubectl("--kubeconfig", str(sa_kubeconfig), "get", "secrets", "-A", check=False)
    assert res.returncode != 0 and "forbidden" in res.stderr.lower(), res.stderr


def test_operator_with_only_its_cluster_role_reconciles_to_ready(
    cluster: Cluster, namespace: str, sa_operator: Operator
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)  # through the operator's webhook (registered with the SA's rights)
    obj = wait_ready(cluster, namespace, name)
    assert condition(obj, "FitsGPU")["status"] == "True"
    for kind in ("deployment", "service", "poddisruptionbudget"):
        child = cluster.get_json(kind, name, "-n", namespace, "--show-managed-fields")
        assert child["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
        managers = {m["manager"] for m in child["metadata"].get("managedFields", [])}
        assert "vlm-operator" in managers, (kind, managers)

    # the webhook lists nodes: TP x PP above the largest L4 node (4 GPUs) is refused with the node's figure
    assert_too_wide_is_refused(cluster, namespace)

    # a spec change converges too (patch of the Deployment, status patch)
    doc["spec"]["engine"]["maxModelLen"] = 2048
    apply(cluster, doc)
    wait_until(
        lambda: (
            "2048"
            in cluster.get_json("deployment", name, "-n", namespace)["spec"]["template"]["spec"]["containers"][0][
                "command"
            ]
        ),
        "the Deployment to follow maxModelLen",
    )
    wait_ready(cluster, namespace, name)
    # the rollout's event (RolloutSurge or RolloutInPlace) was recorded by the ServiceAccount; a routine create
    # records none
    events = cluster.get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    ours = [e["reason"] for e in events if e.get("reportingComponent") == "vlm-operator"]
    assert ours and all(r.startswith("Rollout") for r in ours), events

    log = sa_operator.output()
    denied = [line for line in log.splitlines() if DENIED.search(line)]
    assert not denied, "the operator was refused:\n" + "\n".join(denied[:20])
    assert sa_operator.proc is not None and sa_operator.proc.poll() is None, log[-3000:]
