"""Offline coverage: quantized derivatives and base/Instruct siblings of catalogued models, weights sized by scheme."""

from __future__ import annotations

import json

import pytest

from vlm_operator import gpus
from vlm_operator.cli import main
from vlm_operator.estimator import memory
from vlm_operator.estimator.core import estimate
from vlm_operator.estimator.request import EngineSettings, EstimateRequest, GPUSpec
from vlm_operator.models import catalog
from vlm_operator.models.facts import QuantFacts
from vlm_operator.models.hf_config import parse_quantization

H100 = GPUSpec.of(gpus.lookup("H100"))


def weights(model_id: str, tp: int = 1) -> float:
    req = EstimateRequest(catalog.lookup(model_id), H100, EngineSettings(max_model_len=8192, tensor_parallel_size=tp))
    return estimate(req).weights_bytes


def test_catalog_has_at_least_80_entries_with_smolvlm2_and_derivatives() -> None:
    ids = set(catalog.model_ids())
    assert len(ids) >= 80
    assert {
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
    } <= ids
    assert catalog.lookup("HuggingFaceTB/SmolVLM2-2.2B-Instruct").family == "smolvlm"
    # the common public derivatives of the most served VLMs are listed, not only guessed from the name
    for listed in (
        "RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w8a8",
        "RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w4a16",
        "RedHatAI/Qwen2.5-VL-7B-Instruct-FP8-Dynamic",
        "Qwen/Qwen2.5-VL-7B-Instruct-AWQ",
        "Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int4",
        "Qwen/Qwen3-VL-8B-Instruct-FP8",
        "RedHatAI/gemma-3-27b-it-quantized.w4a16",
        "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
        "RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8",
        "meta-llama/Llama-3.2-11B-Vision",
    ):
        assert listed in ids, listed


def test_every_derivative_names_a_listed_base_and_keeps_its_architecture() -> None:
    by_id = {e["id"]: e for e in catalog.raw_entries()}
    derivatives = [e for e in catalog.raw_entries() if e.get("base")]
    assert len(derivatives) >= 40
    for e in derivatives:
        assert e["base"] in by_id, e["id"]
        facts, base = catalog.lookup(e["id"]), catalog.lookup(e["base"])
        assert facts.model_id == e["id"]
        assert facts.text == base.text and facts.vision == base.vision and facts.total_params == base.total_params
        assert (facts.quantization is not None) == bool(e.get("quantization_config")), e["id"]


def test_neuralmagic_alias_resolves_to_the_redhatai_entry() -> None:
    a = catalog.lookup("neuralmagic/Qwen2.5-VL-7B-Instruct-quantized.w8a8")
    assert a.model_id == "RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w8a8"


@pytest.mark.parametrize(
    ("model_id", "scheme"),
    [
        ("RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w8a8", "compressed-tensors w8a8 int8 channel"),
        ("RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w4a16", "compressed-tensors w4a16 int4 g128"),
        ("RedHatAI/Qwen2.5-VL-7B-Instruct-FP8-Dynamic", "compressed-tensors w8a8 fp8 channel"),
        ("Qwen/Qwen2.5-VL-7B-Instruct-AWQ", "awq w4 g128"),
        ("Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8", "gptq w8 g128"),
        ("Qwen/Qwen3-VL-8B-Instruct-FP8", "fp8 block 128x128"),
        ("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", "fbgemm_fp8 channel"),
    ],
)
def test_listed_derivatives_carry_their_scheme_and_keep_vision_unquantized(model_id: str, scheme: str) -> None:
    q = catalog.lookup(model_id).quantization
    assert q is not None
    assert q.scheme == scheme
    assert not q.quantizes_vision


