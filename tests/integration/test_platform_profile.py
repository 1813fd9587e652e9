"""VLMPlatformProfile on the dev cluster: a profile that does not parse is refused at its own admission (the CRD's
schema and CEL rules); the operator's webhook refuses what a selected profile forbids, naming the profile and the
rule; an unchanged field and /scale pass a newer, stricter profile; a deleted profile blocks nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import Operator, apply, condition, sample, vlmd

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

ROOT = Path(__file__).resolve().parents[2]


def profile(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "vlmops.io/v1alpha1", "kind": "VLMPlatformProfile", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def team_profile(cluster: Cluster, namespace: str, operator: Operator) -> Iterator[str]:
    name = f"limits-{namespace}"
    cluster.kubectl("label", "namespace", namespace, f"vlmops.io/team={namespace}")
    doc = profile(
        name,
        namespaceSelector={"matchLabels": {"vlmops.io/team": namespace}},
        maxGPUsPerReplica=1,
        maxGPUsPerDeployment=2,
        requiredFitCheck="Enforce",
    )
    apply(cluster, doc)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "vlmplatformprofile", name, "--ignore-not-found")


def test_a_profile_that_does_not_parse_is_refused_at_its_own_admission(cluster: Cluster, operator: Operator) -> None:
    bad = profile("bad-numbers", maxGPUsPerReplica=8, maxGPUsPerDeployment=4)
    res = apply(cluster, bad, check=False)
    assert res.returncode != 0 and "maxGPUsPerReplica cannot exceed maxGPUsPerDeployment" in res.stderr, res.stderr
    typo = profile("bad-mode", requiredFitCheck="Sometimes")
    res = apply(cluster, typo, check=False)
    assert res.returncode != 0 and "requiredFitCheck" in res.stderr, res.stderr


def test_the_webhook_refuses_naming_the_profile_and_the_rule(
    cluster: Cluster, namespace: str, team_profile: str
) -> None:
    wide = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.engine.tensorParallelSize": 2})
    res = apply(cluster, wide, check=False)
    assert res.returncode != 0, res.stdout
    assert f"VLMPlatformProfile {team_profile}, rule maxGPUsPerReplica" in res.stderr, res.stderr
    assert "2 GPUs per replica exceed the 1 allowed" in res.stderr
    warn = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.fitCheck": "Warn"})
    res = apply(cluster, warn, check=False)
    assert res.returncode != 0 and "rule requiredFitCheck" in res.stderr and "spec.fitCheck" in res.stderr
    ok = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.scaling.replicas": 2})
    assert apply(cluster, ok).returncode == 0


def test_a_stricter_profile_never_blocks_unchanged_fields_or_scale(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    # created before any profile selects the namespace
    doc = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.engine.tensorParallelSize": 2, "spec.fitCheck": "Warn"})
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    stricter = f"stricter-{namespace}"
    cluster.kubectl("label", "namespace", namespace, f"vlmops.io/team={namespace}")
    sel = {"matchLabels": {"vlmops.io/team": namespace}}
    p = profile(stricter, namespaceSelector=sel, maxGPUsPerReplica=1, requiredFitCheck="Enforce")
    apply(cluster, p)
    try:
        doc["spec"]["engine"]["maxModelLen"] = 2048  # an unrelated change
        apply(cluster, doc)
        cluster.kubectl("scale", "vlmd", name, "-n", namespace, "--replicas=2")
        cluster.kubectl("annotate", "vlmd", name, "-n", namespace, "team/owner=a")
        assert vlmd(cluster, namespace, name)["spec"]["engine"]["maxModelLen"] == 2048
        # touching a policed field is checked
        doc["spec"]["engine"]["tensorParallelSize"] = 4
        res = apply(cluster, doc, check=False)
        assert res.returncode != 0 and f"VLMPlatformProfile {stricter}, rule maxGPUsPerReplica" in res.stderr
    finally:
        cluster.kubectl("delete", "vlmplatformprofile", stricter, "--ignore-not-found")
    # the profile is gone: nothing is blocked any more
    doc["spec"]["engine"]["tensorParallelSize"] = 4
    assert apply(cluster, doc).returncode == 0


def test_gpu_quota_warns_by_default_and_refuses_under_enforce(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "team-gpus", "namespace": namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": "2"}},
    }
    apply(cluster, quota)
    wait_until(
        lambda: cluster.get_json("resourcequota", "team-gpus", "-n", namespace).get("status", {}).get("hard"),
        "the quota controller to fill status.hard",
    )
    big = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.scaling.replicas": 3})
    res = apply(cluster, big)
    assert "3 replica(s) x 1 GPU(s) = 3 nvidia.com/gpu exceed what ResourceQuota team-gpus leaves: hard 2" in res.stderr
    # the API server's quota refuses the third pod; the refusal reaches the VLMDeployment's status with its numbers
    obj = wait_until(
        lambda: (
            (o := vlmd(cluster, namespace, big["metadata"]["name"]))
            and condition(o, "Progressing").get("reason") == "QuotaExceeded"
            and o
        ),
        "Progressing=QuotaExceeded",
        timeout=90,
    )
    msg = condition(obj, "Progressing")["message"]
    assert "exceeded quota: team-gpus" in msg and "limited: requests.nvidia.com/gpu=2" in msg, msg
    # under a profile with quotaCheck: Enforce the same spec is refused, naming the profile and the rule
    name = f"quota-{namespace}"
    cluster.kubectl("label", "namespace", namespace, f"vlmops.io/team={namespace}")
    sel = {"matchLabels": {"vlmops.io/team": namespace}}
    apply(cluster, profile(name, namespaceSelector=sel, quotaCheck="Enforce"))
    try:
        other = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.scaling.replicas": 4})
        other["metadata"]["name"] = "over-quota"
        res = apply(cluster, other, check=False)
        assert res.returncode != 0 and f"(VLMPlatformProfile {name}, rule quotaCheck)" in res.stderr, res.stderr
        # the existing one is not blocked by the newer profile when the change leaves its size alone
        big["spec"]["engine"]["maxModelLen"] = 2048
        assert apply(cluster, big).returncode == 0
    finally:
        cluster.kubectl("delete", "vlmplatformprofile", name, "--ignore-not-found")


def test_defaults_fill_only_unset_fields_in_what_the_operator_renders(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    name = f"defaults-{namespace}"
    cluster.kubectl("label", "namespace", namespace, f"vlmops.io/team={namespace}")
    mirror, hub = "registry.example.com/vllm/vllm-openai", "https://hf-mirror.example.com"
    doc = profile(
        name,
        namespaceSelector={"matchLabels": {"vlmops.io/team": namespace}},
        defaults={"imageMirror": mirror, "hfEndpoint": hub},
    )
    apply(cluster, doc)
    try:
        plain = sample("llava-1.5-7b-l4.yaml", namespace)
        mine = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.engine.image": "quay.io/me/vllm:v0.11.0"})
        mine["metadata"]["name"] = "explicit-image"
        apply(cluster, plain)
        apply(cluster, mine)

        def container(n: str) -> dict[str, Any]:
            dep = cluster.get_json("deployment", n, "-n", namespace)
            c: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
            return c

        # the profile cache holds for 30 s; the drift resync then renders with the defaults
        wait_until(
            lambda: (
                cluster.exists("deployment", plain["metadata"]["name"], namespace)
                and container(plain["metadata"]["name"])["image"] == f"{mirror}:v0.11.0"
            ),
            "the mirror image in the rendered Deployment",
            timeout=90,
        )
        env = {e["name"]: e.get("value") for e in container(plain["metadata"]["name"]).get("env", [])}
        assert env.get("HF_ENDPOINT") == hub, env
        # the stored objects keep what the users wrote: no image added, the explicit one never rewritten
        assert "image" not in vlmd(cluster, namespace, plain["metadata"]["name"])["spec"]["engine"]
        assert container("explicit-image")["image"] == "quay.io/me/vllm:v0.11.0"
        assert vlmd(cluster, namespace, "explicit-image")["spec"]["engine"]["image"] == "quay.io/me/vllm:v0.11.0"
    finally:
        cluster.kubectl("delete", "vlmplatformprofile", name, "--ignore-not-found")
