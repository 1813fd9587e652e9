"""The memory terms: weights, KV bytes per token, profiling activations, non-torch memory and CUDA graphs.

Pure arithmetic on :class:`ModelFacts`. Constants name their source: a vLLM file at a release or commit
(``vllm@v0.11.0 path``, ``vllm@<sha>:path``), a vLLM PR (``#N``) or a calibration log in ``tests/data/calibration/``.
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
    """Bytes per linear-layer parameter: the model dtype, or the scheme's layout (``QuantFacts.bytes_per_param``)."""
    if q is None:
        return model_bytes
    return q.bytes_per_param(model_bytes)


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
    in ``data`` mode (``--mm-encoder-tp-mode``, vllm/config/multimodal.py). Embeddings and ``lm_head`` stay in the
    model dtype under weight quantization.
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
#: Bytes per logit of the V1 dummy sampler run before v0.10 (``legacy`` path), fitted on the V1 logs in
#: tests/data/calibration when the estimate still added the LM forward's transient to it.
SAMPLER_BYTES_V1 = 20.0
#: Bytes per logit of the V1 dummy sampler run by sampler path (``releases.v1_sampler_path``). Every path holds the
#: model-dtype logits ``compute_logits`` returns (2, kept by ``_dummy_sampler_run``) and their fp32 copy (4,
#: ``Sampler.forward``), vllm@v0.11.0 v1/worker/gpu_model_runner.py:3183-3218 and v1/sample/sampler.py.
#: - flashinfer: ``top_k_top_p_sampling_from_logits`` masks the top-k logits into a new fp32 tensor and takes its
#:   softmax (4 + 4) = 14. The three vLLM 0.10.1.1 A100 logs in tests/data/calibration (FlashInfer sampler logged)
#:   leave 0.5-0.7 GiB for activation and non-torch memory at 256 rows x 152,064 logits, which 14 matches.
#: - sort: ``apply_top_k_top_p`` (vllm@v0.12.0 v1/sample/ops/topk_topp_sampler.py:239-279): sorted fp32 values (4),
#:   int64 indices (8), the top-k mask (1), the sorted probabilities (4), the top-p mask (1) and the scattered result
#:   (4) are alive together (28), plus the sort's own scratch. The vLLM 0.10.2 L40S log in tests/data/calibration
#:   ("FlashInfer is not available. Falling back to the PyTorch-native implementation") profiles 1.40 GiB at 256 rows
#:   x 151,936 logits = 38 bytes per logit, the V0 sampler's 36-39 (the same sort). flashinfer-ai/flashinfer#1180
#:   reports 1.51 GiB less KV cache with the native sampler than with FlashInfer's on one setup, 24 bytes per logit
#:   at 256 x 262,144 logits (a Gemma-3 vocabulary; the model is not named), the 38 - 14 here.
#: - triton: the filter runs in place (vllm@v0.17.0 topk_topp_triton.py), then ``random_sample`` holds the softmax
#:   probabilities (4) and the exponential noise (4) = 14; its per-SM row buffer (at most 132 rows) is left out.
SAMPLER_BYTES_BY_PATH = {"flashinfer": 14.0, "sort": 38.0, "triton": 14.0, "legacy": SAMPLER_BYTES_V1}
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


def sampler_bytes(facts: ModelFacts, *, rows: int, engine: str, early_v1: bool, path: str = "legacy") -> float:
    vocab = facts.text.vocab_size
    if engine == "v0":
        return rows * vocab * SAMPLER_BYTES_V0
    if early_v1:
        return rows * vocab * EARLY_V1_LOGIT_BYTES
    return rows * vocab * SAMPLER_BYTES_BY_PATH[path]


