"""The memory terms: weights, KV bytes per token, profiling activations, non-torch memory and CUDA graphs.

Pure arithmetic on :class:`ModelFacts`. Constants name their source: a vLLM file (``vllm@<sha>:path`` or HEAD as in
file and release named in the comment) or a calibration log in ``tests/data/calibration/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlm_operator.models.facts import CROSS, FULL, LINEAR, SLIDING, ModelFacts, QuantFacts

GIB = 1024**3

_DTYPE_BYTES = {
    "auto": 2.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "half": 2.0,
    "float32": 4.0,
    "float": 4.0,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "fp8_inc": 1.0,
    "fp8_ds_mla": 1.0,
    "int8_per_token_head": 1.0,
    "fp8_per_token_head": 1.0,
}

QUANT_METHODS = (
    "fp8",
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "compressed-tensors",
    "bitsandbytes",
    "fbgemm_fp8",
    "modelopt",
)


class InputError(ValueError):
    """An engine setting the estimator (and vLLM) would reject."""


def model_dtype_bytes(dtype: str, checkpoint_dtype: str) -> float:
    """``--dtype auto`` keeps fp16/bf16 checkpoints and casts fp32 ones to 16 bits (vLLM ``_get_and_verify_dtype``)."""
    d = dtype.lower()
    if d == "auto":
        c = checkpoint_dtype.lower()
        return 2.0 if c in ("float32", "float") else _DTYPE_BYTES.get(c, 2.0)
    if d not in ("bfloat16", "float16", "half", "float32", "float"):
        raise InputError(f"unsupported --dtype {dtype!r}; use auto, bfloat16, float16 or float32")
    return _DTYPE_BYTES[d]


def kv_dtype_bytes(kv_cache_dtype: str, model_bytes: float) -> float:
    d = kv_cache_dtype.lower()
    if d == "auto":
        return model_bytes
    if d in ("bfloat16", "float16"):
        return 2.0
    if d not in _DTYPE_BYTES or d in ("float32", "float", "half"):
        raise InputError(f"unsupported --kv-cache-dtype {kv_cache_dtype!r}")
    return _DTYPE_BYTES[d]


def effective_quant(facts: ModelFacts, quantization: str | None) -> QuantFacts | None:
    """The checkpoint's quantization, or ``--quantization`` (online fp8 / bitsandbytes on a 16-bit checkpoint)."""
    if quantization is None or quantization.lower() in ("none", ""):
        return facts.quantization
    q = quantization.lower()
    if q not in QUANT_METHODS:
        raise InputError(f"unsupported --quantization {quantization!r}; known: {', '.join(QUANT_METHODS)}")
    if facts.quantization is not None:
        return facts.quantization  # the flag only picks a kernel for an already-quantized checkpoint
    if q in ("fp8", "fbgemm_fp8", "modelopt"):
        return QuantFacts("fp8", bits=8, group_size=0)
    if q == "bitsandbytes":
        return QuantFacts("bitsandbytes", bits=4, group_size=64)
    raise InputError(f"--quantization {quantization} needs a checkpoint quantized with {q}")


def quant_bytes_per_param(q: QuantFacts | None, model_bytes: float) -> float:
    """Bytes per linear-layer parameter.

    - fp8 (per-tensor/per-channel scales): 1 byte (vLLM ``Fp8LinearMethod``).
    - AWQ/GPTQ int-b with group size g: b/8 bytes + an fp16 scale and a b-bit zero point per group
      (``AWQLinearMethod.create_weights``: ``scales`` [in/g, out] fp16, ``qzeros`` packed b-bit).
    - compressed-tensors wNa16 with groups: N/8 + 2/g (bf16 scales); w8a8: 1 byte plus per-channel scales.
    - bitsandbytes 4-bit: 0.5 byte + one fp32 absmax per 64-value block (``bnb_4bit`` blocksize 64).
    """
    if q is None:
        return model_bytes
    m = q.method
    if m == "fp8":
        return 1.0
    if m in ("awq", "gptq"):
        g = q.group_size if q.group_size > 0 else 4096
        return q.bits / 8 + (2 + q.bits / 8) / g
    if m == "compressed-tensors":
        if q.bits >= 8:
            return 1.0
        g = q.group_size if q.group_size > 0 else 4096
        return q.bits / 8 + 2 / g
    if m == "bitsandbytes":
        return 0.5 + 4 / 64 if q.bits == 4 else 1.0
    return q.bits / 8


