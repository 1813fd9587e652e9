"""Opt-in tier: ``estimator.tokens`` against the real Hugging Face image processors.

    VLM_TEST_PROCESSORS=1 .venv/bin/pytest -m processors tests/processors

``hack/processors_venv.sh`` installs the pinned transformers (+ pillow, numpy; no torch) into
``~/.cache/vlm-operator/processors-venv-<ver>`` on first use (about 30 s, 315 MB); ``probe_processors.py`` then runs
inside that venv, builds each family's PIL ("slow") image processor from the committed, cited
``tests/data/preprocessor_configs/<family>.json`` and processes synthetic PIL images of every size in ``SIZES``. Our
counts, from the catalog model's config.json facts plus that same preprocessor file, must equal the processor's.

What "the processor's count" is, per family (see the probe): Qwen2/2.5/3-VL and GLM-4.1V ``prod(image_grid_thw) /
merge²``; LLaVA-1.5 the CLIP crop's patches; LLaVA-NeXT / OneVision the processor's own ``_get_number_of_features``
(the count vLLM's ``get_num_image_tokens`` reproduces, which differs from ``pixel_values``' tile count by design: the
unpadded anyres features) plus the tile count of ``pixel_values``; Idefics3/SmolVLM the ``<image>`` tokens in the prompt
string the processor builds from its rows/cols; Gemma 3 ``(num_crops + 1) × 256`` with and without pan&scan; Pixtral /
Mistral-Small-3.1 rows × cols of the resized image (and rows × (cols + 1) with [IMG_BREAK]/[IMG_END]); Llama 3.2
Vision ``num_tiles``; InternVL3-hf ``num_patches`` of GotOcr2's ``crop_to_patches``; Llama 4 the prompt string
``Llama4Processor._prompt_split_image`` builds for the canvas transformers' own ``get_best_fit`` picks (extracted from
the module source: the module needs torchvision, see the probe).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.processors.image_sizes import SIZES
from vlm_operator.estimator import tokens as T
from vlm_operator.models import catalog
from vlm_operator.models.hf_config import parse_config

pytestmark = [
    pytest.mark.processors,
    pytest.mark.skipif(os.environ.get("VLM_TEST_PROCESSORS") != "1", reason="opt-in: set VLM_TEST_PROCESSORS=1"),
]

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tests" / "data" / "preprocessor_configs"
TRANSFORMERS_VERSION = os.environ.get("VLM_TEST_TRANSFORMERS_VERSION", "5.19.0")


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # probe function
    file: str  # tests/data/preprocessor_configs/<file>.json
    processor: dict[str, Any] = field(default_factory=dict)  # processor-level (processor_config.json) values
    config_overrides: dict[str, Any] = field(default_factory=dict)  # call-time kwargs (mm_processor_kwargs)
    compare: tuple[str, ...] = ("embeds",)


CASES: tuple[Case, ...] = (
    Case("qwen2_vl", "qwen", "qwen2_vl", compare=("embeds", "patches")),
    Case("qwen2_5_vl", "qwen", "qwen2_5_vl", compare=("embeds", "patches")),
    Case(
        "qwen2_5_vl-max_pixels",
        "qwen",
        "qwen2_5_vl",
        config_overrides={"min_pixels": 200704, "max_pixels": 1003520},
        compare=("embeds", "patches"),
    ),
    Case(
        "qwen2_5_vl-min_eq_max",
        "qwen",
        "qwen2_5_vl",
        config_overrides={"min_pixels": 1003520, "max_pixels": 1003520},
        compare=("embeds", "patches"),
    ),
    Case("qwen3_vl", "qwen", "qwen3_vl", compare=("embeds", "patches")),
    Case("glm4v", "glm4v", "glm4v", compare=("embeds", "patches")),
    Case("llava-1.5", "llava", "llava", processor={"patch_size": 14}),
    Case(
        "llava_next",
        "llava_next",
        "llava_next",
        processor={"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1},
        compare=("embeds", "tiles"),
    ),
    Case(
        "llava_onevision",
        "llava_onevision",
        "llava_onevision",
        processor={"num_image_tokens": 729, "vision_aspect_ratio": "anyres_max_9"},
    ),
    Case("idefics3", "idefics3", "idefics3", processor={"image_seq_len": 169}, compare=("embeds", "prompt")),
    Case("smolvlm", "idefics3", "smolvlm", processor={"image_seq_len": 81}, compare=("embeds", "prompt")),
    Case("smolvlm-256m", "idefics3", "smolvlm_256m", processor={"image_seq_len": 64}, compare=("embeds", "prompt")),
    Case("gemma3", "gemma3", "gemma3", processor={"image_seq_length": 256}),
    Case(
        "gemma3-pan_and_scan",
        "gemma3",
        "gemma3",
        processor={"image_seq_length": 256},
        config_overrides={
            "do_pan_and_scan": True,
            "pan_and_scan_max_num_crops": 4,
            "pan_and_scan_min_crop_size": 256,
            "pan_and_scan_min_ratio_to_activate": 1.2,
        },
    ),
    Case("pixtral", "pixtral", "pixtral", processor={"patch_size": 16}, compare=("embeds", "prompt")),
    Case(
        "mistral-small-3.1",
        "pixtral",
        "mistral3",
        processor={"patch_size": 14, "spatial_merge_size": 2},
        compare=("embeds", "prompt"),
    ),
    Case("llama-3.2-vision", "mllama", "mllama"),
    Case("llama4", "llama4", "llama4", processor={"num_patches_per_chunk": 144}, compare=("embeds", "prompt")),
    Case(
        "internvl3-hf",
        "internvl_hf",
        "internvl_hf",
        processor={"image_seq_length": 256},
        config_overrides={"crop_to_patches": True},
    ),
)

#: catalog model whose config.json facts (vision tower, family) our side uses, per preprocessor file.
MODEL_OF_FILE = {
    "qwen2_vl": "Qwen/Qwen2-VL-7B-Instruct",
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen3_vl": "Qwen/Qwen3-VL-8B-Instruct",
    "glm4v": "THUDM/GLM-4.1V-9B-Thinking",
    "llava": "llava-hf/llava-1.5-7b-hf",
    "llava_next": "llava-hf/llava-v1.6-mistral-7b-hf",
    "llava_onevision": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "idefics3": "HuggingFaceM4/Idefics3-8B-Llama3",
    "smolvlm": "HuggingFaceTB/SmolVLM-Instruct",
    "smolvlm_256m": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "gemma3": "google/gemma-3-27b-it",
    "pixtral": "mistral-community/pixtral-12b",
    "mistral3": "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
    "mllama": "meta-llama/Llama-3.2-11B-Vision-Instruct",
    "llama4": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "internvl_hf": "OpenGVLab/InternVL3-8B",
}


def load_config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    assert data.get("_source", "").startswith("https://"), f"{name}.json must cite its source"
    return data


@cache
def venv_python() -> str:
    res = subprocess.run(
        ["bash", str(REPO / "hack" / "processors_venv.sh"), TRANSFORMERS_VERSION],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if res.returncode != 0:
        pytest.fail(f"hack/processors_venv.sh {TRANSFORMERS_VERSION} failed:\n{res.stderr[-4000:]}")
    return res.stdout.strip().splitlines()[-1]


@cache
def real_counts() -> dict[str, Any]:
    cases = [
        {
            "id": c.id,
            "kind": c.kind,
            "config": {k: v for k, v in {**load_config(c.file), **c.config_overrides}.items() if not k.startswith("_")},
            "processor": c.processor,
            "sizes": [list(s) for s in SIZES],
        }
        for c in CASES
    ]
    start = time.monotonic()
    res = subprocess.run(
        [venv_python(), str(REPO / "tests" / "processors" / "probe_processors.py")],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=1800,
        cwd="/",  # never import the repository's packages by accident
    )
    assert res.returncode == 0, res.stderr[-4000:]
    out: dict[str, Any] = json.loads(res.stdout)
    out["elapsed_s"] = time.monotonic() - start
    return out


def ours(case: Case, w: int, h: int) -> dict[str, int]:
    entry = next(e for e in catalog.raw_entries() if e["id"] == MODEL_OF_FILE[case.file])
    pre = {k: v for k, v in load_config(case.file).items() if not k.startswith("_")}
    facts = parse_config(entry["config"], model_id=entry["id"], preprocessor=pre)
    kw = dict(case.config_overrides)  # what a user would pass as --mm-processor-kwargs
    t = T.image_tokens(facts, w, h, kw)
    got = {"embeds": t.embeds, "prompt": t.prompt, "patches": t.patches}
    if facts.family == "llava_next":
        v = facts.vision
        assert v is not None
        got["tiles"] = t.patches // ((v.image_size // v.patch_size) ** 2 + 1)
    if facts.family == "mllama":
        got["tiles"] = t.embeds // 1601
    return got


def _real_value(case: Case, row: dict[str, Any], key: str) -> int:
    return int(row[key])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_tokens_equal_the_real_processor(case: Case) -> None:
    real = real_counts()
    assert real["transformers"] == TRANSFORMERS_VERSION
    rows = real["results"][case.id]
    assert len(rows) == len(SIZES) >= 20
    mismatches: list[str] = []
    compared = 0
    for (w, h), row in zip(SIZES, rows, strict=True):
        if "error" in row:
            # the processor rejects the size: so must we
            try:
                mine = ours(case, w, h)
            except T.TokenError:
                continue
            mismatches.append(f"{w}x{h}: processor raised {row['error']!r}, we returned {mine}")
            continue
        mine = ours(case, w, h)
        compared += 1
        for key in case.compare:
            if mine[key] != _real_value(case, row, key):
                mismatches.append(f"{w}x{h} {key}: ours {mine[key]}, processor {_real_value(case, row, key)} ({row})")
    print(f"{case.id}: {compared} sizes compared, {len(mismatches)} mismatches")
    assert mismatches == []
    assert compared >= 20


def test_a_real_thin_image_exceeds_vllms_profile_and_our_worst_case_covers_it() -> None:
    """With min_pixels = max_pixels the real processor gives a thin image more tokens than vLLM's profiling item;
    the estimator's worst case (``max_image_tokens``) is never below any real count."""
    case = next(c for c in CASES if c.id == "qwen2_5_vl-min_eq_max")
    rows = real_counts()["results"][case.id]
    entry = next(e for e in catalog.raw_entries() if e["id"] == "Qwen/Qwen2.5-VL-7B-Instruct")
    facts = parse_config(entry["config"], model_id=entry["id"])
    kw = dict(case.config_overrides)
    profile = T.vllm_profile_image(facts, kw).embeds
    worst = T.max_image_tokens(facts, kw).embeds
    real = {size: int(row["embeds"]) for size, row in zip(SIZES, rows, strict=True) if "error" not in row}
    assert real[(7924, 56)] > profile == 1280
    assert max(real.values()) <= worst
