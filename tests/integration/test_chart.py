"""The Helm chart as Helm itself sees it: ``helm lint`` and ``helm template`` (the pinned Helm, built from the Go module
proxy), against golden renderings per values set. No cluster needed.

    VLM_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/integration/test_chart.py   # after an intended chart change
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.chart_helpers import CHART, ROOT, docs, run_helm, template
from vlm_operator import rbac

pytestmark = [pytest.mark.integration]

GOLDEN = ROOT / "tests" / "golden" / "chart"
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "cert-manager": {"webhook.certSecret": "vlm-operator-webhook", "webhook.certManagerCertificate": "vlm-operator"},
    "multimodal-readiness": {"multimodalReadiness": True},
    "hub": {"hub.enabled": True, "hub.endpoint": "https://hf-mirror.example.com", "hub.tokenSecret": "hf"},
}


def _set_args(values: dict[str, Any]) -> list[str]:
    import json

    return [a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_passes_strict(helm: Path, name: str) -> None:
    res = run_helm(helm, "lint", "--strict", str(CHART), *_set_args(VALUE_SETS[name]))
    assert "0 chart(s) failed" in res.stdout, res.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_template_matches_the_golden_rendering(helm: Path, name: str) -> None:
    rendered = template(helm, release="vlm-operator", namespace="vlm-system", values=VALUE_SETS[name])
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("VLM_REGENERATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}; run with VLM_REGENERATE_GOLDEN=1"
    assert rendered == golden.read_text(), f"{golden} is stale; rerun with VLM_REGENERATE_GOLDEN=1 and review the diff"


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}])
def test_pods_status_is_granted_only_with_multimodal_readiness(helm: Path, values: dict[str, Any]) -> None:
    def grants(objs: list[dict[str, Any]]) -> bool:
        return any(
            "pods/status" in r["resources"] and "patch" in r["verbs"]
            for d in objs
            if d["kind"] in ("ClusterRole", "Role")
            for r in d["rules"]
        )

    assert not grants(docs(template(helm, values=values)))
    assert grants(docs(template(helm, values={**values, "multimodalReadiness": True})))


def test_the_default_rendering_is_least_privilege_and_owns_the_webhook(helm: Path) -> None:
    objs = docs(template(helm))
    kinds = sorted(d["kind"] for d in objs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterKopfPeering",
            "Service",
            "Deployment",
            "ValidatingWebhookConfiguration",
        ]
    ), kinds
    (role,) = [d for d in objs if d["kind"] == "ClusterRole"]
    assert role["rules"] == rbac.cluster_role_rules(rbac.chart_rules())
    webhook_rules = [r for r in role["rules"] if r["apiGroups"] == ["admissionregistration.k8s.io"]]
    assert webhook_rules == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": ["vlm-operator.vlmops.io"],
            "verbs": ["patch"],
        }
    ]
    (vwc,) = [d for d in objs if d["kind"] == "ValidatingWebhookConfiguration"]
    hook, batch_hook = vwc["webhooks"]  # VLMDeployment, then VLMBatchJob (handler ids validate, validate-batch)
    svc = next(d for d in objs if d["kind"] == "Service")
    assert hook["clientConfig"]["service"] == {
        "namespace": "vlm-system",
        "name": svc["metadata"]["name"],
        "port": 443,
        "path": "/validate",
    }
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert batch_hook["name"] == "validate-batch.vlm-operator.vlmops.io"
    assert batch_hook["rules"][0]["resources"] == ["vlmbatchjobs"]
    assert batch_hook["clientConfig"]["service"]["path"] == "/validate-batch"
    assert batch_hook["failurePolicy"] == "Fail" and batch_hook["sideEffects"] == "None"
    dep = next(d for d in objs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VLM_OPERATOR_WEBHOOK_CONFIG"] == "chart"


def test_with_cert_manager_the_operator_gets_no_write_on_the_webhook_configuration(helm: Path) -> None:
    objs = docs(template(helm, values=VALUE_SETS["cert-manager"]))
    (role,) = [d for d in objs if d["kind"] == "ClusterRole"]
    assert not [r for r in role["rules"] if r["apiGroups"] == ["admissionregistration.k8s.io"]]
    (vwc,) = [d for d in objs if d["kind"] == "ValidatingWebhookConfiguration"]
    assert vwc["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "vlm-system/vlm-operator"}
    dep = next(d for d in objs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VLM_OPERATOR_WEBHOOK_CONFIG"] == "injected"
    assert env["VLM_OPERATOR_WEBHOOK_CERT_DIR"] == "/etc/vlm-operator/webhook"


def test_the_chart_crds_are_the_generated_ones() -> None:
    for path in (CHART / "crds").glob("*.yaml"):
        assert yaml.safe_load_all(path.read_text()) and path.read_text() == (ROOT / "crds" / path.name).read_text()
