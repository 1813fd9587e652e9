"""Turn a Hugging Face ``config.json`` (plus ``preprocessor_config.json``) into :class:`ModelFacts`.

The same parser reads the built-in catalog (whose entries are excerpts of public config.json files) and local model
directories, so a catalog entry and the real checkpoint directory give the same facts.

Key names follow the transformers configuration classes (``Qwen2VLConfig``, ``LlavaConfig``, ``Gemma3Config``,
``MllamaConfig``, ``Llama4Config``, ``InternVLChatConfig`` (remote code), ``DeepseekVLV2Config`` ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlm_operator.models.facts import CROSS, FULL, LINEAR, SLIDING, ModelFacts, QuantFacts, TextFacts, VisionFacts


class ConfigError(ValueError):
    """A config.json that lacks what the estimator needs."""


#: config ``model_type`` -> tokens-per-image family (``estimator.tokens``).
MODEL_TYPE_FAMILY: dict[str, str] = {
    "llava": "llava",
    "llava_next": "llava_next",
    "llava_onevision": "llava_onevision",
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
    "gemma3": "gemma3",
    "paligemma": "paligemma",
    "internvl_chat": "internvl",
    "nvlm_d": "nvlm_d",
    "phi3_v": "phi3v",
    "phi4mm": "phi4mm",
    "mllama": "mllama",
    "llama4": "llama4",
    "mistral3": "mistral3",
    "pixtral": "pixtral",
    "idefics3": "idefics3",
    "smolvlm": "smolvlm",
    "minicpmv": "minicpmv",
    "deepseek_vl_v2": "deepseek_vl2",
    "kimi_vl": "kimi_vl",
    "glm4v": "glm4v",
    "glm4v_moe": "glm4v",
}

#: families that take video input in vLLM (video = frames x per-frame tokens).
VIDEO_FAMILIES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision", "glm4v", "internvl", "minicpmv"})


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _int(d: Mapping[str, Any], *keys: str, default: int | None = None) -> int:
    for k in keys:
        v = d.get(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            return int(v)
    if default is None:
        raise ConfigError(f"config lacks {' / '.join(keys)}")
    return default


def _opt_int(d: Mapping[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return int(v)
    return None


def family_of(config: Mapping[str, Any]) -> str:
    model_type = str(config.get("model_type", "")).lower()
    vision_type = str(_dict(config.get("vision_config")).get("model_type", "")).lower()
    if model_type == "llava" and vision_type == "pixtral":
        return "pixtral"
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a == "NVLM_D" or a.startswith("NVLM_D") for a in archs):
        return "nvlm_d"
    if model_type in MODEL_TYPE_FAMILY:
        return MODEL_TYPE_FAMILY[model_type]
    if "vision_config" in config or "visual" in config:
        raise ConfigError(f"unsupported multimodal model_type {model_type!r} (architectures {archs})")
    return "text"


def _text_section(config: Mapping[str, Any]) -> dict[str, Any]:
    for key in ("text_config", "llm_config", "language_config"):
        sub = _dict(config.get(key))
        if sub:
            merged = {k: v for k, v in config.items() if not isinstance(v, Mapping)}
            merged.update(sub)
            return merged
    return dict(config)


def _layer_types(t: Mapping[str, Any], num_layers: int, family: str) -> tuple[tuple[str, ...], int | None]:
    """Per-layer attention kind and the sliding window, from the config's own layer map."""
    explicit = t.get("layer_types")
    window = _opt_int(t, "sliding_window")
    if isinstance(explicit, list) and len(explicit) == num_layers:
        kinds: list[str] = []
        for v in explicit:
            s = str(v)
            if "sliding" in s or "chunked" in s:
                kinds.append(SLIDING)
            elif "linear" in s or "mamba" in s:
                kinds.append(LINEAR)
            else:
                kinds.append(FULL)
        return tuple(kinds), window
    cross = t.get("cross_attention_layers")
    if isinstance(cross, list) and cross:
        cross_set = {int(i) for i in cross}
        return tuple(CROSS if i in cross_set else FULL for i in range(num_layers)), None
    pattern = _opt_int(t, "sliding_window_pattern")
    if pattern and window:  # Gemma 2/3: every pattern-th layer is global (Gemma3TextConfig.sliding_window_pattern)
        return tuple(FULL if (i + 1) % pattern == 0 else SLIDING for i in range(num_layers)), window
    chunk = _opt_int(t, "attention_chunk_size")
    if chunk:  # Llama 4: chunked local attention, every 4th layer global (Llama4TextConfig.no_rope_layers)
        interval = _int(t, "no_rope_layer_interval", default=4)
        return tuple(FULL if (i + 1) % interval == 0 else SLIDING for i in range(num_layers)), chunk
    if window and t.get("use_sliding_window", True) and family in ("text", "llava_next", "pixtral"):
        # Mistral-7B v0.1 style: every layer uses the window (Qwen2 configs carry a window but use_sliding_window=false)
        return (SLIDING,) * num_layers, window
    return (), None