def v1_activation_peak(
    *, encoder_cache: float, encoder: float, lm: float, sampler: float, hidden: float, summed: bool = False
) -> float:
    """V1's profiled peak (``GPUModelRunner.profile_run``, vllm@v0.11.0 v1/worker/gpu_model_runner.py:3325-3402):
    the encoder runs first and its outputs stay in the encoder cache; then ``_dummy_run`` runs the LM over
    ``max_num_tokens`` and returns, freeing its transients; only its hidden states (``hidden``) stay alive while
    ``_dummy_sampler_run`` samples. So the three transients do not add: the peak is the largest of them, on top of
    the encoder cache (the sampler's also on top of the hidden states).

    ``summed``: V1 before v0.10 keeps the sum of LM and sampler its constants were fitted with (the v0.7 logits of
    every profiled token: vllm#12569's Llama-3.1-70B w8a8 log is -8 % on KV tokens with the sum, +13 % with the
    maximum; the 20 B per logit of v0.8-v0.9, whose sampler path, FlashInfer or sort, the image did not pin)."""
    if summed:
        return encoder_cache + max(encoder, lm + sampler)
    return encoder_cache + max(encoder, lm, hidden + sampler)


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
    TP 1 and TP 2 (tests/data/calibration): with the L4 total torch reports (22.03 GiB) their KV comes out -5.5 % and
    -1.5 %. Plus the pixel values themselves.
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


#: Mllama keeps five vision layers' outputs for its projector (``intermediate_layers_indices`` = [3, 7, 15, 23, 30] in
#: every Llama-3.2-Vision checkpoint; ``MllamaVisionModel.forward`` stacks them, vllm@v0.10.2
#: model_executor/models/mllama.py:655-760).
MLLAMA_INTERMEDIATE_LAYERS = 5


def cross_attention_encoder_bytes(
    facts: ModelFacts, *, images: int, tokens_per_image: int, tp: int, act_bytes: float
) -> float:
    """Peak of Mllama's vision encoder over ``images`` worst-case images in one batch (V0 profile).

    Per image the encoder runs ``tiles`` tiles of ``(image_size / patch)² + 1`` patches, padded to a multiple of 8
    (T tokens in all). Alive at the MLP of the last local layer (vllm@v0.10.2 model_executor/models/mllama.py
    ``MllamaVisionModel.forward``): the aspect-ratio attention mask ``_prepare_aspect_ratio_attention_mask`` builds,
    T × T in the model dtype; the hidden state and residual (2·T·H); the kept intermediate layer outputs (5·T·H);
    and the MLP's fc1 output and activation (2·T·I/TP; the hidden state is all-gathered, so H is not split).
    The V0 encoder-decoder profile gives every one of ``max_num_seqs`` dummy sequences its images
    (vllm@v0.6.3 and v0.10.2 worker/enc_dec_model_runner.py ``profile_run``), so at 128 sequences the 128-image
    batch needs ~39 GiB where one image needs 0.3 GiB.
    """
    v = facts.vision
    if v is None or images <= 0:
        return 0.0
    per_tile = (v.image_size // v.patch_size) ** 2 + 1
    tiles = max(1, round(tokens_per_image / per_tile))
    t = tiles * (math.ceil(per_tile / 8) * 8)
    h, inter = v.hidden_size, v.intermediate_size
    per_image = t * t + t * ((2 + MLLAMA_INTERMEDIATE_LAYERS) * h + 2 * inter / tp)
    return images * per_image * act_bytes


#: Non-torch memory growth during profiling (cuBLAS/cuDNN workspaces, allocator slack) at TP=1, and the extra for
#: NCCL + custom all-reduce buffers at TP>1. Medians of the "non_torch_memory takes X GiB" lines in the V0 logs in
#: tests/data/calibration (0.03–0.43 GiB).
NON_TORCH_TP1_GIB = 0.20
NON_TORCH_TP_EXTRA_GIB = 0.25
#: V1 from v0.9.1 takes its baseline after NCCL and custom all-reduce set-up
#: (``releases.v1_snapshot_after_distributed_init``), so only what the profiling run itself creates counts:
#: cuBLAS/Triton workspaces, the all-gather of the logits.
#: The V1 logs that print it: 0.07 GiB (vLLM 0.10.2, TP 1, H100) and 0.21 GiB (0.10.2, TP 8, L40S); the 0.10.1.1
#: A100 logs leave about 0.05 (TP 1) and 0.15 (TP 2) GiB next to the sampler (tests/data/calibration).
NON_TORCH_V1_TP1_GIB = 0.08
NON_TORCH_V1_TP_EXTRA_GIB = 0.10


def non_torch_bytes(tp: int, pp: int, *, after_distributed_init: bool = False) -> float:
    if after_distributed_init:
        return (NON_TORCH_V1_TP1_GIB + (NON_TORCH_V1_TP_EXTRA_GIB if tp * pp > 1 else 0.0)) * GIB
    return (NON_TORCH_TP1_GIB + (NON_TORCH_TP_EXTRA_GIB if tp * pp > 1 else 0.0)) * GIB


#: CUDA-graph pool: a base plus a per-layer share, for the default capture sizes (V1 piecewise graphs: 67 sizes up
#: to 512; V0: 35 sizes up to 256). Heuristic from "Graph capturing finished in N secs, took X GiB" lines (0.3–1.2
#: GiB for 7B–72B models). Subtracted before the KV cache only from v0.21.0
#: (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` default 1, vllm-0.21.0 vllm/envs.py:1768-1770; 0 in 0.19.0).
CUDA_GRAPH_BASE_GIB = 0.25
CUDA_GRAPH_PER_LAYER_GIB = 0.012


#: Capture sizes the heuristic above was read from: the default list up to 512.
DEFAULT_CAPTURE_SIZES = 67


def cuda_graph_capture_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> list[int]:
    """vLLM's default capture sizes: ``[1, 2, 4] + range(8, 256, 8) + range(256, max + 1, 16)`` up to
    ``max = min(2 × max_num_seqs, 512, max_num_batched_tokens)`` (``VllmConfig._set_cudagraph_sizes``, vllm-0.18.0
    vllm/config/vllm.py:1287-1347)."""
    top = max(1, min(2 * max_num_seqs, 512, max_num_batched_tokens))
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)]
    return [s for s in sizes if s <= top] or [1]


