"""Pod Security: the chart's operator pod is admitted in a namespace that enforces the ``restricted`` level (the
API server's built-in PodSecurity admission), and the level the rendered vLLM pods need is measured and printed.

The operator's Deployment from ``helm template`` goes into a namespace labelled ``enforce=restricted`` and
``warn=restricted``: applying it gives no "would violate PodSecurity" warning, and its ReplicaSet creates the pod
(PodSecurity refuses pods, not Deployments, so a refused pod shows as FailedCreate).

The vLLM pods are judged the same way: with ``spec.podTemplate.securityContext`` (non-root) their pod is created in a
namespace enforcing ``restricted``; without it, it is refused there and created in one enforcing ``baseline``.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.chart_helpers import docs, template
from tests.integration.helpers import apply
from tests.manifests import sample_path
from vlm_operator.api import VLMDeployment
from vlm_operator.reconcile import build_plan

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restricted_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"psa-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "label", "namespace", name,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_operator_chart_runs_under_restricted(cluster: Cluster, helm: Path, restricted_namespace: str) -> None:
    ns = restricted_namespace
    rendered = docs(template(helm, namespace=ns))
    wanted = [d for d in rendered if d["kind"] in ("ServiceAccount", "Deployment")]
    assert {d["kind"] for d in wanted} == {"ServiceAccount", "Deployment"}
    res = apply(cluster, wanted, namespace=ns)
    assert "would violate PodSecurity" not in res.stderr, res.stderr
    dep = next(d for d in wanted if d["kind"] == "Deployment")["metadata"]["name"]
    wait_until(
        lambda: cluster.get_json("pods", "-n", ns)["items"],
        f"the {dep} ReplicaSet to create its pod under Pod Security restricted",
        timeout=60,
    )
    events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    assert "FailedCreate" not in events


def test_the_level_vllm_pods_need(cluster: Cluster, restricted_namespace: str) -> None:
    """vllm/vllm-openai runs as root: the rendered pod is refused under restricted (the warning names why) and the
    level it needs is printed."""
    out = subprocess.run(
        [".venv/bin/vlmctl", "render", "-f", str(sample_path("llava-1.5-7b-l4"))],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    ).stdout  # fmt: skip
    dep = next(d for d in yaml.safe_load_all(out) if d and d.get("kind") == "Deployment")
    dep["metadata"].pop("ownerReferences", None)
    dep["metadata"]["namespace"] = restricted_namespace
    levels = {}
    for level in ("restricted", "baseline"):
        ns = restricted_namespace
        cluster.kubectl("label", "namespace", ns, f"pod-security.kubernetes.io/warn={level}", "--overwrite")
        res = apply(cluster, dep, "--dry-run=server", namespace=ns)
        levels[level] = "would violate PodSecurity" not in res.stderr
        if level == "restricted":
            assert not levels[level], "the vLLM pod unexpectedly meets restricted"
            assert "runAsNonRoot" in res.stderr or "allowPrivilegeEscalation" in res.stderr, res.stderr
    print(f"\nPOD SECURITY vLLM pod: restricted={levels['restricted']} baseline={levels['baseline']}")
    assert levels["baseline"], "the vLLM pod needs more than baseline"


NON_ROOT = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}


def _rendered_deployment(namespace: str, name: str, security: dict[str, Any] | None) -> dict[str, Any]:
    """The Deployment the operator renders for the L4 sample, with ``spec.podTemplate.securityContext`` or without."""
    doc = yaml.safe_load((ROOT / "crds" / "samples" / "llava-1.5-7b-l4.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
    if security is not None:
        doc["spec"].setdefault("podTemplate", {})["securityContext"] = security
    desired = build_plan(VLMDeployment.model_validate(doc)).desired
    dep = next(d for d in desired if d["kind"] == "Deployment")
    dep["metadata"].pop("ownerReferences", None)
    return dep


def _pod_created(cluster: Cluster, ns: str, dep: dict[str, Any]) -> tuple[bool, str]:
    """Create ``dep`` for real (PodSecurity ``enforce`` judges pods, not Deployments) and see whether its ReplicaSet
    could create the pod, or got FailedCreate with the reason."""
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(dep))
    name = dep["metadata"]["name"]

    def outcome() -> tuple[bool, str] | None:
        pods = [p for p in cluster.get_json("pods", "-n", ns)["items"] if p["metadata"]["name"].startswith(name + "-")]
        if pods:
            return True, ""
        events = cluster.get_json("events", "-n", ns)["items"]
        failed = [e["message"] for e in events if e.get("reason") == "FailedCreate" and name in e["message"]]
        return (False, failed[0]) if failed else None

    result: tuple[bool, str] = wait_until(outcome, f"{name}: a pod or FailedCreate", timeout=60)
    return result


def test_non_root_vllm_pods_run_under_restricted(cluster: Cluster, restricted_namespace: str) -> None:
    """``spec.podTemplate.securityContext`` (non-root) makes the vLLM pod meet ``restricted``; without it the pod is
    refused there and needs ``baseline``. The API server's PodSecurity admission enforces each level for real."""
    ns = restricted_namespace
    non_root = _rendered_deployment(ns, "nonroot", NON_ROOT)
    assert non_root["spec"]["template"]["spec"]["securityContext"] == NON_ROOT
    created, why = _pod_created(cluster, ns, non_root)
    assert created, f"the non-root vLLM pod was refused under restricted: {why}"

    created, why = _pod_created(cluster, ns, _rendered_deployment(ns, "asroot", None))
    assert not created, "the default (root) vLLM pod was admitted under restricted"
    assert "violates PodSecurity" in why and "runAsNonRoot" in why, why

    baseline = f"psa-b-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", baseline)
    try:
        cluster.kubectl("label", "namespace", baseline, "pod-security.kubernetes.io/enforce=baseline")
        created, why = _pod_created(cluster, baseline, _rendered_deployment(baseline, "asroot", None))
        assert created, f"the default vLLM pod was refused under baseline: {why}"
    finally:
        cluster.kubectl("delete", "namespace", baseline, "--wait=false", check=False)
    print(
        "\nPOD SECURITY vLLM pod: non-root spec admitted under restricted; default refused there, admitted at baseline"
    )
