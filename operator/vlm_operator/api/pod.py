"""``spec.podTemplate``: scheduling and metadata passthrough onto the vLLM pods.

Only the pod-level settings platform teams need are passed through; containers, volumes and probes are the
operator's. ``affinity`` and ``topologySpreadConstraints`` are kept as open objects because their core/v1 types are
large and the API server validates them again on the Deployment.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ._base import ApiModel, CelRule, LabelKey, LabelValue, MediumStr, Name
from .common import LocalObjectReference, Toleration

#: Label prefixes the operator uses for its selectors and hashes; user labels may not set them.
RESERVED_LABEL_PREFIXES: tuple[str, ...] = ("vlmops.io/", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by")

_NO_RESERVED_LABELS = CelRule(
    rule="!has(self.labels) || self.labels.all(k, "
    + " && ".join(f"!k.startsWith('{p}')" for p in RESERVED_LABEL_PREFIXES)
    + ")",
    message="podTemplate.labels must not set " + ", ".join(RESERVED_LABEL_PREFIXES) + " (the operator's selector "
    "labels)",
    field_path=".labels",
    value=(
        "%s",
        "self.labels.filter(k, " + " || ".join(f"k.startsWith('{p}')" for p in RESERVED_LABEL_PREFIXES) + ")[0]",
    ),
)


class PodTemplate(ApiModel):
    """Pod-level settings copied onto the vLLM pods."""

    __cel__ = (_NO_RESERVED_LABELS,)

    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)
    """Extra pod labels. The operator's own (``vlmops.io/…``, ``app.kubernetes.io/instance``) are reserved."""
    annotations: dict[LabelKey, MediumStr] = Field(default_factory=dict, max_length=64)
    """Extra pod annotations."""
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=32)
    """Node labels the pods require, in addition to the GPU affinity from ``resources.gpu``."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Extra tolerations; ``nvidia.com/gpu`` is tolerated already."""
    affinity: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A core/v1 Affinity, merged with the operator's GPU node affinity (its node terms are ANDed in)."""
    priority_class_name: Name | None = None
    """PriorityClass of the pods."""
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list, max_length=16)
    """Secrets for pulling the vLLM image."""
    service_account_name: Name | None = None
    """ServiceAccount of the pods; unset means the namespace's ``default``."""
    runtime_class_name: Name | None = None
    """RuntimeClass of the pods (e.g. ``nvidia``)."""
    topology_spread_constraints: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    )
    """core/v1 TopologySpreadConstraints; the operator fills in ``labelSelector`` when it is left out."""

    @model_validator(mode="after")
    def _check(self) -> PodTemplate:
        reserved = sorted(k for k in self.labels if k.startswith(RESERVED_LABEL_PREFIXES))
        if reserved:
            raise _NO_RESERVED_LABELS.error(reserved[0])
        return self
