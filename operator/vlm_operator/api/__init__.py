"""The VLMDeployment API (``vlmops.io/v1alpha1``): pydantic models of spec and status, and the CRD made from them.

Everything downstream (estimator, renderer, autoscaler, webhook) takes these frozen models, never raw dicts. The
CRD in ``crds/`` is generated from them by :mod:`vlm_operator.api.crd`, so the schema, its descriptions and its CEL
rules cannot drift from the code. This package imports only pydantic and :mod:`vlm_operator.gpus`.
"""

from __future__ import annotations

from vlm_operator.releases import DEFAULT_VLLM_VERSION, MIN_VLLM_VERSION, VllmVersion

from ._base import ApiModel, CelRule, parse_quantity
from .common import ConfigMapKeyRef, EnvVar, EnvVarSource, LocalObjectReference, SecretKeyRef, Toleration
from .deployment import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    VERSION,
    FitCheck,
    VLMDeployment,
    VLMDeploymentSpec,
)
from .engine import EngineSpec, GenerationDefaults
from .model import EmptyDirCache, ModelSpec, PersistentVolumeClaimCache, WeightCache
from .multimodal import (
    MODALITIES,
    AudioLimit,
    ImageLimit,
    LegacyImageInput,
    LimitPerPrompt,
    MediaFetch,
    Modality,
    MultimodalSpec,
    ProcessorCache,
    VideoLimit,
)
from .pod import PodTemplate
from .readiness import MULTIMODAL_READY_CONDITION, ReadinessSpec
from .resources import GPURequest, ResourcesSpec
from .rollout import RolloutSpec
from .scaling import MetricsSource, ScalingSpec
from .status import Condition, EstimateSummary, VLMDeploymentStatus

__all__ = [
    "API_VERSION",
    "DEFAULT_VLLM_VERSION",
    "GROUP",
    "KIND",
    "MIN_VLLM_VERSION",
    "MODALITIES",
    "MULTIMODAL_READY_CONDITION",
    "PLURAL",
    "SHORT_NAMES",
    "VERSION",
    "ApiModel",
    "AudioLimit",
    "CelRule",
    "Condition",
    "ConfigMapKeyRef",
    "EmptyDirCache",
    "EngineSpec",
    "EnvVar",
    "EnvVarSource",
    "EstimateSummary",
    "FitCheck",
    "GPURequest",
    "GenerationDefaults",
    "ImageLimit",
    "LegacyImageInput",
    "LimitPerPrompt",
    "LocalObjectReference",
    "MediaFetch",
    "MetricsSource",
    "Modality",
    "ModelSpec",
    "MultimodalSpec",
    "PersistentVolumeClaimCache",
    "PodTemplate",
    "ProcessorCache",
    "ReadinessSpec",
    "ResourcesSpec",
    "RolloutSpec",
    "ScalingSpec",
    "SecretKeyRef",
    "Toleration",
    "VLMDeployment",
    "VLMDeploymentSpec",
    "VLMDeploymentStatus",
    "VideoLimit",
    "VllmVersion",
    "WeightCache",
    "parse_quantity",
]
