"""The one model of each vLLM release: one parser, one default, one answer per per-release fact."""

from __future__ import annotations

import pytest

from vlm_operator import releases as R
from vlm_operator.api import DEFAULT_VLLM_VERSION as API_DEFAULT
from vlm_operator.api import VLMDeploymentSpec
from vlm_operator.estimator import EstimateRequest


def test_one_default_engine_version_everywhere() -> None:
    # Regression: api/versions.py said 0.11.0 while render/flags.py said 0.32.0.
    assert API_DEFAULT == R.DEFAULT_VLLM_VERSION
    spec = VLMDeploymentSpec.model_validate({"model": {"name": "Qwen/Qwen2.5-VL-7B-Instruct"}})
    assert spec.engine.version == R.DEFAULT_VLLM_VERSION
    assert EstimateRequest.__dataclass_fields__["vllm_version"].default == R.DEFAULT_VLLM_VERSION


def test_default_is_a_release_the_flag_table_covers_exactly() -> None:
    assert R.flags_for(R.DEFAULT_VLLM_VERSION).exact
    assert R.DEFAULT_VLLM_VERSION in R.supported_versions()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("0.8.5", "0.8.5.post1"),
        ("0.8.5.post1", "0.9.0"),
        ("0.12.0rc1", "0.12.0"),
        ("0.12.0.dev1", "0.12.0rc1"),
        ("0.10.1", "0.10.1.1"),
        ("0.9.2", "0.10.0"),
    ],
)
def test_parser_orders_releases(a: str, b: str) -> None:
    assert R.parse_version(a) < R.parse_version(b)
    assert R.VllmVersion(a) < b


@pytest.mark.parametrize("text", ["v0.11.0", "0.11.0+cu128", "0.11", "0.11.0"])
def test_spellings_of_one_release_are_equal(text: str) -> None:
    assert R.parse_version(text) == "0.11.0"
    assert R.parse_version(text) == (0, 11, 0)
    assert R.parse_version(text).release == (0, 11, 0)


@pytest.mark.parametrize("text", ["latest", "", "0", "main", "11.x"])
def test_bad_versions_are_refused_by_every_path(text: str) -> None:
    with pytest.raises(R.UnsupportedVersion):
        R.parse_version(text)


def test_release_view() -> None:
    r = R.release("0.10.2")
    assert (r.engine, r.gpu_memory_utilization, r.limit_per_prompt, r.processor_cache_gib) == ("v1", 0.9, 999, 4.0)
    assert r.flags.lookup("--limit-mm-per-prompt") is not None
    assert r.image == "vllm/vllm-openai:v0.10.2"
    old = R.release("0.6.0")
    assert (old.engine, old.limit_per_prompt, old.processor_cache_gib) == ("v0", 1, 0.0)
    assert R.release().version == R.DEFAULT_VLLM_VERSION


@pytest.mark.parametrize(
    ("version", "gib", "is_a100", "want"),
    [
        ("0.27.1", 180.0, False, 8192),  # B200 before the >=160 GiB tier
        ("0.28.0", 180.0, False, 16384),  # vllm-0.28.0/vllm/engine/arg_utils.py: device_memory >= 160 GiB
        ("0.32.0", 131.0, False, 8192),  # H200 (141 GB = 131 GiB) stays in the >=70 GiB tier
        ("0.32.0", 80.0, True, 2048),  # A100 kept at 2048 (#17885)
        ("0.32.0", 22.0, False, 2048),  # L4
    ],
)
def test_serve_default_batched_tokens_by_gpu(version: str, gib: float, is_a100: bool, want: int) -> None:
    assert R.default_max_num_batched_tokens(version, "v1", gib, is_a100, 8192, True) == want


# ---- architectures served per release (releases/data/vllm_architectures.json) ---------------------------------


def test_architecture_table_covers_the_flag_tables_releases() -> None:
    import json
    from importlib import resources

    doc = json.loads(resources.files("vlm_operator.releases").joinpath("data/vllm_architectures.json").read_text())
    assert doc["releases"] == list(R.supported_versions())
    assert "MllamaForConditionalGeneration" in doc["architectures"]


def test_mllama_is_served_up_to_0_10_2_only() -> None:
    assert R.serves("0.6.2", "MllamaForConditionalGeneration")
    assert R.serves("0.10.2", "MllamaForConditionalGeneration")
    assert not R.serves("0.11.0", "MllamaForConditionalGeneration")
    assert not R.serves(R.DEFAULT_VLLM_VERSION, "MllamaForConditionalGeneration")
    assert R.last_release("MllamaForConditionalGeneration") == "0.10.2"  # vLLM's own _PREVIOUSLY_SUPPORTED_MODELS
    assert R.serving_spans("MllamaForConditionalGeneration") == (("0.6.2", "0.10.2"),)


def test_an_encoder_decoder_architecture_a_release_dropped_is_refused_naming_the_last_release() -> None:
    s = R.architecture_support("0.32.0", "MllamaForConditionalGeneration", multimodal=True, encoder_decoder=True)
    assert s.refused and s.suggested_version == "0.10.2"
    assert "0.6.2-0.10.2" in str(s.message) and "the last is 0.10.2" in str(s.message)


def test_an_unregistered_decoder_only_model_is_a_warning_where_the_transformers_backend_exists() -> None:
    s = R.architecture_support("0.32.0", "SomeNewVLMForConditionalGeneration", multimodal=True, encoder_decoder=False)
    assert not s.refused and "Transformers backend" in str(s.message)
    # 0.8.0 has no Transformers backend for multimodal models: refused
    old = R.architecture_support("0.8.0", "Qwen3VLForConditionalGeneration", multimodal=True, encoder_decoder=False)
    assert old.refused and old.suggested_version == "0.11.0"


def test_vlmctl_estimate_says_mllama_is_not_served_at_the_default_release(capsys: pytest.CaptureFixture[str]) -> None:
    from vlm_operator.cli import main

    argv = [
        "estimate",
        "--model",
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "--gpu",
        "H100",
        "--max-model-len",
        "8192",
    ]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert "does not serve MllamaForConditionalGeneration" in err and "the last is 0.10.2" in err
    assert "GiB needed" not in err  # it used to report "977.51 GiB needed for one 8192-token request"
    assert main([*argv, "--vllm-version", "0.10.2"]) in (0, 2)  # sized normally on a release that serves it


def test_admission_refuses_mllama_at_the_default_release_and_admits_it_pinned() -> None:
    from vlm_operator import admission
    from vlm_operator.api import VLMDeploymentSpec

    doc = {"model": {"name": "meta-llama/Llama-3.2-11B-Vision-Instruct"}, "engine": {"maxModelLen": 8192}}
    d = admission.decide(VLMDeploymentSpec.model_validate(doc), {})
    assert d.reason == admission.REASON_UNSERVED
    assert d.errors[0].startswith("spec.engine.version: vLLM 0.32.0 does not serve MllamaForConditionalGeneration")
    pinned = {**doc, "engine": {"maxModelLen": 8192, "version": "0.10.2"}}
    assert admission.decide(VLMDeploymentSpec.model_validate(pinned), {}).reason != admission.REASON_UNSERVED
