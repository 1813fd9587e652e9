"""``spec.model``: which weights to serve, where they come from, and where they are cached.

The weights are either a Hugging Face repo id (downloaded into the cache volume at start-up, optionally through a
mirror) or an absolute path on a pre-filled PersistentVolumeClaim. The HF token is only ever a Secret reference.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from ._base import ApiModel, CelRule, MediumStr, Name, Quantity, ShortStr
from .common import SecretKeyRef

DEFAULT_CACHE_MOUNT_PATH = "/var/cache/huggingface"

ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        pattern=r"^(/[^\s]*|[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?)$",
    ),
]


class PersistentVolumeClaimCache(ApiModel):
    """A PersistentVolumeClaim that holds the Hugging Face cache, or pre-filled model directories."""

    claim_name: Name
    """Name of the PersistentVolumeClaim in the VLMDeployment's namespace."""
    read_only: bool = False
    """Mount read-only (a pre-filled volume shared by many replicas). Downloads then fail, so pair it with
    ``model.offline: true`` or a local model path."""
    sub_path: MediumStr | None = None
    """Sub-directory of the volume to mount; unset mounts the whole volume."""


class EmptyDirCache(ApiModel):
    """A pod-local emptyDir: the weights are downloaded again by every new pod."""

    size_limit: Quantity | None = None
    """Size limit of the emptyDir, e.g. ``40Gi``; unset means no limit (node ephemeral storage)."""


_ONE_CACHE = CelRule(
    rule="!(has(self.persistentVolumeClaim) && has(self.emptyDir))",
    message="cache sets persistentVolumeClaim or emptyDir, not both",
)


class WeightCache(ApiModel):
    """Where downloaded weights live. ``HF_HOME`` points at ``mountPath``. Neither source set means an emptyDir."""

    __cel__ = (_ONE_CACHE,)

    persistent_volume_claim: PersistentVolumeClaimCache | None = None
    """Cache on a PersistentVolumeClaim; survives pod restarts and can be pre-filled."""
    empty_dir: EmptyDirCache | None = None
    """Cache on an emptyDir (the default when neither source is set)."""
    mount_path: Annotated[str, Field(max_length=512, pattern=r"^/[^\s]*$")] = DEFAULT_CACHE_MOUNT_PATH
    """Where the cache volume is mounted in the container; ``HF_HOME`` is set to it."""

    @model_validator(mode="after")
    def _check(self) -> WeightCache:
        if self.persistent_volume_claim is not None and self.empty_dir is not None:
            raise _ONE_CACHE.error()
        return self


_LOCAL_PATH_ON_PVC = CelRule(
    rule="!self.name.startsWith('/') || (has(self.cache) && has(self.cache.persistentVolumeClaim) && "
    "self.name.startsWith((has(self.cache.mountPath) ? self.cache.mountPath : '"
    + DEFAULT_CACHE_MOUNT_PATH
    + "') + '/'))",
    message="a local model path must lie on cache.persistentVolumeClaim, under cache.mountPath",
    field_path=".name",
    value=("%s", "self.name"),
)
_OFFLINE_NEEDS_PVC = CelRule(
    rule="!(has(self.offline) && self.offline) || (has(self.cache) && has(self.cache.persistentVolumeClaim))",
    message="offline mode needs a pre-filled cache.persistentVolumeClaim",
    field_path=".offline",
)
_OFFLINE_NO_ENDPOINT = CelRule(
    rule="!(has(self.offline) && self.offline && has(self.hfEndpoint))",
    message="hfEndpoint has no effect with offline: true; set one of them",
    field_path=".hfEndpoint",
)


class ModelSpec(ApiModel):
    """The model to serve: a Hugging Face repo id or a local path, and how its weights are fetched and cached."""

    __cel__ = (_LOCAL_PATH_ON_PVC, _OFFLINE_NEEDS_PVC, _OFFLINE_NO_ENDPOINT)

    name: ModelName
    """Hugging Face repo id (``Qwen/Qwen2.5-VL-7B-Instruct``) or an absolute path to a model directory on the cache
    PersistentVolumeClaim (``/var/cache/huggingface/models/llava``). The positional ``MODEL`` of ``vllm serve`` (or
    ``--model`` before v0.5.2)."""
    revision: ShortStr | None = None
    """Branch, tag or commit of the repo (``--revision``); unset means the default branch."""
    trust_remote_code: bool = False
    """Run the repo's own Python code (``--trust-remote-code``). Needed by Phi-3.5-vision, MiniCPM-V, InternVL and
    other models whose processor is not in transformers."""
    served_model_name: list[ShortStr] = Field(default_factory=list, max_length=8)
    """Names the OpenAI API accepts for this model (``--served-model-name``); empty means ``name``. The first one is
    the ``model_name`` label on vLLM's Prometheus metrics."""
    tokenizer: MediumStr | None = None
    """A different tokenizer repo id or path (``--tokenizer``); unset means the model's own."""
    hf_token_secret: SecretKeyRef | None = None
    """Secret key holding a Hugging Face token for gated or private repos; exposed to vLLM only as the ``HF_TOKEN``
    env var, never as an argument."""
    hf_endpoint: Annotated[str, Field(max_length=512, pattern=r"^https?://[^\s]+$")] | None = None
    """Base URL of a Hugging Face mirror (sets ``HF_ENDPOINT``); unset means huggingface.co."""
    offline: bool = False
    """Never contact the Hub: the weights must already be on the cache PersistentVolumeClaim (sets
    ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``)."""
    cache: WeightCache = Field(default_factory=WeightCache)
    """The volume that holds downloaded weights (``HF_HOME``)."""

    @property
    def is_local_path(self) -> bool:
        """Whether ``name`` is a path on the cache volume rather than a Hub repo id."""
        return self.name.startswith("/")

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        pvc = self.cache.persistent_volume_claim
        if self.is_local_path and (pvc is None or not self.name.startswith(self.cache.mount_path + "/")):
            raise _LOCAL_PATH_ON_PVC.error(self.name)
        if self.offline and pvc is None:
            raise _OFFLINE_NEEDS_PVC.error()
        if self.offline and self.hf_endpoint is not None:
            raise _OFFLINE_NO_ENDPOINT.error()
        return self
