"""Opt-in tier, remote-code processors: ``estimator.tokens`` against vLLM's own in-tree formula (label: vllm-formula).

    VLM_TEST_PROCESSORS=1 .venv/bin/pytest -m processors tests/processors

Kimi-VL, DeepSeek-VL2, InternVL (remote-code checkpoints), NVLM-D and Phi-4-multimodal ship their processors as
Hub remote code, which this environment cannot fetch. vLLM re-implements their token counts in-tree; this module
reads those functions from vLLM's PyPI sdist (cached by ``hack/vllm_flags.py`` in
``~/.cache/vlm-operator/vllm-sdists/``), extracts them with ``ast`` and runs them, unchanged, on the same sizes as the
transformers tier, with a stand-in ``self`` that carries the checkpoint's processor values. No vLLM install is needed.

Not covered here: Phi-3.5-vision and MiniCPM-V. vLLM 0.32 delegates both counts to the remote processor
(``calc_num_image_tokens_from_image_size``, ``image_processor.get_sliced_grid``), so there is no in-tree formula to
read; they stay covered by the worked values in tests/unit/test_estimator_tokens.py.
"""

from __future__ import annotations

import ast
import math
import os
import tarfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.processors.image_sizes import SIZES
from vlm_operator.estimator import tokens as T
from vlm_operator.models import catalog

pytestmark = [
    pytest.mark.processors,
    pytest.mark.vllm_formula,
    pytest.mark.skipif(os.environ.get("VLM_TEST_PROCESSORS") != "1", reason="opt-in: set VLM_TEST_PROCESSORS=1"),
]

VLLM_VERSION = os.environ.get("VLM_TEST_VLLM_FORMULA_VERSION", "0.32.0")
SDIST = Path.home() / ".cache" / "vlm-operator" / "vllm-sdists" / f"vllm-{VLLM_VERSION}.tar.gz"


@cache
def vllm_source(relpath: str) -> str:
    if not SDIST.exists():
        pytest.skip(f"{SDIST} missing: run `make flags` (hack/vllm_flags.py caches the sdists)")
    with tarfile.open(SDIST) as tf:
        member = tf.extractfile(f"vllm-{VLLM_VERSION}/vllm/{relpath}")
        assert member is not None
        return member.read().decode("utf-8")


def extract(relpath: str, *names: str) -> dict[str, Callable[..., Any]]:
    """The named module-level functions, or ``Class.method`` methods, of a vLLM source file, exec'd unchanged."""
    tree = ast.parse(vllm_source(relpath))
    picked: list[ast.stmt] = []
    for name in names:
        cls, _, meth = name.rpartition(".")
        scope: list[ast.stmt] = tree.body
        if cls:
            node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
            scope = node.body
        fn = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == meth)
        fn.decorator_list = []
        fn.returns = None
        for a in (*fn.args.args, *fn.args.kwonlyargs):
            a.annotation = None
        picked.append(fn)
    ns: dict[str, Any] = {"math": math}
    exec(compile(ast.Module(body=picked, type_ignores=[]), f"vllm/{relpath}", "exec"), ns)
    return {name: ns[name.rpartition(".")[2]] for name in names}


def kimi_vl(w: int, h: int) -> int:
    f = extract("model_executor/models/kimi_vl.py", "KimiVLProcessingInfo.get_num_image_tokens")
    ip = SimpleNamespace(patch_size=14, merge_kernel_size=[2, 2], in_token_limit=16384)  # Kimi-VL-A3B-Instruct
    self = SimpleNamespace(get_hf_processor=lambda: SimpleNamespace(image_processor=ip))
    return int(f["KimiVLProcessingInfo.get_num_image_tokens"](self, image_width=w, image_height=h))


def deepseek_vl2(w: int, h: int) -> int:
    f = extract(
        "model_executor/models/deepseek_vl2.py",
        "DeepseekVL2ProcessingInfo.get_num_image_tokens",
    )
    sel = extract("transformers_utils/processors/deepseek_vl2.py", "DeepseekVLV2Processor.select_best_resolution")
    cands = catalog.lookup("deepseek-ai/deepseek-vl2").processor["candidate_resolutions"]
    # processor_config.json of deepseek-ai/deepseek-vl2: SigLIP-so400m/14 at 384 px, 2x downsample
    proc = SimpleNamespace(image_size=384, patch_size=14, downsample_ratio=2, candidate_resolutions=cands)
    proc.select_best_resolution = lambda size: sel["DeepseekVLV2Processor.select_best_resolution"](proc, size)
    self = SimpleNamespace(get_hf_processor=lambda: proc)
    return int(f["DeepseekVL2ProcessingInfo.get_num_image_tokens"](self, image_width=w, image_height=h))