def parse_text(config: Mapping[str, Any], family: str = "text") -> TextFacts:
    t = _text_section(config)
    hidden = _int(t, "hidden_size", "n_embd", "d_model")
    layers = _int(t, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(t, "num_attention_heads", "n_head")
    kv_heads = _int(t, "num_key_value_heads", "multi_query_group_num", default=heads)
    head_dim = _int(t, "head_dim", default=hidden // heads)
    inter = _int(t, "intermediate_size", "ffn_dim", default=4 * hidden)
    vocab = _int(t, "vocab_size", "padded_vocab_size")
    tie = bool(t.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    kinds, window = _layer_types(t, layers, family)
    use_mla = t.get("use_mla", True) is not False
    kv_lora = _opt_int(t, "kv_lora_rank") if use_mla else None
    experts = _int(t, "num_local_experts", "n_routed_experts", "num_experts", default=0)
    moe_inter = _int(t, "moe_intermediate_size", default=0)
    dense_inter: int | None = None
    shared = _int(t, "n_shared_experts", "num_shared_experts", default=0)
    shared_width = _int(t, "shared_expert_intermediate_size", default=0)
    if experts and not moe_inter:
        moe_inter = inter  # Mixtral / Llama 4: intermediate_size is the expert width
        mlp = _opt_int(t, "intermediate_size_mlp")
        if mlp:
            dense_inter = mlp
    if str(t.get("model_type", "")).startswith("llama4"):
        shared, shared_width = 1, moe_inter  # Llama4TextMoe has one shared expert of the expert width
    max_pos = _int(t, "max_position_embeddings", "seq_length", default=4096)
    rope_scaling = _dict(t.get("rope_scaling"))
    if rope_scaling.get("original_max_position_embeddings") and str(rope_scaling.get("type", "")) == "yarn":
        max_pos = max(max_pos, int(rope_scaling["original_max_position_embeddings"] * rope_scaling.get("factor", 1)))
    return TextFacts(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        max_position_embeddings=max_pos,
        attention_bias=bool(t.get("attention_bias", t.get("qkv_bias", family in ("qwen2_vl", "qwen2_5_vl")))),
        layer_types=kinds,
        sliding_window=window,
        kv_lora_rank=kv_lora,
        q_lora_rank=_opt_int(t, "q_lora_rank") if kv_lora else None,
        qk_rope_head_dim=_int(t, "qk_rope_head_dim", default=0) if kv_lora else 0,
        qk_nope_head_dim=_int(t, "qk_nope_head_dim", default=0) if kv_lora else 0,
        v_head_dim=_int(t, "v_head_dim", default=0) if kv_lora else 0,
        num_experts=experts,
        num_experts_per_tok=_int(t, "num_experts_per_tok", "moe_topk", default=2 if experts else 0),
        moe_intermediate_size=moe_inter,
        num_shared_experts=shared,
        shared_expert_intermediate_size=shared_width,
        first_k_dense=_int(t, "first_k_dense_replace", default=0),
        moe_layer_step=_int(t, "interleave_moe_layer_step", "decoder_sparse_step", "moe_layer_freq", default=1),
        dense_intermediate_size=dense_inter,
    )


def _vit(v: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    hidden = _int(v, "hidden_size", "embed_dim", "width")
    base: dict[str, Any] = {
        "hidden_size": hidden,
        "num_layers": _int(v, "num_hidden_layers", "depth", "layers"),
        "intermediate_size": _int(v, "intermediate_size", default=int(hidden * float(v.get("mlp_ratio", 4)))),
        "num_heads": _int(v, "num_attention_heads", "num_heads", "heads", default=16),
        "patch_size": _int(v, "patch_size", default=14),
        "image_size": _int(v, "image_size", default=224),
    }
    base.update(overrides)
    return base


def parse_vision(config: Mapping[str, Any], family: str, text: TextFacts) -> VisionFacts | None:
    if family == "text":
        return None
    v = _dict(config.get("vision_config")) or _dict(config.get("visual"))
    ht = text.hidden_size
    override = _opt_int(config, "vision_params")
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v", "kimi_vl"):
        m = _int(v, "spatial_merge_size", "merge_kernel_size", default=2)
        if family == "qwen2_vl":
            hv = _int(v, "embed_dim")
            out = _int(v, "hidden_size", default=ht)
            kw = _vit(v, hidden_size=hv, intermediate_size=int(hv * float(v.get("mlp_ratio", 4))))
        else:
            kw = _vit(v)
            hv = kw["hidden_size"]
            out = _int(v, "out_hidden_size", default=ht)
        merger = (hv * m * m) ** 2 + hv * m * m * out + hv * 2
        n_mergers = 1 + len(v.get("deepstack_visual_indexes") or [])
        positions = _int(v, "num_position_embeddings", default=0) * hv
        kw.update(image_size=0)
        return VisionFacts(
            **kw,
            gated_mlp=family in ("qwen2_5_vl", "glm4v"),
            temporal_patch_size=_int(v, "temporal_patch_size", default=2 if family != "kimi_vl" else 1),
            merge_size=m,
            projector_params=merger * n_mergers + positions,
            encoder_params_override=override,
        )
    if family in ("llava", "llava_next", "llava_onevision", "paligemma", "gemma3", "phi3v", "phi4mm"):
        if family == "phi3v":
            v = {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096, "patch_size": 14}
            v["image_size"] = 336
        kw = _vit(v)
        hv = kw["hidden_size"]
        if family in ("gemma3", "paligemma"):
            proj = hv * ht + hv
        elif family == "phi3v":
            proj = 4 * hv * ht + ht * ht + 2 * ht
        else:
            proj = hv * ht + ht * ht + 2 * ht + (ht if family != "llava" else 0)
        return VisionFacts(**kw, projector_params=proj, encoder_params_override=override)
    if family in ("internvl", "nvlm_d"):
        kw = _vit(v)
        hv = kw["hidden_size"]
        ds = float(config.get("downsample_ratio", 0.5))
        m = round(1 / ds)
        inner = hv * m * m
        hidden_proj = _int(config, "projector_hidden_size", default=ht)
        proj = 2 * inner + inner * hidden_proj + hidden_proj * ht + hidden_proj + ht
        return VisionFacts(**kw, merge_size=m, projector_params=proj, encoder_params_override=override)
    if family in ("pixtral", "mistral3"):
        kw = _vit(v)
        hv = kw["hidden_size"]
        merge = _int(config, "spatial_merge_size", default=2 if family == "mistral3" else 1)
        proj = hv * ht + ht * ht + 2 * ht
        if merge > 1:
            proj += hv * merge * merge * hv + hv
        kw.update(image_size=0)  # 2-D RoPE, no learned position table
        return VisionFacts(
            **kw, gated_mlp=True, merge_size=merge, projector_params=proj, encoder_params_override=override
        )
    if family in ("idefics3", "smolvlm"):
        kw = _vit(v)
        scale = _int(config, "scale_factor", default=2)
        return VisionFacts(**kw, merge_size=scale, projector_params=kw["hidden_size"] * scale * scale * ht)
    if family == "minicpmv":
        kw = _vit(v)
        q = _int(config, "query_num", default=64)
        proj = q * ht + kw["hidden_size"] * ht + 5 * ht * ht + 6 * ht
        return VisionFacts(**kw, projector_params=proj, encoder_params_override=override)
    if family == "deepseek_vl2":
        kw = _vit(v)
        hv = kw["hidden_size"]
        proj = 4 * hv * ht + ht * ht + 2 * ht
        return VisionFacts(**kw, merge_size=2, projector_params=proj, encoder_params_override=override)
    if family == "mllama":
        kw = _vit(v)
        kw["num_layers"] = kw["num_layers"] + _int(v, "num_global_layers", default=8)
        out = _int(v, "vision_output_dim", default=7680)
        return VisionFacts(**kw, projector_params=out * ht + ht, encoder_params_override=override)
    if family == "llama4":
        kw = _vit(v)
        hv = kw["hidden_size"]
        ratio = float(v.get("pixel_shuffle_ratio", 0.5))
        m = round(1 / ratio)
        proj_in = _int(v, "projector_input_dim", default=4096)
        proj_out = _int(v, "projector_output_dim", default=4096)
        adapter = hv * m * m * proj_in + proj_in * proj_out
        return VisionFacts(
            **kw, merge_size=m, projector_params=adapter + _int(v, "vision_output_dim", default=proj_out) * ht
        )
    raise ConfigError(f"no vision parser for family {family!r}")


def _vision_ignored(ignored: object) -> bool:
    """Whether an ``ignore`` / ``modules_to_not_convert`` list keeps the vision tower unquantized
    (``re:visual.*``, ``re:vision_tower.*``, ``vision_model``, ``visual`` ...)."""
    names = [str(m) for m in ignored] if isinstance(ignored, list) else []
    return any(("vision" in m or "visual" in m) for m in names)


def parse_quantization(config: Mapping[str, Any], in_features: int = 4096) -> QuantFacts | None:
    """``quantization_config`` -> :class:`QuantFacts`.

    Key names: AutoAWQ (``bits``/``w_bit``, ``group_size``/``q_group_size``, ``zero_point``,
    ``modules_to_not_convert``),
    AutoGPTQ / transformers ``GPTQConfig`` (``bits``, ``group_size``, ``sym``, ``desc_act``), compressed-tensors
    ``QuantizationConfig`` (``config_groups.*.weights``: ``num_bits``, ``type``, ``strategy``, ``group_size``,
    ``symmetric``, ``actorder``, ``block_structure``; ``input_activations``; ``ignore``), and transformers'
    ``FineGrainedFP8Config`` (``quant_method: fp8``, ``weight_block_size``, ``modules_to_not_convert``).
    """
    q = _dict(config.get("quantization_config"))
    if not q:
        t = _dict(config.get("text_config"))
        q = _dict(t.get("quantization_config"))
    if not q:
        return None
    method = str(q.get("quant_method", q.get("quant_type", ""))).lower()
    ignored = q.get("ignore") or q.get("modules_to_not_convert") or q.get("ignored_layers") or []
    keeps_vision = _vision_ignored(ignored)
    if method in ("fp8", "fbgemm_fp8"):
        block = q.get("weight_block_size")
        blk = (int(block[0]), int(block[1])) if isinstance(block, list) and len(block) == 2 else None
        return QuantFacts(
            method,
            bits=8,
            group_size=0,
            quantizes_vision=not keeps_vision,
            weight_type="float",
            strategy="block" if blk else ("channel" if method == "fbgemm_fp8" else "tensor"),
            act_bits=8,
            block=blk,
            in_features=in_features,
        )
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
        base = method.split("_")[0]
        group = _int(q, "group_size", "q_group_size", default=128)
        zero_point = bool(q.get("zero_point", True)) if base == "awq" else not bool(q.get("sym", True))
        return QuantFacts(
            base,
            bits=_int(q, "bits", "w_bit", default=4),
            group_size=max(group, 0),
            # AutoAWQ / AutoGPTQ quantize the decoder blocks only; vLLM's Qwen2-VL/2.5-VL drop a GPTQ config for the
            # vision tower (qwen2_vl.py ``_maybe_ignore_quant_config``)
            quantizes_vision=False,
            strategy="group" if group > 0 else "channel",
            symmetric=not zero_point,
            act_order=bool(q.get("desc_act", False)),
            in_features=in_features,
        )
    if method == "bitsandbytes":
        bits = 4 if q.get("load_in_4bit") else 8
        return QuantFacts(
            "bitsandbytes", bits=bits, group_size=64, quantizes_vision=not keeps_vision, in_features=in_features
        )
    if method == "compressed-tensors":
        groups = _dict(q.get("config_groups"))
        first = _dict(next(iter(groups.values()), {}))
        w = _dict(first.get("weights"))
        a = _dict(first.get("input_activations"))
        bits = _int(w, "num_bits", default=8)
        strategy = str(w.get("strategy") or ("group" if w.get("group_size") else "channel")).lower()
        block = w.get("block_structure")
        blk = (int(block[0]), int(block[1])) if isinstance(block, list) and len(block) == 2 else None
        return QuantFacts(
            "compressed-tensors",
            bits=bits,
            group_size=_int(w, "group_size", default=0),
            quantizes_vision=not keeps_vision,
            weight_type=str(w.get("type") or "int").lower(),
            strategy=strategy,
            symmetric=w.get("symmetric", True) is not False,
            act_bits=_int(a, "num_bits", default=16) if a else 16,
            block=blk,
            act_order=str(w.get("actorder") or "").lower() == "group",
            in_features=in_features,
        )
    return QuantFacts(method, bits=_int(q, "bits", default=8), quantizes_vision=not keeps_vision)


def processor_defaults(
    family: str, config: Mapping[str, Any], preprocessor: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Collect the processor knobs that change tokens per image, from config.json and preprocessor_config.json."""
    out: dict[str, Any] = {}
    pre = dict(preprocessor or {})
    for key in (
        "min_pixels",
        "max_pixels",
        "num_crops",
        "image_grid_pinpoints",
        "image_seq_len",
        "do_image_splitting",
        "max_slice_nums",
        "do_pan_and_scan",
        "max_patches",
        "in_token_limit",
        "candidate_resolutions",
        "merge_size",
        "patch_size",
        "temporal_patch_size",
        "dynamic_hd",
    ):
        if key in pre:
            out[key] = pre[key]
    size = _dict(pre.get("size"))
    if size:
        if "shortest_edge" in size and family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"):
            out.setdefault("min_pixels", size["shortest_edge"])
            out.setdefault("max_pixels", size.get("longest_edge"))
        elif "longest_edge" in size:
            out["longest_edge"] = size["longest_edge"]
    mis = _dict(pre.get("max_image_size"))
    if "longest_edge" in mis:
        out["max_image_size"] = mis["longest_edge"]
    for key in (
        "max_dynamic_patch",
        "min_dynamic_patch",
        "use_thumbnail",
        "mm_tokens_per_image",
        "image_grid_pinpoints",
        "candidate_resolutions",
        "query_num",
        "slice_config",
        "scale_factor",
        "downsample_ratio",
        "spatial_merge_size",
        "vision_feature_select_strategy",
        "image_seq_len",
    ):
        if key in config and key not in out:
            out[key] = config[key]
    v = _dict(config.get("vision_config"))
    for key in ("max_num_tiles", "image_size", "patch_size", "spatial_merge_size", "temporal_patch_size"):
        if key in v:
            out.setdefault(f"vision_{key}", v[key])
    return out


def parse_config(
    config: Mapping[str, Any],
    *,
    model_id: str,
    preprocessor: Mapping[str, Any] | None = None,
    total_params: int | None = None,
    source: str = "",
    verified: bool = False,
    notes: str = "",
) -> ModelFacts:
    """Build :class:`ModelFacts` from a config.json mapping."""
    family = family_of(config)
    text = parse_text(config, family)
    vision = parse_vision(config, family, text)
    dtype = str(_text_section(config).get("torch_dtype", config.get("torch_dtype", "bfloat16")) or "bfloat16")
    modalities: tuple[str, ...] = ()
    if vision is not None:
        modalities = ("image", "video") if family in VIDEO_FAMILIES else ("image",)
    return ModelFacts(
        model_id=model_id,
        family=family,
        architecture=str((config.get("architectures") or ["?"])[0]),
        text=text,
        vision=vision,
        total_params=total_params,
        checkpoint_dtype=dtype,
        quantization=parse_quantization(config, text.hidden_size),
        processor=processor_defaults(family, config, preprocessor),
        modalities=modalities,
        extra_params=_int(config, "extra_params", default=0),
        source=source,
        verified=verified,
        notes=notes,
    )
