"""``spec.engine``: the vLLM release and every engine flag the operator types.

``version`` decides how all other fields are rendered. Flags without a typed field may go through ``extraArgs``,
but a flag that a typed field renders may not: two sources for one flag is how a GitOps change silently stops
working, and the estimator would not see the passthrough value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from vlm_operator.releases import DEFAULT_VLLM_VERSION, VERSION_PATTERN, default_image

from ._base import ApiModel, CelRule, MediumStr
from .common import ConfigMapKeyRef, EnvVar, SecretKeyRef
from .field_mappings import OPERATOR_OWNED_ENV, SHADOWED_ARG_PATTERN, shadowed_field

VersionStr = Annotated[str, Field(max_length=32, pattern=VERSION_PATTERN)]
Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla", "bfloat16", "float16"]


class GenerationDefaults(ApiModel):
    """Default sampling parameters for requests that do not set them (``--override-generation-config``)."""

    temperature: float | None = Field(default=None, ge=0)
    """Sampling temperature; 0 is greedy."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    """Nucleus sampling mass."""
    top_k: int | None = Field(default=None, ge=-1)
    """Top-k sampling; -1 or 0 disables it."""
    min_p: float | None = Field(default=None, ge=0, le=1)
    """Minimum token probability relative to the most likely token."""
    repetition_penalty: float | None = Field(default=None, gt=0)
    """Penalty for repeated tokens; 1 is none."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Default ``max_tokens`` of a request."""

    def to_vllm(self) -> dict[str, Any]:
        """The JSON object vLLM expects, with its snake_case keys, unset keys left out."""
        return self.model_dump(mode="json", by_alias=False, exclude_none=True)


_IMAGE_NEEDS_VERSION = CelRule(
    rule="!has(self.image) || has(self.version)",
    message="a custom engine.image must come with an explicit engine.version: the version decides which flags "
    "are rendered",
    field_path=".version",
)
_NO_SHADOWING = CelRule(
    rule=f"!has(self.extraArgs) || self.extraArgs.all(a, !a.matches('{SHADOWED_ARG_PATTERN}'))",
    message="extraArgs must not repeat a flag that a typed field renders or the operator owns; set the typed field "
    "instead",
    field_path=".extraArgs",
    # the flag only, never what follows '=' (``--api-key=<key>`` must not come back in an error or a log)
    value=("'%s'", f"self.extraArgs.filter(a, a.matches('{SHADOWED_ARG_PATTERN}'))[0].split('=')[0]"),
)
_OWNED_ENV = CelRule(
    rule="!has(self.env) || self.env.all(e, !(e.name in [" + ", ".join(f"'{n}'" for n in OPERATOR_OWNED_ENV) + "]))",
    message="env must not set HF_TOKEN, VLLM_API_KEY, HF_HOME or the other variables the operator renders from "
    "typed fields (see docs/api.md)",
    field_path=".env",
    value=("%s", "self.env.filter(e, e.name in [" + ", ".join(f"'{n}'" for n in OPERATOR_OWNED_ENV) + "])[0].name"),
)
_BATCH_COVERS_SEQS = CelRule(
    rule="!has(self.maxNumBatchedTokens) || !has(self.maxNumSeqs) || self.maxNumBatchedTokens >= self.maxNumSeqs",
    message="maxNumBatchedTokens must be at least maxNumSeqs (vLLM refuses to start otherwise)",
    field_path=".maxNumBatchedTokens",
    value=("%d < %d", "self.maxNumBatchedTokens", "self.maxNumSeqs"),
)