def cuda_graph_bytes(
    facts: ModelFacts, *, pp: int, enforce_eager: bool, capture_sizes: list[int] | None = None
) -> float:
    """The CUDA-graph pool. ``capture_sizes`` (from v0.18, where the list is capped by ``2 × max_num_seqs``): the
    heuristic scales with the number of graphs; vLLM's own estimate is the first (largest) capture plus one
    per-graph figure per further size (``profile_cudagraph_memory``, vllm-0.18.0 v1/worker/gpu_model_runner.py
    :5593-5691). The vLLM 0.23.0 RTX 4090 log in tests/data/calibration (max_num_seqs 32: 11 sizes up to 64) prints
    "Estimated CUDA graph memory: 0.13 GiB", this term 0.10."""
    if enforce_eager:
        return 0.0
    layers = math.ceil(facts.text.num_layers / pp)
    full = (CUDA_GRAPH_BASE_GIB + CUDA_GRAPH_PER_LAYER_GIB * layers) * GIB
    if capture_sizes is None:
        return full
    return full * min(1.0, len(capture_sizes) / DEFAULT_CAPTURE_SIZES)


#: From v0.18 the trial captures of ``profile_cudagraph_memory`` run inside the profiling window
#: (``releases.profiles_cuda_graphs``): what they leave on the device outside PyTorch's allocator (the instantiated
#: graphs' and lazily loaded kernels' driver memory; the graph pool itself is torch memory and is released) is in the
#: non-torch increase. Per layer of the rank at the largest capture size (512), from the H200 logs in
#: tests/data/calibration: Llama-3.3-70B TP 4 (80 layers) leaves 2.15 GiB at 0.18.0 and 1.85 GiB next to the applied
#: graph estimate at 0.20.0; Qwen3-VL-30B-A3B TP 1 (48 layers) 1.07 GiB at 0.18.0: 22-27 MiB a layer. Before 0.18
#: the same H200 runs show none of it (0.11.2-0.16.0 within 0.6 GiB of the estimate).
CUDA_GRAPH_PROFILE_LEFTOVER_PER_LAYER_GIB = 0.023


def cuda_graph_profile_leftover_bytes(facts: ModelFacts, *, pp: int, capture_sizes: list[int]) -> float:
    """Non-torch memory the trial CUDA-graph captures leave in the profiling window (v0.18+), scaled by the largest
    capture size over 512 (the trial captures are the two largest sizes of each mode, ``descs[:2]``)."""
    layers = math.ceil(facts.text.num_layers / pp)
    return CUDA_GRAPH_PROFILE_LEFTOVER_PER_LAYER_GIB * layers * GIB * min(1.0, max(capture_sizes) / 512)
