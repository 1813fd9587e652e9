"""The VLMBatchJob resource: offline generation (captioning, VQA, OCR) over a JSONL file of OpenAI batch requests.

It shares the VLMDeployment's ``model``, ``engine``, ``multimodal``, ``resources`` and ``podTemplate`` blocks through
the same models, so the same renderer, refusal policy, fit check and GPU quota apply: :meth:`VLMBatchJobSpec.
deployment_spec` is the VLMDeploymentSpec of one shard's engine (``parallelism`` replicas, with the batch's sampling
defaults folded into ``engine.overrideGenerationConfig``). What it adds: where the input comes from, where results
and errors go, how many shards run at once, and the Kubernetes Job knobs (``backoffLimitPerIndex``,
``ttlSecondsAfterFinished``, ``suspend``). Kueue's ``kueue.x-k8s.io/queue-name`` label on the object is passed to the
Job, so a platform's batch queue admits it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from ._base import ApiModel, CelRule, LongStr, MediumStr, Name, ShortStr
from .common import ConfigMapKeyRef
from .deployment import (
    _GPU_COUNT_MATCHES,
    _INTERLEAVE_NEEDS_STRING,
    _MIG_IS_ONE_GPU,
    NAME_PATTERN,
    FitCheck,
    VLMDeploymentSpec,
)
from .engine import EngineSpec, GenerationDefaults
from .model import ModelSpec
from .multimodal import MultimodalSpec
from .pod import PodTemplate
from .resources import ResourcesSpec
from .status import Condition, EstimateSummary

BATCH_KIND = "VLMBatchJob"
BATCH_PLURAL = "vlmbatchjobs"
BATCH_SINGULAR = "vlmbatchjob"
BATCH_SHORT_NAMES = ("vlmbj",)
#: Kueue's queue label (kueue.x-k8s.io/queue-name, sigs.k8s.io/kueue pkg/controller/constants/constants.go
#: QueueLabel): copied from the VLMBatchJob's labels to its Job.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The Job's name is the object's name; its pods are ``<name>-<index>-<5 random>`` and carry the name in the
#: ``batch.kubernetes.io/job-name`` label (at most 63 characters). 52 leaves room for the index of 1000 shards.
BATCH_NAME_MAX_LENGTH = 52

#: vLLM's flag for default sampling parameters (vllm/engine/arg_utils.py, EngineArgs.override_generation_config).
OVERRIDE_GENERATION_FLAG = "--override-generation-config"

RelPath = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^/\s][^\s]*$")]
"""A path inside a volume: relative, no spaces, no ``..`` component (checked by the model)."""


def _check_relative(path: str, field: str) -> None:
    if ".." in path.split("/"):
        raise ValueError(f"{field}: '{path}' must stay inside the volume (no '..' component)")


class PvcFile(ApiModel):
    """A file (input) or a directory (output) on a PersistentVolumeClaim in the object's namespace."""

    claim_name: Name
    """Name of the PersistentVolumeClaim."""
    path: RelPath
    """Path inside the volume, relative to its root, e.g. ``inputs/captions.jsonl`` or ``results/run-1``."""

    @model_validator(mode="after")
    def _check(self) -> PvcFile:
        _check_relative(self.path, "path")
        return self


_ONE_INPUT = CelRule(
    rule="(has(self.pvc) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.url) ? 1 : 0) == 1",
    message="input needs exactly one of pvc, configMap or url",
)


