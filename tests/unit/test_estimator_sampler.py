"""The V1 profiling peak and its sampler term, per vLLM release line (docs/estimator.md section 4)."""

from __future__ import annotations

import pytest

from vlm_operator import releases as versions
from vlm_operator.estimator import memory
from vlm_operator.estimator.core import Estimate, estimate
from vlm_operator.estimator.request import GIB, EngineSettings, EstimateRequest, GPUSpec
from vlm_operator.gpus import lookup
from vlm_operator.models import catalog


@pytest.mark.parametrize(
    ("release", "flashinfer", "path"),
    [
        ("0.9.2", None, "legacy"),
        ("0.10.1", None, "flashinfer"),
        ("0.11.0", None, "flashinfer"),
        ("0.11.0", False, "sort"),
        # FlashInfer's sampler is opt-in from 0.11.1 (vllm-0.11.1 topk_topp_sampler.py:34-47)
        ("0.11.1", None, "sort"),
        ("0.11.2", None, "sort"),
        ("0.11.2", True, "flashinfer"),
        ("0.12.0", None, "sort"),
        ("0.16.0", None, "sort"),
        ("0.16.0", True, "flashinfer"),
        ("0.17.0", None, "triton"),
        ("0.19.1", False, "triton"),
        ("0.21.0", None, "flashinfer"),
    ],
)
def test_sampler_path_per_release(release: str, flashinfer: bool | None, path: str) -> None:
    assert versions.v1_sampler_path(versions.parse_version(release), flashinfer) == path


def test_v1_peak_is_the_largest_transient_not_their_sum() -> None:
    peak = memory.v1_activation_peak(encoder_cache=1.0, encoder=5.0, lm=3.0, sampler=2.0, hidden=0.5)
    assert peak == 6.0
    assert memory.v1_activation_peak(encoder_cache=0.0, encoder=0.0, lm=3.0, sampler=2.0, hidden=0.5) == 3.0
    assert memory.v1_activation_peak(encoder_cache=0.0, encoder=0.0, lm=1.0, sampler=2.0, hidden=0.5) == 2.5
    # V1 before v0.10 keeps the calibrated sum
    assert memory.v1_activation_peak(encoder_cache=0.0, encoder=0.0, lm=1.0, sampler=2.0, hidden=0.5, summed=True) == 3


def _llama8b_h100(release: str, flashinfer: bool | None = None) -> float:
    g = lookup("H100-80GB")
    e = estimate(
        EstimateRequest(
            catalog.lookup("meta-llama/Llama-3.1-8B-Instruct"),
            GPUSpec(g.short_name, g.cuda_memory_bytes, g.compute_capability),
            EngineSettings(max_model_len=8192, flashinfer_sampler=flashinfer),
            vllm_version=release,
        )
    )
    return e.activation_bytes / GIB


def test_sort_sampler_releases_reserve_more_than_flashinfer_ones() -> None:
    # 1024 rows x 128,256 logits on an 80 GB H100: 14 vs 38 bytes per logit
    fi, srt, tri = _llama8b_h100("0.11.0"), _llama8b_h100("0.13.0"), _llama8b_h100("0.17.0")
    assert srt - fi == pytest.approx(1024 * 128_256 * 24 / GIB, rel=0.01)
    assert tri == pytest.approx(fi)
    assert _llama8b_h100("0.13.0", flashinfer=True) == pytest.approx(fi)


def test_v1_non_torch_leaves_out_what_distributed_init_allocated() -> None:
    assert memory.non_torch_bytes(1, 1, after_distributed_init=True) < memory.non_torch_bytes(1, 1)
    assert memory.non_torch_bytes(4, 1, after_distributed_init=True) < memory.non_torch_bytes(4, 1)
    assert versions.v1_snapshot_after_distributed_init((0, 9, 1))
    assert not versions.v1_snapshot_after_distributed_init((0, 9, 0))


def _llama70b_h200(
    release: str, *, enforce_eager: bool = False, gpu_memory_utilization: float | None = None
) -> Estimate:
    g = lookup("H200")
    return estimate(
        EstimateRequest(
            catalog.lookup("meta-llama/Llama-3.1-70B-Instruct"),
            GPUSpec(g.short_name, g.cuda_memory_bytes, g.compute_capability),
            EngineSettings(
                tensor_parallel_size=4,
                max_model_len=8192,
                enforce_eager=enforce_eager,
                gpu_memory_utilization=gpu_memory_utilization,
            ),
            vllm_version=release,
        )
    )


def test_capture_sizes_follow_the_release_list() -> None:
    # [1, 2, 4] + range(8, 256, 8) + range(256, max + 1, 16), max = min(2 x max_num_seqs, 512, batched tokens)
    assert len(memory.cuda_graph_capture_sizes(1024, 8192)) == 51
    assert memory.cuda_graph_capture_sizes(32, 2048) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert max(memory.cuda_graph_capture_sizes(256, 256)) == 256


def test_trial_captures_count_from_0_18_and_graphs_from_0_20() -> None:
    v17, v18, v19, v20 = (_llama70b_h200(r) for r in ("0.17.1", "0.18.0", "0.19.1", "0.20.0"))
    leftover = memory.CUDA_GRAPH_PROFILE_LEFTOVER_PER_LAYER_GIB * 80 * GIB
    # the same sampler path (Triton) on all four: only the profiling window changes
    assert v18.activation_bytes == v17.activation_bytes
    assert v18.non_torch_bytes - v17.non_torch_bytes == pytest.approx(leftover)
    assert not v18.cuda_graph_in_budget and not v19.cuda_graph_in_budget and v20.cuda_graph_in_budget
    assert v17.kv_cache_bytes - v18.kv_cache_bytes == pytest.approx(leftover)
    # 0.20.0 also subtracts the graph estimate (51 sizes: 51/67 of the 67-size heuristic)
    assert v20.cuda_graph_bytes == pytest.approx((0.25 + 0.012 * 80) * GIB * 51 / 67)
    eager = _llama70b_h200("0.18.0", enforce_eager=True)
    assert eager.non_torch_bytes == v17.non_torch_bytes


def test_h200_budget_is_what_torch_reports() -> None:
    # vLLM multiplies torch.cuda.mem_get_info()'s total: 139.81 GiB on an H200, not nvidia-smi's 143,771 MiB
    e = _llama70b_h200("0.13.0", gpu_memory_utilization=0.92)
    assert e.budget_bytes / GIB == pytest.approx(139.81 * 0.92, abs=0.01)
