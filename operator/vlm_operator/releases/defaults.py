"""What vLLM does by default at each release, and the per-release memory facts the estimator models.

One function per fact; each takes the release (``VllmVersion``, ``"0.8.5"`` or ``(0, 8, 5)``) and cites the vLLM
commit or PR that changed it. Boundaries after v0.6.1 are the first release after the merge (a commit's release is
not always pinned), so one can be off by one minor release; docs/vllm-releases.md lists them in one table, and
``tests/unit/test_releases.py`` checks the ones that the PyPI sdists show against the extracted table.
"""

from __future__ import annotations

from typing import Literal

from .version import VersionLike, VllmVersion

Engine = Literal["v0", "v1"]


def _v(version: VersionLike) -> VllmVersion:
    return VllmVersion.of(version)


# ---- engine ---------------------------------------------------------------------------------------------------


def default_engine(version: VersionLike) -> Engine:
    """V1 is the default from v0.8.0 (``VLLM_USE_V1`` defaults on, vllm/envs.py); V0 is gone by v0.11.0."""
    return "v1" if _v(version) >= (0, 8, 0) else "v0"


def is_v1_default(version: VersionLike) -> bool:
    """Whether the V1 engine is vLLM's default at this release."""
    return default_engine(version) == "v1"


def engine_for(version: VersionLike, requested: str | None) -> Engine:
    """The engine a release runs: ``requested`` (``v0``/``v1``) if the release has it, else its default."""
    v = _v(version)
    if requested is None:
        return default_engine(v)
    e = requested.lower()
    if e not in ("v0", "v1"):
        raise ValueError(f"engine must be v0 or v1, not {requested!r}")
    if e == "v1" and v < (0, 7, 0):
        raise ValueError(f"the V1 engine does not exist in vLLM {v}")
    if e == "v0" and v >= (0, 11, 0):
        raise ValueError("the V0 engine was removed before vLLM 0.11.0")
    return "v1" if e == "v1" else "v0"


# ---- serve defaults -------------------------------------------------------------------------------------------


def default_gpu_memory_utilization(version: VersionLike) -> float:
    """``--gpu-memory-utilization`` default: 0.90, and 0.92 together with CUDA-graph profiling from v0.20.0
    (96a85c575, #38284; ``CacheConfig.gpu_memory_utilization`` in vllm/config/cache.py: ``default=0.9`` at line 41
    of the 0.19.1 sdist, ``default=0.92`` at line 66 of the 0.20.0 sdist)."""
    return 0.92 if _v(version) >= (0, 20, 0) else 0.90


def default_limit_per_prompt(version: VersionLike, engine: str | None = None) -> int:
    """What vLLM allows per prompt for a modality ``--limit-mm-per-prompt`` does not name.

    1 in V0 and in V1 before d9fc8cd9d (#15799, "[V1] Enable multi-input by default", ~v0.8.4); 999 from then on
    (``get_limit_per_prompt()`` in vllm/config/multimodal.py). Before v0.5.5 there is no flag and the limit is 1.
    ``engine`` defaults to the release's default engine.
    """
    v = _v(version)
    eng = engine if engine is not None else default_engine(v)
    return 999 if eng == "v1" and v >= (0, 8, 4) else 1


def default_processor_cache_gib(version: VersionLike) -> float:
    """Host RAM the multimodal processor cache takes by default: 4 GiB (env ``VLLM_MM_INPUT_CACHE_GIB`` from #14805,
    ~v0.8.0, then ``--mm-processor-cache-gb``, #22441, ~v0.10.2); no such cache before v0.8.0."""
    return 4.0 if _v(version) >= (0, 8, 0) else 0.0


#: The estimator's name for :func:`default_processor_cache_gib`.
mm_cache_default_gb = default_processor_cache_gib


def default_api_server_count(version: VersionLike, data_parallel_size: int) -> int:
    """``--api-server-count`` default: 1, and ``data_parallel_size`` from 803e3f3f6 (#32525, ~v0.15)."""
    return data_parallel_size if _v(version) >= (0, 15, 0) else 1


def default_max_num_seqs(version: VersionLike, engine: str, gpu_gib: float, is_a100: bool) -> int:
    """V0 256; V1 1024 (v0.8.0), hardware-dependent from #16158 (~v0.8.4): 1024 on >=70 GiB non-A100 GPUs, else 256
    (``EngineArgs.get_default_usage_context``/``_set_default_args`` in vllm/engine/arg_utils.py)."""
    if engine == "v0":
        return 256
    if _v(version) < (0, 8, 4):
        return 1024
    return 1024 if gpu_gib >= 70 and not is_a100 else 256


