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
_MIG_NEEDS_PRODUCT = CelRule(
    rule="!has(self.migProfile) || has(self.product)",
    message="resources.gpu.migProfile needs resources.gpu.product (the GPU the slice is cut from)",
    field_path=".migProfile",
)


class GPURequest(ApiModel):
    """The GPUs of one replica: how many, and which kind."""

    __cel__ = (_PRODUCT_OR_MEMORY, _MIG_NEEDS_PRODUCT)

    count: int | None = Field(default=None, ge=1, le=64)
    """GPUs per replica (``nvidia.com/gpu``). Unset means TP x PP x DP from ``engine``; if set it must equal that
    product."""
    product: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """GPU product: a GFD ``nvidia.com/gpu.product`` name (``NVIDIA-L4``) or an alias from the operator's GPU table
    (``L4``, ``H100-80GB``, ``A100-40GB``). Pods get node affinity on it and the fit check uses its memory."""
    min_memory_gib: int | None = Field(default=None, ge=1, le=4096, alias="minMemoryGiB")
    """Instead of a product: any GPU with at least this much memory (GiB), matched on ``nvidia.com/gpu.memory``.
    The fit check assumes the smallest such GPU."""
    mig_profile: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+g\.[0-9]+gb(\+me)?$")] | None = None
    """A MIG slice of ``product`` instead of a whole GPU, e.g. ``3g.40gb`` (NVIDIA GPU operator, ``mixed`` strategy:
    the pod requests ``nvidia.com/mig-3g.40gb: 1``). The fit check uses the slice's memory. One slice per replica:
    vLLM cannot run tensor or pipeline parallelism across MIG instances."""

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
        if self.mig_profile is not None:
            if self.product is None:
                raise _MIG_NEEDS_PRODUCT.error()
            self.resolved_mig()  # raises naming the product's profiles
        return self

    def resolved_mig(self) -> gpus.MigProfile | None:
        """The table entry for ``migProfile`` on ``product``; None when no slice is asked for."""
        if self.mig_profile is None or self.product is None:
            return None
        try:
            return gpus.lookup(self.product).mig(self.mig_profile)
        except gpus.UnknownGPUError as exc:
            raise ValueError(f"resources.gpu.migProfile {exc}") from None

    def resource_name(self) -> str:
        """The extended resource a replica requests: ``nvidia.com/gpu`` or ``nvidia.com/mig-<profile>``."""
        return gpus.mig_resource(self.mig_profile) if self.mig_profile else "nvidia.com/gpu"

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
