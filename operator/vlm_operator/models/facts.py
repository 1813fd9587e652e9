"""Architecture facts that GPU memory depends on, and parameter counts computed from them.

Everything here is plain data plus arithmetic. The facts come from a model's ``config.json`` (see ``hf_config``), from
the built-in catalog (``catalog.json``) or from a local model directory (``local``). The parameter-count formulas follow
the module shapes of the transformers / vLLM implementations (e.g. ``LlamaDecoderLayer``: q/k/v/o projections plus
a gated MLP ``gate_proj``/``up_proj``/``down_proj``; DeepSeek-V2 MLA: ``q_a``/``q_b``/``kv_a``/``kv_b``/``o``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Layer kinds used in :attr:`TextFacts.layer_types`.
FULL = "full"
SLIDING = "sliding"  # sliding-window or chunked-local attention (window = ``sliding_window``)
CROSS = "cross"  # cross-attention to encoder states (Mllama)
LINEAR = "linear"  # linear-attention / mamba state: constant size per request, no per-token KV
LAYER_KINDS = (FULL, SLIDING, CROSS, LINEAR)


@dataclass(frozen=True)
class TextFacts:
    """The language model (decoder) of a VLM, or a text-only LLM."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096
    attention_bias: bool = False
    #: one entry per layer (``FULL``/``SLIDING``/``CROSS``/``LINEAR``); empty means every layer is full attention.
    layer_types: tuple[str, ...] = ()
    sliding_window: int | None = None
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi-VL): the KV cache holds one latent of
    # ``kv_lora_rank + qk_rope_head_dim`` per token and layer (vllm/v1/kv_cache_interface.py ``MLAAttentionSpec``).
    kv_lora_rank: int | None = None
    q_lora_rank: int | None = None
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Mixture of experts.
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    #: the first ``first_k_dense`` layers use a dense MLP (DeepSeek ``first_k_dense_replace``).
    first_k_dense: int = 0
    #: every ``moe_layer_step``-th layer is MoE (Llama 4 Maverick ``interleave_moe_layer_step`` = 2).
    moe_layer_step: int = 1
    #: dense MLP width of non-MoE layers when it differs from ``intermediate_size`` (Llama 4 ``intermediate_size_mlp``)
    dense_intermediate_size: int | None = None

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None and self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def kinds(self) -> tuple[str, ...]:
        """Per-layer attention kinds, expanded to ``num_layers`` entries."""
        if self.layer_types:
            return self.layer_types
        return (FULL,) * self.num_layers

    def layer_is_moe(self, index: int) -> bool:
        if not self.is_moe or index < self.first_k_dense:
            return False
        return (index + 1) % max(1, self.moe_layer_step) == 0

    # ---- parameter counts -------------------------------------------------------------------------------------
    def attention_params(self) -> int:
        h = self.hidden_size
        if self.is_mla:
            rank = self.kv_lora_rank or 0
            qk_head = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * self.num_heads * qk_head
            else:
                q = h * self.num_heads * qk_head
            kv_a = h * (rank + self.qk_rope_head_dim) + rank
            kv_b = rank * self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)
            o = self.num_heads * self.v_head_dim * h
            return q + kv_a + kv_b + o
        q_out = self.num_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        params = h * q_out + 2 * h * kv_out + q_out * h
        if self.attention_bias:
            params += q_out + 2 * kv_out
        return params

    def dense_mlp_params(self) -> int:
        width = self.dense_intermediate_size or self.intermediate_size
        return 3 * self.hidden_size * width

    def moe_mlp_params(self) -> tuple[int, int]:
        """(total, active per token) parameters of one MoE MLP block, router included."""
        h = self.hidden_size
        expert = 3 * h * self.moe_intermediate_size
        shared_width = self.shared_expert_intermediate_size or self.moe_intermediate_size * self.num_shared_experts
        shared = 3 * h * shared_width if shared_width else 0
        router = h * self.num_experts
        total = self.num_experts * expert + shared + router
        active = self.num_experts_per_tok * expert + shared + router
        return total, active

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def layer_params(self) -> int:
        """Everything but the embeddings: attention, MLP/MoE and norms of every layer, plus the final norm."""
        total = 0
        moe_total, _ = self.moe_mlp_params() if self.is_moe else (0, 0)
        for i in range(self.num_layers):
            mlp = moe_total if self.layer_is_moe(i) else self.dense_mlp_params()
            total += self.attention_params() + mlp + 2 * self.hidden_size
        return total + self.hidden_size

    def param_count(self) -> int:
        return self.embedding_params() + self.layer_params()


