"""What one image costs: encoder tokens, prompt tokens with markers, vLLM's own profiling item, cross-attention
states per sequence; and the one-image entry point for cross-checks with a real engine."""

from __future__ import annotations

import json

import pytest

from vlm_operator import gpus
from vlm_operator.cli import main
from vlm_operator.estimator import tokens
from vlm_operator.estimator.core import estimate
from vlm_operator.estimator.request import EngineSettings, EstimateRequest, GPUSpec, MultimodalSettings
from vlm_operator.models import catalog

QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"
SQUEEZED = {"min_pixels": 1003520, "max_pixels": 1003520}  # 1280 merged tokens, min = max


def items(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, dict[str, object]]:
    main(["estimate", *args, "--gpu", "H100", "--output", "json"])
    out: dict[str, dict[str, object]] = json.loads(capsys.readouterr().out)["items"]
    return out


def test_qwen_default_item_is_vllms_profile_plus_two_markers(capsys: pytest.CaptureFixture[str]) -> None:
    got = items(capsys, "--model", QWEN, "--max-model-len", "32k", "--limit-mm-per-prompt", '{"image": 1, "video": 0}')
    image = got["image"]
    # max_pixels 12845056 = 16384 x 28²: a 3584 x 3584 image, 16384 merged tokens between start/end markers
    assert image["encoder_tokens"] == 16384
    assert image["prompt_tokens"] == 16386 and image["marker_tokens"] == 2
    assert image["encoder_input_patches"] == 16384 * 4
    assert image["vllm_profile_encoder_tokens"] == 16384 and image["exceeds_vllm_profile"] is False
    assert image["cross_attention_tokens_per_sequence"] == 0