def test_unlisted_derivatives_and_siblings_are_derived_offline_from_the_name() -> None:
    w8a8 = catalog.lookup("someorg/Qwen2.5-VL-32B-Instruct-quantized.w8a8")
    assert w8a8.quantization is not None and w8a8.quantization.scheme == "compressed-tensors w8a8 int8 channel"
    assert w8a8.text == catalog.lookup("Qwen/Qwen2.5-VL-32B-Instruct").text
    assert "derived offline from Qwen/Qwen2.5-VL-32B-Instruct" in w8a8.notes and not w8a8.verified
    base = catalog.lookup("meta-llama/Llama-3.2-90B-Vision")
    assert base.model_id == "meta-llama/Llama-3.2-90B-Vision"
    assert base.text == catalog.lookup("meta-llama/Llama-3.2-90B-Vision-Instruct").text
    # sibling and scheme combined: a quantized base checkpoint
    both = catalog.lookup("someorg/Qwen2-VL-72B-FP8-dynamic")
    assert both.quantization is not None and both.text == catalog.lookup("Qwen/Qwen2-VL-72B-Instruct").text
    assert "sibling" in both.notes
    with pytest.raises(catalog.UnknownModelError):
        catalog.lookup("someorg/NotAModel-7B-AWQ")


def test_weights_follow_the_scheme_layout() -> None:
    bf16 = weights("Qwen/Qwen2.5-VL-7B-Instruct")
    w8a8 = weights("RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w8a8")
    fp8 = weights("RedHatAI/Qwen2.5-VL-7B-Instruct-FP8-Dynamic")
    w4a16 = weights("RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w4a16")
    awq = weights("Qwen/Qwen2.5-VL-7B-Instruct-AWQ")
    assert w4a16 < awq < w8a8 == fp8 < bf16  # symmetric w4a16 stores no zero points; AWQ does
    facts = catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct-AWQ")
    lm, vision, _ = facts.split_params()
    embed = facts.text.embedding_params()
    rope = facts.text.max_position_embeddings * facts.text.head_dim * 2
    per_param = 0.5 + (2 + 0.5) / 128  # qweight + fp16 scales + packed zeros per group of 128
    expected = (lm - embed) * per_param + embed * 2 + vision * 2 + rope
    assert awq == pytest.approx(expected, rel=1e-9)
    # the vision tower stays bf16, so it is the same bytes as in the bf16 model
    assert estimate(
        EstimateRequest(facts, H100, EngineSettings(max_model_len=8192))
    ).vision_weights_bytes == pytest.approx(vision * 2)


def test_bytes_per_param_per_scheme() -> None:
    assert QuantFacts("awq", 4, 128).bytes_per_param(2.0) == pytest.approx(0.5 + 2.5 / 128)
    gptq = QuantFacts("gptq", 4, 128, in_features=4096)
    assert gptq.bytes_per_param(2.0) == pytest.approx(0.5 + 2.5 / 128 + 4 / 4096)  # + g_idx
    w4a16 = QuantFacts("compressed-tensors", 4, 128, strategy="group")
    assert w4a16.bytes_per_param(2.0) == pytest.approx(0.5 + 2 / 128)
    asym = QuantFacts("compressed-tensors", 4, 128, strategy="group", symmetric=False)
    assert asym.bytes_per_param(2.0) == pytest.approx(0.5 + 2 / 128 + 0.5 / 128)
    w8a8 = QuantFacts("compressed-tensors", 8, 0, strategy="channel", act_bits=8, in_features=3584)
    assert w8a8.bytes_per_param(2.0) == pytest.approx(1 + 4 / 3584)
    block = QuantFacts("fp8", 8, 0, weight_type="float", strategy="block", block=(128, 128))
    assert block.bytes_per_param(2.0) == pytest.approx(1 + 4 / 128**2)
    assert memory.quant_bytes_per_param(None, 2.0) == 2.0


def test_parse_quantization_of_a_public_awq_config() -> None:
    """The quantization_config of Qwen/Qwen2.5-VL-32B-Instruct-AWQ as published (a copy at
    github.com/binarrii/qwen_vl_object_detect@f2219ae31e1e10a48c2913c457bbbdbc6d850478)."""
    q = parse_quantization(
        {
            "quantization_config": {
                "bits": 4,
                "group_size": 128,
                "modules_to_not_convert": ["visual"],
                "quant_method": "awq",
                "version": "gemm",
                "zero_point": True,
            }
        },
        5120,
    )
    assert q == QuantFacts("awq", 4, 128, quantizes_vision=False, symmetric=False, in_features=5120)


