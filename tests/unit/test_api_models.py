"""Unit tests of the VLMDeployment models: defaults, parsing, every cross-field rule and the version checks.

``CEL_CASES`` (``tests/cel_cases.py``) is shared with ``tests/integration/test_crd_cel.py``: each case must be refused
by the pydantic model here and by the API server there, with the same message.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.cel_cases import BASE, CEL_CASES, LEGACY_OK, PVC, spec
from vlm_operator.api import (
    DEFAULT_VLLM_VERSION,
    LimitPerPrompt,
    VllmVersion,
    VLMDeployment,
    VLMDeploymentSpec,
)
from vlm_operator.api.field_mappings import FIELD_MAPPINGS, SHADOWED_ARG_PATTERN, shadowed_field
from vlm_operator.api.processor_kwargs import PROCESSOR_KWARGS, check_processor_kwargs
from vlm_operator.models.hf_config import MODEL_TYPE_FAMILY
from vlm_operator.releases import default_gpu_memory_utilization, default_image, default_limit_per_prompt


def parse(d: dict[str, Any]) -> VLMDeploymentSpec:
    return VLMDeploymentSpec.model_validate(d)


# --- defaults and parsing ---------------------------------------------------------------------------------------


def test_minimal_spec_takes_documented_defaults() -> None:
    s = parse(BASE)
    assert s.engine.version == DEFAULT_VLLM_VERSION
    assert s.engine.effective_image == f"vllm/vllm-openai:v{DEFAULT_VLLM_VERSION}"
    assert s.scaling.mode == "Manual" and s.scaling.replicas == 1
    assert s.rollout.auto_rollback is True and s.rollout.surge_policy == "Auto"
    assert s.fit_check == "Enforce" and not s.fit_check_explicit
    assert s.multimodal.encoder_tp_mode == "weights"
    assert s.gpus_per_replica == 1
    assert s.model.cache.persistent_volume_claim is None


def test_camel_case_and_python_names_parse_to_the_same_model() -> None:
    camel = parse(spec(engine={"tensorParallelSize": 2, "maxModelLen": 8192}, multimodal={"encoderTPMode": "data"}))
    snake = parse(
        spec(engine={"tensor_parallel_size": 2, "max_model_len": 8192}, multimodal={"encoder_tp_mode": "data"})
    )
    assert camel == snake
    dumped = camel.to_k8s()
    assert dumped["engine"]["tensorParallelSize"] == 2
    assert dumped["multimodal"]["encoderTPMode"] == "data"


def test_models_are_frozen_and_reject_unknown_fields() -> None:
    s = parse(BASE)
    with pytest.raises(ValidationError):
        s.engine.max_model_len = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse(spec(engine={"maxModelLength": 4096}))


def test_fit_check_explicitness_is_recorded() -> None:
    assert parse(spec(fitCheck="Enforce")).fit_check_explicit
    with pytest.raises(ValidationError):
        parse(spec(fitCheck="Bypass"))


def test_custom_image_with_explicit_version_is_accepted() -> None:
    s = parse(spec(engine={"image": "registry.example/vllm:custom", "version": "0.10.1.1"}))
    assert s.engine.effective_image == "registry.example/vllm:custom"


def test_status_ignores_kopf_bookkeeping_but_types_conditions() -> None:
    obj = {
        "apiVersion": "vlmops.io/v1alpha1",
        "kind": "VLMDeployment",
        "metadata": {"name": "x"},
        "spec": BASE,
        "status": {
            "kopf": {"progress": {}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "AllReplicasReady"}],
        },
    }
    d = VLMDeployment.from_k8s(obj)
    assert d.status is not None
    ready = d.status.condition("Ready")
    assert ready is not None and ready.status == "True"
    with pytest.raises(ValidationError):
        VLMDeployment.from_k8s({**obj, "status": {"conditions": [{"type": "Ready", "status": "Yes"}]}})


# --- the rules the CRD also enforces ----------------------------------------------------------------------------


@pytest.mark.parametrize(("case_id", "bad", "message"), CEL_CASES, ids=[c[0] for c in CEL_CASES])
def test_cel_rule_mirror_rejects_bad_case(case_id: str, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(bad)
    assert message in str(exc.value)


def test_legacy_spec_on_its_release_is_accepted() -> None:
    s = parse(spec(engine={"version": "0.5.0"}, multimodal={"legacy": LEGACY_OK}))
    assert s.multimodal.legacy is not None
    assert s.multimodal.legacy.rendered_shape() == "1,3,336,336"
    # A non-square shape (Phi-3-vision's HD input on 0.5.0) is not held to the square-patch formula.
    parse(
        spec(
            engine={"version": "0.5.0"},
            multimodal={"legacy": {**LEGACY_OK, "imageInputShape": [1, 3, 1008, 1344], "imageFeatureSize": 1921}},
        )
    )


def test_gpu_count_matching_parallelism_is_accepted() -> None:
    s = parse(spec(engine={"tensorParallelSize": 2, "dataParallelSize": 2}, resources={"gpu": {"count": 4}}))
    assert s.gpus_per_replica == 4
    assert parse(spec(engine={"tensorParallelSize": 2, "pipelineParallelSize": 2})).gpus_per_replica == 4


def test_local_path_on_the_cache_pvc_is_accepted() -> None:
    s = parse(spec(model={"name": "/var/cache/huggingface/models/llava", "cache": PVC, "offline": True}))
    assert s.model.is_local_path
    with pytest.raises(ValidationError, match="local model path"):
        parse(spec(model={"name": "/elsewhere/llava", "cache": PVC}))


# --- extraArgs shadowing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "owner"),
    [
        ("--max-model-len", "spec.engine.maxModelLen"),
        ("--max_model_len=8192", "spec.engine.maxModelLen"),
        ("--limit-mm-per-prompt.image", "spec.multimodal.limitPerPrompt"),
        ("--no-enable-prefix-caching", "spec.engine.enablePrefixCaching"),
        ("-tp", "spec.engine.tensorParallelSize"),
        ("-tp=2", "spec.engine.tensorParallelSize"),
        ("--model", "spec.model.name"),
        ("--disable-mm-preprocessor-cache", "spec.multimodal.processorCache.sizeGiB"),
        ("--enable-multimodal-encoder-data-parallel", "spec.multimodal.encoderTPMode"),
        ("--image-feature-size=576", "spec.multimodal.legacy.imageFeatureSize"),
    ],
)
def test_shadowing_args_are_attributed_to_their_field(arg: str, owner: str) -> None:
    assert shadowed_field(arg) == owner
    with pytest.raises(ValidationError, match=owner.replace(".", r"\.")):
        parse(spec(engine={"extraArgs": [arg]}))


@pytest.mark.parametrize("arg", ["--api-key", "--port=9000", "--host", "--hf-token=abc", "--disable-log-stats"])
def test_operator_owned_flags_are_refused(arg: str) -> None:
    assert shadowed_field(arg) is not None
    with pytest.raises(ValidationError, match="extraArgs must not repeat"):
        parse(spec(engine={"extraArgs": [arg]}))


@pytest.mark.parametrize(
    "arg",
    ["--seed", "42", "--max-logprobs=5", "--model-impl", "--chat-template-kwargs", "--max-model-len-extra", "-tpx"],
)
def test_passthrough_args_without_a_typed_field_are_allowed(arg: str) -> None:
    assert shadowed_field(arg) is None
    assert parse(spec(engine={"extraArgs": [arg]})).engine.extra_args == [arg]


def test_shadow_pattern_has_no_python_only_regex_syntax() -> None:
    # The same pattern goes into a CEL rule (RE2): no look-around, no back-references, no quotes.
    for token in ("(?=", "(?!", "(?<", "\\1", "'", '"'):
        assert token not in SHADOWED_ARG_PATTERN


# --- rules only Python can check --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"engine": {"version": "0.9.0"}, "multimodal": {"mediaIoKwargs": {"video": {"num_frames": 40}}}}, ">= 0.9.2"),
        ({"engine": {"version": "0.10.0"}, "multimodal": {"skipProfiling": True}}, ">= 0.10.1"),
        ({"engine": {"version": "0.5.4"}, "multimodal": {"limitPerPrompt": {"image": {"count": 2}}}}, ">= 0.5.5"),
        ({"engine": {"version": "0.6.1"}, "multimodal": {"processorKwargs": {"num_crops": 4}}}, ">= 0.6.2"),
        ({"engine": {"version": "0.9.0"}, "multimodal": {"encoderTPMode": "data"}}, ">= 0.9.1"),
        ({"engine": {"version": "0.8.0", "dataParallelSize": 2}}, ">= 0.8.3"),
        ({"engine": {"version": "0.10.0", "kvCacheMemoryBytes": 2**34}}, ">= 0.10.2"),
        (
            {"engine": {"version": "0.11.0"}, "multimodal": {"limitPerPrompt": {"image": {"count": 2, "width": 512}}}},
            ">= 0.11.1",
        ),
        ({"multimodal": {"legacy": LEGACY_OK}}, "was removed in vLLM 0.5.1"),
        (
            {"engine": {"version": "0.4.2"}, "multimodal": {"legacy": {**LEGACY_OK, "imageProcessor": "x/y"}}},
            ">= 0.5.0",
        ),
        ({"engine": {"version": "0.3.3"}}, "older than 0.4.0"),
    ],
)
def test_fields_are_refused_on_releases_without_their_flag(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(spec(**patch))
    assert message in str(exc.value)


def test_default_values_written_explicitly_pass_on_old_releases() -> None:
    # dataParallelSize 1 and encoderTPMode weights are what every release does; writing them must not be refused.
    parse(spec(engine={"version": "0.6.0", "dataParallelSize": 1}, multimodal={"encoderTPMode": "weights"}))


def test_size_hints_accepted_from_0_11_1_and_rendered_in_rich_form() -> None:
    s = parse(
        spec(
            engine={"version": "0.11.1"},
            multimodal={"limitPerPrompt": {"image": {"count": 2, "width": 1024, "height": 768}, "video": {"count": 0}}},
        )
    )
    lpp = s.multimodal.limit_per_prompt
    assert lpp is not None
    assert lpp.to_vllm() == {"image": {"count": 2, "width": 1024, "height": 768}, "video": 0}


def test_memory_floor_covers_the_processor_cache() -> None:
    # 4 GiB default x (1 API server + 1 engine) = 8 GiB.
    with pytest.raises(ValidationError, match="below the multimodal processor cache alone"):
        parse(spec(resources={"memory": "6Gi"}))
    ok = parse(spec(resources={"memory": "8Gi"}))
    assert ok.processor_cache_host_gib() == 8
    # DP 2 on a release where API servers default to the DP size: 4 x (2 + 2) = 16 GiB.
    dp = parse(spec(engine={"version": "0.15.0", "dataParallelSize": 2}))
    assert dp.processor_cache_host_gib() == 16
    # shm is one shared buffer, but /dev/shm must hold it.
    shm = {"processorCache": {"type": "shm", "sizeGiB": 6}}
    assert parse(spec(multimodal=shm)).processor_cache_host_gib() == 6
    with pytest.raises(ValidationError, match="smaller than the shm processor cache"):
        parse(spec(multimodal=shm, resources={"shmSize": "4Gi"}))


def test_unknown_gpu_product_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValidationError, match=r"unknown GPU product 'B300'.*L4"):
        parse(spec(resources={"gpu": {"product": "B300"}}))
    gpu = parse(spec(resources={"gpu": {"minMemoryGiB": 40}})).resources.gpu.resolved_product()
    assert gpu is not None and gpu.memory_mib >= 40 * 1024
    assert parse(spec(resources={"gpu": {"product": "nvidia-l4"}})).resources.gpu.resolved_product() is not None


def test_quantity_strings_only() -> None:
    with pytest.raises(ValidationError):
        parse(spec(resources={"memory": 64}))
    with pytest.raises(ValidationError):
        parse(spec(resources={"memory": "64 GB"}))


def test_video_pruning_rate_is_half_open() -> None:
    assert parse(spec(multimodal={"videoPruningRate": 0.0})).multimodal.video_pruning_rate == 0.0
    with pytest.raises(ValidationError):
        parse(spec(multimodal={"videoPruningRate": 1.0}))


def test_limit_shapes_are_per_modality() -> None:
    with pytest.raises(ValidationError):
        parse(spec(multimodal={"limitPerPrompt": {"image": {"count": 1, "numFrames": 8}}}))
    with pytest.raises(ValidationError):
        parse(spec(multimodal={"limitPerPrompt": {"image": 4}}))  # no int-or-object union
    with pytest.raises(ValidationError):
        parse(spec(multimodal={"limitPerPrompt": {"pointcloud": {"count": 1}}}))


# --- what an unset limit means ----------------------------------------------------------------------------------


def test_unset_limit_means_vllm_default_for_the_version() -> None:
    s = parse(spec(multimodal={"limitPerPrompt": {"image": {"count": 3}}}))
    assert s.multimodal.effective_limit("image", "0.11.0") == 3
    assert s.multimodal.effective_limit("video", "0.11.0") == 999
    assert s.multimodal.effective_limit("video", "0.8.3") == 1
    assert parse(BASE).multimodal.effective_limit("image", "0.6.0") == 1
    assert LimitPerPrompt().to_vllm() == {}


# --- versions ---------------------------------------------------------------------------------------------------


def test_version_ordering_and_defaults() -> None:
    ordered = ["0.4.0", "0.5.0", "0.5.3", "0.5.3.post1", "0.10.0", "0.10.1.1", "0.11.0"]
    parsed = [VllmVersion(v) for v in ordered]
    assert sorted(reversed(parsed)) == parsed
    assert VllmVersion("0.12.0rc1") < "0.12.0"
    assert VllmVersion("0.11.0") == "0.11.0"
    with pytest.raises(ValueError):
        VllmVersion("latest")
    assert default_limit_per_prompt("0.8.4") == 999 and default_limit_per_prompt("0.8.3") == 1
    assert default_gpu_memory_utilization("0.21.0") == 0.92 and default_gpu_memory_utilization("0.11.0") == 0.90
    assert default_image("0.5.0") == "vllm/vllm-openai:v0.5.0"
    with pytest.raises(ValidationError):
        parse(spec(engine={"version": "v0.11.0"}))


# --- flag table and processor kwargs ----------------------------------------------------------------------------


def test_every_flag_mapping_names_a_real_field() -> None:
    from vlm_operator.api.crd import structural_schema

    schema = structural_schema(VLMDeploymentSpec)
    for m in FIELD_MAPPINGS:
        node: dict[str, Any] = schema
        for part in m.path.split("."):
            node = node["properties"][part]
            node = node.get("items", node) if node.get("type") == "array" else node


def test_processor_kwargs_table_checks_known_keys_per_family() -> None:
    assert check_processor_kwargs("qwen2_5_vl", {"min_pixels": 3136, "max_pixels": 1003520}) == []
    assert check_processor_kwargs("qwen2_5_vl", {"size": {"longest_edge": 1003520}}) == []
    [problem] = check_processor_kwargs("qwen2_5_vl", {"max_pixel": 1})
    assert "max_pixel" in problem and "max_pixels" in problem
    assert check_processor_kwargs("phi3v", {"num_crops": 4}) == []
    assert check_processor_kwargs("llava", {"num_crops": 4}) != []
    assert check_processor_kwargs("idefics3", {"size": {"shortest_edge": 1}}) != []
    assert check_processor_kwargs("idefics3", {"size": 5}) != []
    assert check_processor_kwargs("not-in-table", {"anything": 1}) == []
    # one spelling per family: every family checked here is one the estimator's config parser names
    assert set(PROCESSOR_KWARGS) <= set(MODEL_TYPE_FAMILY.values()) | {"nvlm_d", "pixtral"}


def test_generation_defaults_render_with_vllm_keys() -> None:
    s = parse(spec(engine={"overrideGenerationConfig": {"temperature": 0.2, "maxNewTokens": 512, "topP": 0.9}}))
    gen = s.engine.override_generation_config
    assert gen is not None
    assert gen.to_vllm() == {"temperature": 0.2, "top_p": 0.9, "max_new_tokens": 512}


def test_secrets_are_references_that_never_hold_values() -> None:
    s = parse(spec(model={"hfTokenSecret": {"name": "hf"}}, engine={"apiKeySecret": {"name": "api", "key": "k"}}))
    assert s.model.hf_token_secret is not None and s.model.hf_token_secret.key == "token"
    with pytest.raises(ValidationError):
        parse(spec(model={"hfToken": "hf_abc"}))
    env = [{"name": "HF_TOKEN_FILE", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    assert parse(spec(engine={"env": env})).engine.env[0].value_from is not None


def test_mig_profile_must_belong_to_the_product() -> None:
    ok = VLMDeployment.model_validate(
        {"spec": spec(resources={"gpu": {"product": "A100-80GB", "migProfile": "3g.40gb"}})}
    )
    assert ok.spec.resources.gpu.resource_name() == "nvidia.com/mig-3g.40gb"
    mig = ok.spec.resources.gpu.resolved_mig()
    assert mig is not None and mig.memory_mib == 40192
    with pytest.raises(ValidationError, match=r"not a MIG profile of NVIDIA-A100-SXM4-80GB; use one of: 1g\.10gb"):
        VLMDeployment.model_validate(
            {"spec": spec(resources={"gpu": {"product": "A100-80GB", "migProfile": "1g.5gb"}})}
        )
    with pytest.raises(ValidationError, match=r"NVIDIA-L4; use one of: none \(it has no MIG\)"):
        VLMDeployment.model_validate({"spec": spec(resources={"gpu": {"product": "L4", "migProfile": "1g.5gb"}})})