@dataclass(frozen=True)
class VisionFacts:
    """A vision encoder (ViT-style) plus the projector that maps its features into the LM's embedding space."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    patch_size: int
    image_size: int
    gated_mlp: bool = False
    temporal_patch_size: int = 1
    #: spatial merge factor (Qwen-VL ``spatial_merge_size``; pixel-shuffle factor for InternVL/Llama 4 etc.)
    merge_size: int = 1
    #: parameters of the projector (merger / connector / resampler); computed by ``hf_config`` per family.
    projector_params: int = 0
    #: exact encoder parameter count when known (overrides the ViT formula).
    encoder_params_override: int | None = None

    def encoder_params(self) -> int:
        if self.encoder_params_override is not None:
            return self.encoder_params_override
        h = self.hidden_size
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size + self.intermediate_size + h
        attn = 4 * h * h + 4 * h
        per_layer = attn + mlp + 4 * h  # two LayerNorms (weight + bias)
        patch_embed = 3 * self.patch_size * self.patch_size * self.temporal_patch_size * h + h
        positions = (self.image_size // max(1, self.patch_size)) ** 2 * h
        return self.num_layers * per_layer + patch_embed + positions + 2 * h

    def param_count(self) -> int:
        return self.encoder_params() + self.projector_params


@dataclass(frozen=True)
class QuantFacts:
    """How the checkpoint's linear layers are stored (``quantization_config`` in config.json).

    :meth:`bytes_per_param` sizes one quantized linear weight the way vLLM allocates it, scales and zero points
    included (see its docstring for the layout each method follows).
    """

    #: ``fp8``, ``awq``, ``gptq``, ``compressed-tensors``, ``bitsandbytes``, ``fbgemm_fp8`` ...
    method: str
    bits: int = 16
    #: input channels per scale; 0 = per output channel (or per tensor), -1 treated as 0
    group_size: int = 128
    #: whether the vision tower is quantized too (most VLM checkpoints leave it in bf16 via ``ignore`` /
    #: ``modules_to_not_convert``).
    quantizes_vision: bool = False
    #: ``int`` or ``float`` (fp8) weights
    weight_type: str = "int"
    #: ``tensor``, ``channel``, ``group`` or ``block`` scales
    strategy: str = "group"
    #: symmetric quantization stores no zero points (compressed-tensors ``symmetric``, GPTQ ``sym``)
    symmetric: bool = True
    #: activation bits (8 for w8a8 / fp8-dynamic, 16 for weight-only schemes)
    act_bits: int = 16
    #: (rows, cols) of one scale block (fp8 ``weight_block_size``, compressed-tensors ``block_structure``)
    block: tuple[int, int] | None = None
    #: GPTQ ``desc_act`` / compressed-tensors ``actorder: group``: an int32 group index per input channel
    act_order: bool = False
    #: typical input width of a quantized linear (the LM hidden size); sizes per-channel scales and ``g_idx``
    in_features: int = 4096

    @property
    def scheme(self) -> str:
        """A short label: ``awq w4 g128``, ``compressed-tensors w8a8 int8 channel``, ``fp8 block 128x128``."""
        if self.method in ("fp8", "fbgemm_fp8"):
            if self.block:
                return f"{self.method} block {self.block[0]}x{self.block[1]}"
            return f"{self.method} {self.strategy}"
        kind = "fp8" if self.weight_type == "float" else f"int{self.bits}"
        group = f" g{self.group_size}" if self.strategy == "group" and self.group_size > 0 else f" {self.strategy}"
        if self.method == "compressed-tensors":
            return f"compressed-tensors w{self.bits}a{self.act_bits} {kind}{group}"
        return f"{self.method} w{self.bits}{group}"

    def bytes_per_param(self, model_bytes: float) -> float:
        """Bytes per parameter of one quantized linear layer, as vLLM allocates it.

        - AWQ (vllm/model_executor/layers/quantization/awq.py ``AWQLinearMethod.create_weights``): ``qweight``
          int32 [in, out/8], ``qzeros`` int32 [in/g, out/8], ``scales`` fp16 [in/g, out] -> b/8 + (2 + b/8)/g.
        - GPTQ (gptq.py ``GPTQLinearMethod.create_weights``): ``qweight`` [in/8, out], ``qzeros`` [in/g, out/8],
          ``scales`` fp16 [in/g, out] and ``g_idx`` int32 [in] -> b/8 + (2 + b/8)/g + 4/out.
        - compressed-tensors weight-only wNa16 (compressed_tensors_wNa16.py ``CompressedTensorsWNA16``, e.g.
          vllm@519b90d): ``weight_packed`` int32 [out, in/(32/b)], ``weight_scale`` in the model dtype [out, in/g]
          (g = in for ``channel``), a packed zero point per group when not ``symmetric``, ``weight_g_idx`` int32 [in]
          with ``actorder: group``.
        - compressed-tensors w8a8 int8 / fp8 (compressed_tensors_w8a8_int8.py, compressed_tensors_w8a8_fp8.py):
          an 8-bit weight and, for ``channel``, a float32 scale per output row [out, 1] -> 1 + 4/in; ``tensor``:
          one float32 per layer; ``block``: one float32 per block.
        - fp8 (fp8.py ``Fp8LinearMethod``): 1 byte, float32 ``weight_scale_inv`` per ``weight_block_size`` block
          (Qwen3-VL / DeepSeek style) or one per tensor; fbgemm_fp8 scales per output channel.
        - bitsandbytes 4-bit: 0.5 byte + one fp32 absmax per 64-value block (``bnb_4bit`` blocksize 64).
        """
        m = self.method
        fin = max(1, self.in_features)
        if m in ("awq", "gptq"):
            g = self.group_size if self.group_size > 0 else fin
            b = self.bits / 8 + (2 + self.bits / 8) / g
            return b + (4 / fin if m == "gptq" else 0.0)  # g_idx [in] per layer ~ 4 bytes per input row
        if m in ("fp8", "fbgemm_fp8") or (m == "compressed-tensors" and self.bits == 8 and self.act_bits == 8):
            if self.block:
                return 1.0 + 4 / (self.block[0] * self.block[1])
            if self.strategy == "channel" or m == "fbgemm_fp8":
                return 1.0 + 4 / fin
            return 1.0
        if m == "compressed-tensors":
            g = self.group_size if (self.strategy == "group" and self.group_size > 0) else fin
            b = self.bits / 8 + model_bytes / g
            if not self.symmetric:
                b += self.bits / 8 / g
            if self.act_order:
                b += 4 / fin
            return b
        if m == "bitsandbytes":
            return 0.5 + 4 / 64 if self.bits == 4 else 1.0
        return self.bits / 8


@dataclass(frozen=True)
class ModelFacts:
    """Everything the estimator needs to know about one model."""

    model_id: str
    #: tokens-per-image family key (see ``estimator.tokens.FAMILIES``); ``text`` for text-only models.
    family: str
    architecture: str
    text: TextFacts
    vision: VisionFacts | None = None
    #: exact total parameters when known (safetensors ``metadata.total_size`` / bytes-per-param, or the model card).
    total_params: int | None = None
    checkpoint_dtype: str = "bfloat16"
    quantization: QuantFacts | None = None
    #: processor defaults that change tokens per image (``max_pixels``, ``num_crops``, ``image_grid_pinpoints`` ...).
    processor: Mapping[str, Any] = field(default_factory=dict)
    modalities: tuple[str, ...] = ("image",)
    #: other non-LM, non-vision parameters (e.g. Phi-4-multimodal's audio encoder).
    extra_params: int = 0
    source: str = ""
    verified: bool = False
    notes: str = ""

    @property
    def is_multimodal(self) -> bool:
        return self.vision is not None

    @property
    def num_attention_heads(self) -> int:
        """The LM's attention heads (TP must divide them)."""
        return self.text.num_heads

    def computed_params(self) -> int:
        vision = self.vision.param_count() if self.vision else 0
        return self.text.param_count() + vision + self.extra_params

    def split_params(self) -> tuple[int, int, int]:
        """(language model, vision encoder + projector, extra) parameter counts.

        When an exact total is known, the language model takes whatever the exact total leaves after the
        (computed) vision and extra parts, so the total matches the checkpoint exactly.
        """
        vision = self.vision.param_count() if self.vision else 0
        if self.total_params is None:
            return self.text.param_count(), vision, self.extra_params
        lm = max(self.total_params - vision - self.extra_params, 0)
        return lm, vision, self.extra_params