@dataclass(frozen=True)
class WeightBreakdown:
    lm_bytes: float
    vision_bytes: float
    extra_bytes: float

    @property
    def total(self) -> float:
        return self.lm_bytes + self.vision_bytes + self.extra_bytes


def weight_bytes(
    facts: ModelFacts,
    *,
    tp: int,
    pp: int,
    dtype: str,
    quantization: str | None,
    encoder_tp_mode: str,
    load_vision: bool = True,
) -> WeightBreakdown:
    """Per-GPU weight bytes (what vLLM logs as "Model loading took X GiB").

    The LM is split over TP ranks (``VocabParallelEmbedding``, column/row-parallel linears) and over PP stages by
    layer. The vision encoder is split over TP in ``--mm-encoder-tp-mode weights`` and copied whole onto every rank
    in ``data`` mode (vllm/config/multimodal.py). Embeddings and ``lm_head`` stay in the model dtype under weight
    quantization.
    """
    mb = model_dtype_bytes(dtype, facts.checkpoint_dtype)
    q = effective_quant(facts, quantization)
    qb = quant_bytes_per_param(q, mb)
    lm, vision, extra = facts.split_params()
    embed = min(facts.text.embedding_params(), lm)
    linear = lm - embed
    # RoPE cos/sin cache: max_position x head_dim in the model dtype (vLLM ``RotaryEmbedding._compute_cos_sin_cache``)
    rope = min(facts.text.max_position_embeddings, 1 << 20) * facts.text.head_dim * mb
    lm_bytes = (linear * qb) / (tp * pp) + embed * mb / tp + rope
    vb = qb if (q is not None and q.quantizes_vision) else mb
    vision_div = 1 if encoder_tp_mode == "data" else tp
    vision_bytes = vision * vb / vision_div if load_vision else 0.0
    return WeightBreakdown(lm_bytes, vision_bytes, extra * qb / tp)