class BatchInput(ApiModel):
    """The JSONL file of requests, in the OpenAI batch format: one ``{"custom_id", "method", "url", "body"}`` object a
    line, ``body`` a chat completion request whose messages may carry ``image_url`` content (data URLs or http(s); a
    local file needs the release's ``--allowed-local-media-path``). Exactly one source."""

    __cel__ = (_ONE_INPUT,)

    pvc: PvcFile | None = None
    """A file on a PersistentVolumeClaim (mounted read-only)."""
    config_map: ConfigMapKeyRef | None = None
    """A key of a ConfigMap (small inputs: a ConfigMap holds at most 1 MiB)."""
    url: Annotated[str, Field(max_length=4096, pattern=r"^https?://[^\s]+$")] | None = None
    """An http(s) URL the client downloads, e.g. a presigned object-store URL. A 404 fails the job with
    ``InputNotFound``."""

    @model_validator(mode="after")
    def _check(self) -> BatchInput:
        if sum(x is not None for x in (self.pvc, self.config_map, self.url)) != 1:
            raise _ONE_INPUT.error()
        return self

    @property
    def source(self) -> Literal["pvc", "configMap", "url"]:
        return "pvc" if self.pvc else "configMap" if self.config_map else "url"


class BatchOutput(ApiModel):
    """Where results and errors go: ``results-<shard>.jsonl`` and ``errors-<shard>.jsonl`` in a directory of a
    PersistentVolumeClaim, one line per input line, keyed by ``custom_id`` (the OpenAI batch output format). The
    files are appended to, so a retried shard resumes where it stopped."""

    pvc: PvcFile
    """The output directory (created when missing). The claim must be writable by every shard's pod (ReadWriteMany
    for ``parallelism`` > 1 across nodes)."""


class SamplingDefaults(ApiModel):
    """Sampling parameters applied to a line whose body does not set them."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature; 0 is greedy."""
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    """Most tokens to generate per line."""


class VLMBatchJobSpec(ApiModel):
    """Desired state of a VLMBatchJob: a JSONL file of multimodal requests run through vLLM in parallel shards."""

    # The VLMDeployment's cross-section rules, word for word (the same fields under the same names).
    __cel__ = (_INTERLEAVE_NEEDS_STRING, _GPU_COUNT_MATCHES, _MIG_IS_ONE_GPU)

    model: ModelSpec
    """The model and where its weights come from (as in a VLMDeployment)."""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    """The vLLM release and engine flags (as in a VLMDeployment)."""
    multimodal: MultimodalSpec = Field(default_factory=MultimodalSpec)
    """Multimodal settings (as in a VLMDeployment); ``limitPerPrompt`` also bounds the images of one line."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """GPU, CPU, memory and /dev/shm of one shard's engine (as in a VLMDeployment)."""
    pod_template: PodTemplate = Field(default_factory=PodTemplate)
    """Labels, annotations and scheduling passed through to the shards' pods."""
    fit_check: FitCheck = "Enforce"
    """As in a VLMDeployment: ``Enforce`` refuses a spec whose estimate does not fit the GPU."""
    input: BatchInput
    """The JSONL file of requests."""
    output: BatchOutput
    """Where results and errors are written."""
    parallelism: int = Field(default=1, ge=1, le=1000)
    """Shards, and engine pods running at once: line i of the input belongs to shard i % parallelism. Each pod
    requests the engine's GPUs, so the job needs parallelism x GPUs per pod."""
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    """Defaults for lines that set none: rendered as ``--override-generation-config`` where the release has it,
    and applied by the client to each line's body in any case."""
    concurrency: int = Field(default=4, ge=1, le=1024)
    """Requests each shard keeps in flight against its engine."""
    backoff_limit_per_index: int = Field(default=3, ge=0, le=100)
    """Retries of one shard before it counts as failed (the Job's ``backoffLimitPerIndex``). A retried shard
    skips the lines already in its output."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=31_536_000)
    """Delete the finished Job and its pods after this many seconds (the VLMBatchJob and its status stay)."""
    suspend: bool = False
    """Create the Job suspended (no pods), or suspend a running one (its pods stop; resuming continues where the
    output files end). Kueue sets this on the Job itself when it queues it."""

    @model_validator(mode="after")
    def _check(self) -> VLMBatchJobSpec:
        try:  # the cross-section rules of the engine it runs, in a VLMDeployment's words
            self.deployment_spec()
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
        return self

    @property
    def version(self) -> str:
        return self.engine.version

    @property
    def gpus_per_pod(self) -> int:
        return self.engine.gpus_per_pod

    def generation_defaults(self) -> GenerationDefaults | None:
        """``engine.overrideGenerationConfig`` with the batch's sampling defaults filled in where unset (the
        engine's own value wins: it was written for the engine)."""
        base = self.engine.override_generation_config
        extra: dict[str, Any] = {}
        if self.sampling.temperature is not None and (base is None or base.temperature is None):
            extra["temperature"] = self.sampling.temperature
        if self.sampling.max_tokens is not None and (base is None or base.max_new_tokens is None):
            extra["max_new_tokens"] = self.sampling.max_tokens
        if not extra:
            return base
        return (base or GenerationDefaults()).model_copy(update=extra)

    def deployment_spec(self, with_sampling: bool = True) -> VLMDeploymentSpec:
        """The engine of one shard as a VLMDeploymentSpec (``parallelism`` replicas under manual scaling): what the
        refusal policy, the fit check, the GPU quota and the renderer take. ``with_sampling`` folds the sampling
        defaults into ``engine.overrideGenerationConfig``; the renderer leaves them out on a release without the
        flag (the client applies them then)."""
        engine = self.engine
        if with_sampling and sampling_flag_available(self.version):
            gen = self.generation_defaults()
            if gen is not None and gen != engine.override_generation_config:
                engine = engine.model_copy(update={"override_generation_config": gen})
        fields: dict[str, Any] = {
            "model": self.model,
            "engine": engine,
            "multimodal": self.multimodal,
            "resources": self.resources,
            "pod_template": self.pod_template,
            "scaling": {"replicas": self.parallelism},
        }
        if self.is_set("fit_check"):  # "written or not" matters to the policy (an unresolvable model)
            fields["fit_check"] = self.fit_check
        return VLMDeploymentSpec.model_validate(fields)  # the VLMDeployment's own cross-section rules run


