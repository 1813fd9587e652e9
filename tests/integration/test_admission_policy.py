"""deploy/policy/validating-admission-policy.yaml on the dev cluster's API server: the static rules (models, images and
registries, trustRemoteCode, GPU products) refuse with a message naming the field, the policy and the rule; other
namespaces are untouched; a policy made stricter later never blocks an existing object's unrelated updates or /scale.
No operator runs here: these refusals are the API server's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import WEBHOOK, apply, install_crds_and_peering, sample

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "deploy" / "policy" / "validating-admission-policy.yaml"
POLICY = "vlm-allowed-models-images-gpus"


@pytest.fixture(scope="module")
def policy(cluster: Cluster) -> Iterator[list[dict[str, Any]]]:
    # no operator in this module: a webhook configuration left by another module would point at a dead port
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    install_crds_and_peering(cluster)
    docs = [d for d in yaml.safe_load_all(POLICY_FILE.read_text()) if d]
    cluster.kubectl("apply", "--server-side", "-f", str(POLICY_FILE))
    try:
        yield docs
    finally:
        for d in reversed(docs):
            ns = ["-n", d["metadata"]["namespace"]] if d["metadata"].get("namespace") else []
            cluster.kubectl("delete", d["kind"], d["metadata"]["name"], *ns, "--ignore-not-found", "--wait=false")


@pytest.fixture
def restricted(cluster: Cluster, namespace: str, policy: list[dict[str, Any]]) -> str:
    cluster.kubectl("label", "namespace", namespace, "vlmops.io/policy-tier=restricted")
    return namespace


def dry_run(cluster: Cluster, doc: dict[str, Any]) -> Any:
    return apply(cluster, doc, "--dry-run=server", check=False)


def refused(cluster: Cluster, doc: dict[str, Any]) -> str:
    """The API server's refusal of ``doc`` (waiting for the policy to be loaded the first time)."""
    res = wait_until(
        lambda: (r := dry_run(cluster, doc)).returncode != 0 and "ValidatingAdmissionPolicy" in r.stderr and r,
        "the policy to refuse",
        timeout=30,
    )
    return str(res.stderr)


def test_each_rule_refuses_with_the_field_policy_and_rule(cluster: Cluster, restricted: str) -> None:
    ok = sample("llava-1.5-7b-l4.yaml", restricted)
    bad_model = sample("qwen2.5-vl-7b-pixels.yaml", restricted)
    bad_model["spec"]["model"]["name"] = "someone/unvetted-vlm"
    msg = refused(cluster, bad_model)
    assert "spec.model.name: someone/unvetted-vlm is not allowed" in msg and POLICY in msg and "rule models" in msg, msg
    assert dry_run(cluster, ok).returncode == 0, dry_run(cluster, ok).stderr

    bad_image = sample("llava-1.5-7b-l4.yaml", restricted, **{"spec.engine.image": "quay.io/someone/vllm:latest"})
    msg = refused(cluster, bad_image)
    assert "spec.engine.image: quay.io/someone/vllm:latest is not from an allowed registry" in msg, msg
    assert "rule registries" in msg, msg
    mirror = sample(
        "llava-1.5-7b-l4.yaml", restricted, **{"spec.engine.image": "registry.example.com/vllm/openai:v0.11.0"}
    )
    assert dry_run(cluster, mirror).returncode == 0, dry_run(cluster, mirror).stderr

    trust = sample("llava-1.5-7b-l4.yaml", restricted, **{"spec.model.trustRemoteCode": True})
    msg = refused(cluster, trust)
    assert "spec.model.trustRemoteCode: true is not allowed" in msg and "rule trustRemoteCode" in msg, msg

    gpu = sample("llava-1.5-7b-l4.yaml", restricted, **{"spec.resources.gpu.product": "H100-80GB"})
    msg = refused(cluster, gpu)
    assert "spec.resources.gpu.product: H100-80GB is not allowed" in msg and "rule gpuProducts" in msg, msg


def test_an_unlabelled_namespace_is_not_bound(cluster: Cluster, namespace: str, policy: Any) -> None:
    bad = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.model.trustRemoteCode": True})
    bad["spec"]["model"]["name"] = "someone/unvetted-vlm"
    res = dry_run(cluster, bad)
    assert res.returncode == 0, res.stderr


def test_a_stricter_policy_never_blocks_existing_objects(cluster: Cluster, namespace: str, policy: Any) -> None:
    # created before the namespace is bound (as before a policy is tightened)
    doc = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.resources.gpu.product": "H100-80GB"})
    doc["spec"]["model"]["name"] = "someone/unvetted-vlm"
    apply(cluster, doc)
    name = doc["metadata"]["name"]
    cluster.kubectl("label", "namespace", namespace, "vlmops.io/policy-tier=restricted")
    fresh = {**doc, "metadata": {"name": "fresh", "namespace": namespace}}
    refused(cluster, fresh)  # the policy is in force for new objects here
    # unchanged fields: labels, annotations (kopf's bookkeeping), /scale and spec changes elsewhere all pass
    cluster.kubectl("label", "vlmd", name, "-n", namespace, "team=a")
    cluster.kubectl("annotate", "vlmd", name, "-n", namespace, "vlmops.io/touched=1")
    cluster.kubectl("scale", "vlmd", name, "-n", namespace, "--replicas=2")
    doc["spec"]["engine"]["maxModelLen"] = 2048
    apply(cluster, doc)
    # changing a policed field to another forbidden value is refused
    doc["spec"]["model"]["name"] = "someone/another-unvetted-vlm"
    res = apply(cluster, doc, check=False)
    assert res.returncode != 0 and "spec.model.name: someone/another-unvetted-vlm is not allowed" in res.stderr