# ------------------------------------------------------------------------------------------------------------ KV
@dataclass(frozen=True)
class KVGroup:
    """Layers that share one block table: one attention kind, ``layers`` layers per rank."""

    kind: str
    layers: int
    bytes_per_token_per_layer: float
    window: int | None = None


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    """KV heads are split across TP ranks and replicated when TP exceeds them (vLLM ``get_num_kv_heads``)."""
    return max(1, num_kv_heads // tp)


def kv_layout(facts: ModelFacts, *, tp: int, pp: int, kv_bytes: float) -> list[KVGroup]:
    """Per-kind layer counts on one rank and their per-token KV bytes.

    Full attention: ``2 × kv_heads_per_rank × head_dim × bytes`` per layer and token (``FullAttentionSpec`` page size,
    vllm@HEAD:vllm/v1/kv_cache_interface.py). MLA: one latent of ``kv_lora_rank + qk_rope_head_dim`` per token, not
    split over TP (``MLAAttentionSpec``). Linear-attention / mamba layers keep a per-request state and no per-token KV.
    """
    t = facts.text
    if t.is_mla:
        per = ((t.kv_lora_rank or 0) + t.qk_rope_head_dim) * kv_bytes
    else:
        per = 2 * kv_heads_per_rank(t.num_kv_heads, tp) * t.head_dim * kv_bytes
    counts: dict[str, int] = {}
    for kind in t.kinds():
        counts[kind] = counts.get(kind, 0) + 1
    groups: list[KVGroup] = []
    for kind in (FULL, SLIDING, CROSS, LINEAR):
        n = counts.get(kind, 0)
        if n == 0:
            continue
        per_rank = math.ceil(n / pp)
        groups.append(
            KVGroup(kind, per_rank, 0.0 if kind == LINEAR else per, t.sliding_window if kind == SLIDING else None)
        )
    return groups


@dataclass(frozen=True)
class KVPlan:
    """How vLLM would carve ``kv_bytes`` into blocks, and what one request of ``max_model_len`` needs."""

    num_blocks: int
    block_size: int
    #: blocks one max-length request holds (summed over KV groups)
    blocks_per_request: int
    #: bytes of one block across the layers sharing it
    bytes_per_block: float
    #: KV tokens as the release logs them ("GPU KV cache size: N tokens" / "# GPU blocks" × block size)
    tokens: int
    max_concurrency: float
    #: bytes one max-length request needs
    bytes_per_request: float
    #: per-token bytes summed over every attention layer on the rank (no window caps)
    bytes_per_token: float


def plan_kv(
    groups: list[KVGroup],
    *,
    kv_bytes: float,
    block_size: int,
    max_model_len: int,
    max_num_batched_tokens: int,
    hybrid: bool,
    tokens_as_concurrency: bool,
    extra_request_tokens: int = 0,
) -> KVPlan:
    """Blocks, tokens and concurrency.

    - Uniform models (one attention kind, or any model before the hybrid allocator): one block spans every layer;
      ``num_blocks = kv_bytes // (block_size × Σ per-token bytes)``; tokens = blocks × block_size
      (V0 ``determine_num_available_blocks``; V1 ``get_kv_cache_config``).
    - Hybrid allocator (V1 ≥ 0.10): layers are grouped by kind into groups of ``group_size`` = the smallest kind's
      layer count; one pool of blocks, each block ``group_size`` layers deep; a sliding-window group needs only
      ``cdiv(min(window - 1 + max_num_batched_tokens, L), block_size) + 1`` blocks per request
      (``SlidingWindowSpec.max_memory_usage_bytes``), a full group ``cdiv(L, block_size)``.
    - Max concurrency = num_blocks / blocks per max-length request (``get_max_concurrency_for_kv_cache_config``).
    """
    attn = [g for g in groups if g.bytes_per_token_per_layer > 0]
    per_token = sum(g.layers * g.bytes_per_token_per_layer for g in attn)
    if not attn or per_token <= 0:
        return KVPlan(0, block_size, 1, 0.0, 0, 0.0, 0.0, 0.0)
    request_len = max_model_len + extra_request_tokens

    def blocks_for(g: KVGroup) -> int:
        if g.kind == SLIDING and g.window:
            return math.ceil(min(g.window - 1 + max_num_batched_tokens, request_len) / block_size) + 1
        return math.ceil(request_len / block_size)

    kinds = {g.kind for g in attn}
    only_sliding = kinds == {SLIDING}
    if hybrid and len(kinds) > 1:
        group_size = min(g.layers for g in attn)
        n_groups = [math.ceil(g.layers / group_size) for g in attn]
        layer_block = block_size * max(g.bytes_per_token_per_layer for g in attn)
        bytes_per_block = group_size * layer_block
        num_blocks = max(0, int(kv_bytes // bytes_per_block))
        per_req = sum(n * blocks_for(g) for n, g in zip(n_groups, attn, strict=True))
        conc = num_blocks / per_req if per_req else 0.0
        total_groups = sum(n_groups)
        tokens = int(conc * max_model_len) if tokens_as_concurrency else num_blocks // total_groups * block_size
        return KVPlan(
            num_blocks, block_size, per_req, bytes_per_block, tokens, conc, per_req * bytes_per_block, per_token
        )
    bytes_per_block = block_size * per_token
    num_blocks = max(0, int(kv_bytes // bytes_per_block))
    per_req = blocks_for(attn[0]) if hybrid and only_sliding else math.ceil(request_len / block_size)
    conc = num_blocks / per_req if per_req else 0.0
    tokens = num_blocks * block_size
    if tokens_as_concurrency and hybrid and only_sliding:
        tokens = int(conc * max_model_len)
    return KVPlan(num_blocks, block_size, per_req, bytes_per_block, tokens, conc, per_req * bytes_per_block, per_token)


# ----------------------------------------------------------------------------------------------------- activations
#: Bytes per element of the V1 dummy sampler run, per logit: fp32 logits (4) + fp32 probs (4) + top-p/top-k sort
#: (sorted fp32 values 4 + int64 indices 8). ``_dummy_sampler_run`` samples with top-k/top-p set
#: (vllm@HEAD:vllm/v1/worker/gpu_model_runner.py); calibrated against the V1 logs in tests/data/calibration.
SAMPLER_BYTES_V1 = 20.0
#: V0 profile: the dummy sequences sample with top-k = vocab - 1 and top-p 0.99 (``ModelRunner.profile_run``), so
#: the sampler sorts the full vocabulary for every row (``_apply_top_k_top_p``, vllm@v0.6.5 and v0.8.2
#: model_executor/layers/sampler.py, FlashInfer's sampler off by default). Live per logit when it scatters back: the
#: model-dtype logits (2), their fp32 copy (4), sorted values (4), int64 indices (8), the top-k mask (1), softmax of the
#: sorted values (4), their cumsum (4), the top-p mask (1) and the scattered result (4) = 32 bytes, plus the radix
#: sort's workspace while it sorts. The V0 logs whose peak the sampler sets put it at 39 (vllm#10511, Llama-3-8B) and
#: 32 (vllm#15815, Qwen2.5-32B) bytes per logit; 36 splits them (errors -7 % and +11 %).
SAMPLER_BYTES_V0 = 36.0
#: V1 before the dummy sampler run (v0.7.x): logits for every profiled token (``compute_logits`` on all
#: ``max_num_tokens`` hidden states, vllm@v0.7.3 gpu_model_runner.profile_run), model dtype.
EARLY_V1_LOGIT_BYTES = 2.0
#: fused-MoE chunking (``VLLM_FUSED_MOE_CHUNK_SIZE`` default 64K tokens, vllm/envs.py)
MOE_CHUNK = 65536


def lm_activation_bytes(
    facts: ModelFacts, *, tokens: int, tp: int, act_bytes: float, expert_parallel: bool = False
) -> float:
    """Peak transient memory of one forward over ``tokens`` tokens on one rank.

    The largest live set is inside the MLP: the residual stream and normed input (2·H), the fused gate/up output
    (2·I/tp) and the activation output (I/tp). For MoE the fused kernel's intermediate caches hold
    ``tokens × top_k × (2·I_e + I_e + H)`` (``fused_experts_impl`` ``intermediate_cache1..3``), chunked at
    ``MOE_CHUNK`` tokens. Attention (FlashAttention) adds q/k/v of ``(heads + 2·kv_heads)·head_dim/tp`` per token.
    """
    t = facts.text
    h = t.hidden_size
    qkv = (t.num_heads + 2 * t.num_kv_heads) * t.head_dim / tp
    if t.is_mla:
        qkv = t.num_heads * (t.qk_nope_head_dim + t.qk_rope_head_dim + t.v_head_dim) / tp
    attn = tokens * (2 * h + qkv + t.num_heads * t.head_dim / tp)
    dense_width = (t.dense_intermediate_size or t.intermediate_size) / tp
    mlp = tokens * (2 * h + 3 * dense_width)
    if t.is_moe:
        chunk = min(tokens, MOE_CHUNK)
        # with expert parallelism each rank runs whole experts: the caches are full expert width
        width = t.moe_intermediate_size if expert_parallel else t.moe_intermediate_size / tp
        moe = chunk * t.num_experts_per_tok * (3 * width + h) + tokens * 2 * h
        mlp = max(mlp if t.first_k_dense or t.moe_layer_step > 1 else 0.0, moe)
    return max(attn, mlp) * act_bytes


def v0_activation_peak(*, encoder: float, lm: float, sampler: float, hidden: float) -> float:
    """V0's profiled peak: the forward (encoder then LM) and the sampler run one after the other, so their
    transients do not add; the final hidden states of every profiled token (``hidden``) stay alive through both.
    This is why the peak does not shrink with TP when the sampler dominates (vllm#10511 logs 1.26 GiB at TP 1
    and TP 2: the sampler runs unsharded on the driver), and why long prompts are LM-bound (vllm#10517: 20k and
    29k tokens, within 1 %)."""
    return hidden + max(encoder + lm, sampler)


def sampler_bytes(facts: ModelFacts, *, rows: int, engine: str, early_v1: bool) -> float:
    vocab = facts.text.vocab_size
    if engine == "v0":
        return rows * vocab * SAMPLER_BYTES_V0
    if early_v1:
        return rows * vocab * EARLY_V1_LOGIT_BYTES
    return rows * vocab * SAMPLER_BYTES_V1


#: ViTs with 2-D rotary position embeddings whose attention vLLM runs through ``split_qkv`` and
#: ``apply_rotary_pos_emb_vision`` (vllm@v0.11.0 model_executor/models/qwen2_5_vl.py, reused by qwen2_vl, qwen3_vl and
#: glm4_1v).
ROTARY_VIT_FAMILIES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"})


def encoder_activation_bytes(
    facts: ModelFacts, *, patches: float, tp: int, encoder_tp_mode: str, act_bytes: float
) -> float:
    """Peak transient memory of the vision encoder on ``patches`` input patches (all profiled items, one batch).

    ViT with memory-efficient attention (no N² score matrix: vLLM runs the encoders on FlashAttention / xformers /
    SDPA varlen), per patch: residual + normed input (2·Hv) plus the larger of the attention block's live set and the
    MLP hidden (2·Iv gated, 1·Iv plain, + Iv). TP splits heads and MLP width in ``weights`` mode.

    Attention: q/k/v projections and output, 4·Hv. Rotary ViTs (Qwen-VL, GLM-4.1V) hold more: the qkv output
    (3·Hv), contiguous q/k/v copies (3·Hv), the q‖k concatenation (2·Hv) and its float32 copy for the rotary
    embedding (4·Hv) = 12·Hv, split by TP; under TP ``split_qkv`` first all-gathers the full qkv (3·Hv, unsplit,
    while the gathered list is still alive: 6·Hv). Calibrated on the vLLM 0.9.0.1 logs of Qwen2.5-VL-7B on L4 at
    TP 1 (-5 %) and TP 2 (-16 %), tests/data/calibration. Plus the pixel values themselves.
    """
    v = facts.vision
    if v is None or patches <= 0:
        return 0.0
    split = 1 if encoder_tp_mode == "data" else tp
    n = patches
    h = v.hidden_size
    if facts.family in ROTARY_VIT_FAMILIES:
        attn = max(12 * h / split, 3 * h / split + 6 * h) if split > 1 else 12 * h
    else:
        attn = 4 * h / split
    mlp = (2 if v.gated_mlp else 1) * v.intermediate_size / split + v.intermediate_size / split
    pixels = 3 * max(1, v.temporal_patch_size) * v.patch_size * v.patch_size
    return n * (2 * h + max(attn, mlp) + pixels) * act_bytes


#: Non-torch memory growth during profiling (cuBLAS/cuDNN workspaces, allocator slack) at TP=1, and the extra for
#: NCCL + custom all-reduce buffers at TP>1. Medians of the "non_torch_memory takes X GiB" lines in the V0 logs in
#: tests/data/calibration (0.03–0.43 GiB).
NON_TORCH_TP1_GIB = 0.20
NON_TORCH_TP_EXTRA_GIB = 0.25


def non_torch_bytes(tp: int, pp: int) -> float:
    return (NON_TORCH_TP1_GIB + (NON_TORCH_TP_EXTRA_GIB if tp * pp > 1 else 0.0)) * GIB


#: CUDA-graph pool: a base plus a per-layer share, for the default capture sizes (V1 piecewise graphs: 67 sizes up
#: to 512; V0: 35 sizes up to 256). Heuristic from "Graph capturing finished in N secs, took X GiB" lines (0.3–1.2
#: GiB for 7B–72B models). Subtracted before the KV cache only from v0.21.0 (#38284, vllm/v1/worker/gpu_worker.py).
CUDA_GRAPH_BASE_GIB = 0.25
CUDA_GRAPH_PER_LAYER_GIB = 0.012


def cuda_graph_bytes(facts: ModelFacts, *, pp: int, enforce_eager: bool) -> float:
    if enforce_eager:
        return 0.0
    layers = math.ceil(facts.text.num_layers / pp)
    return (CUDA_GRAPH_BASE_GIB + CUDA_GRAPH_PER_LAYER_GIB * layers) * GIB
