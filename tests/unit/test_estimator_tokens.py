"""Tokens per image: the family formulas against the worked values of vLLM's models/<family>.py.

Those values were computed from vLLM's in-tree formulas (``get_num_image_tokens`` /
``get_image_size_with_most_features``) by a separate scratch script, so agreement is a real cross-check, not a
restatement. Remote-code families (Phi-3.5-vision, MiniCPM-V, DeepSeek-VL2, InternVL) are checked against vLLM's
formula only.
"""

from __future__ import annotations

import pytest

from vlm_operator.estimator import tokens
from vlm_operator.models import catalog


def image(model: str, w: int, h: int, **kw: object) -> tokens.ItemTokens:
    return tokens.image_tokens(catalog.lookup(model), w, h, kw)


def worst(model: str, **kw: object) -> tokens.ItemTokens:
    return tokens.max_image_tokens(catalog.lookup(model), kw)


def test_llava_15_is_fixed_576() -> None:
    assert image("llava-hf/llava-1.5-7b-hf", 640, 480).embeds == 576
    assert image("llava-hf/llava-1.5-7b-hf", 3000, 100).embeds == 576


@pytest.mark.parametrize(("w", "h", "expected"), [(672, 672, 2928), (336, 336, 1176), (1024, 768, 2340)])
def test_llava_next_anyres(w: int, h: int, expected: int) -> None:
    assert image("llava-hf/llava-v1.6-mistral-7b-hf", w, h).embeds == expected


def test_llava_next_worst_case() -> None:
    assert worst("llava-hf/llava-v1.6-mistral-7b-hf").embeds == 2928


def test_llava_onevision_base_and_scaled_down() -> None:
    assert image("llava-hf/llava-onevision-qwen2-7b-ov-hf", 384, 384).embeds == 1485
    # llava_onevision.py: "vLLM profiles 1153x944 -> 8,748 (a scan found 8,765)"
    assert image("llava-hf/llava-onevision-qwen2-7b-ov-hf", 1153, 944).embeds == 8748
    assert worst("llava-hf/llava-onevision-qwen2-7b-ov-hf").embeds == 8765


@pytest.mark.parametrize(("w", "h", "expected"), [(1920, 1080, 2691), (1024, 1024, 1369)])
def test_qwen2_vl_smart_resize(w: int, h: int, expected: int) -> None:
    assert image("Qwen/Qwen2-VL-7B-Instruct", w, h).embeds == expected


def test_qwen2_vl_worst_case_follows_max_pixels() -> None:
    assert worst("Qwen/Qwen2-VL-7B-Instruct").embeds == 16384  # hub max_pixels 12,845,056
    assert worst("Qwen/Qwen2.5-VL-7B-Instruct", max_pixels=1003520).embeds == 1280  # class default
    assert image("Qwen/Qwen2.5-VL-7B-Instruct", 56, 56, max_pixels=3136, min_pixels=3136).embeds == 4


def test_qwen_worst_case_covers_upscaled_small_images() -> None:
    # smart_resize scales images below min_pixels *up*: an 84x28 image costs 8 tokens although max_pixels allows
    # only 4 merged patches, so the worst case must not be vLLM's 56x56 factorisation alone.
    kw = {"max_pixels": 3136, "min_pixels": 3136}
    assert image("Qwen/Qwen2.5-VL-7B-Instruct", 84, 28, **kw).embeds == 8
    assert worst("Qwen/Qwen2.5-VL-7B-Instruct", **kw).embeds >= 8


def test_qwen2_vl_size_kwarg_overrides_like_max_pixels() -> None:
    via_size = worst("Qwen/Qwen2.5-VL-7B-Instruct", size={"shortest_edge": 3136, "longest_edge": 1003520})
    assert via_size.embeds == 1280


def test_qwen3_vl_patch16() -> None:
    assert image("Qwen/Qwen3-VL-8B-Instruct", 1920, 1080).embeds == 2040
    assert worst("Qwen/Qwen3-VL-8B-Instruct").embeds == 16384
    assert worst("Qwen/Qwen3-VL-8B-Instruct", max_pixels=1310720).embeds == 1280


def test_smart_resize_rejects_extreme_aspect() -> None:
    with pytest.raises(tokens.TokenError):
        image("Qwen/Qwen2-VL-7B-Instruct", 10000, 10)


def test_internvl_tiles() -> None:
    assert image("OpenGVLab/InternVL2_5-8B", 448, 448).embeds == 256
    assert image("OpenGVLab/InternVL2_5-8B", 1920, 1080).embeds == 2304
    assert worst("OpenGVLab/InternVL2_5-8B").embeds == 3328
    assert worst("OpenGVLab/InternVL2_5-8B", max_dynamic_patch=6).embeds == 7 * 256