def test_a_thin_image_can_exceed_vllms_profile_when_min_pixels_is_max_pixels(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kw = json.dumps(SQUEEZED)
    got = items(capsys, "--model", QWEN, "--max-model-len", "16k", "--mm-processor-kwargs", kw)
    image = got["image"]
    assert image["vllm_profile_encoder_tokens"] == 1280  # 1003520 / 28² = 1280 = 32 x 40
    # 7924 x 56 is below min_pixels: smart_resize scales by sqrt(1003520 / (7924·56)) = 1.5038 and rounds each side
    # *up* to a multiple of 28: 56 -> 112, 7924 -> 11928, so (112/14)(11928/14)/4 = 8·852/4 = 1704 merged tokens
    assert image["worst_case_size"] == [7924, 56]
    assert image["encoder_tokens"] == 1704 and image["prompt_tokens"] == 1706
    assert image["exceeds_vllm_profile"] is True
    assert "keeps the larger" in str(image["note"])
    assert got["video"]["vllm_profile_encoder_tokens"] < got["video"]["encoder_tokens"]  # type: ignore[operator]
    # the memory terms use the larger item too
    facts = catalog.lookup(QWEN)
    req = EstimateRequest(
        facts,
        GPUSpec.of(gpus.lookup("H100")),
        EngineSettings(max_model_len=16384),
        MultimodalSettings(limit_per_prompt={"image": 1, "video": 0}, processor_kwargs=SQUEEZED),
    )
    assert estimate(req).profile.tokens_per_item == 1704


def test_the_worst_case_is_never_below_a_real_image() -> None:
    facts = catalog.lookup(QWEN)
    worst = tokens.max_image_tokens(facts, SQUEEZED).embeds
    for w, h in [(7924, 56), (56, 7924), (1000, 1000), (3000, 40), (1, 150), (640, 480)]:
        assert tokens.image_tokens(facts, w, h, SQUEEZED).embeds <= worst


def test_mllama_keeps_encoder_states_per_sequence_not_in_the_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    got = items(
        capsys,
        "--model",
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "--vllm-version",
        "0.9.2",
        "--engine",
        "v0",
        "--max-model-len",
        "8192",
        "--limit-mm-per-prompt",
        '{"image": 2}',
    )
    image = got["image"]
    assert image["prompt_tokens"] == 1 and image["marker_tokens"] == 0  # one <|image|> token
    assert image["encoder_tokens"] == 4 * 1601  # 4 tiles of 560 px, (560/14)² + 1 class token each
    assert image["cross_attention_tokens_per_sequence"] == 2 * 4 * 1601
    # 8 cross-attention layers x K and V x 8 KV heads x 128 x 2 bytes per encoder token
    expected_gib = 2 * 4 * 1601 * 8 * 2 * 8 * 128 * 2 / 1024**3
    assert image["cross_attention_gib_per_sequence"] == pytest.approx(expected_gib, abs=1e-3)


def test_smolvlm2_markers_are_tile_and_row_tokens() -> None:
    facts = catalog.lookup("HuggingFaceTB/SmolVLM2-500M-Video-Instruct")
    cost = tokens.modality_costs(facts, {"image": tokens.max_image_tokens(facts)})["image"]
    # 4 x 4 tiles of 512 px + a global image, 64 tokens each (((512/16)²)/4²)
    assert cost.encoder_tokens == 17 * 64
    # transformers SmolVLMProcessor prompt: per tile <fake_token_around_image><row_r_col_c>, a newline per row, then
    # "\n<fake_token_around_image><global-img>" ... "<fake_token_around_image>": 16·2 + 4 + 3 + 1 = 40
    assert cost.marker_tokens == 40 and cost.prompt_tokens == 17 * 64 + 40


def test_table_shows_the_item_costs(capsys: pytest.CaptureFixture[str]) -> None:
    kw = json.dumps(SQUEEZED)
    main(["estimate", "--model", QWEN, "--gpu", "H100", "--max-model-len", "16k", "--mm-processor-kwargs", kw])
    out = capsys.readouterr().out
    assert "one worst-case item" in out
    row = next(line for line in out.splitlines() if line.startswith("│ image"))
    assert "1,704" in row and "1,706" in row and "7924x56" in row and "1,280 (<)" in row
    assert "keeps the larger" in out


@pytest.mark.parametrize(
    ("model", "size", "kwargs", "expected"),
    [
        # smart_resize(768, 1024, 28): 756 x 1036 -> (54·74)/4 = 999 merged tokens + start/end
        (QWEN, (1024, 768), None, 999 + 2),
        # max_pixels 200704: beta = sqrt(768·1024/200704) = 1.98, floor to 28s: 364 x 504 -> 13·18 = 234 merged
        (QWEN, (1024, 768), {"max_pixels": 200704}, 234 + 2),
        # LLaVA-1.5: 576 patch tokens, no markers
        ("llava-hf/llava-1.5-7b-hf", (640, 480), None, 576),
        # Llama 3.2 Vision: one <|image|> token whatever the size
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", (1120, 1120), None, 1),
    ],
)
def test_image_prompt_tokens_entry_point(
    model: str, size: tuple[int, int], kwargs: dict[str, int] | None, expected: int
) -> None:
    assert tokens.image_prompt_tokens(model, size[0], size[1], kwargs) == expected
    assert tokens.image_prompt_tokens(catalog.lookup(model), size[0], size[1], kwargs) == expected


def test_items_not_allowed_in_a_prompt_are_reported_but_not_tabled(capsys: pytest.CaptureFixture[str]) -> None:
    got = items(capsys, "--model", QWEN, "--max-model-len", "16k", "--limit-mm-per-prompt", '{"image": 2, "video": 0}')
    assert got["image"]["limit_per_prompt"] == 2 and got["video"]["limit_per_prompt"] == 0
    main(
        [
            "estimate",
            "--model",
            QWEN,
            "--gpu",
            "H100",
            "--max-model-len",
            "16k",
            "--limit-mm-per-prompt",
            '{"video": 0}',
        ]
    )
    out = capsys.readouterr().out
    assert any(line.startswith("│ image") for line in out.splitlines())
    assert not any(line.startswith("│ video") for line in out.splitlines())


def test_derived_model_facts_say_where_they_come_from(capsys: pytest.CaptureFixture[str]) -> None:
    main(["estimate", "--model", "RedHatAI/gemma-3-4b-it-quantized.w4a16", "--gpu", "L4", "--max-model-len", "8k"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("model facts:"))
    assert "the architecture of google/gemma-3-4b-it with this repository's quantization_config" in line


def test_releases_before_the_factorised_profile_profile_a_square() -> None:
    """vllm PR #29692 (~v0.12.0): before it Qwen's "most features" image was smart_resize(9999999, 9999999), a square;
    with max_pixels = 1280 x 28² that is 35 x 35 = 1225 merged tokens, while a real 1120 x 896 image costs 1280."""
    facts = catalog.lookup(QWEN)
    kw = {"max_pixels": 1003520}
    old = tokens.vllm_profile_image(facts, kw, (0, 11, 0))
    new = tokens.vllm_profile_image(facts, kw, (0, 12, 0))
    assert (old.width, old.height, old.embeds) == (980, 980, 1225)
    assert (new.embeds, tokens.image_tokens(facts, 1120, 896, kw).embeds) == (1280, 1280)
    costs = {"image": tokens.max_image_tokens(facts, kw)}
    assert tokens.modality_costs(facts, costs, kwargs=kw, version=(0, 11, 0))["image"].exceeds_vllm_profile
    assert "#29692" in tokens.modality_costs(facts, costs, kwargs=kw, version=(0, 11, 0))["image"].note
    assert not tokens.modality_costs(facts, costs, kwargs=kw, version=(0, 12, 0))["image"].exceeds_vllm_profile


@pytest.mark.parametrize(
    "kw",
    [
        {"min_pixels": 3136, "max_pixels": 12845056},  # the default: no scan needed
        {"min_pixels": 200704, "max_pixels": 1003520},
        {"min_pixels": 401408, "max_pixels": 501760},
        {"min_pixels": 1003520, "max_pixels": 1003520},
    ],
)
def test_no_image_below_min_pixels_beats_the_worst_case(kw: dict[str, int]) -> None:
    """Whether or not the below-min_pixels scan runs (it is skipped when the upscale cannot reach max_pixels), a grid
    of thin and square images under min_pixels never costs more than the reported worst case."""
    facts = catalog.lookup(QWEN)
    worst = tokens.max_image_tokens(facts, kw).embeds
    lo = kw["min_pixels"]
    for short in (1, 2, 5, 13, 28, 29, 55, 56, 57, 100, 200, 300, 500):
        for aspect in (1, 2, 7, 33, 120, 199):
            long = short * aspect
            if short * long >= lo:
                continue
            for w, h in ((long, short), (short, long)):
                assert tokens.image_tokens(facts, w, h, kw).embeds <= worst, (w, h)