def internvl(model: str) -> Callable[[int, int], int]:
    """InternVLProcessor.get_num_image_tokens: tiles (min/max_dynamic_patch, use_thumbnail from the checkpoint's
    config.json, as vLLM's ``resolve_min_max_num`` reads them) x image_seq_length (256: 448-px tiles, 0.5 downsample).
    NVLMProcessor subclasses InternVLProcessor and keeps this count."""
    f = extract(
        "transformers_utils/processors/internvl.py",
        "get_internvl_target_ratios",
        "find_closest_aspect_ratio",
        "calculate_internvl_targets",
    )
    f["calculate_internvl_targets"].__globals__.update(f)
    kw = catalog.lookup(model).processor

    def count(w: int, h: int) -> int:
        ratios = f["get_internvl_target_ratios"](int(kw["min_dynamic_patch"]), int(kw["max_dynamic_patch"]))
        blocks, _, _ = f["calculate_internvl_targets"](
            orig_width=w, orig_height=h, target_ratios=ratios, image_size=448, use_thumbnail=bool(kw["use_thumbnail"])
        )
        return int(blocks) * 256

    return count


def phi4mm(w: int, h: int) -> int:
    """Phi4MMProcessingInfo._compute_num_image_tokens with vLLM's in-tree padding and grid code. Only the
    closest-aspect-ratio pick (grids over ``dynamic_hd`` crops) is the remote processor's; the stand-in is vLLM's
    in-tree InternVL ``find_closest_aspect_ratio``, the algorithm the Phi-4-mm processor shares (labelled: not read
    from the Phi-4-mm processor itself)."""
    path = "model_executor/models/phi4mm.py"
    f = extract(
        path,
        "_get_padding_size",
        "Phi4MMProcessingInfo._find_target_aspect_ratio",
        "Phi4MMProcessingInfo._compute_num_image_tokens",
    )
    closest = extract("transformers_utils/processors/internvl.py", "find_closest_aspect_ratio")
    f["Phi4MMProcessingInfo._compute_num_image_tokens"].__globals__.update(f)
    ip = SimpleNamespace(
        find_closest_aspect_ratio=lambda a, r, ow, oh, size: closest["find_closest_aspect_ratio"](
            a, r, width=ow, height=oh, image_size=size
        )
    )
    self = SimpleNamespace(get_hf_processor=lambda: SimpleNamespace(image_processor=ip))
    self._find_target_aspect_ratio = lambda *a, **k: f["Phi4MMProcessingInfo._find_target_aspect_ratio"](self, *a, **k)
    # dynamic_hd 36 (Phi-4-multimodal-instruct preprocessor_config.json); SigLIP 448/14, compression 2
    n = f["Phi4MMProcessingInfo._compute_num_image_tokens"](
        self, w, h, dynamic_hd_size=36, vit_image_size=448, vit_patch_size=14, token_compression_factor=2
    )
    return int(n)


FORMULAS: dict[str, tuple[str, Callable[[], Callable[[int, int], int]], str]] = {
    # case id: (catalog model, vLLM formula (built lazily: the sdist is read only when the tier runs), which
    # ItemTokens field vLLM's number is)
    "kimi_vl": ("moonshotai/Kimi-VL-A3B-Instruct", lambda: kimi_vl, "embeds"),
    "deepseek_vl2": ("deepseek-ai/deepseek-vl2", lambda: deepseek_vl2, "prompt"),
    "internvl3": ("OpenGVLab/InternVL3-8B", lambda: internvl("OpenGVLab/InternVL3-8B"), "embeds"),
    "internvl2_5": ("OpenGVLab/InternVL2_5-8B", lambda: internvl("OpenGVLab/InternVL2_5-8B"), "embeds"),
    "nvlm_d": ("nvidia/NVLM-D-72B", lambda: internvl("nvidia/NVLM-D-72B"), "embeds"),
    "phi4mm": ("microsoft/Phi-4-multimodal-instruct", lambda: phi4mm, "prompt"),
}


@pytest.mark.parametrize("case", sorted(FORMULAS))
def test_tokens_equal_vllm_formula(case: str) -> None:
    model, make, field = FORMULAS[case]
    formula = make()
    facts = catalog.lookup(model)
    mismatches = []
    for w, h in SIZES:
        mine = getattr(T.image_tokens(facts, w, h), field)
        theirs = formula(w, h)
        if mine != theirs:
            mismatches.append(f"{w}x{h}: ours {mine}, vLLM {VLLM_VERSION} {theirs}")
    print(f"{case} (vllm-formula, vLLM {VLLM_VERSION}): {len(SIZES)} sizes compared, {len(mismatches)} mismatches")
    assert mismatches == []
