"""Which ``multimodal.processorKwargs`` keys each model family's processor understands.

The CRD keeps ``processorKwargs`` an open object, because the keys depend on the model. The admission webhook
resolves the model's architecture (from the catalog or its config.json) and checks the keys here: an unknown key is
silently ignored by most Hugging Face processors, so a typo such as ``max_pixel`` would leave the token count, and
the memory estimate, at the default. Keys come from the "kwargs that change it" column of
the transformers image processor class of each family and vLLM's vllm/model_executor/models/<family>.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FamilyKwargs:
    """The processor kwargs one family accepts."""

    keys: frozenset[str]
    #: For dict-valued keys (``size``): the sub-keys accepted.
    nested: Mapping[str, frozenset[str]] = field(default_factory=dict)


def _f(*keys: str, **nested: tuple[str, ...]) -> FamilyKwargs:
    return FamilyKwargs(frozenset(keys) | frozenset(nested), {k: frozenset(v) for k, v in nested.items()})


_QWEN = _f("min_pixels", "max_pixels", "fps", "num_frames", size=("shortest_edge", "longest_edge"))
_INTERNVL = _f("max_dynamic_patch", "min_dynamic_patch", "dynamic_image_size", "use_thumbnail")
_IDEFICS = _f("do_image_splitting", "max_image_size", size=("longest_edge",))
_NONE = _f()

#: family -> accepted keys. Families are spelled as the estimator's ``ModelFacts.family``
#: (``vlm_operator.models.hf_config.family_of``). A family with no entry is not checked (admitted with a warning).
PROCESSOR_KWARGS: dict[str, FamilyKwargs] = {
    "llava": _NONE,
    "llava_next": _NONE,
    "llava_onevision": _NONE,
    "qwen2_vl": _QWEN,
    "qwen2_5_vl": _QWEN,
    "qwen3_vl": _QWEN,
    "internvl": _INTERNVL,
    "nvlm_d": _INTERNVL,
    "phi3v": _f("num_crops"),
    "phi4mm": _f("dynamic_hd"),
    "idefics3": _IDEFICS,
    "smolvlm": _IDEFICS,
    "pixtral": _NONE,
    "mistral3": _NONE,
    "gemma3": _f(
        "do_pan_and_scan",
        "pan_and_scan_max_num_crops",
        "pan_and_scan_min_crop_size",
        "pan_and_scan_min_ratio_to_activate",
    ),
    "mllama": _NONE,
    "llama4": _f("max_patches"),
    "minicpmv": _f("max_slice_nums"),
    "paligemma": _NONE,
    "deepseek_vl2": _NONE,
    "glm4v": _f("fps", size=("shortest_edge", "longest_edge")),
}


def check_processor_kwargs(family: str, kwargs: Mapping[str, Any]) -> list[str]:
    """Problems with ``kwargs`` for ``family``, one sentence each; empty when they are fine or the family is not
    in the table."""
    spec = PROCESSOR_KWARGS.get(family)
    if spec is None:
        return []
    problems: list[str] = []
    for key, value in kwargs.items():
        if key not in spec.keys:
            known = ", ".join(sorted(spec.keys)) or "none"
            problems.append(f"processorKwargs.{key} is not a {family} processor option (known: {known})")
            continue
        sub = spec.nested.get(key)
        if sub is not None:
            if not isinstance(value, Mapping):
                problems.append(f"processorKwargs.{key} must be an object with {', '.join(sorted(sub))}")
                continue
            problems.extend(
                f"processorKwargs.{key}.{k} is not a {family} option (known: {', '.join(sorted(sub))})"
                for k in value
                if k not in sub
            )
    return problems
