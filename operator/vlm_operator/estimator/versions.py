"""What changes with the vLLM release: engine, defaults and the memory formula's era.

All thresholds cite ``shared/design/vllm-facts.md`` (section and the vLLM commit/PR it names). Versions after v0.6.1
are the first release after the merge, as that document notes, so a boundary can be off by one minor release.
"""

from __future__ import annotations

import re

_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """``0.8.5``, ``v0.10.1.1``, ``0.11.0rc1`` -> (0, 8, 5) ... Raises ``ValueError`` on anything else."""
    m = _RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a vLLM release number such as 0.11.0")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def default_engine(v: Version) -> str:
    """V1 is the default from v0.8.0; V0 was removed by v0.11.0 (facts §3a/§3b)."""
    return "v1" if v >= (0, 8, 0) else "v0"


def engine_for(v: Version, requested: str | None) -> str:
    if requested is None:
        return default_engine(v)
    e = requested.lower()
    if e not in ("v0", "v1"):
        raise ValueError(f"engine must be v0 or v1, not {requested!r}")
    if e == "v1" and v < (0, 7, 0):
        raise ValueError(f"the V1 engine does not exist in vLLM {'.'.join(map(str, v))}")
    if e == "v0" and v >= (0, 11, 0):
        raise ValueError("the V0 engine was removed before vLLM 0.11.0")
    return e


def default_gpu_memory_utilization(v: Version) -> float:
    """0.90, raised to 0.92 together with CUDA-graph profiling in 96a85c575 (#38284, v0.21.0) (facts §1a)."""
    return 0.92 if v >= (0, 21, 0) else 0.90


def cuda_graphs_in_budget(v: Version) -> bool:
    """CUDA-graph memory is estimated and subtracted before the KV cache from v0.21.0 (#38284; facts §3b)."""
    return v >= (0, 21, 0)


def default_limit_per_prompt(v: Version, engine: str) -> int:
    """1 per modality in V0 and early V1; 999 in V1 from d9fc8cd9d (#15799, ≈v0.8.4) (facts §1b)."""
    return 999 if engine == "v1" and v >= (0, 8, 4) else 1


def default_max_num_seqs(v: Version, engine: str, gpu_gib: float, is_a100: bool) -> int:
    """V0 256; V1 1024 (v0.8.0), hardware-dependent from #16158 (≈v0.8.4): 1024 on >=70 GiB non-A100 GPUs, else 256."""
    if engine == "v0":
        return 256
    if v < (0, 8, 4):
        return 1024
    return 1024 if gpu_gib >= 70 and not is_a100 else 256


def default_max_num_batched_tokens(
    v: Version, engine: str, gpu_gib: float, is_a100: bool, max_model_len: int, multimodal: bool
) -> int:
    """V1 serve default 2048 (#11187), 8192 on >=70 GiB GPUs (#12369), A100 kept at 2048 (#17885).

    V0 without chunked prefill: ``max(max_model_len, 2048)``, and at least 5120 for multimodal models
    (vllm@f0fe4fe86:vllm/config.py ``SchedulerConfig``).
    """
    if engine == "v0":
        return max(max_model_len, 5120 if multimodal else 2048)
    if v >= (0, 7, 1) and gpu_gib >= 70 and not is_a100:
        return 8192
    return 2048


def hybrid_allocator(v: Version, engine: str) -> bool:
    """Layers of different attention kinds get separate KV groups (hybrid allocator, ≈v0.10.0).

    Before it, V1 turned sliding-window layers of a mixed model into full-attention layers and V0 allocated every
    layer for every token (facts §3b "KV bytes").
    """
    return engine == "v1" and v >= (0, 10, 0)


def reports_tokens_as_concurrency(v: Version) -> bool:
    """At HEAD, "GPU KV cache size" is ``max_concurrency × max_model_len`` (facts §3c); earlier releases log
    ``num_blocks // num_groups × block_size``. The exact release of the switch is not pinned; 0.13 is assumed."""
    return v >= (0, 13, 0)


def mm_cache_default_gb(v: Version) -> float:
    """``--mm-processor-cache-gb`` default 4 (≈v0.10.2, #22441), before that env ``VLLM_MM_INPUT_CACHE_GIB`` = 4
    (#14805, 2025-03-15, ≈v0.8.0); no processor cache before that."""
    return 4.0 if v >= (0, 8, 0) else 0.0


def default_api_server_count(v: Version, data_parallel_size: int) -> int:
    """1, or ``data_parallel_size`` from 803e3f3f6 (#32525, ≈v0.15) (facts §1a)."""
    return data_parallel_size if v >= (0, 15, 0) else 1


#: The V1 top-k/top-p sampler the profiling run's dummy sampler goes through (``_dummy_sampler_run`` samples with
#: top-k = vocab - 1 and top-p 0.9 in every release, vllm@v0.11.0..v0.21.0 v1/worker/gpu_model_runner.py):
#: - ``flashinfer``: FlashInfer's fused kernel. On by default when FlashInfer is installed from v0.8 to v0.11
#:   (``VLLM_USE_FLASHINFER_SAMPLER`` unset means on, vllm@v0.11.0 v1/sample/ops/topk_topp_sampler.py:33-60; the
#:   vllm/vllm-openai image ships FlashInfer, and the v0.10.1.1 logs in tests/data/calibration print "Using FlashInfer
#:   for top-p & top-k sampling"), and again from v0.21.0 (env default True, vllm@v0.21.0 envs.py:48).
#: - ``sort``: PyTorch sort + scatter, opt-in FlashInfer only, v0.12.0-v0.16.x (vllm@v0.12.0
#:   topk_topp_sampler.py:35-58 "disabled by default"; ``apply_top_k_top_p`` sorts the whole vocabulary).
#: - ``triton``: from v0.17.0 a Triton kernel filters in place for batches of 8 rows or more (vllm@v0.17.0
#:   topk_topp_sampler.py:251 ``apply_top_k_top_p_triton``), FlashInfer still opt-in until v0.21.0.
#: Before v0.10 the V1 releases keep the calibrated per-logit figure (``legacy``).
def v1_sampler_path(v: Version, flashinfer: bool | None = None) -> str:
    """``flashinfer`` = ``VLLM_USE_FLASHINFER_SAMPLER`` set (with FlashInfer installed) or not; ``None`` = the image's
    default. FlashInfer's sampler exists in V1 from v0.7 (#11394); the PyTorch fallback is ``sort`` before v0.17."""
    if flashinfer is True and v >= (0, 10, 0):
        return "flashinfer"
    if flashinfer is False and v >= (0, 10, 0):
        return "triton" if v >= (0, 17, 0) else "sort"
    if v >= (0, 21, 0):
        return "flashinfer"
    if v >= (0, 17, 0):
        return "triton"
    if v >= (0, 12, 0):
        return "sort"
    if v >= (0, 10, 0):
        return "flashinfer"
    return "legacy"


def v1_snapshot_after_distributed_init(v: Version) -> bool:
    """From v0.9.1 the V1 worker takes its baseline memory snapshot after NCCL / custom all-reduce set-up
    (vllm@v0.11.0 v1/worker/gpu_worker.py:169-182 ``init_device``), so those buffers are not part of the
    profiled non-torch increase (cc867be19, #19312)."""
    return v >= (0, 9, 1)
