"""One refusal policy (``admission.decide``) for the webhook and the reconciler, and one GPU vocabulary.

Regressions from issue 13: ``--bogus-flag`` in extraArgs passed admission and then made every reconcile raise;
``min_pixels > max_pixels`` made the webhook fail with a TokenError traceback; TP 4 x DP 2 on 4-GPU L4 nodes was
admitted (GPUs per pod counted as TP x PP) and its pods could never schedule; with the webhook off, a processorKwargs
typo was never reported.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests import parsed_spec
from vlm_operator import admission
from vlm_operator.api import VLMDeployment, VLMDeploymentSpec
from vlm_operator.reconcile import build_plan
from vlm_operator.releases import DEFAULT_VLLM_VERSION
from vlm_operator.render import objects

QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"


def spec(**fields: Any) -> VLMDeploymentSpec:
    doc: dict[str, Any] = {"model": {"name": QWEN}, "resources": {"gpu": {"product": "H100"}}}
    return parsed_spec(doc, **fields)


def vlmd(s: VLMDeploymentSpec) -> VLMDeployment:
    return VLMDeployment(metadata={"name": "m", "namespace": "ns", "uid": "u-1"}, spec=s)


def test_unknown_extra_arg_is_refused_with_its_field_and_a_fix() -> None:
    d = admission.decide(spec(**{"engine.extraArgs": ["--bogus-flag"]}), {})
    assert not d.allowed
    assert d.reason == admission.REASON_INVALID
    assert d.errors[0].startswith("spec.engine.extraArgs")
    assert "--bogus-flag" in d.errors[0] and "fix:" in d.errors[0]


def test_min_pixels_above_max_pixels_is_a_clean_refusal_not_an_exception() -> None:
    s = spec(**{"multimodal.processorKwargs": {"min_pixels": 4_000_000, "max_pixels": 100_000}})
    d = admission.decide(s, {})  # used to raise TokenError out of the webhook
    assert not d.allowed
    assert d.errors[0].startswith("spec.multimodal.processorKwargs: need 0 < min_pixels <= max_pixels")


def test_gpus_per_engine_and_per_pod() -> None:
    s = spec(**{"engine.tensorParallelSize": 4, "engine.dataParallelSize": 2})
    assert (s.engine.gpus_per_engine, s.engine.gpus_per_pod) == (4, 8)
    assert s.gpus_per_replica == objects.gpus_per_replica(s) == 8


def test_tp4_dp2_on_4_gpu_l4_nodes_is_refused_and_a_fix_is_named() -> None:
    s = spec(**{"engine.tensorParallelSize": 4, "engine.dataParallelSize": 2, "resources.gpu.product": "L4"})
    d = admission.decide(s, {"NVIDIA-L4": 4})
    assert not d.allowed and d.reason == admission.REASON_NODE
    assert "= 8 GPUs per pod" in d.errors[0] and "largest NVIDIA-L4 node has 4" in d.errors[0]
    assert "dataParallelSize 1" in d.errors[0]  # the recommendation: run the DP ranks as replicas
    # the same spec on 8-GPU nodes passes the node-size check
    assert admission.REASON_NODE not in admission.decide(s, {"NVIDIA-L4": 8}).reason


@pytest.mark.parametrize(
    "fields",
    [
        {"engine.extraArgs": ["--bogus-flag"]},
        {"multimodal.processorKwargs": {"min_pixels": 4_000_000, "max_pixels": 100_000}},
        {"multimodal.processorKwargs": {"max_pixel": 100_000}},  # typo of max_pixels
    ],
)
def test_reconciler_refuses_with_exactly_the_webhooks_words(fields: dict[str, Any]) -> None:
    s = spec(**fields)
    webhook = admission.decide(s, {})
    plan = build_plan(vlmd(s), {})  # the reconciler's path (with --no-webhook the only one)
    assert not webhook.allowed
    assert plan.refused == f"not rolled out: {webhook.message}"
    assert plan.desired == []  # nothing is applied
    assert plan.decision.reason == webhook.reason


def test_processor_kwargs_typo_names_the_key_and_the_known_options() -> None:
    d = admission.decide(spec(**{"multimodal.processorKwargs": {"max_pixel": 100_000}}), {})
    assert d.errors[0].startswith("spec.multimodal.processorKwargs.max_pixel is not a")
    assert "max_pixels" in d.errors[0]


def test_an_allowed_spec_is_rendered_once_by_the_policy() -> None:
    s = spec()
    d = admission.decide(s, {})
    assert d.allowed and d.rendered is not None
    plan = build_plan(vlmd(s), {})
    assert plan.command == d.rendered.argv
    assert plan.desired[0]["spec"]["template"]["spec"]["containers"][0]["command"] == list(d.rendered.argv)


def test_an_unpinned_object_keeps_the_release_recorded_in_status_when_the_default_changes() -> None:
    # Upgrades must not roll pods: an object without spec.engine.version runs the release the operator recorded in
    # status.engineVersion when it first reconciled it, not a newer operator's default.
    body: dict[str, Any] = {
        "apiVersion": "vlmops.io/v1alpha1",
        "kind": "VLMDeployment",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u-1"},
        "spec": {"model": {"name": QWEN}, "resources": {"gpu": {"product": "H100"}}},
    }
    fresh = admission.parse(body)
    assert fresh.spec.engine.version == DEFAULT_VLLM_VERSION
    recorded = admission.parse({**body, "status": {"engineVersion": "0.11.0"}})
    assert recorded.spec.engine.version == "0.11.0"
    template = build_plan(recorded, {}).desired[0]["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.11.0"
    # a pinned spec wins over what status recorded
    pinned = {**body, "spec": {**body["spec"], "engine": {"version": "0.10.2"}}, "status": {"engineVersion": "0.11.0"}}
    assert admission.parse(pinned).spec.engine.version == "0.10.2"
