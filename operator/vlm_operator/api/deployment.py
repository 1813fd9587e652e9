"""The VLMDeployment resource: the spec that ties the sections together, and the rules that span sections.

Rules that compare fields of different sections (content format vs interleaving, GPU count vs parallelism) are CEL
on the spec and mirrored here. Rules that need facts the API server does not have are Python only and run in the
admission webhook and in the handler: which vLLM release accepts a field, and resource quantities compared with the
processor cache.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from vlm_operator.releases import MIN_VLLM_VERSION, VllmVersion, default_api_server_count, default_processor_cache_gib

from ._base import CRD_DEFAULT, ApiModel, CelRule, parse_quantity
from .engine import EngineSpec
from .field_mappings import FIELD_MAPPINGS
from .model import ModelSpec
from .multimodal import MultimodalSpec
from .pod import PodTemplate
from .readiness import ReadinessSpec
from .resources import ResourcesSpec
from .rollout import RolloutSpec
from .scaling import ScalingSpec
from .status import VLMDeploymentStatus

GROUP = "vlmops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VLMDeployment"
PLURAL = "vlmdeployments"
SINGULAR = "vlmdeployment"
SHORT_NAMES = ("vlmd",)
CATEGORIES = ("all", "vlmops")

GIB = 1024**3

FitCheck = Literal["Enforce", "Warn", "Off"]

_INTERLEAVE_NEEDS_STRING = CelRule(
    rule="!(has(self.multimodal) && has(self.multimodal.interleaveStrings) && self.multimodal.interleaveStrings) || "
    "(has(self.engine) && has(self.engine.chatTemplateContentFormat) && "
    "self.engine.chatTemplateContentFormat == 'string')",
    message="multimodal.interleaveStrings needs engine.chatTemplateContentFormat: string",
    field_path=".multimodal.interleaveStrings",
)


def _engine_int(name: str) -> str:
    return f"(has(self.engine) && has(self.engine.{name}) ? self.engine.{name} : 1)"


_GPUS_PER_POD = " * ".join(_engine_int(n) for n in ("tensorParallelSize", "pipelineParallelSize", "dataParallelSize"))

_GPU_COUNT_MATCHES = CelRule(
    rule="!has(self.resources) || !has(self.resources.gpu) || !has(self.resources.gpu.count) || "
    "self.resources.gpu.count == "
    + " * ".join(_engine_int(n) for n in ("tensorParallelSize", "pipelineParallelSize", "dataParallelSize")),
    message="resources.gpu.count must equal engine.tensorParallelSize x pipelineParallelSize x dataParallelSize",
    field_path=".resources.gpu.count",
    value=("count %d, engine needs %d", "self.resources.gpu.count", _GPUS_PER_POD),
)

_MIG_IS_ONE_GPU = CelRule(
    rule="!has(self.resources) || !has(self.resources.gpu) || !has(self.resources.gpu.migProfile) || "
    + " * ".join(_engine_int(n) for n in ("tensorParallelSize", "pipelineParallelSize", "dataParallelSize"))
    + " == 1",
    message="resources.gpu.migProfile serves from one MIG slice: engine.tensorParallelSize, pipelineParallelSize and "
    "dataParallelSize must be 1 (vLLM cannot span MIG instances); use whole GPUs for parallelism",
    field_path=".resources.gpu.migProfile",
    value=("engine needs %d GPUs", _GPUS_PER_POD),
)

#: Fields whose own minimum release differs from their flag's (they have a fallback rendering on older releases).
_FIELD_SINCE_OVERRIDE: dict[str, str | None] = {
    # VLLM_MM_INPUT_CACHE_GIB (#14805, 2025-03-15) before --mm-processor-cache-gb.
    "multimodal.processorCache.sizeGiB": "0.8.0",
    # Checked by value below: only `data` needs a release that has it; `weights` is the behaviour of every release.
    "multimodal.encoderTPMode": None,
    # Counts work from 0.5.5; size hints are checked separately (0.11.1).
    "multimodal.limitPerPrompt.image": None,
    "multimodal.limitPerPrompt.video": None,
    "multimodal.limitPerPrompt.audio": None,
}


def _set_value(model: BaseModel, path: str) -> tuple[bool, Any]:
    """Whether the user set the field at camelCase ``path`` to a non-default value, and the value."""
    node: Any = model
    for part in path.split("."):
        if not isinstance(node, BaseModel):
            return False, None
        fields = type(node).model_fields
        name = next((n for n, f in fields.items() if (f.alias or n) == part), None)
        if name is None or name not in node.model_fields_set:
            return False, None
        info = fields[name]
        value = getattr(node, name)
        default = info.get_default(call_default_factory=True)
        if value is None or value == default:
            return False, None
        node = value
    return True, node


class VLMDeploymentSpec(ApiModel):
    """Desired state of a VLMDeployment: a vision-language model served by vLLM."""

    __cel__ = (_INTERLEAVE_NEEDS_STRING, _GPU_COUNT_MATCHES, _MIG_IS_ONE_GPU)

    model: ModelSpec
    """The model and where its weights come from."""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    """The vLLM release and engine flags."""
    multimodal: MultimodalSpec = Field(default_factory=MultimodalSpec)
    """Multimodal settings (vLLM's MultiModalConfig) and media fetch limits."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """GPU, CPU, memory and /dev/shm of one replica."""
    pod_template: PodTemplate = Field(default_factory=PodTemplate)
    """Labels, annotations and scheduling passed through to the pods."""
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, json_schema_extra={CRD_DEFAULT: {}})
    """Replica count and who owns it; autoscaling targets."""
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    """Rollout strategy and automatic rollback."""
    readiness: ReadinessSpec = Field(default_factory=ReadinessSpec)
    """Readiness checks beyond vLLM's ``/health``."""
    fit_check: FitCheck = "Enforce"
    """What happens when the GPU-memory estimate says the spec does not fit: ``Enforce`` refuses it at admission
    and does not roll it out; ``Warn`` admits it with a warning and a False FitsGPU condition; ``Off`` skips the
    check. This field is the only bypass. A model the operator cannot resolve is admitted with a warning unless
    ``Enforce`` is written explicitly."""

    @property
    def version(self) -> str:
        return self.engine.version

    @property
    def gpus_per_replica(self) -> int:
        """GPUs one pod requests: ``engine.gpus_per_pod`` (``resources.gpu.count`` is validated to equal it)."""
        return self.engine.gpus_per_pod

    @property
    def fit_check_explicit(self) -> bool:
        """Whether ``fitCheck`` was written in the spec (an unresolvable model is refused only then)."""
        return self.is_set("fit_check")

    def effective_api_server_count(self) -> int:
        return self.engine.api_server_count or default_api_server_count(self.version, self.engine.data_parallel_size)

    def processor_cache_host_gib(self) -> float:
        """Host RAM the multimodal processor cache takes: size x (API servers + DP engines) with ``lru``, the size
        once with ``shm`` (one shared ring buffer)."""
        cache = self.multimodal.processor_cache
        size = cache.size_gib if cache and cache.size_gib is not None else default_processor_cache_gib(self.version)
        if cache and cache.type == "shm":
            return size
        return size * (self.effective_api_server_count() + self.engine.data_parallel_size)

    @model_validator(mode="after")
    def _check(self) -> VLMDeploymentSpec:
        if self.multimodal.interleave_strings and self.engine.chat_template_content_format != "string":
            raise _INTERLEAVE_NEEDS_STRING.error()
        if self.resources.gpu.count is not None and self.resources.gpu.count != self.engine.gpus_per_pod:
            raise _GPU_COUNT_MATCHES.error(f"count {self.resources.gpu.count}, engine needs {self.engine.gpus_per_pod}")
        if self.resources.gpu.mig_profile is not None and self.engine.gpus_per_pod != 1:
            raise _MIG_IS_ONE_GPU.error(f"engine needs {self.engine.gpus_per_pod} GPUs")
        self._check_versions()
        self._check_host_memory()
        return self

    def _check_versions(self) -> None:
        v = VllmVersion(self.version)
        if v < MIN_VLLM_VERSION:
            raise ValueError(
                f"engine.version {v} is older than {MIN_VLLM_VERSION}, the first vLLM release with vision models"
            )
        for m in FIELD_MAPPINGS:
            since = _FIELD_SINCE_OVERRIDE.get(m.path, m.since)
            if since is None and m.until is None:
                continue
            is_set, _ = _set_value(self, m.path)
            if not is_set:
                continue
            if since is not None and v < since:
                raise ValueError(f"spec.{m.path} needs vLLM >= {since} ({m.target}); engine.version is {v}")
            if m.until is not None and v >= m.until:
                raise ValueError(f"spec.{m.path} was removed in vLLM {m.until} ({m.target}); engine.version is {v}")
        mm = self.multimodal
        if mm.encoder_tp_mode == "data" and v < "0.9.1":
            raise ValueError(f"spec.multimodal.encoderTPMode data needs vLLM >= 0.9.1; engine.version is {v}")
        if mm.limit_per_prompt is not None and mm.limit_per_prompt.has_size_hints() and v < "0.11.1":
            raise ValueError(
                "spec.multimodal.limitPerPrompt width/height/numFrames/length need vLLM >= 0.11.1; "
                f"engine.version is {v}"
            )

    def _check_host_memory(self) -> None:
        res = self.resources
        if res.memory is not None:
            need = self.processor_cache_host_gib()
            have = parse_quantity(res.memory) / GIB
            if have < need:
                raise ValueError(
                    f"resources.memory {res.memory} is below the multimodal processor cache alone ({need:g} GiB = "
                    "processorCache.sizeGiB x (apiServerCount + dataParallelSize)); raise it or lower sizeGiB"
                )
        cache = self.multimodal.processor_cache
        if res.shm_size is not None and cache is not None and cache.type == "shm":
            size = cache.size_gib if cache.size_gib is not None else default_processor_cache_gib(self.version)
            if parse_quantity(res.shm_size) / GIB < size:
                raise ValueError(
                    f"resources.shmSize {res.shm_size} is smaller than the shm processor cache ({size:g} GiB)"
                )


