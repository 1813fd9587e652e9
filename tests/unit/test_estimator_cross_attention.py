"""Mllama (encoder-decoder, cross-attention) profiling as vLLM's V0 encoder-decoder runner does it."""

from __future__ import annotations

import pytest

from vlm_operator.estimator.core import estimate
from vlm_operator.estimator.memory import InputError
from vlm_operator.estimator.request import GIB, EngineSettings, EstimateRequest, GPUSpec
from vlm_operator.gpus import lookup
from vlm_operator.models import catalog

MLLAMA = "meta-llama/Llama-3.2-11B-Vision-Instruct"


def _run(release: str, **engine: object):  # type: ignore[no-untyped-def]
    g = lookup("H100-80GB")
    return estimate(
        EstimateRequest(
            catalog.lookup(MLLAMA),
            GPUSpec(g.short_name, g.cuda_memory_bytes, g.compute_capability),
            EngineSettings(**engine),  # type: ignore[arg-type]
            vllm_version=release,
        )
    )


def test_v1_releases_run_mllama_on_v0() -> None:
    assert _run("0.9.2", max_model_len=8192, max_num_seqs=16).resolved.engine == "v0"
    with pytest.raises(InputError, match="encoder-decoder"):
        _run("0.9.2", max_model_len=8192, max_num_seqs=16, engine="v1")


def test_every_sequence_profiles_its_image_whatever_the_token_budget() -> None:
    # 64k context and 128 sequences: the token budget would allow 10 images, vLLM's enc-dec runner profiles 128
    e = _run("0.6.3", max_model_len=65536, max_num_seqs=128)
    assert e.profile.items == 128
    # cross-attention states of 128 images x 6404 tokens x 4096 x bf16
    assert e.encoder_cache_bytes / GIB == pytest.approx(128 * 6404 * 4096 * 2 / GIB, rel=1e-6)
    # the vision encoder over 128 four-tile images sets the peak (~39 GiB), ~8x the 16-sequence one
    small = _run("0.6.3", max_model_len=65536, max_num_seqs=16)
    assert e.activation_bytes == pytest.approx(e.encoder_activation_bytes)
    assert e.encoder_activation_bytes == pytest.approx(8 * small.encoder_activation_bytes)
    assert 30 < e.activation_bytes / GIB < 45
    # it still fits: the cross-attention states need no encoder cache at run time
    assert e.fits, e.reasons


def test_default_sequence_count_does_not_fit_a_long_context() -> None:
    # 256 default V0 sequences x one 4-tile image each: the encoder peak alone exceeds an 80 GB card
    e = _run("0.10.2")
    assert not e.fits


@pytest.mark.parametrize(
    ("gpu", "release", "engine", "fits"),
    [
        # vllm#9445 (0.6.3, A100 80GB, --max-model-len 1024): OOM at the default 256 sequences, runs with 32 + eager
        ("A100-80GB", "0.6.3", {"max_model_len": 1024}, False),
        ("A100-80GB", "0.6.3", {"max_model_len": 1024, "max_num_seqs": 32, "enforce_eager": True}, True),
        # vllm#8879 (0.6.2, A100 80GB): OOM in the vision model at the defaults; max_num_seqs=16 + eager launches it
        ("A100-80GB", "0.6.2", {}, False),
        ("A100-80GB", "0.6.2", {"max_num_seqs": 16, "enforce_eager": True}, True),
    ],
)
def test_public_mllama_verdicts(gpu: str, release: str, engine: dict[str, object], fits: bool) -> None:
    g = lookup(gpu)
    e = estimate(
        EstimateRequest(
            catalog.lookup(MLLAMA),
            GPUSpec(g.short_name, g.cuda_memory_bytes, g.compute_capability),
            EngineSettings(**engine),  # type: ignore[arg-type]
            vllm_version=release,
        )
    )
    assert e.fits is fits, e.reasons
