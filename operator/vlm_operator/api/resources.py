"""``spec.resources``: the GPU each replica needs, CPU, memory and ``/dev/shm``.

The GPU is named by product (a GFD product name or an alias from :mod:`vlm_operator.gpus`) or by a minimum memory;
the estimator takes its memory budget from the same table, so a product name means the same thing to the fit check,
the node affinity and the dev cluster.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .. import gpus
from ._base import ApiModel, CelRule, Quantity

_PRODUCT_OR_MEMORY = CelRule(
    rule="!(has(self.product) && has(self.minMemoryGiB))",
    message="resources.gpu sets product or minMemoryGiB, not both",
)


class GPURequest(ApiModel):
    """The GPUs of one replica: how many, and which kind."""

    __cel__ = (_PRODUCT_OR_MEMORY,)

    count: int | None = Field(default=None, ge=1, le=64)
    """GPUs per replica (``nvidia.com/gpu``). Unset means TP x PP x DP from ``engine``; if set it must equal that
    product."""
    product: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """GPU product: a GFD ``nvidia.com/gpu.product`` name (``NVIDIA-L4``) or an alias from the operator's GPU table
    (``L4``, ``H100-80GB``, ``A100-40GB``). Pods get node affinity on it and the fit check uses its memory."""
    min_memory_gib: int | None = Field(default=None, ge=1, le=4096, alias="minMemoryGiB")
    """Instead of a product: any GPU with at least this much memory (GiB), matched on ``nvidia.com/gpu.memory``.
    The fit check assumes the smallest such GPU."""

    @field_validator("product")
    @classmethod
    def _known_product(cls, v: str | None) -> str | None:
        if v is not None:
            gpus.lookup(v)  # raises UnknownGPUError (a ValueError) naming the known products
        return v

    @model_validator(mode="after")
    def _check(self) -> GPURequest:
        if self.product is not None and self.min_memory_gib is not None:
            raise _PRODUCT_OR_MEMORY.error()
        return self

    def resolved_product(self) -> gpus.GPUProduct | None:
        """The table entry for ``product``, or the smallest table GPU with ``minMemoryGiB``; None when neither."""
        if self.product is not None:
            return gpus.lookup(self.product)
        if self.min_memory_gib is not None:
            fitting = gpus.products_with_memory_at_least(self.min_memory_gib * 1024)
            return min(fitting, key=lambda p: p.memory_mib) if fitting else None
        return None


class ResourcesSpec(ApiModel):
    """Compute resources of one replica (pod)."""

    gpu: GPURequest = Field(default_factory=GPURequest)
    """GPU count and kind."""
    cpu: Quantity | None = None
    """CPU request of the vLLM container (``8``, ``7500m``); unset leaves it to the namespace's defaults."""
    memory: Quantity | None = None
    """Memory request and limit of the vLLM container (``64Gi``). Must cover the model's host-side copy while
    loading and the multimodal processor cache, ``processorCache.sizeGiB x (apiServerCount + dataParallelSize)``.
    Unset means the operator's estimate."""
    shm_size: Quantity | None = None
    """Size of the memory-backed ``/dev/shm`` (NCCL with TP > 1, the ``shm`` processor cache); unset means the
    operator's estimate."""