def test_phi35_vision_num_crops() -> None:
    assert worst("microsoft/Phi-3.5-vision-instruct").embeds == 781
    assert image("microsoft/Phi-3.5-vision-instruct", 1000, 1000).embeds == 757
    assert worst("microsoft/Phi-3.5-vision-instruct", num_crops=16).embeds == 2653
    assert image("microsoft/Phi-3.5-vision-instruct", 1000, 1000, num_crops=16).embeds == 2509


def test_phi4mm_profiles_the_tall_1x36_grid() -> None:
    # vLLM profiles 448 x (448 * dynamic_hd): 256 + 1 + 16 + 16 * 576 + 576 = 10,065 (phi4mm.py)
    assert worst("microsoft/Phi-4-multimodal-instruct").prompt == 10065
    assert worst("microsoft/Phi-4-multimodal-instruct", dynamic_hd=16).prompt == 273 + 16 * 16 * 16 + 16 * 16
    # 1920x1080: ceil -> 5x3 crops (<= 36, so no aspect search), the 84 px of vertical padding drop 6 feature rows:
    # 80 x 45 + 45 + 273. A hand count of 7,392 skips vLLM's "crops <= dynamic_hd" branch
    assert image("microsoft/Phi-4-multimodal-instruct", 1920, 1080).prompt == 3918
    assert image("microsoft/Phi-4-multimodal-instruct", 448, 448).prompt == 273 + 256 + 16


def test_idefics3_and_smolvlm() -> None:
    assert worst("HuggingFaceM4/Idefics3-8B-Llama3").embeds == 17 * 169
    # small images are scaled up to the longest edge (phi4mm.py): 640x480 -> 4x3 tiles + global
    assert image("HuggingFaceM4/Idefics3-8B-Llama3", 640, 480).embeds == 13 * 169
    # Idefics3Processor._get_num_multimodal_tokens for 1000x700 (3x4 tiles), "\n\n" counted as two tokens; the
    # processor tier (tests/processors) checks this on 26 sizes against transformers itself
    assert image("HuggingFaceM4/Idefics3-8B-Llama3", 1000, 700).prompt == 2228
    assert worst("HuggingFaceTB/SmolVLM-256M-Instruct").embeds == 17 * 64
    assert worst("HuggingFaceTB/SmolVLM-Instruct").embeds == 17 * 81
    assert image("HuggingFaceM4/Idefics3-8B-Llama3", 640, 480, do_image_splitting=False).embeds == 169


def test_pixtral_and_mistral_small() -> None:
    px = worst("mistral-community/pixtral-12b")
    assert (px.embeds, px.prompt) == (4096, 4160)
    ms = worst("mistralai/Mistral-Small-3.1-24B-Instruct-2503")
    assert (ms.embeds, ms.prompt) == (3025, 3080)
    small = image("mistral-community/pixtral-12b", 512, 256)
    assert small.embeds == 32 * 16


def test_gemma3_fixed_and_pan_and_scan() -> None:
    assert image("google/gemma-3-27b-it", 3000, 2000).embeds == 256
    assert worst("google/gemma-3-4b-it", do_pan_and_scan=True).embeds == 1280


def test_mllama_cross_attention_states() -> None:
    t = worst("meta-llama/Llama-3.2-11B-Vision-Instruct")
    assert t.prompt == 1
    assert t.embeds == 4 * 1601


def test_llama4_tiles() -> None:
    assert worst("meta-llama/Llama-4-Scout-17B-16E-Instruct").embeds == 17 * 144
    assert image("meta-llama/Llama-4-Scout-17B-16E-Instruct", 336, 336).embeds == 144


def test_minicpmv_and_deepseek_vl2() -> None:
    assert worst("openbmb/MiniCPM-V-2_6").embeds == 640
    assert image("deepseek-ai/deepseek-vl2", 384, 384).embeds == 421
    assert worst("deepseek-ai/deepseek-vl2").embeds == 2101


def test_glm41v_class_default_worst_case() -> None:
    t = worst("THUDM/GLM-4.1V-9B-Thinking", size={"shortest_edge": 12544, "longest_edge": 28 * 28 * 15000})
    assert t.embeds == 7500


def test_video_is_frames_times_tokens_with_temporal_merge() -> None:
    f = catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct")
    one = tokens.video_tokens(f, 2, {"max_pixels": 1003520})
    four = tokens.video_tokens(f, 8, {"max_pixels": 1003520})
    assert four.embeds == 4 * one.embeds
    ov = tokens.video_tokens(catalog.lookup("llava-hf/llava-onevision-qwen2-7b-ov-hf"), 16)
    assert ov.embeds == 16 * 196


def test_text_model_takes_no_images() -> None:
    with pytest.raises(tokens.TokenError):
        tokens.max_image_tokens(catalog.lookup("meta-llama/Llama-3.1-8B-Instruct"))


def test_bad_kwarg_type_is_a_token_error() -> None:
    with pytest.raises(tokens.TokenError):
        worst("microsoft/Phi-3.5-vision-instruct", num_crops="four")
