"""Pod Security: the chart's operator pod is admitted in a namespace that enforces the ``restricted`` level (the
API server's built-in PodSecurity admission), and the level the rendered vLLM pods need is measured and printed.

The operator's Deployment from ``helm template`` goes into a namespace labelled ``enforce=restricted`` and
``warn=restricted``: applying it gives no "would violate PodSecurity" warning, and its ReplicaSet creates the pod
(PodSecurity refuses pods, not Deployments, so a refused pod shows as FailedCreate).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.chart_helpers import docs, template
from tests.integration.helpers import apply
from tests.manifests import sample_path

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
