"""``VLMPlatformProfile``: what a platform team allows and defaults for the namespaces it selects (cluster-scoped).

The static rules (which models, registries, GPU products, trustRemoteCode) belong in a ValidatingAdmissionPolicy
(``deploy/policy/``), which the API server evaluates itself. A profile holds what only the operator can judge, because
it needs the operator's own reading of the spec: GPUs per replica (TP x PP x DP, or a MIG slice) and per deployment
(times the most replicas the deployment may reach), the MIG profiles allowed, the ``fitCheck`` mode required, and
defaults for unset fields. The rules themselves are pure functions in :mod:`vlm_operator.profiles`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import ApiModel, CelRule, LabelKey, LabelValue, MediumStr, ShortStr
from .deployment import FitCheck
from .engine import VersionStr

PROFILE_KIND = "VLMPlatformProfile"
PROFILE_PLURAL = "vlmplatformprofiles"
PROFILE_SINGULAR = "vlmplatformprofile"
PROFILE_SHORT_NAMES = ("vlmprofile",)


class LabelSelectorRequirement(ApiModel):
    """One set-based requirement on a namespace's labels (as in a Kubernetes label selector)."""

    key: LabelKey
    """The label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value relates to ``values``."""
    values: list[LabelValue] = Field(default_factory=list, max_length=64)
    """Values for ``In`` and ``NotIn``; empty for ``Exists`` and ``DoesNotExist``."""


class NamespaceSelector(ApiModel):
    """Which namespaces a profile applies to, by their labels. An empty selector selects every namespace."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Labels a namespace must carry, all of them, with these values."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=32)
    """Further requirements, all of which must hold."""


class ProfileDefaults(ApiModel):
    """Values used where a VLMDeployment leaves a field unset. They never overwrite what a user wrote, and they are
    applied when the operator renders the pods, not written into the stored object, so GitOps diffs stay stable."""

    engine_version: VersionStr | None = None
    """``spec.engine.version`` when unset (and no ``engine.image`` is set)."""
    image_mirror: MediumStr | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.:/_-]*[a-z0-9]$")
    """Repository for the default vLLM image when ``spec.engine.image`` is unset: the pods then run
    ``<imageMirror>:v<version>`` instead of ``vllm/vllm-openai:v<version>``. The user's explicit image is kept."""
    hf_endpoint: MediumStr | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """``spec.model.hfEndpoint`` when unset (an internal Hugging Face mirror); not applied with ``offline: true``."""


_PER_REPLICA_LE_PER_DEPLOYMENT = CelRule(
    rule="!has(self.maxGPUsPerReplica) || !has(self.maxGPUsPerDeployment) || "
    "self.maxGPUsPerReplica <= self.maxGPUsPerDeployment",
    message="maxGPUsPerReplica cannot exceed maxGPUsPerDeployment",
    field_path=".maxGPUsPerReplica",
)


class VLMPlatformProfileSpec(ApiModel):
    """Limits and defaults for the VLMDeployments in the namespaces this profile selects.

    When several profiles select a namespace, the one with the highest ``priority`` applies alone; on a tie the name
    that sorts first does, and the refusal or warning says which other profile also matched. A namespace no profile
    selects has no limits. Limits only check what a change touches: an unchanged field, and every ``/scale`` write,
    pass even when a newer, stricter profile would refuse them."""

    __cel__ = (_PER_REPLICA_LE_PER_DEPLOYMENT,)

    namespace_selector: NamespaceSelector = Field(default_factory=NamespaceSelector)
    """The namespaces this profile applies to, by label."""
    priority: int = Field(default=0, ge=-1000, le=1000)
    """Which profile applies when several select a namespace: the highest wins."""
    max_gpus_per_replica: int | None = Field(default=None, ge=1, le=1024, alias="maxGPUsPerReplica")
    """Most GPUs one replica may request (TP x PP x DP; a MIG slice counts as one)."""
    max_gpus_per_deployment: int | None = Field(default=None, ge=1, le=100000, alias="maxGPUsPerDeployment")
    """Most GPUs one VLMDeployment may hold at its largest: GPUs per replica times ``replicas`` (or ``maxReplicas``
    when an autoscaler owns the count)."""
    allowed_mig_profiles: list[ShortStr] | None = Field(default=None, max_length=64, alias="allowedMIGProfiles")
    """MIG profiles (``3g.40gb``) a VLMDeployment may ask for; unset allows any, empty allows none."""
    required_fit_check: FitCheck | None = None
    """The ``fitCheck`` every VLMDeployment must use (e.g. ``Enforce``, so nobody turns the memory check off)."""
    quota_check: Literal["Warn", "Enforce"] = "Warn"
    """When the replicas a VLMDeployment must have need more GPUs than the namespace's ResourceQuota
    (``requests.nvidia.com/gpu``, or the MIG slice's) leaves: ``Warn`` admits it with a warning (the default; the API
    server's quota admission still refuses the pods it cannot fit), ``Enforce`` refuses it at admission."""
    defaults: ProfileDefaults = Field(default_factory=ProfileDefaults)
    """Values for fields a VLMDeployment leaves unset."""

    @model_validator(mode="after")
    def _check(self) -> VLMPlatformProfileSpec:
        per_replica, per_deployment = self.max_gpus_per_replica, self.max_gpus_per_deployment
        if per_replica is not None and per_deployment is not None and per_replica > per_deployment:
            raise _PER_REPLICA_LE_PER_DEPLOYMENT.error()
        return self


class VLMPlatformProfile(ApiModel):
    """A whole VLMPlatformProfile object (cluster-scoped)."""

    api_version: Literal["vlmops.io/v1alpha1"] = "vlmops.io/v1alpha1"
    kind: Literal["VLMPlatformProfile"] = "VLMPlatformProfile"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: VLMPlatformProfileSpec = Field(default_factory=VLMPlatformProfileSpec)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))