def sampling_flag_available(version: str) -> bool:
    """Whether the release takes ``--override-generation-config`` (the releases/ flag table)."""
    from vlm_operator.releases import flags

    try:
        return flags.has_flag(version, OVERRIDE_GENERATION_FLAG)
    except Exception:  # an unknown release: the renderer refuses it with its own words
        return False


_NAME_LENGTH = CelRule(
    rule=f"size(self.metadata.name) <= {BATCH_NAME_MAX_LENGTH}",
    message=f"metadata.name must be at most {BATCH_NAME_MAX_LENGTH} characters (the Job's pods carry it in the "
    "batch.kubernetes.io/job-name label, with room for the shard index)",
    value=("%d characters", "size(self.metadata.name)"),
)
_NAME_FORMAT = CelRule(
    rule=f"self.metadata.name.matches('{NAME_PATTERN}')",
    message="metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, "
    "no dots): it becomes the Job's name",
    value=("'%s'", "self.metadata.name"),
)
BATCH_OBJECT_RULES: tuple[CelRule, ...] = (_NAME_LENGTH, _NAME_FORMAT)


class ShardStatus(ApiModel):
    """One shard's figures (from its pod's termination message when it ended, else its live ``/progress``)."""

    model_config = ConfigDict(extra="ignore")

    index: int = Field(ge=0)
    """The shard (the Job's completion index)."""
    lines_total: int = Field(default=0, ge=0)
    """Lines of the input that belong to this shard."""
    lines_done: int = Field(default=0, ge=0)
    """Lines with a result."""
    lines_failed: int = Field(default=0, ge=0)
    """Lines with an error line."""
    phase: ShortStr = ""
    """``Pending``, ``Running``, ``Succeeded`` or ``Failed``."""
    reason: MediumStr | None = None
    """Why the shard stopped, as its client reported it (``InputNotFound: …``, ``EngineUnavailable: …``), and what
    its engine sidecar's container status says when it crashed."""
    engine_requests_running: int | None = Field(default=None, ge=0)
    """Requests the shard's engine is running (``vllm:num_requests_running`` from its ``/metrics``), while it runs."""
    engine_requests_waiting: int | None = Field(default=None, ge=0)
    """Requests queued in the shard's engine (``vllm:num_requests_waiting``)."""
    kv_cache_usage: float | None = Field(default=None, ge=0, le=1)
    """KV-cache usage of the shard's engine, 0 to 1 (``vllm:kv_cache_usage_perc``, ``gpu_cache_usage_perc`` before
    0.9.2)."""