#: The object's name becomes its Service's name, a DNS-1035 label (Kubernetes
#: k8s.io/apimachinery/pkg/util/validation/validation.go, DNS1035LabelMaxLength = 63), and the value of the
#: app.kubernetes.io/instance and vlmops.io/deployment labels (LabelValueMaxLength = 63). The Deployment, its
#: ReplicaSets (name + "-" + a 10-character hash) and pods (generateName, cut to fit) stay within their limits.
NAME_MAX_LENGTH = 63
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_NAME_LENGTH = CelRule(
    rule=f"size(self.metadata.name) <= {NAME_MAX_LENGTH}",
    message=f"metadata.name must be at most {NAME_MAX_LENGTH} characters (the limit of the Service name and of "
    "the app.kubernetes.io/instance label it becomes)",
    value=("%d characters", "size(self.metadata.name)"),
)
_NAME_FORMAT = CelRule(
    rule=f"self.metadata.name.matches('{NAME_PATTERN}')",
    message="metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, "
    "no dots): it becomes the Service name",
    value=("'%s'", "self.metadata.name"),
)
#: Rules on the whole object (the CRD's root schema), where ``self.metadata.name`` is visible.
OBJECT_RULES: tuple[CelRule, ...] = (_NAME_LENGTH, _NAME_FORMAT)


class VLMDeployment(ApiModel):
    """A vision-language model served by vLLM, with a GPU-memory fit check before anything is scheduled."""

    api_version: Literal["vlmops.io/v1alpha1"] = "vlmops.io/v1alpha1"
    """API version of the resource."""
    kind: Literal["VLMDeployment"] = "VLMDeployment"
    """Kind of the resource."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: VLMDeploymentSpec
    """Desired state."""
    status: VLMDeploymentStatus | None = None
    """Observed state, written by the operator."""

    @classmethod
    def from_k8s(cls, obj: Mapping[str, Any]) -> VLMDeployment:
        """Parse an object as read from the API server or a YAML file."""
        return cls.model_validate(dict(obj))

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @model_validator(mode="after")
    def _check_name(self) -> VLMDeployment:
        name = self.metadata.get("name")
        if isinstance(name, str):  # a file rendered offline may leave it out
            if len(name) > NAME_MAX_LENGTH:
                raise _NAME_LENGTH.error(f"{len(name)} characters")
            if not re.match(NAME_PATTERN, name):
                raise _NAME_FORMAT.error(f"'{name}'")
        return self

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))
