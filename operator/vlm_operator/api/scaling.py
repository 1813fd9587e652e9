"""``spec.scaling``: who owns the replica count, and the targets of the built-in autoscaler.

Exactly one writer owns ``spec.scaling.replicas``, which is also the ``/scale`` subresource's ``spec.replicas``:
the user (``Manual``, e.g. GitOps), the operator's own autoscaler (``Internal``, writing through ``/scale`` only),
or an HPA/KEDA (``External``, also through ``/scale``). The operator follows the field and never fights its owner.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import CRD_DEFAULT, ApiModel, CelRule

Seconds = Annotated[int, Field(ge=1, le=86_400)]
#: A window that may be 0 (act on the first reading), as the HPA's ``stabilizationWindowSeconds``.
WindowSeconds = Annotated[int, Field(ge=0, le=86_400)]

_PROMETHEUS_URL = CelRule(
    rule="!has(self.type) || self.type != 'Prometheus' || has(self.prometheusURL)",
    message="metrics.type Prometheus needs metrics.prometheusURL",
    field_path=".prometheusURL",
)


class MetricsSource(ApiModel):
    """Where the autoscaler reads vLLM's queue and KV-cache metrics."""

    __cel__ = (_PROMETHEUS_URL,)

    type: Literal["Pods", "Prometheus"] = "Pods"
    """``Pods`` scrapes each ready pod's ``/metrics`` by pod IP; ``Prometheus`` queries a Prometheus server."""
    prometheus_url: Annotated[str, Field(max_length=512, pattern=r"^https?://[^\s]+$")] | None = Field(
        default=None, alias="prometheusURL"
    )
    """Base URL of the Prometheus HTTP API (``http://prometheus.monitoring:9090``), for ``type: Prometheus``."""

    @model_validator(mode="after")
    def _check(self) -> MetricsSource:
        if self.type == "Prometheus" and self.prometheus_url is None:
            raise _PROMETHEUS_URL.error()
        return self


_MIN_LE_MAX = CelRule(
    rule="!has(self.maxReplicas) || (has(self.minReplicas) ? self.minReplicas : 1) <= self.maxReplicas",
    message="scaling.minReplicas must not exceed scaling.maxReplicas",
    field_path=".minReplicas",
    value=("%d > %d", "has(self.minReplicas) ? self.minReplicas : 1", "self.maxReplicas"),
)
_INTERNAL_NEEDS_MAX = CelRule(
    rule="!has(self.mode) || self.mode != 'Internal' || has(self.maxReplicas)",
    message="scaling.mode Internal needs scaling.maxReplicas",
    field_path=".maxReplicas",
)


class ScalingSpec(ApiModel):
    """Replica ownership and autoscaling targets. The policy is implemented by the operator's autoscaler."""

    __cel__ = (_MIN_LE_MAX, _INTERNAL_NEEDS_MAX)

    mode: Literal["Manual", "Internal", "External"] = "Manual"
    """Who sets ``replicas``: ``Manual`` the user; ``Internal`` the operator's autoscaler (through ``/scale``);
    ``External`` an HPA or KEDA (through ``/scale``). In ``Internal`` and ``External`` mode GitOps tools should
    ignore ``spec.scaling.replicas``."""
    replicas: int = Field(default=1, ge=0, le=10_000, json_schema_extra={CRD_DEFAULT: 1})
    """Desired replicas; the ``/scale`` subresource reads and writes this field. Defaulted to 1 by the API server
    so ``/scale`` never reports 0 for an unset value."""
    min_replicas: int = Field(default=1, ge=0, le=10_000)
    """Lower bound for the autoscaler. 0 allows scaling to zero when idle."""
    max_replicas: int | None = Field(default=None, ge=1, le=10_000)
    """Upper bound for the autoscaler; required with ``mode: Internal``."""
    target_queue_depth: float = Field(default=4.0, gt=0, le=100_000)
    """Waiting requests per ready replica (``vllm:num_requests_waiting``) the autoscaler aims for."""
    max_kv_cache_usage: float | None = Field(default=None, gt=0, le=1)
    """Scale up when the mean KV-cache usage (``vllm:kv_cache_usage_perc``, 0–1) exceeds this; unset ignores it."""
    scale_up_window_seconds: WindowSeconds = 0
    """How long the load must stay above target before scaling up; 0 scales up at the first poll that sees it (the
    HPA's default for scale-up). A VLM pod takes minutes to start, so every second waited here is added to the
    queue's wait; raise it only to ignore bursts shorter than the window."""
    scale_up_max_step: int = Field(default=2, ge=1, le=1000)
    """Most replicas added in one decision."""
    scale_down_stabilization_seconds: Seconds = 300
    """How long the load must stay low before scaling down."""
    cooldown_seconds: Seconds = 120
    """Quiet time after any scaling action before the next scale-down."""
    poll_interval_seconds: Seconds = 5
    """How often the autoscaler reads metrics."""
    metrics: MetricsSource = Field(default_factory=MetricsSource)
    """Where metrics come from."""
    dry_run: bool = False
    """Record decisions in status and events without changing replicas."""

    @model_validator(mode="after")
    def _check(self) -> ScalingSpec:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise _MIN_LE_MAX.error(f"{self.min_replicas} > {self.max_replicas}")
        if self.mode == "Internal" and self.max_replicas is None:
            raise _INTERNAL_NEEDS_MAX.error()
        return self
