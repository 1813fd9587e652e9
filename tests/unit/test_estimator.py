"""Behaviour of the memory estimate: each term responds to the settings that drive it in vLLM."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vlm_operator import gpus, releases
from vlm_operator.estimator import memory, recommend
from vlm_operator.estimator.core import estimate
from vlm_operator.estimator.request import GIB, EngineSettings, EstimateRequest, GPUSpec, MultimodalSettings
from vlm_operator.models import catalog
from vlm_operator.models.facts import QuantFacts


def gpu(name: str = "H100") -> GPUSpec:
    p = gpus.lookup(name)
    return GPUSpec(p.short_name, p.cuda_memory_bytes, p.compute_capability)


def req(
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct", g: str = "H100", version: str = "0.11.0", **engine: object
) -> EstimateRequest:
    mm = engine.pop("mm", MultimodalSettings())
    return EstimateRequest(catalog.lookup(model), gpu(g), EngineSettings(**engine), mm, version)  # type: ignore[arg-type]


def test_weights_split_over_tp() -> None:
    one = estimate(req(max_model_len=8192)).weights_bytes
    two = estimate(req(max_model_len=8192, tensor_parallel_size=2)).weights_bytes
    assert two == pytest.approx(one / 2, rel=0.02)


def test_encoder_tp_mode_data_keeps_a_full_encoder_copy() -> None:
    base = req(max_model_len=8192, tensor_parallel_size=4)
    weights = estimate(base)
    data = estimate(base.with_multimodal(encoder_tp_mode="data"))
    vision = catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct").vision
    assert vision is not None
    expected_extra = vision.param_count() * 2 * (1 - 1 / 4)
    assert data.weights_bytes - weights.weights_bytes == pytest.approx(expected_extra, rel=1e-6)


def test_fp8_and_int4_weights_are_smaller_and_keep_vision_in_bf16() -> None:
    bf16 = estimate(req(max_model_len=8192))
    fp8 = estimate(req(max_model_len=8192, quantization="fp8"))
    facts = replace(catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct"), quantization=QuantFacts("awq", 4, 128))
    awq = estimate(replace(req(max_model_len=8192), model=facts))
    assert awq.weights_bytes < fp8.weights_bytes < bf16.weights_bytes
    assert fp8.vision_weights_bytes == bf16.vision_weights_bytes == awq.vision_weights_bytes
    # int4 with group-128 fp16 scales: 0.5 + (2 + 0.5)/128 bytes per linear parameter
    assert memory.quant_bytes_per_param(QuantFacts("awq", 4, 128), 2.0) == pytest.approx(0.5 + 2.5 / 128)


def test_bitsandbytes_and_compressed_tensors_bytes() -> None:
    assert memory.quant_bytes_per_param(QuantFacts("bitsandbytes", 4, 64), 2.0) == pytest.approx(0.5625)
    # w8a16 per channel: an int8 weight plus a model-dtype scale per output row (1 + 2/in)
    w8a16 = QuantFacts("compressed-tensors", 8, 0, strategy="channel", in_features=4096)
    assert memory.quant_bytes_per_param(w8a16, 2.0) == pytest.approx(1 + 2 / 4096)
    assert memory.quant_bytes_per_param(QuantFacts("compressed-tensors", 4, 128), 2.0) == pytest.approx(0.5 + 2 / 128)


def test_kv_bytes_per_token_gqa_tp_and_replication() -> None:
    facts = catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct")  # 28 layers, 4 KV heads, head_dim 128
    g1 = memory.kv_layout(facts, tp=1, pp=1, kv_bytes=2)
    assert sum(g.layers * g.bytes_per_token_per_layer for g in g1) == 2 * 28 * 4 * 128 * 2
    g8 = memory.kv_layout(facts, tp=8, pp=1, kv_bytes=2)  # 4 KV heads over 8 ranks: replicated, 1 per rank
    assert sum(g.layers * g.bytes_per_token_per_layer for g in g8) == 2 * 28 * 1 * 128 * 2


def test_mla_kv_is_one_latent_not_split_over_tp() -> None:
    facts = catalog.lookup("moonshotai/Kimi-VL-A3B-Instruct")
    for tp in (1, 2):
        g = memory.kv_layout(facts, tp=tp, pp=1, kv_bytes=2)
        assert sum(x.layers * x.bytes_per_token_per_layer for x in g) == 27 * (512 + 64) * 2


def test_fp8_kv_cache_doubles_tokens() -> None:
    a = estimate(req(max_model_len=32768))
    b = estimate(req(max_model_len=32768, kv_cache_dtype="fp8"))
    assert b.kv_cache_tokens == pytest.approx(2 * a.kv_cache_tokens, rel=0.001)


def test_kv_tokens_are_whole_blocks() -> None:
    e = estimate(req(max_model_len=32768, block_size=32))
    assert e.kv_cache_tokens % 32 == 0
    assert e.kv_plan.num_blocks * 32 == e.kv_cache_tokens


def test_gemma3_hybrid_allocator_caps_sliding_layers() -> None:
    old = estimate(req("google/gemma-3-27b-it", version="0.9.2", max_model_len=131072))
    new = estimate(req("google/gemma-3-27b-it", version="0.10.1", max_model_len=131072))
    # with the hybrid allocator, 52 sliding-window layers hold ~1k tokens per request, so many more requests fit
    assert new.max_concurrency > 3 * old.max_concurrency


def test_encoder_term_changes_with_max_pixels_and_batched_tokens() -> None:
    small = MultimodalSettings(processor_kwargs={"max_pixels": 1003520})
    base = estimate(req(max_model_len=32768, max_num_batched_tokens=8192, mm=small))
    bigger_px = estimate(req(max_model_len=32768, max_num_batched_tokens=8192, mm=MultimodalSettings()))
    more_tokens = estimate(req(max_model_len=32768, max_num_batched_tokens=32768, mm=small))
    assert bigger_px.encoder_activation_bytes != base.encoder_activation_bytes
    assert more_tokens.encoder_activation_bytes > base.encoder_activation_bytes
    assert more_tokens.profile.items > base.profile.items


def test_v1_profiles_items_from_encoder_budget() -> None:
    mm = MultimodalSettings(processor_kwargs={"max_pixels": 1003520}, limit_per_prompt={"image": 4, "video": 0})
    e = estimate(req(max_model_len=32768, max_num_batched_tokens=8192, max_num_seqs=256, mm=mm))
    # budget = max(8192, 1280); items = min(8192 // 1280, 256 x min(4, 32768 // 1280)) = 6
    assert e.profile.items == 6
    assert e.profile.modality == "image"


def test_v0_limit_multiplies_profiled_items() -> None:
    one = MultimodalSettings(processor_kwargs={"max_pixels": 1003520}, limit_per_prompt={"image": 1, "video": 0})
    four = replace(one, limit_per_prompt={"image": 4, "video": 0})
    a = estimate(req(version="0.7.3", max_model_len=16384, max_num_seqs=2, mm=one))
    b = estimate(req(version="0.7.3", max_model_len=16384, max_num_seqs=2, mm=four))
    assert b.profile.items == 4 * a.profile.items


def test_skip_mm_profiling_keeps_the_encoder_peak() -> None:
    plain = estimate(req(max_model_len=32768))
    skipped = estimate(req(max_model_len=32768, mm=MultimodalSettings(skip_mm_profiling=True)))
    assert skipped.activation_bytes == plain.activation_bytes
    assert any("skip_mm_profiling" in w for w in skipped.warnings)


def test_language_model_only_mode_drops_encoder() -> None:
    off = MultimodalSettings(limit_per_prompt={"image": 0, "video": 0})
    e = estimate(req(max_model_len=32768, mm=off))
    assert e.vision_weights_bytes == 0
    assert e.encoder_activation_bytes == 0
    assert e.host_memory_bytes == 0


def test_budget_semantics_and_cuda_graphs_by_version() -> None:
    v11 = estimate(req(max_model_len=32768, version="0.11.0"))
    v21 = estimate(req(max_model_len=32768, version="0.21.0"))
    assert v11.resolved.gpu_memory_utilization == 0.90
    assert v21.resolved.gpu_memory_utilization == 0.92
    assert not v11.cuda_graph_in_budget and v21.cuda_graph_in_budget
    # both change with 0.20.0 (the sdists: vllm/config/cache.py default 0.92, vllm/envs.py
    # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS "1"); 0.19.1 still has 0.9 and "0"
    v19, v20 = (
        estimate(req(max_model_len=32768, version="0.19.1")),
        estimate(req(max_model_len=32768, version="0.20.0")),
    )
    assert v19.resolved.gpu_memory_utilization == 0.90 and not v19.cuda_graph_in_budget
    assert v20.resolved.gpu_memory_utilization == 0.92 and v20.cuda_graph_in_budget
    eager = estimate(req(max_model_len=32768, version="0.21.0", enforce_eager=True))
    assert eager.cuda_graph_bytes == 0
    assert eager.kv_cache_bytes > v21.kv_cache_bytes


def test_kv_cache_memory_bytes_overrides_the_budget() -> None:
    e = estimate(req(max_model_len=8192, kv_cache_memory_bytes=4 * GIB))
    assert e.kv_cache_bytes == 4 * GIB


def test_defaults_depend_on_hardware_and_version() -> None:
    h100 = estimate(req(max_model_len=8192))
    a100 = estimate(req(g="A100-80GB", max_model_len=8192))
    assert h100.resolved.max_num_batched_tokens == 8192 and h100.resolved.max_num_seqs == 1024
    assert a100.resolved.max_num_batched_tokens == 2048 and a100.resolved.max_num_seqs == 256
    v0 = estimate(req(version="0.6.3", max_model_len=8192))
    assert v0.resolved.engine == "v0" and v0.resolved.limits["image"] == 1
    assert v0.resolved.max_num_batched_tokens == 8192


def test_does_not_fit_when_weights_exceed_the_gpu() -> None:
    e = estimate(req("Qwen/Qwen2.5-VL-72B-Instruct", g="L4", max_model_len=8192))
    assert not e.fits
    assert e.kv_cache_bytes < 0


def test_refuses_when_max_model_len_cannot_hold_one_image() -> None:
    e = estimate(req(max_model_len=4096))  # hub max_pixels: one image is 16,386 tokens
    assert not e.fits
    assert any("cannot hold one image" in r for r in e.reasons)


def test_warns_when_images_per_prompt_do_not_fit_in_max_model_len() -> None:
    mm = MultimodalSettings(limit_per_prompt={"image": 8, "video": 0}, processor_kwargs={"max_pixels": 1003520})
    e = estimate(req(max_model_len=4096, mm=mm))
    assert any("fewer than 8 worst-case images" in w for w in e.warnings)


def test_host_memory_counts_api_servers_and_dp_and_shm_cache() -> None:
    mm = MultimodalSettings(processor_cache_gb=2, processor_cache_type="shm")
    e = estimate(req(max_model_len=8192, data_parallel_size=2, api_server_count=3, mm=mm))
    assert e.host_memory_bytes == 2 * GIB * (3 + 2)
    assert e.shm_bytes >= 2 * GIB


@pytest.mark.parametrize(
    "bad",
    [
        {"tensor_parallel_size": 3},  # 28 heads
        {"gpu_memory_utilization": 1.5},
        {"max_model_len": 0},
        {"dtype": "int3"},
        {"kv_cache_dtype": "fp4"},
        {"quantization": "nonsense"},
    ],
)
def test_bad_engine_settings_raise_input_error(bad: dict[str, Any]) -> None:
    with pytest.raises(memory.InputError):
        estimate(req(**bad))


def test_bad_version_raises_input_error() -> None:
    with pytest.raises(memory.InputError):
        estimate(req(version="banana"))
    with pytest.raises(memory.InputError):
        estimate(req(version="0.6.0", engine="v1"))


def test_recommendations_all_fit_and_are_ranked() -> None:
    base = req("Qwen/Qwen2.5-VL-7B-Instruct", g="L4")
    choices = tuple(GPUSpec(p.short_name, p.cuda_memory_bytes, p.compute_capability) for p in gpus.GPU_PRODUCTS)
    e = recommend.estimate_with_recommendations(base, choices)
    assert not e.fits
    assert e.recommendations
    assert [r.rank for r in e.recommendations] == list(range(1, len(e.recommendations) + 1))
    for r in e.recommendations:
        assert r.max_concurrency >= 1 or r.kv_cache_gib > 0
    changes = " ".join(r.change for r in e.recommendations)
    assert "max_pixels" in changes or "maxModelLen" in changes


def test_recommendations_stay_within_what_the_cluster_can_schedule() -> None:
    """Qwen2.5-VL-72B on L4: without an inventory the fixes include TP 8 on L4 and larger GPUs; with nodes of 4 L4s
    and of 8 H100s, TP 8 on L4 is gone and a larger GPU is picked only among the products the cluster has."""
    mm = MultimodalSettings(processor_kwargs={"max_pixels": 1003520})
    base = req("Qwen/Qwen2.5-VL-72B-Instruct", g="L4", max_model_len=32768, mm=mm)
    choices = tuple(GPUSpec(p.short_name, p.cuda_memory_bytes, p.compute_capability) for p in gpus.GPU_PRODUCTS)
    free = recommend.estimate_with_recommendations(base, choices)
    settings = [r.settings for r in free.recommendations]
    assert {"tensorParallelSize": 8} in settings
    held = recommend.estimate_with_recommendations(base, choices, {"L4": 4, "H100-80GB": 8})
    held_settings = [r.settings for r in held.recommendations]
    assert all(s.get("tensorParallelSize", 1) <= 4 or s.get("gpu") == "H100-80GB" for s in held_settings), held_settings
    assert {"tensorParallelSize": 8} not in held_settings
    assert {s["gpu"] for s in held_settings if "gpu" in s} <= {"H100-80GB"}
    assert any(s.get("gpu") == "H100-80GB" for s in held_settings)


def test_a_pair_of_changes_when_no_single_one_fits() -> None:
    """72B on L4 at maxModelLen 16384 with the checkpoint's 12.8 MP images: TP 8 alone leaves one image (16,386
    tokens) longer than the context, and smaller images alone cannot shrink 137 GiB of weights; together they fit."""
    base = req("Qwen/Qwen2.5-VL-72B-Instruct", g="L4", max_model_len=16384)
    choices = tuple(GPUSpec(p.short_name, p.cuda_memory_bytes, p.compute_capability) for p in gpus.GPU_PRODUCTS)
    e = recommend.estimate_with_recommendations(base, choices)
    assert not e.fits and e.recommendations
    first = e.recommendations[0]
    assert first.settings["tensorParallelSize"] == 8 and "processorKwargs" in first.settings
    assert " and " in first.change
    px = first.settings["processorKwargs"]["max_pixels"]
    check = base.with_engine(tensor_parallel_size=8).with_multimodal(processor_kwargs={"max_pixels": px})
    assert estimate(check).fits  # re-checked: the pair really fits


def test_the_profiled_qwen_video_fills_the_context() -> None:
    """vLLM sizes the Qwen video it profiles with as many worst-size frame pairs as fit: beside the image limit's
    images before v0.8.4, beside one image from v0.8.4 (``{modality: 1}``), and in the whole context from v0.10.2;
    at most 14 frames for Qwen2.5-VL, practically no cap for Qwen3-VL. (Counts include the two vision markers.)"""
    mm = MultimodalSettings(limit_per_prompt={"image": 4, "video": 1})
    videos = {
        v: estimate(req("Qwen/Qwen2.5-VL-7B-Instruct", max_model_len=65536, mm=mm, version=v)).image_tokens_per_item
        for v in ("0.8.3", "0.9.0", "0.11.0")
    }
    assert videos["0.8.3"]["video"] == 16384 + 2  # 4 images leave no room: one pair
    assert videos["0.9.0"]["video"] == 3 * 16384 + 2  # room for one image, then 3 pairs
    assert videos["0.11.0"]["video"] == 4 * 16384 + 2  # the whole context: 4 pairs
    new = estimate(req("Qwen/Qwen2.5-VL-7B-Instruct", max_model_len=65536, mm=mm, version="0.11.0"))
    old = estimate(req("Qwen/Qwen2.5-VL-7B-Instruct", max_model_len=65536, mm=mm, version="0.8.3"))
    assert new.profile.modality == "video" and new.encoder_activation_bytes > 1.4 * old.encoder_activation_bytes
    # Qwen2.5-VL-7B at its default 128,000: 14 frames, 7 pairs (a public 0.23.0 log prints "114688 tokens ... 1 video")
    default = estimate(req("Qwen/Qwen2.5-VL-7B-Instruct", version="0.23.0"))
    assert default.image_tokens_per_item["video"] == 7 * 16384 + 2
    q3 = estimate(req("Qwen/Qwen3-VL-8B-Instruct", max_model_len=262144, mm=mm))
    assert q3.image_tokens_per_item["video"] > 7 * q3.image_tokens_per_item["image"]
    # turning videos off is offered when the video sets the profile
    e = recommend.estimate_with_recommendations(req("Qwen/Qwen2.5-VL-7B-Instruct", g="L40S", max_model_len=128000))
    assert any(r.settings == {"limitMmPerPrompt": {"video": 0}} for r in e.recommendations)


def test_recommended_max_model_len_never_drops_below_the_image_need() -> None:
    mm = MultimodalSettings(limit_per_prompt={"image": 2, "video": 0}, processor_kwargs={"max_pixels": 1003520})
    e = recommend.estimate_with_recommendations(req(g="L4", mm=mm))
    for r in e.recommendations:
        if "maxModelLen" in r.settings:
            assert r.settings["maxModelLen"] >= 2 * 1282 + 256


def test_versions_helpers() -> None:
    assert releases.parse_version("v0.10.1.1").release == (0, 10, 1)
    with pytest.raises(ValueError):
        releases.parse_version("latest")