def default_max_num_batched_tokens(
    version: VersionLike, engine: str, gpu_gib: float, is_a100: bool, max_model_len: int, multimodal: bool
) -> int:
    """V1 serve default 2048 (#11187), 8192 on >=70 GiB GPUs (#12369), A100 kept at 2048 (#17885), and 16384 on
    >=160 GiB GPUs (B200/B300) from v0.28.0 (``_set_default_max_num_seqs_and_batched_tokens_args`` in
    vllm-0.28.0/vllm/engine/arg_utils.py: ``device_memory >= 160 * GiB_bytes``; absent from the 0.27.1 sdist).

    V0 without chunked prefill: ``max(max_model_len, 2048)``, and at least 5120 for multimodal models
    (vllm@f0fe4fe86:vllm/config.py ``SchedulerConfig``).
    """
    if engine == "v0":
        return max(max_model_len, 5120 if multimodal else 2048)
    v = _v(version)
    if v >= (0, 28, 0) and gpu_gib >= 160:
        return 16384
    if v >= (0, 7, 1) and gpu_gib >= 70 and not is_a100:
        return 8192
    return 2048


# ---- memory accounting ----------------------------------------------------------------------------------------


def cuda_graphs_in_budget(version: VersionLike) -> bool:
    """CUDA-graph memory is profiled and subtracted before the KV cache from v0.20.0 (#38284,
    vllm/v1/worker/gpu_worker.py ``determine_available_memory``): ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``
    defaults to ``"0"`` in the 0.19.1 sdist (vllm/envs.py:1655) and to ``"1"`` in the 0.20.0 sdist
    (vllm/envs.py:1725). The profiling itself runs from v0.18.0 (:func:`profiles_cuda_graphs`)."""
    return _v(version) >= (0, 20, 0)


def profiles_cuda_graphs(version: VersionLike) -> bool:
    """From v0.18.0 ``determine_available_memory`` captures trial CUDA graphs (``profile_cudagraph_memory``) inside
    the ``memory_profiling`` window, after reading the torch peak (vllm-0.18.0 v1/worker/gpu_worker.py:384-409;
    absent from the 0.17.1 sdist). What those captures leave on the device outside PyTorch's allocator is in the
    window's non-torch increase, so it is charged to the budget whether or not the graph estimate itself is
    (:func:`cuda_graphs_in_budget`). Not under ``--enforce-eager``."""
    return _v(version) >= (0, 18, 0)


def hybrid_allocator(version: VersionLike, engine: str) -> bool:
    """Layers of different attention kinds get separate KV groups (hybrid allocator, ~v0.10.0).

    Before it, V1 turned sliding-window layers of a mixed model into full-attention layers and V0 allocated every
    layer for every token (vllm/v1/core/kv_cache_utils.py ``unify_hybrid_kv_cache_specs``).
    """
    return engine == "v1" and _v(version) >= (0, 10, 0)


def reports_tokens_as_concurrency(version: VersionLike) -> bool:
    """From ~0.13 "GPU KV cache size" is ``max_concurrency x max_model_len``
    (``get_max_concurrency_for_kv_cache_config``, vllm/v1/core/kv_cache_utils.py); earlier releases log
    ``num_blocks // num_groups x block_size``. The exact release of the switch is not pinned; 0.13 is assumed."""
    return _v(version) >= (0, 13, 0)


def early_v1(version: VersionLike, engine: str) -> bool:
    """V1 before v0.8.0 profiled the sampler over every batched token, not over ``max_num_seqs`` rows."""
    return engine == "v1" and _v(version) < (0, 8, 0)


SamplerPath = Literal["flashinfer", "sort", "triton", "legacy"]


