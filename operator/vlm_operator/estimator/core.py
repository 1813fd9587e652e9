"""The estimate: resolve defaults for the release, add up the non-KV terms, size the KV cache, give a verdict.

``available_kv = total × gpu_memory_utilization − (weights + peak activation + non-torch [+ CUDA graphs])``
(V0 ≥ 0.6.5 and V1 ≥ 0.9.1 ``memory_profiling``, vllm@551603fef vllm/utils.py, #10511, #19312). It fits only if
the KV cache holds one ``max_model_len`` request plus the encoder-cache budget, which is stricter than vLLM's own check
(``check_enough_kv_cache_memory``) by the encoder cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vlm_operator import releases
from vlm_operator.estimator import memory, tokens
from vlm_operator.estimator.request import GIB, EstimateRequest
from vlm_operator.models.facts import CROSS


@dataclass(frozen=True)
class Resolved:
    """The request with every version/hardware default filled in."""

    version: tuple[int, int, int]
    engine: str
    tp: int
    pp: int
    dp: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    block_size: int
    limits: dict[str, int]
    processor_kwargs: dict[str, Any]
    api_server_count: int
    processor_cache_gb: float


@dataclass(frozen=True)
class ProfilePlan:
    """What vLLM pushes through the encoder while profiling."""

    modality: str | None
    tokens_per_item: int
    #: vLLM's item count (integer arithmetic, as logged: "profiled with N image items")
    items: int
    patches_per_item: int
    encoder_budget_tokens: int
    #: encoder output tokens the memory terms use: vLLM's count with the floor divisions relaxed, so the estimate
    #: never shrinks when a limit, max_model_len or max_pixels grows (at most one item above vLLM's own count).
    encoder_tokens: float = 0.0

    @property
    def patches(self) -> float:
        if self.tokens_per_item <= 0:
            return 0.0
        return self.encoder_tokens / self.tokens_per_item * self.patches_per_item


@dataclass(frozen=True)
class Estimate:
    """All byte figures are per GPU (one TP/PP rank)."""

    request: EstimateRequest
    resolved: Resolved
    weights_bytes: float
    vision_weights_bytes: float
    encoder_activation_bytes: float
    encoder_cache_bytes: float
    lm_activation_bytes: float
    sampler_bytes: float
    activation_bytes: float
    non_torch_bytes: float
    cuda_graph_bytes: float
    cuda_graph_in_budget: bool
    budget_bytes: float
    kv_cache_bytes: float
    kv_plan: memory.KVPlan
    profile: ProfilePlan
    image_tokens_per_item: dict[str, int]
    fits: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    host_memory_bytes: float
    shm_bytes: float
    recommendations: tuple[Any, ...] = field(default=())
    #: per modality: the worst-case item (prompt tokens, encoder tokens, patches, size) the estimate used
    item_costs: dict[str, tokens.ItemTokens] = field(default_factory=dict)
    #: KV bytes one encoder token takes over this rank's cross-attention layers (Mllama; 0 otherwise)
    cross_bytes_per_token: float = 0.0

    @property
    def kv_cache_tokens(self) -> int:
        return self.kv_plan.tokens

    @property
    def max_concurrency(self) -> float:
        return self.kv_plan.max_concurrency

    def to_json(self) -> dict[str, Any]:
        def gib(x: float) -> float:
            return round(x / GIB, 3)

        return {
            "model": self.request.model.model_id,
            "gpu": self.request.gpu.name,
            "vllm_version": self.request.vllm_version,
            "engine": self.resolved.engine,
            "weights_gib": gib(self.weights_bytes),
            "activation_gib": gib(self.activation_bytes),
            "non_torch_gib": gib(self.non_torch_bytes),
            "cuda_graph_gib": gib(self.cuda_graph_bytes),
            "kv_cache_gib": gib(max(self.kv_cache_bytes, 0.0)),
            "kv_cache_tokens": self.kv_cache_tokens,
            "max_concurrency": round(self.max_concurrency, 2),
            "image_tokens_per_item": dict(self.image_tokens_per_item),
            "fits": self.fits,
            "recommendations": [r.to_json() for r in self.recommendations],
            "details": {
                "budget_gib": gib(self.budget_bytes),
                "vision_weights_gib": gib(self.vision_weights_bytes),
                "encoder_activation_gib": gib(self.encoder_activation_bytes),
                "encoder_cache_gib": gib(self.encoder_cache_bytes),
                "lm_activation_gib": gib(self.lm_activation_bytes),
                "sampler_gib": gib(self.sampler_bytes),
                "cuda_graph_in_budget": self.cuda_graph_in_budget,
                "max_model_len": self.resolved.max_model_len,
                "max_num_seqs": self.resolved.max_num_seqs,
                "max_num_batched_tokens": self.resolved.max_num_batched_tokens,
                "gpu_memory_utilization": self.resolved.gpu_memory_utilization,
                "block_size": self.resolved.block_size,
                "num_gpu_blocks": self.kv_plan.num_blocks,
                "profiled_modality": self.profile.modality,
                "profiled_items": self.profile.items,
                "encoder_budget_tokens": self.profile.encoder_budget_tokens,
                "host_memory_gib": gib(self.host_memory_bytes),
                "shm_gib": gib(self.shm_bytes),
                "reasons": list(self.reasons),
                "warnings": list(self.warnings),
                # where the model's facts came from (catalog entry, local directory or Hub commit) and whether they
                # were checked against a public config.json copy
                "model_source": self.request.model.source,
                "model_verified": self.request.model.verified,
            },
        }


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise memory.InputError(f"{name} must be >= 1, got {value}")


def _cross_attention(req: EstimateRequest) -> bool:
    return CROSS in req.model.text.kinds()


def resolve(req: EstimateRequest) -> Resolved:
    """Fill in vLLM's defaults for this release and GPU; raise ``InputError`` on settings vLLM would reject."""
    try:
        v = releases.parse_version(req.vllm_version).release
        engine = releases.engine_for(v, req.engine.engine)
    except ValueError as exc:
        raise memory.InputError(str(exc)) from None
    if engine == "v1" and _cross_attention(req) and not releases.v1_serves_encoder_decoder(v):
        if req.engine.engine is not None:
            raise memory.InputError(
                f"{req.model.model_id} is an encoder-decoder (cross-attention) model, which vLLM {req.vllm_version} "
                "runs only on the V0 engine; drop engine v1"
            )
        engine = "v0"  # the V1 oracle falls back to V0 for encoder-decoder models
    e = req.engine
    for name, val in (
        ("tensor_parallel_size", e.tensor_parallel_size),
        ("pipeline_parallel_size", e.pipeline_parallel_size),
        ("data_parallel_size", e.data_parallel_size),
        ("max_model_len", e.max_model_len),
        ("max_num_seqs", e.max_num_seqs),
        ("max_num_batched_tokens", e.max_num_batched_tokens),
        ("block_size", e.block_size),
    ):
        _positive(name, val)
    if e.gpu_memory_utilization is not None and not 0 < e.gpu_memory_utilization <= 1:
        raise memory.InputError(f"gpu_memory_utilization must be in (0, 1], got {e.gpu_memory_utilization}")
    t = req.model.text
    if t.num_heads % e.tensor_parallel_size:
        raise memory.InputError(
            f"{t.num_heads} attention heads are not divisible by tensor_parallel_size {e.tensor_parallel_size}"
        )
    gib = req.gpu.memory_gib
    max_len = e.max_model_len or t.max_position_embeddings
    seqs = e.max_num_seqs or releases.default_max_num_seqs(v, engine, gib, req.gpu.is_a100)
    mm = req.model.is_multimodal
    batched = e.max_num_batched_tokens or releases.default_max_num_batched_tokens(
        v, engine, gib, req.gpu.is_a100, max_len, mm
    )
    chunked = e.enable_chunked_prefill if e.enable_chunked_prefill is not None else engine == "v1"
    if not chunked and batched < max_len:
        raise memory.InputError(
            f"max_num_batched_tokens ({batched}) is smaller than max_model_len ({max_len}) without chunked prefill"
        )
    util = e.gpu_memory_utilization or releases.default_gpu_memory_utilization(v)
    block = e.block_size or (64 if t.is_mla and engine == "v1" and req.gpu.compute_capability >= (9, 0) else 16)
    default_limit = releases.default_limit_per_prompt(v, engine)
    limits: dict[str, int] = {}
    for modality in req.model.modalities:
        limits[modality] = int(req.multimodal.limit_per_prompt.get(modality, default_limit))
    for modality, n in req.multimodal.limit_per_prompt.items():
        if n < 0:
            raise memory.InputError(f"limit_mm_per_prompt[{modality!r}] must be >= 0")
        if modality not in limits and n > 0:
            raise memory.InputError(f"{req.model.model_id} does not take {modality} input")
    cache_gb = req.multimodal.processor_cache_gb
    if cache_gb is None:
        cache_gb = releases.mm_cache_default_gb(v) if mm else 0.0
    if cache_gb < 0:
        raise memory.InputError("mm_processor_cache_gb must be >= 0")
    api = e.api_server_count or releases.default_api_server_count(v, e.data_parallel_size)
    return Resolved(
        version=v,
        engine=engine,
        tp=e.tensor_parallel_size,
        pp=e.pipeline_parallel_size,
        dp=e.data_parallel_size,
        max_model_len=max_len,
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        gpu_memory_utilization=util,
        block_size=block,
        limits=limits,
        processor_kwargs=dict(req.multimodal.processor_kwargs),
        api_server_count=api,
        processor_cache_gb=cache_gb,
    )


