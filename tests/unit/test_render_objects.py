"""The Deployment, Service and PDB a VLMDeployment becomes: golden files per sample, and the pod-shape rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import ADMITTED_SAMPLES, sample_path
from vlm_operator import gpus
from vlm_operator.api import VLMDeployment
from vlm_operator.reconcile import build_plan
from vlm_operator.render import objects

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "objects"
REGENERATE = os.environ.get("VLM_REGENERATE_GOLDEN") == "1"
SAMPLES = ADMITTED_SAMPLES
UID = "11111111-2222-3333-4444-555555555555"


def load(path: Path, **spec_overrides: Any) -> VLMDeployment:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"] = {"name": doc["metadata"]["name"], "namespace": "ns", "uid": UID}
    for dotted, value in spec_overrides.items():
        node = doc["spec"]
        *parents, leaf = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return VLMDeployment.model_validate(doc)


sample = sample_path


def container(dep: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return c


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_golden_objects(path: Path) -> None:
    rendered = yaml.safe_dump_all(build_plan(load(path)).desired, sort_keys=True)
    golden = GOLDEN / f"{path.stem}.yaml"
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}; run with VLM_REGENERATE_GOLDEN=1"
    assert rendered == golden.read_text()


def test_rendering_is_deterministic_and_the_hash_follows_the_spec() -> None:
    a = build_plan(load(sample("llava-1.5-7b-l4"))).desired
    b = build_plan(load(sample("llava-1.5-7b-l4"))).desired
    assert a == b
    c = build_plan(load(sample("llava-1.5-7b-l4"), **{"engine.maxModelLen": 2048})).desired
    h = objects.ANN_SPEC_HASH
    assert (
        a[0]["spec"]["template"]["metadata"]["annotations"][h] != c[0]["spec"]["template"]["metadata"]["annotations"][h]
    )
    # replicas change the Deployment but not the pod template
    d = build_plan(load(sample("llava-1.5-7b-l4"), **{"scaling.replicas": 3})).desired
    assert d[0]["spec"]["template"] == a[0]["spec"]["template"]
    assert (
        d[0]["metadata"]["annotations"][objects.ANN_OBJECT_HASH]
        != a[0]["metadata"]["annotations"][objects.ANN_OBJECT_HASH]
    )


def test_gpu_count_affinity_and_toleration() -> None:
    dep = build_plan(load(sample("gemma-3-27b-tp2"))).desired[0]
    c = container(dep)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    pod = dep["spec"]["template"]["spec"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L40S"]} in term["matchExpressions"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_a_mig_slice_replaces_the_gpu_resource_and_sizes_the_estimate() -> None:
    v = load(sample("llava-1.5-7b-l4"), **{"resources.gpu": {"product": "A100-80GB", "migProfile": "2g.20gb"}})
    plan = build_plan(v)
    c = container(plan.desired[0])
    assert c["resources"]["limits"] == {"memory": c["resources"]["limits"]["memory"], "nvidia.com/mig-2g.20gb": "1"}
    assert c["resources"]["requests"]["nvidia.com/mig-2g.20gb"] == "1"
    pod = plan.desired[0]["spec"]["template"]["spec"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]} in term[
        "matchExpressions"
    ]
    assert plan.fit.summary["gpu"] == "A100-80GB MIG 2g.20gb" and plan.fit.summary["gpuMemoryGiB"] == 19.5


def test_min_memory_affinity_lists_every_large_enough_product() -> None:
    vlmd = load(sample("llava-1.5-7b-l4"), **{"resources.gpu": {"minMemoryGiB": 70}})
    dep = objects.deployment(vlmd, objects.RenderPlan(command=("vllm",)))
    term = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    values = term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
    assert values == sorted(p.product for p in gpus.GPU_PRODUCTS if p.memory_mib >= 70 * 1024)
    assert "NVIDIA-L4" not in values and "NVIDIA-H100-80GB-HBM3" in values


def test_user_affinity_terms_all_get_the_gpu_requirement() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                ]
            }
        }
    }
    vlmd = load(sample("llava-1.5-7b-l4"), **{"podTemplate.affinity": affinity})
    dep = objects.deployment(vlmd, objects.RenderPlan(command=("vllm",)))
    terms = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    for t in terms["nodeSelectorTerms"]:
        assert t["matchExpressions"][-1]["key"] == "nvidia.com/gpu.product"
    assert vlmd.spec.pod_template.affinity == affinity  # the spec itself is never changed


def test_shm_and_memory_come_from_the_estimate() -> None:
    vlmd = load(sample("llava-1.5-7b-l4"))
    plan = objects.RenderPlan(command=("vllm",), host_memory_bytes=40 * objects.GIB, shm_bytes=6 * objects.GIB + 1)
    dep = objects.deployment(vlmd, plan)
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "7Gi"}
    # the larger of the estimate and spec.resources.memory (32Gi in the sample)
    assert container(dep)["resources"]["requests"]["memory"] == "40Gi"
    small = objects.deployment(vlmd, objects.RenderPlan(command=("vllm",), host_memory_bytes=objects.GIB))
    assert container(small)["resources"]["limits"]["memory"] == "32Gi"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container(dep)["volumeMounts"]


def test_startup_budget_grows_with_weights_and_downloads() -> None:
    spec = load(sample("llava-1.5-7b-l4")).spec
    small, big = objects.startup_budget_seconds(spec, 10), objects.startup_budget_seconds(spec, 140)
    assert big > small > objects.STARTUP_BASE_SECONDS
    offline = load(
        sample("llava-1.5-7b-l4"),
        **{"model.offline": True, "model.cache": {"persistentVolumeClaim": {"claimName": "weights"}}},
    ).spec
    assert objects.startup_budget_seconds(offline, 140) < big
    dep = objects.deployment(load(sample("llava-1.5-7b-l4")), objects.RenderPlan(command=("vllm",), weights_gib=140))
    probe = container(dep)["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= big
    assert probe["httpGet"] == {"path": "/health", "port": "http"}
    assert dep["spec"]["progressDeadlineSeconds"] >= big


def test_secrets_are_env_references_never_values_or_args() -> None:
    vlmd = load(
        sample("llava-1.5-7b-l4"),
        **{"model.hfTokenSecret": {"name": "hf", "key": "token"}, "engine.apiKeySecret": {"name": "api", "key": "k"}},
    )
    plan = build_plan(vlmd)
    env = {e["name"]: e for e in container(plan.desired[0])["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "api", "key": "k"}
    assert not any("token" in a.lower() or "api-key" in a for a in plan.command)
    ann = plan.desired[0]["spec"]["template"]["metadata"]["annotations"]
    assert not any("hf" in v for v in ann.values() if isinstance(v, str) and v != "true")


def test_children_are_owned_and_labelled() -> None:
    for obj in build_plan(load(sample("phi-3.5-vision-crops"))).desired:
        ref = obj["metadata"]["ownerReferences"][0]
        assert ref["uid"] == UID and ref["controller"] is True and ref["kind"] == "VLMDeployment"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "vlm-operator"
    svc = build_plan(load(sample("phi-3.5-vision-crops"))).desired[1]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]


def test_security_context_is_restrictive() -> None:
    sc = container(build_plan(load(sample("llava-1.5-7b-l4"))).desired[0])["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}


def test_non_root_pods_get_the_security_context_and_a_writable_home() -> None:
    default = objects.deployment(load(sample("llava-1.5-7b-l4")), objects.RenderPlan(command=("vllm",)))
    pod = default["spec"]["template"]["spec"]
    assert "securityContext" not in pod  # unset: the image's user, and the same template hash as before
    assert "HOME" not in {e["name"] for e in container(default)["env"]}
    assert "home" not in {v["name"] for v in pod["volumes"]}

    sc = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
    vlmd = load(sample("llava-1.5-7b-l4"), **{"podTemplate.securityContext": sc})
    dep = objects.deployment(vlmd, objects.RenderPlan(command=("vllm",)))
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"] == sc
    assert {"name": "HOME", "value": objects.HOME_DIR} in container(dep)["env"]
    assert {"name": "home", "emptyDir": {}} in pod["volumes"]
    assert {"name": "home", "mountPath": objects.HOME_DIR} in container(dep)["volumeMounts"]
    # what Pod Security restricted checks on the container is rendered for every pod
    assert container(dep)["securityContext"] == container(default)["securityContext"]
    assert (
        dep["spec"]["template"]["metadata"]["annotations"][objects.ANN_SPEC_HASH]
        != (default["spec"]["template"]["metadata"]["annotations"][objects.ANN_SPEC_HASH])
    )


def test_a_cache_mounted_at_the_home_folder_is_mounted_once() -> None:
    vlmd = load(
        sample("llava-1.5-7b-l4"),
        **{
            "podTemplate.securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
            "model.cache.mountPath": "/home/vllm",
        },
    )
    dep = objects.deployment(vlmd, objects.RenderPlan(command=("vllm",)))
    paths = [m["mountPath"] for m in container(dep)["volumeMounts"]]
    assert len(paths) == len(set(paths)) and objects.HOME_DIR in paths