def v1_sampler_path(version: VersionLike, flashinfer: bool | None = None) -> SamplerPath:
    """The V1 top-k/top-p sampler the profiling run's dummy sampler goes through. ``_dummy_sampler_run`` samples
    with top-k = vocab - 1 and top-p 0.9 in every release (vllm@v0.11.0..v0.21.0 v1/worker/gpu_model_runner.py).

    - ``flashinfer``: FlashInfer's fused kernel. On by default when FlashInfer is installed from v0.8 to v0.11.0
      (``VLLM_USE_FLASHINFER_SAMPLER`` unset means on, vllm-0.11.0 v1/sample/ops/topk_topp_sampler.py:33-60; the
      vllm/vllm-openai image ships FlashInfer: vllm-0.11.0 docker/Dockerfile:372-383), and again from v0.21.0
      (``VLLM_USE_FLASHINFER_SAMPLER: bool = True``, vllm-0.21.0 vllm/envs.py:48).
    - ``sort``: PyTorch sort + scatter, v0.11.1-v0.16.x: FlashInfer's is opt-in from v0.11.1 ("Users must opt in
      explicitly via VLLM_USE_FLASHINFER_SAMPLER=1", vllm-0.11.1 topk_topp_sampler.py:34-47; vllm-0.12.0
      topk_topp_sampler.py:35-58) and ``apply_top_k_top_p`` sorts the whole vocabulary. The Llama-3.3-70B H200 runs
      of 0.11.2 and 0.13.0 in tests/data/calibration leave the same KV cache (90.23 GiB), as one path predicts.
    - ``triton``: from v0.17.0 a Triton kernel filters in place for batches of 8 rows or more (vllm-0.17.0
      topk_topp_sampler.py:251 ``apply_top_k_top_p_triton``); FlashInfer's still opt-in until v0.21.0.
    - ``legacy``: V1 before v0.10 keeps the calibrated per-logit figure.

    ``flashinfer`` is the deployment's choice where known: ``True`` = ``VLLM_USE_FLASHINFER_SAMPLER=1`` with FlashInfer
    installed, ``False`` = ``=0`` or an install without FlashInfer (a plain ``pip install vllm`` before v0.12 has none);
    ``None`` = the default of the release's vllm/vllm-openai image.
    """
    v = _v(version)
    if flashinfer is not None and v >= (0, 10, 0):
        if flashinfer:
            return "flashinfer"
        return "triton" if v >= (0, 17, 0) else "sort"
    if v >= (0, 21, 0):
        return "flashinfer"
    if v >= (0, 17, 0):
        return "triton"
    if v >= (0, 11, 1):
        return "sort"
    if v >= (0, 10, 0):
        return "flashinfer"
    return "legacy"


def v1_snapshot_after_distributed_init(version: VersionLike) -> bool:
    """From v0.9.1 the V1 worker takes its baseline memory snapshot after NCCL / custom all-reduce set-up
    (vllm-0.11.0 v1/worker/gpu_worker.py:169-182 ``init_device``; cc867be19, #19312), so those buffers are not part
    of the profiled non-torch increase, and they are not charged to the budget at all."""
    return _v(version) >= (0, 9, 1)


def v1_serves_encoder_decoder(version: VersionLike) -> bool:
    """Encoder-decoder (cross-attention) models such as Mllama never ran on V1 while vLLM served them: on
    v0.8-v0.10.x the V1 oracle falls back to V0 ("No Mamba or Encoder-Decoder so far", ``_is_v1_supported_oracle``,
    vllm-0.10.2 vllm/engine/arg_utils.py:1479-1483), and Mllama is gone from v0.11.0 (no
    model_executor/models/mllama.py in the 0.11.0 sdist)."""
    return _v(version) >= (0, 11, 0)


# ---- encoder cache and multimodal profiling -------------------------------------------------------------------


def profiles_one_item_per_modality(version: VersionLike) -> bool:
    """From v0.8.4 the profiler sizes one item per enabled modality (``get_max_tokens_per_item_by_modality`` passes
    ``{modality: 1}``, vllm/multimodal/registry.py); before, it used the per-prompt limits."""
    return _v(version) >= (0, 8, 4)


def video_fills_context(version: VersionLike) -> bool:
    """From v0.10.2 the profiled Qwen/GLM video fills ``max_model_len`` with no room kept for images
    (``_get_max_video_frames(seq_len)``, vllm/model_executor/models/qwen2_vl.py)."""
    return _v(version) >= (0, 10, 2)


def default_video_frame_cap(version: VersionLike) -> int:
    """The profiled-video frame cap for families without their own: 2048 from v0.16.0, 24576 before."""
    return 2048 if _v(version) >= (0, 16, 0) else 24576


def encoder_budget_floors(version: VersionLike) -> bool:
    """From v0.9.0 the encoder profiling count is ``budget // M`` (floor); before it was ``cdiv(budget, M)``
    (vllm/v1/worker/gpu_model_runner.py ``profile_run``)."""
    return _v(version) >= (0, 9, 0)


def skips_encoder_when_text_only(version: VersionLike) -> bool:
    """Every per-prompt limit at 0 = language-model-only mode: the encoder is not loaded (08b751ba7, #22299,
    ~v0.10.1)."""
    return _v(version) >= (0, 10, 1)


def factorises_qwen_profile_image(version: VersionLike) -> bool:
    """Qwen2/2.5/3-VL ``get_image_size_with_most_features``: from vllm PR #29692 (merged 2025-11-28, ~v0.12.0) the
    most-square factor pair of ``max_pixels // (patch·merge)²``; before, ``smart_resize(9999999, 9999999)``, a square
    that holds fewer tokens whenever that count is not a square (vllm/model_executor/models/qwen2_vl.py)."""
    return _v(version) >= (0, 12, 0)
