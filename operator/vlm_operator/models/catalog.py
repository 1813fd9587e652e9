"""The built-in catalog: public config.json excerpts for popular VLMs and text LLMs, parsed on first use.

``catalog.json`` holds, per model, the config.json fields memory depends on, the processor defaults that change tokens
per image, the exact parameter count where known, the source it was copied from and whether it was checked against
that source (``verified``).

A *derivative* entry names its ``base`` entry and adds what differs: a quantized repository (RedHatAI / neuralmagic
``…-quantized.w8a8``, ``…-FP8-dynamic``, ``Qwen/…-AWQ``, ``…-GPTQ-Int4``) adds its ``quantization_config``; a base or
Instruct sibling (``…-Vision`` / ``…-Vision-Instruct``) adds nothing. A derivative has its base's architecture, and
so its base's parameter count; only how the weights are stored changes.

A repository the catalog does not list is still answered offline when its name is a listed model plus a well-known
suffix (:func:`derive`): the quantization scheme the suffix stands for, or the sibling it names.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from vlm_operator.models.facts import ModelFacts
from vlm_operator.models.hf_config import parse_config


class UnknownModelError(KeyError):
    """A model id that is neither in the catalog nor a readable local directory."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


@cache
def raw_entries() -> tuple[dict[str, Any], ...]:
    text = resources.files("vlm_operator.models").joinpath("catalog.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return tuple(data["models"])


def _by_id() -> dict[str, dict[str, Any]]:
    return {str(e["id"]): e for e in raw_entries()}


def expand(entry: dict[str, Any]) -> dict[str, Any]:
    """A derivative entry with its base's config, preprocessor and parameter count filled in."""
    base_id = entry.get("base")
    if not base_id:
        return entry
    base = expand(_by_id()[str(base_id)])
    config = copy.deepcopy(base["config"])
    config.update(copy.deepcopy(entry.get("config") or {}))
    if entry.get("quantization_config"):
        config["quantization_config"] = copy.deepcopy(entry["quantization_config"])
    out = dict(entry)
    out["config"] = config
    out.setdefault("preprocessor", base.get("preprocessor") or {})
    out.setdefault("total_params", base.get("total_params"))
    return out


def _facts(entry: dict[str, Any], model_id: str | None = None, notes: str | None = None) -> ModelFacts:
    e = expand(entry)
    return parse_config(
        e["config"],
        model_id=model_id or e["id"],
        preprocessor=e.get("preprocessor") or {},
        total_params=e.get("total_params"),
        source=e.get("source", ""),
        verified=bool(e.get("verified", False)) and model_id is None,
        notes=notes if notes is not None else (e.get("notes") or _derivative_note(e)),
    )


def _derivative_note(entry: dict[str, Any]) -> str:
    if not entry.get("base"):
        return ""
    if entry.get("quantization_config"):
        return f"the architecture of {entry['base']} with this repository's quantization_config"
    return f"a sibling of {entry['base']} (same architecture)"


@cache
def _index() -> dict[str, dict[str, Any]]:
    idx: dict[str, dict[str, Any]] = {}
    for e in raw_entries():
        for name in (e["id"], *e.get("aliases", [])):
            idx[name.lower()] = e
            idx.setdefault(name.split("/")[-1].lower(), e)
    return idx


#: name suffix -> the ``quantization_config`` that suffix stands for on the Hub's common derivative repositories.
#: compressed-tensors layouts as llm-compressor writes them (``QuantizationScheme`` presets W8A8, W4A16, FP8_DYNAMIC in
#: compressed_tensors/quantization/quant_scheme.py); AWQ as AutoAWQ writes it (``bits``/``group_size``/``zero_point``,
#: the Qwen ``…-AWQ`` repos keep ``visual`` unquantized); GPTQ as AutoGPTQ writes it (``sym``, ``desc_act``);
#: ``-FP8`` as transformers' FineGrainedFP8Config (Qwen3-VL ``…-FP8``: 128x128 blocks).
_IGNORE_VISION = ["lm_head", "re:.*visual.*", "re:.*vision.*", "re:.*multi_modal_projector.*"]


def _ct(weights: dict[str, Any], acts: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "quant_method": "compressed-tensors",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": acts}},
        "ignore": _IGNORE_VISION,
    }


_INT8_CHANNEL = {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True}
_DYN_TOKEN_INT8 = {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True, "symmetric": True}
_FP8_CHANNEL = {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True}
_DYN_TOKEN_FP8 = {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True, "symmetric": True}
_W4_G128 = {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}
_W8_CHANNEL_A16 = {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True}

SUFFIX_SCHEMES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (r"-quantized\.w8a8$", "compressed-tensors w8a8 int8", _ct(_INT8_CHANNEL, _DYN_TOKEN_INT8)),
    (r"-quantized\.w4a16$", "compressed-tensors w4a16 g128", _ct(_W4_G128, None)),
    (r"-quantized\.w8a16$", "compressed-tensors w8a16", _ct(_W8_CHANNEL_A16, None)),
    (r"-w8a8$", "compressed-tensors w8a8 int8", _ct(_INT8_CHANNEL, _DYN_TOKEN_INT8)),
    (r"-w4a16(-g128)?$", "compressed-tensors w4a16 g128", _ct(_W4_G128, None)),
    (r"-fp8-dynamic$", "compressed-tensors fp8 dynamic", _ct(_FP8_CHANNEL, _DYN_TOKEN_FP8)),
    (
        r"-fp8$",
        "fp8 block 128x128",
        {
            "quant_method": "fp8",
            "activation_scheme": "dynamic",
            "weight_block_size": [128, 128],
            "modules_to_not_convert": ["lm_head", "visual"],
        },
    ),
    (
        r"-awq$",
        "awq w4 g128",
        {
            "quant_method": "awq",
            "bits": 4,
            "group_size": 128,
            "zero_point": True,
            "version": "gemm",
            "modules_to_not_convert": ["visual"],
        },
    ),
    (
        r"-gptq-int4$",
        "gptq w4 g128",
        {"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True, "desc_act": False},
    ),
    (
        r"-gptq-int8$",
        "gptq w8 g128",
        {"quant_method": "gptq", "bits": 8, "group_size": 128, "sym": True, "desc_act": False},
    ),
)

#: (pattern, replacement) pairs that turn a checkpoint's name into its sibling's: the base (pretrained) and the
#: instruction-tuned release of one architecture share config.json up to the chat template and generation settings.
SIBLINGS: tuple[tuple[str, str], ...] = (
    (r"-Vision$", "-Vision-Instruct"),
    (r"-Vision-Instruct$", "-Vision"),
    (r"-Instruct$", ""),
    (r"$", "-Instruct"),
    (r"-Base$", "-Instruct"),
    (r"-Thinking$", "-Instruct"),
    (r"-pt$", "-it"),
    (r"-it$", "-pt"),
    (r"-Video-Instruct$", "-Instruct"),
)


def _find(name: str) -> dict[str, Any] | None:
    key = name.strip().lower()
    return _index().get(key) or _index().get(key.split("/")[-1])


def _sibling(name: str) -> tuple[dict[str, Any], str] | None:
    bare = name.strip().split("/")[-1]
    for pattern, repl in SIBLINGS:
        cand = re.sub(pattern, repl, bare, count=1, flags=re.IGNORECASE)
        if cand != bare:
            hit = _find(cand)
            if hit is not None:
                return hit, cand
    return None


def derive(model_id: str) -> ModelFacts | None:
    """Facts for a repository the catalog does not list, from its name alone (offline):

    - ``<listed model><suffix>``: the listed model's architecture with the quantization the suffix stands for
      (:data:`SUFFIX_SCHEMES`), e.g. ``someorg/Qwen2.5-VL-7B-Instruct-quantized.w8a8``;
    - a sibling of a listed model (:data:`SIBLINGS`), e.g. ``meta-llama/Llama-3.2-11B-Vision`` for the listed
      ``…-Vision-Instruct``; and the two combined.

    None when the name matches neither. The facts say how they were derived and are never marked verified.
    """
    bare = model_id.strip().split("/")[-1]
    for pattern, label, qconfig in SUFFIX_SCHEMES:
        m = re.search(pattern, bare, flags=re.IGNORECASE)
        if not m:
            continue
        stem = bare[: m.start()]
        base = _find(stem)
        how = f"{label} inferred from the name"
        if base is None:
            sib = _sibling(stem)
            if sib is None:
                continue
            base, stem = sib
            how += f", architecture of its sibling {base['id']}"
        derived = {
            "id": model_id,
            "base": base["id"],
            "quantization_config": qconfig,
            "source": f"catalog:{base['id']}",
        }
        return _facts(derived, model_id, notes=f"derived offline from {base['id']} ({how})")
    sib = _sibling(bare)
    if sib is not None:
        base = sib[0]
        return _facts(base, model_id, notes=f"derived offline: sibling of {base['id']} (same architecture)")
    return None


@cache
def lookup(model_id: str) -> ModelFacts:
    """Facts for a catalog model, by ``org/name``, alias or bare name (case-insensitive); a quantized derivative or a
    base/Instruct sibling of a listed model is derived from it (:func:`derive`)."""
    entry = _find(model_id)
    if entry is not None:
        return _facts(entry)
    derived = derive(model_id)
    if derived is not None:
        return derived
    raise UnknownModelError(
        f"{model_id!r} is not in the built-in catalog; pass --model-dir with its config.json, "
        f"or one of: {', '.join(sorted(e['id'] for e in raw_entries())[:8])} ..."
    )


@cache
def _exact_totals() -> tuple[tuple[Any, Any, int], ...]:
    out = []
    for e in raw_entries():
        if e.get("base") or not e.get("total_params"):
            continue
        f = _facts(e)
        out.append((f.text, f.vision, int(e["total_params"])))
    return tuple(out)


def exact_params_like(facts: ModelFacts) -> int | None:
    """The exact parameter count of a listed model with the same architecture (text and vision facts equal), for a
    checkpoint whose own files cannot give it: a quantized one packs several weights per stored element."""
    for text, vision, total in _exact_totals():
        if text == facts.text and vision == facts.vision:
            return total
    return None


def all_models() -> list[ModelFacts]:
    return [_facts(e) for e in raw_entries()]


def model_ids() -> list[str]:
    return [str(e["id"]) for e in raw_entries()]
