"""VLMBatchJob API model: its own fields, the shared blocks, and the VLMDeploymentSpec it hands the policy."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from vlm_operator.api.batch import VLMBatchJob, VLMBatchJobSpec, sampling_flag_available
from vlm_operator.api.batch_crd import BATCH_CRD_FILE, batch_crd


def _spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": "Qwen/Qwen2.5-VL-3B-Instruct"},
        "input": {"url": "https://store.example/in.jsonl?sig=abc"},
        "output": {"pvc": {"claimName": "results", "path": "run-1"}},
    }
    base.update(over)
    return base


def test_deployment_spec_carries_parallelism_and_sampling() -> None:
    s = VLMBatchJobSpec.model_validate(_spec(parallelism=3, sampling={"temperature": 0.2, "maxTokens": 64}))
    d = s.deployment_spec()
    assert d.scaling.replicas == 3 and d.scaling.mode == "Manual"
    gen = d.engine.override_generation_config
    assert gen is not None and gen.temperature == 0.2 and gen.max_new_tokens == 64
    assert not d.fit_check_explicit  # unwritten stays unwritten: the policy treats it like a VLMDeployment's
    assert VLMBatchJobSpec.model_validate(_spec(fitCheck="Enforce")).deployment_spec().fit_check_explicit


def test_engine_override_wins_over_sampling_defaults() -> None:
    s = VLMBatchJobSpec.model_validate(
        _spec(engine={"overrideGenerationConfig": {"temperature": 0.7}}, sampling={"temperature": 0, "maxTokens": 9})
    )
    gen = s.deployment_spec().engine.override_generation_config
    assert gen is not None and gen.temperature == 0.7 and gen.max_new_tokens == 9


def test_sampling_not_folded_on_a_release_without_the_flag() -> None:
    assert not sampling_flag_available("0.6.0") and sampling_flag_available("0.8.5")
    s = VLMBatchJobSpec.model_validate(_spec(engine={"version": "0.6.0"}, sampling={"temperature": 0.1}))
    assert s.deployment_spec().engine.override_generation_config is None


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"input": {"url": "https://a/b", "configMap": {"name": "c", "key": "k"}}}, "exactly one of pvc, configMap"),
        ({"input": {}}, "exactly one of pvc, configMap"),
        ({"output": {"pvc": {"claimName": "r", "path": "a/../../etc"}}}, "must stay inside the volume"),
        ({"resources": {"gpu": {"count": 2}}}, "resources.gpu.count must equal"),
        ({"parallelism": 0}, "parallelism"),
        ({"sampling": {"temperature": -1}}, "temperature"),
        ({"input": {"url": "ftp://a/b"}}, "url"),
    ],
)
def test_bad_specs_name_the_field(over: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        VLMBatchJobSpec.model_validate(_spec(**over))
    assert words in str(exc.value)


def test_name_rules_and_queue_label() -> None:
    body = {"metadata": {"name": "caps", "labels": {"kueue.x-k8s.io/queue-name": "gpu-batch"}}, "spec": _spec()}
    assert VLMBatchJob.from_k8s(body).queue_name == "gpu-batch"
    with pytest.raises(ValidationError, match="at most 52 characters"):
        VLMBatchJob.from_k8s({"metadata": {"name": "a" * 53}, "spec": _spec()})
    with pytest.raises(ValidationError, match="DNS-1035"):
        VLMBatchJob.from_k8s({"metadata": {"name": "Caps.x"}, "spec": _spec()})


def test_crd_shape() -> None:
    crd = batch_crd()
    assert BATCH_CRD_FILE == "vlmops.io_vlmbatchjobs.yaml"
    names = crd["spec"]["names"]
    assert names["kind"] == "VLMBatchJob" and names["shortNames"] == ["vlmbj"]
    version = crd["spec"]["versions"][0]
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert cols["Progress"] == ".status.progress"
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # the shared blocks are the VLMDeployment's schemas, field for field
    from vlm_operator.api.crd import crd as vlmd_crd

    vspec = vlmd_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for block in ("model", "engine", "multimodal", "resources"):
        ours = {k: v for k, v in spec["properties"][block].items() if k != "description"}
        assert ours == {k: v for k, v in vspec["properties"][block].items() if k != "description"}, block
    rules = [r["message"] for r in spec["x-kubernetes-validations"]]
    assert any("resources.gpu.count must equal" in m for m in rules)
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for key in (
        "linesTotal",
        "linesDone",
        "linesFailed",
        "images",
        "promptTokens",
        "completionTokens",
        "throughput",
        "estimatedSecondsLeft",
        "observedGeneration",
        "conditions",
    ):
        assert key in status, key
