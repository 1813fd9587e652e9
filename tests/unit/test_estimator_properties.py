"""Hypothesis properties: more context, more images or larger images never need less memory; valid input never
crashes the estimator (it either estimates or raises one of its documented input errors)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlm_operator import gpus
from vlm_operator.estimator import memory, tokens
from vlm_operator.estimator.core import estimate
from vlm_operator.estimator.request import EngineSettings, EstimateRequest, GPUSpec, MultimodalSettings
from vlm_operator.models import catalog

VLMS = [m for m in catalog.model_ids() if catalog.lookup(m).is_multimodal]
QWEN = ["Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"]
VERSIONS = ["0.6.3", "0.7.3", "0.8.5", "0.9.2", "0.10.1", "0.11.0", "0.21.0"]
GPUS = [p.short_name for p in gpus.GPU_PRODUCTS]

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _gpu(name: str) -> GPUSpec:
    p = gpus.lookup(name)
    return GPUSpec(p.short_name, p.cuda_memory_bytes, p.compute_capability)


def non_kv(e: object) -> float:
    return float(e.weights_bytes + e.activation_bytes + e.non_torch_bytes)  # type: ignore[attr-defined]


def need(e: object) -> float:
    """Memory the spec needs: non-KV terms plus the KV bytes of one max-length request."""
    return non_kv(e) + float(e.kv_plan.bytes_per_request)  # type: ignore[attr-defined]


@FAST
@given(
    model=st.sampled_from(VLMS),
    version=st.sampled_from(VERSIONS),
    gpu=st.sampled_from(GPUS),
    length=st.integers(min_value=2048, max_value=65536),
    extra=st.integers(min_value=1, max_value=65536),
    images=st.integers(min_value=0, max_value=8),
)
def test_longer_max_model_len_never_needs_less(
    model: str, version: str, gpu: str, length: int, extra: int, images: int
) -> None:
    facts = catalog.lookup(model)
    limits = {m: (images if m == "image" else 0) for m in facts.modalities}
    mm = MultimodalSettings(limit_per_prompt=limits)
    base = EstimateRequest(
        facts,
        _gpu(gpu),
        EngineSettings(max_model_len=length, max_num_batched_tokens=8192, max_num_seqs=64, enable_chunked_prefill=True),
        mm,
        version,
    )
    a = estimate(base)
    b = estimate(base.with_engine(max_model_len=length + extra))
    assert need(b) >= need(a) - 1
    if a.kv_cache_bytes == b.kv_cache_bytes:
        assert b.max_concurrency <= a.max_concurrency + 1e-9


@FAST
@given(
    model=st.sampled_from(VLMS),
    version=st.sampled_from(VERSIONS),
    images=st.integers(min_value=0, max_value=16),
    more=st.integers(min_value=1, max_value=16),
    seqs=st.integers(min_value=1, max_value=512),
)
def test_more_images_per_prompt_never_needs_less(model: str, version: str, images: int, more: int, seqs: int) -> None:
    facts = catalog.lookup(model)

    def request(n: int) -> EstimateRequest:
        limits = {m: (n if m == "image" else 0) for m in facts.modalities}
        return EstimateRequest(
            facts,
            _gpu("H100"),
            EngineSettings(max_model_len=65536, max_num_seqs=seqs, max_num_batched_tokens=65536),
            MultimodalSettings(limit_per_prompt=limits),
            version,
        )

    a = estimate(request(images))
    b = estimate(request(images + more))
    assert non_kv(b) >= non_kv(a) - 1
    assert b.kv_cache_bytes <= a.kv_cache_bytes + 1


@FAST
@given(
    model=st.sampled_from(QWEN),
    version=st.sampled_from(VERSIONS),
    px=st.integers(min_value=3136, max_value=16_000_000),
    factor=st.floats(min_value=1.0, max_value=8.0),
    seqs=st.integers(min_value=1, max_value=1024),
)
def test_larger_max_pixels_never_needs_less(model: str, version: str, px: int, factor: float, seqs: int) -> None:
    facts = catalog.lookup(model)

    def request(p: int) -> EstimateRequest:
        mm = MultimodalSettings(
            limit_per_prompt={"image": 2, "video": 0}, processor_kwargs={"min_pixels": 3136, "max_pixels": p}
        )
        return EstimateRequest(
            facts,
            _gpu("H200"),
            EngineSettings(
                max_model_len=65536, max_num_seqs=seqs, max_num_batched_tokens=8192, enable_chunked_prefill=True
            ),
            mm,
            version,
        )

    a = estimate(request(px))
    b = estimate(request(int(px * factor)))
    assert b.image_tokens_per_item["image"] >= a.image_tokens_per_item["image"]
    assert non_kv(b) >= non_kv(a) - 1


@FAST
@given(
    model=st.sampled_from(catalog.model_ids()),
    version=st.sampled_from([*VERSIONS, "0.4.2", "0.5.5"]),
    gpu=st.sampled_from(GPUS),
    tp=st.sampled_from([1, 2, 4, 8]),
    length=st.one_of(st.none(), st.integers(min_value=1, max_value=1_000_000)),
    seqs=st.one_of(st.none(), st.integers(min_value=1, max_value=4096)),
    batched=st.one_of(st.none(), st.integers(min_value=1, max_value=1_000_000)),
    util=st.one_of(st.none(), st.floats(min_value=0.01, max_value=1.0)),
    kv=st.sampled_from(["auto", "fp8", "fp8_e5m2", "bfloat16"]),
    quant=st.sampled_from([None, "fp8", "bitsandbytes"]),
    eager=st.booleans(),
    mode=st.sampled_from(["weights", "data"]),
    images=st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
    px=st.one_of(st.none(), st.integers(min_value=3136, max_value=50_000_000)),
    crops=st.one_of(st.none(), st.integers(min_value=1, max_value=32)),
)
def test_valid_input_never_crashes(
    model: str,
    version: str,
    gpu: str,
    tp: int,
    length: int | None,
    seqs: int | None,
    batched: int | None,
    util: float | None,
    kv: str,
    quant: str | None,
    eager: bool,
    mode: str,
    images: int | None,
    px: int | None,
    crops: int | None,
) -> None:
    facts = catalog.lookup(model)
    limits = {"image": images} if images is not None and "image" in facts.modalities else {}
    kw: dict[str, object] = {}
    if px is not None:
        kw["max_pixels"] = px
    if crops is not None:
        kw["num_crops"] = crops
    r = EstimateRequest(
        facts,
        _gpu(gpu),
        EngineSettings(
            tensor_parallel_size=tp,
            max_model_len=length,
            max_num_seqs=seqs,
            max_num_batched_tokens=batched,
            gpu_memory_utilization=util,
            kv_cache_dtype=kv,
            quantization=quant,
            enforce_eager=eager,
            enable_chunked_prefill=True,
        ),
        MultimodalSettings(limit_per_prompt=limits, processor_kwargs=kw, encoder_tp_mode=mode),  # type: ignore[arg-type]
        version,
    )
    try:
        e = estimate(r)
    except (memory.InputError, tokens.TokenError):
        return
    assert e.weights_bytes > 0
    assert e.kv_cache_tokens >= 0
    assert e.fits == (not e.reasons)
    assert isinstance(e.to_json()["fits"], bool)