def test_parse_quantization_of_an_llm_compressor_config() -> None:
    config = {
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {
                        "num_bits": 4,
                        "type": "int",
                        "strategy": "group",
                        "group_size": 32,
                        "symmetric": False,
                        "actorder": "group",
                    },
                    "input_activations": None,
                }
            },
            "ignore": ["lm_head", "re:vision_tower.*"],
        }
    }
    q = parse_quantization(config, 2560)
    assert q is not None
    assert (q.bits, q.group_size, q.symmetric, q.act_order, q.act_bits, q.quantizes_vision) == (
        4,
        32,
        False,
        True,
        16,
        False,
    )
    assert q.bytes_per_param(2.0) == pytest.approx(0.5 + 2 / 32 + 0.5 / 32 + 4 / 2560)


def test_cli_answers_a_quantized_derivative_offline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLM_OPERATOR_HUB_CACHE", str(tmp_path))
    args = ["estimate", "--offline", "--gpu", "L4", "--max-model-len", "8192", "--output", "json"]
    rc = main([*args, "--model", "RedHatAI/Qwen2.5-VL-7B-Instruct-quantized.w8a8"])
    quant = json.loads(capsys.readouterr().out)
    rc_base = main([*args, "--model", "Qwen/Qwen2.5-VL-7B-Instruct"])
    base = json.loads(capsys.readouterr().out)
    assert rc in (0, 2) and rc_base in (0, 2)
    assert quant["weights_gib"] < base["weights_gib"] * 0.65
    assert quant["kv_cache_gib"] > base["kv_cache_gib"]
    # Mllama is served only up to vLLM 0.10.2 (the release model refuses it at the default release)
    rc = main([*args, "--vllm-version", "0.10.2", "--model", "otherorg/Llama-3.2-11B-Vision-quantized.w4a16"])
    derived = json.loads(capsys.readouterr().out)
    assert rc in (0, 2) and derived["model"] == "otherorg/Llama-3.2-11B-Vision-quantized.w4a16"


@pytest.mark.parametrize(
    ("record_id", "model_id", "extra"),
    [
        ("vllm-pr12569-llama31-70b-w8a8", "neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8", {}),
        ("lmcache-433-internvl25-8b-awq-tp1", "OpenGVLab/InternVL2_5-8B-AWQ", {"dtype": "float16"}),
    ],
)
def test_derivative_weights_match_public_logs(record_id: str, model_id: str, extra: dict[str, str]) -> None:
    """The weights a derivative resolved offline is estimated at, against a public start-up log of that checkpoint
    ("Model loading took X GiB"; records in tests/data/calibration/logs.json with their sources)."""
    from pathlib import Path

    logs = json.loads((Path(__file__).resolve().parents[1] / "data" / "calibration" / "logs.json").read_text())
    rec = next(r for r in logs["records"] if r["id"] == record_id)
    flags = rec["flags"]
    req = EstimateRequest(
        catalog.lookup(model_id),
        H100,
        EngineSettings(
            tensor_parallel_size=flags["tensor_parallel_size"], max_model_len=flags["max_model_len"], **extra
        ),
        vllm_version=rec["vllm_version"],
    )
    got = estimate(req).weights_bytes / 1024**3
    assert got == pytest.approx(rec["observed"]["weights_gib"], rel=0.01)


def test_a_quantized_checkpoint_directory_takes_its_base_models_exact_count(tmp_path: object) -> None:
    from pathlib import Path

    from vlm_operator.models.local import read_model_dir

    base = catalog.expand(next(e for e in catalog.raw_entries() if e["id"] == "Qwen/Qwen2.5-VL-32B-Instruct"))
    d = Path(str(tmp_path))
    config = dict(base["config"], quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128})
    (d / "config.json").write_text(json.dumps(config))
    facts = read_model_dir(d, "local/qwen-32b-awq")
    assert facts.total_params == base["total_params"]
    assert facts.quantization is not None and facts.quantization.method == "awq"
    # an architecture the catalog does not list keeps the computed count
    (d / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=7)))
    assert read_model_dir(d).total_params is None
