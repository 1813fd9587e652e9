"""The estimator's own pure input: model facts, GPU, engine settings, multimodal settings and the vLLM release.

Every field that vLLM defaults by version or by hardware is ``None`` here and is resolved by
:func:`vlm_operator.estimator.core.resolve` (so the same request means the same thing on every release).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from vlm_operator import gpus
from vlm_operator.models.facts import ModelFacts
from vlm_operator.releases import DEFAULT_VLLM_VERSION

GIB = 1024**3

EncoderTPMode = Literal["weights", "data"]


@dataclass(frozen=True)
class GPUSpec:
    """The device one engine rank runs on."""

    name: str
    #: what ``torch.cuda.mem_get_info()`` reports as total; vLLM multiplies this by ``gpu_memory_utilization``.
    memory_bytes: int
    compute_capability: tuple[int, int] = (9, 0)
    #: a MIG slice: one engine per slice, no tensor parallelism across slices (NCCL has no MIG-to-MIG path)
    mig: bool = False

    @classmethod
    def of(cls, product: gpus.GPUProduct, mig: gpus.MigProfile | None = None) -> GPUSpec:
        """A whole board from the GPU table, or one MIG slice of it (its memory is what ``cudaMemGetInfo`` reports
        inside the instance)."""
        if mig is None:
            return cls(product.short_name, product.cuda_memory_bytes, product.compute_capability)
        name = f"{product.short_name} MIG {mig.name}"
        return cls(name, mig.memory_mib * 1024**2, product.compute_capability, mig=True)

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    @property
    def is_a100(self) -> bool:
        return "a100" in self.name.lower()


@dataclass(frozen=True)
class EngineSettings:
    """The ``vllm serve`` flags that change memory. ``None`` = vLLM's default for the release and GPU."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    #: ``auto``, ``bfloat16``, ``float16``, ``float32`` (``half``/``float`` accepted)
    dtype: str = "auto"
    #: ``--quantization``; ``None`` means "whatever the checkpoint's quantization_config says"
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    enforce_eager: bool = False
    #: ``--enable-expert-parallel``: whole experts per rank, so the fused-MoE caches are full expert width
    enable_expert_parallel: bool = False
    block_size: int | None = None
    kv_cache_memory_bytes: int | None = None
    enable_chunked_prefill: bool | None = None
    api_server_count: int | None = None
    #: ``"v0"`` / ``"v1"``; ``None`` = the release's default engine.
    engine: str | None = None
    #: V1 top-k/top-p sampler: ``True`` FlashInfer's (``VLLM_USE_FLASHINFER_SAMPLER=1`` with FlashInfer installed),
    #: ``False`` the PyTorch one (``=0``, or a pip install without FlashInfer); ``None`` = the release's default in
    #: the vllm/vllm-openai image (``releases.v1_sampler_path``).
    flashinfer_sampler: bool | None = None

    @classmethod
    def taken_from(cls, source: object, **values: Any) -> EngineSettings:
        """The settings ``source`` holds under these fields' names (a VLMDeployment's ``spec.engine``, the arguments
        of ``vlmctl estimate``: both spell each flag as its field here), with ``values`` on top. A new engine field
        with the same name on both sides needs no mapping code."""
        found = {f.name: getattr(source, f.name) for f in fields(cls) if hasattr(source, f.name)}
        return cls(**{**found, **values})


@dataclass(frozen=True)
class MultimodalSettings:
    """``--limit-mm-per-prompt``, ``--mm-processor-kwargs`` and friends."""

    #: modality -> max items per prompt; a modality that is absent takes the release's default.
    limit_per_prompt: Mapping[str, int] = field(default_factory=dict)
    processor_kwargs: Mapping[str, Any] = field(default_factory=dict)
    encoder_tp_mode: EncoderTPMode = "weights"
    skip_mm_profiling: bool = False
    #: frames per video (``--media-io-kwargs '{"video": {"num_frames": N}}'``); vLLM's loader defaults to 32.
    video_num_frames: int | None = None
    #: ``--mm-processor-cache-gb``; ``None`` = default (4 GiB).
    processor_cache_gb: float | None = None
    #: ``lru`` or ``shm``
    processor_cache_type: str = "lru"


@dataclass(frozen=True)
class EstimateRequest:
    model: ModelFacts
    gpu: GPUSpec
    engine: EngineSettings = field(default_factory=EngineSettings)
    multimodal: MultimodalSettings = field(default_factory=MultimodalSettings)
    vllm_version: str = DEFAULT_VLLM_VERSION

    def with_engine(self, **changes: Any) -> EstimateRequest:
        return replace(self, engine=replace(self.engine, **changes))

    def with_multimodal(self, **changes: Any) -> EstimateRequest:
        return replace(self, multimodal=replace(self.multimodal, **changes))