class VLMBatchJobStatus(ApiModel):
    """Observed state of a VLMBatchJob."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` last reconciled."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Complete, Failed, Progressing, FitsGPU, and the kstatus pair Reconciling/Stalled."""
    job_name: ShortStr | None = None
    """The Job that runs the shards."""
    shards: int = Field(default=0, ge=0)
    """Shards (the Job's completions)."""
    shards_succeeded: int = Field(default=0, ge=0)
    """Shards that finished every line."""
    shards_failed: int = Field(default=0, ge=0)
    """Shards that used up ``backoffLimitPerIndex``."""
    lines_total: int = Field(default=0, ge=0)
    """Lines of the input (known once every shard has started)."""
    lines_done: int = Field(default=0, ge=0)
    """Lines with a result."""
    lines_failed: int = Field(default=0, ge=0)
    """Lines with an error line (malformed, too long, too many images, refused by the engine)."""
    images: int = Field(default=0, ge=0)
    """Images in the lines processed."""
    prompt_tokens: int = Field(default=0, ge=0)
    """Prompt tokens the engine counted (image tokens included)."""
    completion_tokens: int = Field(default=0, ge=0)
    """Tokens generated."""
    throughput: float | None = Field(default=None, ge=0)
    """Lines per second over the job's run so far."""
    estimated_seconds_left: int | None = Field(default=None, ge=0)
    """Lines left divided by the throughput; unset before the first line or once finished."""
    progress: ShortStr | None = None
    """``done+failed/total (percent)``: the ``Progress`` printer column."""
    start_time: Annotated[str, Field(max_length=64)] | None = None
    """When the Job started (RFC 3339)."""
    completion_time: Annotated[str, Field(max_length=64)] | None = None
    """When the last shard finished (RFC 3339)."""
    shard_status: list[ShardStatus] = Field(default_factory=list, max_length=1000)
    """Per shard figures."""
    gpu: ShortStr | None = None
    """GPUs of one shard's pod, e.g. ``1x NVIDIA-L4``."""
    engine_version: ShortStr | None = None
    """The vLLM release the shards run."""
    effective_args: list[LongStr] = Field(default_factory=list, max_length=256)
    """The exact ``vllm serve`` arguments of the engine sidecar."""
    estimate: EstimateSummary | None = None
    """The fit check's figures."""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class VLMBatchJob(ApiModel):
    """Offline multimodal generation over a JSONL file, on the same engine spec as a VLMDeployment: fit-checked,
    sharded over an Indexed Job, resumable, with progress in status."""

    api_version: Literal["vlmops.io/v1alpha1"] = "vlmops.io/v1alpha1"
    """API version of the resource."""
    kind: Literal["VLMBatchJob"] = "VLMBatchJob"
    """Kind of the resource."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: VLMBatchJobSpec
    """Desired state."""
    status: VLMBatchJobStatus | None = None
    """Observed state, written by the operator."""

    @classmethod
    def from_k8s(cls, obj: Mapping[str, Any]) -> VLMBatchJob:
        return cls.model_validate(dict(obj))

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def queue_name(self) -> str | None:
        labels = self.metadata.get("labels") or {}
        value = labels.get(KUEUE_QUEUE_LABEL)
        return str(value) if value else None

    @model_validator(mode="after")
    def _check_name(self) -> VLMBatchJob:
        name = self.metadata.get("name")
        if isinstance(name, str):
            if len(name) > BATCH_NAME_MAX_LENGTH:
                raise _NAME_LENGTH.error(f"{len(name)} characters")
            if not re.match(NAME_PATTERN, name):
                raise _NAME_FORMAT.error(f"'{name}'")
        return self
