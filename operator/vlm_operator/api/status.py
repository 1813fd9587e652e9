"""``status``: what the operator observed and decided, written by one writer (the reconciler's status step).

Conditions follow the Kubernetes convention (type, status, reason, message, lastTransitionTime,
observedGeneration) so ``kubectl wait --for=condition=Ready``, kstatus and Argo CD read health without a custom
script. ``selector`` and ``replicas`` back the ``/scale`` subresource for HPA and KEDA.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ._base import ApiModel, LongStr, MediumStr, ShortStr


class Condition(ApiModel):
    """One condition, in the shape of metav1.Condition."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """``Ready``, ``Progressing``, ``Degraded`` or ``FitsGPU``."""
    status: Literal["True", "False", "Unknown"] = "Unknown"
    """Whether the condition holds."""
    reason: Annotated[str, Field(max_length=1024, pattern=r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$")] = ""
    """CamelCase machine-readable reason, e.g. ``RolledBack`` or ``DoesNotFit``."""
    message: Annotated[str, Field(max_length=32_768)] = ""
    """Human-readable details."""
    last_transition_time: Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})] | None = None
    """When ``status`` last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` this condition was computed for."""


class EstimateSummary(ApiModel):
    """The fit check's figures for the current spec, per GPU."""

    verdict: Literal["Fits", "Tight", "DoesNotFit", "Unknown"] = "Unknown"
    """``Fits``; ``Tight`` (fits with little KV cache to spare); ``DoesNotFit``; or ``Unknown`` when the model could
    not be resolved."""
    gpu: ShortStr | None = None
    """The GPU product the estimate was made for."""
    gpu_memory_gib: float | None = Field(default=None, alias="gpuMemoryGiB")
    """Memory of that GPU in GiB."""
    weights_gib: float | None = Field(default=None, alias="weightsGiB")
    """Weights per GPU (language model, vision encoder and projector) in GiB."""
    activation_gib: float | None = Field(default=None, alias="activationGiB")
    """Profiling peak (encoder and LLM activations) per GPU in GiB."""
    kv_cache_gib: float | None = Field(default=None, alias="kvCacheGiB")
    """KV cache per GPU in GiB."""
    kv_cache_tokens: int | None = Field(default=None, ge=0)
    """Tokens the KV cache holds."""
    max_concurrency: float | None = Field(default=None, ge=0)
    """Sequences of ``maxModelLen`` tokens the KV cache holds at once."""
    tokens_per_image: int | None = Field(default=None, ge=0)
    """The most tokens one image can cost with the current processor settings."""
    host_memory_gib: float | None = Field(default=None, alias="hostMemoryGiB")
    """Host RAM the container needs beyond the weights' loading copy (processor caches)."""
    message: MediumStr = ""
    """The estimator's one-line explanation and, if it does not fit, its first recommendation."""


class VLMDeploymentStatus(ApiModel):
    """Observed state of a VLMDeployment."""

    # The CRD keeps unknown status fields (kopf's own bookkeeping lives there), so parsing ignores them.
    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` last reconciled."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Ready, Progressing, Degraded and FitsGPU."""
    replicas: int = Field(default=0, ge=0)
    """Pods that exist (the ``/scale`` subresource's ``status.replicas``)."""
    ready_replicas: int = Field(default=0, ge=0)
    """Pods that are ready."""
    updated_replicas: int = Field(default=0, ge=0)
    """Pods running the current pod template."""
    available_replicas: int = Field(default=0, ge=0)
    """Pods ready for at least minReadySeconds."""
    selector: MediumStr | None = None
    """Label selector of the pods, as a string (``/scale`` ``status.selector`` for HPA and KEDA)."""
    url: MediumStr | None = None
    """In-cluster base URL of the OpenAI-compatible API (``http://<name>.<namespace>.svc:8000/v1``)."""
    gpu: ShortStr | None = None
    """GPUs of one replica, e.g. ``2x NVIDIA-L4`` (the GPU printer column)."""
    engine_version: ShortStr | None = None
    """The vLLM release the pods run."""
    effective_args: list[LongStr] = Field(default_factory=list, max_length=256)
    """The exact ``vllm serve`` arguments of the current pod template, with every default the fit check assumed
    made explicit (for example the per-modality limits)."""
    estimate: EstimateSummary | None = None
    """The fit check's figures."""
    pod_template_hash: ShortStr | None = None
    """Hash of the current pod template (the spec-hash annotation)."""
    last_good_pod_template_hash: ShortStr | None = None
    """Hash of the last pod template that became fully ready; rollbacks return to it."""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