def _item_costs(req: EstimateRequest, r: Resolved) -> dict[str, tokens.ItemTokens]:
    facts = req.model
    out: dict[str, tokens.ItemTokens] = {}
    if facts.vision is None:
        return out
    kw = r.processor_kwargs
    if "image" in facts.modalities:
        out["image"] = tokens.max_image_tokens(facts, kw)
    if "video" in facts.modalities:
        frames = req.multimodal.video_num_frames or 32  # vllm/multimodal/media/video.py default
        if facts.family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"):
            frames = _qwen_profile_frames(req, r, out.get("image"))
        out["video"] = tokens.video_tokens(facts, frames, kw)
    return out


#: ``_MAX_FRAMES_PER_VIDEO`` / ``DUMMY_VIDEO_NUM_FRAMES`` per family: vllm@v0.11.0 qwen2_vl.py 14, glm4_1v.py 600,
#: qwen3_vl.py 24576 (2048 from v0.16.0). Qwen3-VL's cap rarely binds: its profile video fills the context.
_MAX_PROFILE_FRAMES = {"qwen2_vl": 14, "qwen2_5_vl": 14, "glm4v": 600}


def _qwen_profile_frames(req: EstimateRequest, r: Resolved, image: tokens.ItemTokens | None) -> int:
    """Qwen2-VL ``get_num_frames_with_most_features``: frames of the worst-case image size that fit in
    ``max_model_len - images × max_image_tokens``, split over the videos, at most the family's cap, at least 1
    (vllm@v0.10.1 model_executor/models/qwen2_vl.py). The counts are the per-prompt limits before v0.8.4 and one
    item per enabled modality from v0.8.4 (``get_max_tokens_per_item_by_modality`` passes ``{modality: 1}``,
    vllm/multimodal/registry.py); from v0.10.2 no room is kept for images (``_get_max_video_frames(seq_len)``).
    So a long context makes the profiled video, and the encoder peak, large: Qwen2.5-VL-7B at its default 128,000
    profiles 14 frames = 114,688 tokens (what a public vLLM 0.23.0 start-up log prints; its repository could not be
    identified, so it is not in the calibration set)."""
    per_frame_pair = image.embeds if image else 1
    temporal = req.model.vision.temporal_patch_size if req.model.vision else 2
    images, videos = r.limits.get("image", 0), r.limits.get("video", 0)
    if releases.profiles_one_item_per_modality(r.version):
        images, videos = min(images, 1), min(videos, 1)
    if releases.video_fills_context(r.version):
        images = 0  # from v0.10.2 the frames fill max_model_len with no room kept for images
    room = r.max_model_len - per_frame_pair * images
    frames = 0
    while True:
        groups = max((frames + 1) // temporal, 1)
        if groups * per_frame_pair > room:
            break
        frames += 1
        if frames > 10_000:
            break
    family = req.model.family
    cap = _MAX_PROFILE_FRAMES.get(family, releases.default_video_frame_cap(r.version))
    per_video = min(frames // max(videos, 1), cap)
    return max(per_video, 1)


def plan_profile(req: EstimateRequest, r: Resolved, costs: dict[str, tokens.ItemTokens]) -> ProfilePlan:
    """Which items vLLM pushes through the encoder while profiling (``profile_run``, vllm/v1/worker/gpu_model_runner.py
    and, for V0, vllm/worker/model_runner.py).

    V1: only the modality with the largest per-item cost; budget = max(max_num_batched_tokens, max item);
    items = max(1, min(budget // M, max_num_seqs × max(1, min(limit, max_model_len // M)))) (``cdiv`` before v0.9).
    V0: every sequence carries ``limit`` worst-case items; sequences = max(1, min(max_num_seqs,
    max_num_batched_tokens // Σ limit·M)).
    """
    active = {m: c for m, c in costs.items() if r.limits.get(m, 0) > 0}
    if not active:
        return ProfilePlan(None, 0, 0, 0, 0)
    modality = max(active, key=lambda m: active[m].embeds)
    cost = active[modality]
    m_tok = max(1, cost.embeds)
    limit = r.limits[modality]
    if r.engine == "v1":
        budget = max(r.max_num_batched_tokens, m_tok)
        per_prompt = max(1, min(limit, r.max_model_len // m_tok))
        first = budget // m_tok if releases.encoder_budget_floors(r.version) else math.ceil(budget / m_tok)
        items = max(1, min(first, r.max_num_seqs * per_prompt))
        # ceil (before v0.9) rounds up by less than one item: budget + M bounds it and stays monotone
        cap = float(budget) if releases.encoder_budget_floors(r.version) else float(budget + m_tok)
        relaxed = max(float(m_tok), min(cap, r.max_num_seqs * min(limit * m_tok, max(r.max_model_len, m_tok))))
        return ProfilePlan(modality, cost.embeds, items, cost.patches, budget, relaxed)
    total_mm = sum(r.limits[m] * max(1, c.embeds) for m, c in active.items())
    if _cross_attention(req):
        # encoder-decoder profile: every one of max_num_seqs dummy sequences carries its images, whatever the token
        # budget (vllm@v0.10.2 worker/enc_dec_model_runner.py:316-330 ``profile_run``)
        return ProfilePlan(
            modality, cost.embeds, r.max_num_seqs * limit, cost.patches, total_mm, float(r.max_num_seqs * limit * m_tok)
        )
    seqs = max(1, min(r.max_num_seqs, r.max_num_batched_tokens // total_mm))
    relaxed_seqs = max(1.0, min(float(r.max_num_seqs), r.max_num_batched_tokens / total_mm))
    relaxed = relaxed_seqs * limit * m_tok
    return ProfilePlan(modality, cost.embeds, seqs * limit, cost.patches, total_mm, relaxed)


def architecture_support(req: EstimateRequest) -> releases.Support:
    """Whether ``req.vllm_version`` serves the model's architecture (:mod:`vlm_operator.releases.architectures`)."""
    facts = req.model
    return releases.architecture_support(
        req.vllm_version,
        facts.architecture,
        multimodal=facts.is_multimodal,
        encoder_decoder=CROSS in facts.text.layer_types,
        model=facts.model_id,
    )


def check_architecture(req: EstimateRequest) -> str | None:
    """Raise ``InputError`` when ``req.vllm_version`` cannot serve the model's architecture; return a warning when
    it may only through the Transformers backend. Callers that size a deployment (the fit check, ``vlmctl
    estimate``) call it first; :func:`estimate` itself sizes any release, for the formula tests."""
    served = architecture_support(req)
    if served.refused:
        raise memory.InputError(str(served.message))
    return served.message


def estimate(req: EstimateRequest) -> Estimate:
    """Estimate one engine rank's memory for ``req``. Raises ``InputError`` / ``TokenError`` on bad input."""
    r = resolve(req)
    facts = req.model
    mm = req.multimodal
    if mm.encoder_tp_mode not in ("weights", "data"):
        raise memory.InputError(f"encoder TP mode must be weights or data, not {mm.encoder_tp_mode!r}")
    act_bytes = memory.model_dtype_bytes(req.engine.dtype, facts.checkpoint_dtype)
    kv_b = memory.kv_dtype_bytes(req.engine.kv_cache_dtype, act_bytes)
    any_mm = any(n > 0 for n in r.limits.values())
    w = memory.weight_bytes(
        facts,
        tp=r.tp,
        pp=r.pp,
        dtype=req.engine.dtype,
        quantization=req.engine.quantization,
        encoder_tp_mode=mm.encoder_tp_mode,
        # every limit at 0 = language-model-only mode: the encoder is not loaded (08b751ba7, #22299, ≈v0.10.1)
        load_vision=any_mm or not releases.skips_encoder_when_text_only(r.version) or not facts.is_multimodal,
    )
    costs = _item_costs(req, r)
    prof = plan_profile(req, r, costs)
    # Encoder: skip_mm_profiling removes vLLM's guard, not the memory (issue: "does not remove the encoder peak").
    enc_act = memory.encoder_activation_bytes(
        facts, patches=prof.patches, tp=r.tp, encoder_tp_mode=mm.encoder_tp_mode, act_bytes=act_bytes
    )
    enc_cache = prof.encoder_tokens * facts.text.hidden_size * act_bytes
    lm_tokens = r.max_num_batched_tokens
    lm_act = memory.lm_activation_bytes(
        facts, tokens=lm_tokens, tp=r.tp, act_bytes=act_bytes, expert_parallel=req.engine.enable_expert_parallel
    )
    early_v1 = releases.early_v1(r.version, r.engine)
    rows = lm_tokens if early_v1 else min(r.max_num_seqs, lm_tokens)
    path = releases.v1_sampler_path(r.version, req.engine.flashinfer_sampler)
    samp = memory.sampler_bytes(facts, rows=rows, engine=r.engine, early_v1=early_v1, path=path)
    # Peak: the encoder outputs stay in the encoder cache while the LM and sampler run (V1 profile_run); in V0 the
    # encoder runs inside the same forward, so its transient adds to the LM's, and the sampler runs after it.
    hidden = lm_tokens * facts.text.hidden_size * act_bytes
    if r.engine == "v1":
        activation = memory.v1_activation_peak(
            encoder_cache=enc_cache,
            encoder=enc_act,
            lm=lm_act,
            sampler=samp,
            hidden=hidden,
            summed=early_v1 or path == "legacy",
        )
    elif _cross_attention(req) and prof.items:
        # Mllama: the vision encoder runs over every profiled image first (its own peak); its projected outputs
        # (the cross-attention states, ``enc_cache``) then stay alive through the LM, whose cross-attention layers
        # project them to K/V one layer at a time (vllm@v0.10.2 model_executor/models/mllama.py).
        enc_act = memory.cross_attention_encoder_bytes(
            facts, images=prof.items, tokens_per_image=prof.tokens_per_item, tp=r.tp, act_bytes=act_bytes
        )
        t = facts.text
        cross_kv = prof.encoder_tokens * 2 * memory.kv_heads_per_rank(t.num_kv_heads, r.tp) * t.head_dim * act_bytes
        lm_phase = enc_cache + memory.v0_activation_peak(encoder=cross_kv, lm=lm_act, sampler=samp, hidden=hidden)
        activation = max(enc_act, lm_phase)
    else:
        activation = enc_cache + memory.v0_activation_peak(encoder=enc_act, lm=lm_act, sampler=samp, hidden=hidden)
    non_torch = memory.non_torch_bytes(
        r.tp,
        r.pp,
        after_distributed_init=r.engine == "v1" and releases.v1_snapshot_after_distributed_init(r.version),
    )
    profiles_graphs = r.engine == "v1" and releases.profiles_cuda_graphs(r.version) and not req.engine.enforce_eager
    sizes = memory.cuda_graph_capture_sizes(r.max_num_seqs, r.max_num_batched_tokens) if profiles_graphs else None
    graphs = memory.cuda_graph_bytes(facts, pp=r.pp, enforce_eager=req.engine.enforce_eager, capture_sizes=sizes)
    graphs_in_budget = releases.cuda_graphs_in_budget(r.version) and graphs > 0
    if sizes is not None:
        # the trial captures run inside the profiling window from v0.18 (vllm-0.18.0 v1/worker/gpu_worker.py:384-409)
        non_torch += memory.cuda_graph_profile_leftover_bytes(facts, pp=r.pp, capture_sizes=sizes)
    total = float(req.gpu.memory_bytes)
    budget = math.ceil(total * r.gpu_memory_utilization)
    if req.engine.kv_cache_memory_bytes is not None:
        kv_avail = float(req.engine.kv_cache_memory_bytes)
    else:
        kv_avail = budget - w.total - activation - non_torch - (graphs if graphs_in_budget else 0.0)
    groups = memory.kv_layout(facts, tp=r.tp, pp=r.pp, kv_bytes=kv_b)
    cross_tokens = 0
    if any(g.kind == CROSS for g in groups) and "image" in costs:
        cross_tokens = costs["image"].embeds * max(1, r.limits.get("image", 0))
    plan = memory.plan_kv(
        groups,
        kv_bytes=max(kv_avail, 0.0),
        block_size=r.block_size,
        max_model_len=r.max_model_len,
        max_num_batched_tokens=r.max_num_batched_tokens,
        hybrid=releases.hybrid_allocator(r.version, r.engine),
        tokens_as_concurrency=releases.reports_tokens_as_concurrency(r.version),
        extra_request_tokens=cross_tokens,
    )
    reasons: list[str] = []
    warnings: list[str] = []
    item_prompt = {m: c.prompt for m, c in costs.items()}
    active_items = {m: c for m, c in item_prompt.items() if r.limits.get(m, 0) > 0}
    for modality, cost in active_items.items():
        if cost > r.max_model_len and facts.family != "mllama":
            reasons.append(
                f"max_model_len {r.max_model_len} cannot hold one {modality} ({cost} tokens); raise it or shrink items"
            )
    if "image" in active_items and facts.family != "mllama":
        want = r.limits["image"] * active_items["image"] + 256
        if active_items["image"] <= r.max_model_len < want and r.limits["image"] < 999:
            warnings.append(
                f"max_model_len {r.max_model_len} holds fewer than {r.limits['image']} worst-case images "
                f"({active_items['image']} tokens each) plus 256 text tokens"
            )
    # Mllama keeps no encoder cache at run time: its cross-attention states live in the KV cache (cross blocks,
    # counted in bytes_per_request); the profiled states only raise the peak.
    need = plan.bytes_per_request + (0.0 if _cross_attention(req) else enc_cache)
    if kv_avail <= 0:
        reasons.append(
            f"no memory left for the KV cache: budget {budget / GIB:.2f} GiB < non-KV "
            f"{(budget - kv_avail) / GIB:.2f} GiB"
        )
    elif kv_avail < need:
        reasons.append(
            f"KV cache {kv_avail / GIB:.2f} GiB < {need / GIB:.2f} GiB needed for one {r.max_model_len}-token "
            f"request plus the encoder cache ({enc_cache / GIB:.2f} GiB)"
        )
    if not graphs_in_budget and graphs > total - budget and r.gpu_memory_utilization > 0.5:
        warnings.append(
            f"CUDA graphs (~{graphs / GIB:.2f} GiB) may not fit in the {(total - budget) / GIB:.2f} GiB left outside "
            "gpu_memory_utilization; consider lowering it or --enforce-eager"
        )
    if mm.skip_mm_profiling and any_mm:
        warnings.append("skip_mm_profiling: vLLM will not reserve the encoder peak; this estimate still counts it")
    if req.engine.kv_cache_dtype.lower().startswith("fp8") and req.gpu.compute_capability < (8, 0):
        reasons.append("an fp8 KV cache needs compute capability >= 8.0")
    cache_gb = r.processor_cache_gb if any_mm else 0.0
    host = cache_gb * GIB * (r.api_server_count + r.dp)  # duplicated per API and engine process (#22441)
    shm = cache_gb * GIB if mm.processor_cache_type == "shm" else 0.0
    if r.tp * r.pp > 1:
        shm += 1 * GIB  # NCCL and vLLM's shared-memory message queues between workers (heuristic floor)
    return Estimate(
        request=req,
        resolved=r,
        weights_bytes=w.total,
        vision_weights_bytes=w.vision_bytes,
        encoder_activation_bytes=enc_act,
        encoder_cache_bytes=enc_cache,
        lm_activation_bytes=lm_act,
        sampler_bytes=samp,
        activation_bytes=activation,
        non_torch_bytes=non_torch,
        cuda_graph_bytes=graphs,
        cuda_graph_in_budget=graphs_in_budget,
        budget_bytes=budget,
        kv_cache_bytes=kv_avail,
        kv_plan=plan,
        profile=prof,
        image_tokens_per_item=item_prompt,
        fits=not reasons,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        host_memory_bytes=host,
        shm_bytes=shm,
        item_costs=dict(costs),
        cross_bytes_per_token=sum(g.layers * g.bytes_per_token_per_layer for g in groups if g.kind == CROSS),
    )
