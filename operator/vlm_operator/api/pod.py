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


#: Largest UID/GID Kubernetes accepts (core/v1 validation: 0 <= id <= 2147483647).
MAX_ID = 2**31 - 1

_NON_ROOT_NEEDS_USER = CelRule(
    rule="!has(self.runAsNonRoot) || !self.runAsNonRoot || has(self.runAsUser)",
    message="podTemplate.securityContext.runAsNonRoot: true needs runAsUser (the vllm/vllm-openai image "
    "has no USER and runs as root, so the kubelet would refuse to start the container); set runAsUser, e.g. 1000",
    field_path=".runAsUser",
)
_ROOT_USER_IS_NOT_NON_ROOT = CelRule(
    rule="!has(self.runAsUser) || self.runAsUser != 0 || !has(self.runAsNonRoot) || !self.runAsNonRoot",
    message="podTemplate.securityContext.runAsUser 0 is root, which runAsNonRoot: true forbids; use a non-zero UID "
    "such as 1000",
    field_path=".runAsUser",
)


class PodSecurity(ApiModel):
    """Pod-level security settings of the vLLM pods (a subset of core/v1 PodSecurityContext).

    Unset, the pods run as the image's user: root for ``vllm/vllm-openai`` (its ``docker/Dockerfile`` has no ``USER``
    line, e.g. vllm-0.11.0), which Pod Security ``baseline`` admits and
    ``restricted`` refuses. ``runAsNonRoot: true`` with a ``runAsUser`` makes the pod meet ``restricted`` (the
    container already drops all capabilities, forbids privilege escalation and uses the RuntimeDefault seccomp
    profile); the operator then also mounts a writable home folder (``HOME``), since the image's ``/root`` is not
    writable by another user. Give ``fsGroup`` so that a PersistentVolumeClaim model cache is writable by that user.
    """

    __cel__ = (_NON_ROOT_NEEDS_USER, _ROOT_USER_IS_NOT_NON_ROOT)

    run_as_non_root: bool | None = None
    """Refuse to start a container that would run as UID 0. Needs ``runAsUser``."""
    run_as_user: int | None = Field(default=None, ge=0, le=MAX_ID)
    """UID the vLLM container runs as."""
    run_as_group: int | None = Field(default=None, ge=0, le=MAX_ID)
    """Primary GID the vLLM container runs as."""
    fs_group: int | None = Field(default=None, ge=0, le=MAX_ID)
    """GID that owns the pod's volumes (the model cache, the home folder); needed for a PVC cache as non-root."""

    @property
    def non_root(self) -> bool:
        """Whether the container runs as a user other than root (then it needs a writable home folder)."""
        return bool(self.run_as_non_root) or bool(self.run_as_user)

    @model_validator(mode="after")
    def _check(self) -> PodSecurity:
        if self.run_as_non_root and self.run_as_user is None:
            raise _NON_ROOT_NEEDS_USER.error()
        if self.run_as_non_root and self.run_as_user == 0:
            raise _ROOT_USER_IS_NOT_NON_ROOT.error()
        return self


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
    security_context: PodSecurity = Field(default_factory=PodSecurity)
    """Run the vLLM pods as a non-root user (Pod Security ``restricted``); unset, they run as the image's user
    (root for ``vllm/vllm-openai``, Pod Security ``baseline``)."""

    @model_validator(mode="after")
    def _check(self) -> PodTemplate:
        reserved = sorted(k for k in self.labels if k.startswith(RESERVED_LABEL_PREFIXES))
        if reserved:
            raise _NO_RESERVED_LABELS.error(reserved[0])
        return self