class EngineSpec(ApiModel):
    """The vLLM engine: release, image, precision, context length, batching, parallelism and passthrough."""

    __cel__ = (_IMAGE_NEEDS_VERSION, _NO_SHADOWING, _OWNED_ENV, _BATCH_COVERS_SEQS)

    version: VersionStr = DEFAULT_VLLM_VERSION
    """The vLLM release (``0.11.0``). The single source of truth for rendering: flag names and value formats, the
    memory formula and the default image all follow it. Required when ``image`` is set."""
    image: MediumStr | None = None
    """Container image; unset means ``vllm/vllm-openai:v<version>``. A custom image must state ``version``."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Image pull policy of the vLLM container."""
    dtype: Dtype = "auto"
    """Weight and activation precision (``--dtype``). ``auto`` takes the checkpoint's (``torch_dtype``), with fp32
    checkpoints served in bf16/fp16."""
    quantization: Annotated[str, Field(max_length=64, pattern=r"^[a-z0-9_-]+$")] | None = None
    """Quantization method (``--quantization``/``-q``), e.g. ``fp8``, ``awq``, ``gptq``, ``bitsandbytes``; unset means
    the checkpoint's own ``quantization_config``, if any."""
    kv_cache_dtype: KvCacheDtype = "auto"
    """KV-cache precision (``--kv-cache-dtype``); ``auto`` follows ``dtype``. fp8 halves KV memory on GPUs with
    compute capability >= 8.9."""
    max_model_len: int | None = Field(default=None, ge=1, le=16_777_216)
    """Context length in tokens, image tokens included (``--max-model-len``); unset means the model's
    ``max_position_embeddings`` (or its rope-scaled length). The KV cache must hold at least one such sequence."""
    max_num_seqs: int | None = Field(default=None, ge=1, le=65_536)
    """Most sequences in one batch (``--max-num-seqs``); unset means vLLM's default for the version and GPU (256 in
    V0; from ~v0.8.4 1024 on GPUs with >= 70 GiB other than A100, else 256)."""
    max_num_batched_tokens: int | None = Field(default=None, ge=1, le=16_777_216)
    """Most tokens in one scheduler step (``--max-num-batched-tokens``); unset means vLLM's default (V1: 8192 on
    >= 70 GiB GPUs other than A100, else 2048). It also bounds the encoder budget vLLM profiles in V1."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    """Fraction of each GPU's memory this vLLM instance may use (``--gpu-memory-utilization``); unset means vLLM's
    default (0.90; 0.92 from v0.21.0)."""
    kv_cache_memory_bytes: int | None = Field(default=None, ge=1)
    """Fixed KV-cache size per GPU in bytes (``--kv-cache-memory-bytes``, v0.11.0+); overrides
    ``gpuMemoryUtilization`` for the KV cache. Unset means profile-based sizing."""
    block_size: Literal[8, 16, 32, 64, 128] | None = None
    """KV-cache block size in tokens (``--block-size``); unset means vLLM's default (16, or the attention backend's
    preference in V1)."""
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    """GPUs that split each layer (``--tensor-parallel-size``). Must divide the attention heads."""
    pipeline_parallel_size: int = Field(default=1, ge=1, le=64)
    """GPUs that split the layers into stages (``--pipeline-parallel-size``)."""
    data_parallel_size: int = Field(default=1, ge=1, le=64)
    """Engine replicas inside one pod (``--data-parallel-size``, v0.8.3+). Each needs TP x PP GPUs."""
    api_server_count: int | None = Field(default=None, ge=1, le=64)
    """API server processes (``--api-server-count``, v0.9.1+); unset means vLLM's default (1; the DP size from
    ~v0.15). Each keeps its own multimodal processor cache in host RAM."""
    enforce_eager: bool = False
    """Skip CUDA graph capture (``--enforce-eager``): less GPU memory, slower decoding."""
    enable_expert_parallel: bool = False
    """Mixture-of-experts models: place whole experts on the TP x DP ranks instead of sharding every expert
    (``--enable-expert-parallel``, v0.8.0+). The fit check counts the full-width expert activations this implies;
    with data parallelism it still counts each rank's expert weights as with TP alone (an over-estimate)."""
    enable_prefix_caching: bool | None = None
    """Automatic prefix caching (``--enable-prefix-caching`` / ``--no-enable-prefix-caching``); unset means vLLM's
    default (on in V1, off in V0)."""
    chat_template: ConfigMapKeyRef | None = None
    """A Jinja chat template from a ConfigMap key, mounted read-only and passed as ``--chat-template <path>``;
    unset means the tokenizer's own template."""
    chat_template_content_format: Literal["auto", "string", "openai"] = "auto"
    """How message content reaches the chat template (``--chat-template-content-format``): ``string`` flattens
    it to text, ``openai`` keeps the list of parts, ``auto`` detects it from the template."""
    generation_config: Annotated[str, Field(max_length=1024, pattern=r"^(auto|vllm|/[^\s]*)$")] | None = None
    """Where default sampling parameters come from (``--generation-config``): ``auto`` (the model's
    generation_config.json), ``vllm`` (vLLM's defaults) or a directory path; unset means vLLM's default."""
    override_generation_config: GenerationDefaults | None = None
    """Default sampling parameters that win over ``generationConfig`` (``--override-generation-config``)."""
    api_key_secret: SecretKeyRef | None = None
    """Secret key holding the API key clients must send as a Bearer token; reaches vLLM only as the
    ``VLLM_API_KEY`` env var, never as ``--api-key``."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    """Extra environment variables for the vLLM container, e.g. ``VLLM_ATTENTION_BACKEND``. Credentials only through
    ``valueFrom.secretKeyRef``."""
    extra_args: list[MediumStr] = Field(default_factory=list, max_length=64)
    """Arguments appended verbatim after the rendered ones, for flags without a typed field (``--seed``,
    ``--max-logprobs 5``). A flag that a typed field renders, or that the operator owns (``--host``, ``--port``,
    ``--api-key``), is refused."""

    @property
    def effective_image(self) -> str:
        """The image the pod runs: ``image``, or the official one for ``version``."""
        return self.image or default_image(self.version)

    @property
    def gpus_per_engine(self) -> int:
        """GPUs one engine replica uses: TP x PP."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def gpus_per_pod(self) -> int:
        """GPUs one pod uses: TP x PP x DP."""
        return self.gpus_per_engine * self.data_parallel_size

    @model_validator(mode="after")
    def _check(self) -> EngineSpec:
        if self.image is not None and not self.is_set("version"):
            raise _IMAGE_NEEDS_VERSION.error()
        for arg in self.extra_args:
            path = shadowed_field(arg)
            if path is not None:
                raise _NO_SHADOWING.error(f"'{arg.split('=', 1)[0]}' is rendered from {path}")
        for e in self.env:
            if e.name in OPERATOR_OWNED_ENV:
                raise _OWNED_ENV.error(e.name)
        if (
            self.max_num_batched_tokens is not None
            and self.max_num_seqs is not None
            and self.max_num_batched_tokens < self.max_num_seqs
        ):
            raise _BATCH_COVERS_SEQS.error(f"{self.max_num_batched_tokens} < {self.max_num_seqs}")
        return self
