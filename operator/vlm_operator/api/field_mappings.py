"""Which vLLM flag, env var or Kubernetes field each spec field becomes, and since which vLLM release.

This table is the written contract between the API and the renderer: ``docs/api.md`` is generated from it, the
``extraArgs`` shadowing rule (CEL and Python) is built from its flag names, and the version checks in
:mod:`vlm_operator.api.deployment` read its ``since``/``until`` bounds. Versions come from
the vLLM commits and PRs named per row; after v0.6.1 they are the first release after the merge. Where that
file has no date, or the flag table extracted from the real releases (releases/data/vllm_flags.json) shows a flag one
release earlier, the table's first release is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["flag", "env", "k8s", "operator"]


@dataclass(frozen=True)
class FieldMapping:
    """Where one spec field goes."""

    path: str
    """Dotted camelCase path under ``spec``, e.g. ``engine.maxModelLen``."""
    kind: Kind
    target: str
    """The flag (``--max-model-len``), env var, or Kubernetes field it becomes."""
    since: str | None = None
    """First vLLM release that accepts it; None means every supported release (0.4.0+) or unknown."""
    until: str | None = None
    """First vLLM release that no longer accepts it."""
    note: str = ""
    #: Other spellings of the same flag that extraArgs may not use either (short forms, renamed predecessors).
    aliases: tuple[str, ...] = ()


M = FieldMapping

FIELD_MAPPINGS: tuple[FieldMapping, ...] = (
    # spec.model
    M(
        "model.name",
        "flag",
        "MODEL",
        note="positional `vllm serve MODEL` from 0.5.2; `--model` before",
        aliases=("--model",),
    ),
    M("model.revision", "flag", "--revision"),
    M("model.trustRemoteCode", "flag", "--trust-remote-code"),
    M("model.servedModelName", "flag", "--served-model-name", note="several names from 0.4.2"),
    M("model.tokenizer", "flag", "--tokenizer"),
    M("model.hfTokenSecret", "env", "HF_TOKEN", note="env from the Secret; never an argument"),
    M("model.hfEndpoint", "env", "HF_ENDPOINT"),
    M("model.offline", "env", "HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1"),
    M("model.cache", "k8s", "volume model-cache", note="emptyDir when no source is set"),
    M("model.cache.persistentVolumeClaim", "k8s", "volumes[].persistentVolumeClaim"),
    M("model.cache.emptyDir", "k8s", "volumes[].emptyDir"),
    M("model.cache.mountPath", "env", "HF_HOME (and the volume mount path)"),
    # spec.engine
    M("engine.version", "operator", "image tag v<version>; selects flag names and formats"),
    M("engine.image", "k8s", "containers[vllm].image"),
    M("engine.imagePullPolicy", "k8s", "containers[vllm].imagePullPolicy"),
    M("engine.dtype", "flag", "--dtype"),
    M("engine.quantization", "flag", "--quantization", aliases=("-q",)),
    M("engine.kvCacheDtype", "flag", "--kv-cache-dtype", note="values depend on the release"),
    M("engine.maxModelLen", "flag", "--max-model-len"),
    M("engine.maxNumSeqs", "flag", "--max-num-seqs"),
    M("engine.maxNumBatchedTokens", "flag", "--max-num-batched-tokens"),
    M("engine.gpuMemoryUtilization", "flag", "--gpu-memory-utilization"),
    M("engine.kvCacheMemoryBytes", "flag", "--kv-cache-memory-bytes", since="0.10.2"),
    M("engine.blockSize", "flag", "--block-size"),
    M("engine.tensorParallelSize", "flag", "--tensor-parallel-size", aliases=("-tp",)),
    M("engine.pipelineParallelSize", "flag", "--pipeline-parallel-size", aliases=("-pp",)),
    M("engine.dataParallelSize", "flag", "--data-parallel-size", since="0.8.3", aliases=("-dp",)),
    M("engine.apiServerCount", "flag", "--api-server-count", since="0.9.1", aliases=("-asc",)),
    M("engine.enforceEager", "flag", "--enforce-eager"),
    M("engine.enableExpertParallel", "flag", "--enable-expert-parallel", since="0.8.0"),
    M(
        "engine.enablePrefixCaching",
        "flag",
        "--enable-prefix-caching / --no-enable-prefix-caching",
        note="`--no-…` from 0.6.5",
        aliases=("--enable-prefix-caching",),
    ),
    M("engine.chatTemplate", "flag", "--chat-template <mounted file>", aliases=("--chat-template",)),
    M("engine.chatTemplateContentFormat", "flag", "--chat-template-content-format", since="0.6.5"),
    M("engine.generationConfig", "flag", "--generation-config", since="0.6.6"),
    M(
        "engine.overrideGenerationConfig",
        "flag",
        "--override-generation-config",
        since="0.7.1",
        note="JSON, snake_case keys",
    ),
    M("engine.apiKeySecret", "env", "VLLM_API_KEY", note="env from the Secret; `--api-key` is refused in extraArgs"),
    M("engine.env", "k8s", "containers[vllm].env"),
    M("engine.extraArgs", "flag", "appended after the rendered arguments"),
    # spec.multimodal
    M(
        "multimodal.limitPerPrompt",
        "flag",
        "--limit-mm-per-prompt",
        since="0.5.5",
        note="`image=N,video=M` up to 0.8.4; JSON from 0.8.5 (`image=N` fails from 0.10.0)",
    ),
    M(
        "multimodal.limitPerPrompt.image",
        "flag",
        "--limit-mm-per-prompt '{\"image\": …}'",
        since="0.5.5",
        note="width/height only from 0.11.1 (rich form)",
    ),
    M(
        "multimodal.limitPerPrompt.video",
        "flag",
        "--limit-mm-per-prompt '{\"video\": …}'",
        since="0.5.5",
        note="numFrames/width/height only from 0.11.1 (rich form, key `num_frames`)",
    ),
    M(
        "multimodal.limitPerPrompt.audio",
        "flag",
        "--limit-mm-per-prompt '{\"audio\": …}'",
        since="0.5.5",
        note="length only from 0.11.1 (rich form)",
    ),
    M("multimodal.processorKwargs", "flag", "--mm-processor-kwargs", since="0.6.2", note="JSON"),
    M("multimodal.mediaIoKwargs", "flag", "--media-io-kwargs", since="0.9.2", note="JSON keyed by modality"),
    M(
        "multimodal.processorCache.sizeGiB",
        "flag",
        "--mm-processor-cache-gb",
        since="0.10.2",
        note="before 0.10.2: env VLLM_MM_INPUT_CACHE_GIB, and 0 as --disable-mm-preprocessor-cache (0.6.6–0.12.x)",
        aliases=("--disable-mm-preprocessor-cache", "--mm-cache-preprocessor"),
    ),
    M("multimodal.processorCache.type", "flag", "--mm-processor-cache-type", since="0.11.0"),
    M(
        "multimodal.processorCache.shmMaxObjectSizeMiB",
        "flag",
        "--mm-shm-cache-max-object-size-mb",
        since="0.11.0",
    ),
    M(
        "multimodal.encoderTPMode",
        "flag",
        "--mm-encoder-tp-mode",
        since="0.9.1",
        note="0.9.1–0.10.1 only `data`, as --enable-multimodal-encoder-data-parallel (removed 0.13.0)",
        aliases=("--enable-multimodal-encoder-data-parallel",),
    ),
    M("multimodal.interleaveStrings", "flag", "--interleave-mm-strings", since="0.10.0"),
    M("multimodal.skipProfiling", "flag", "--skip-mm-profiling", since="0.10.1"),
    M("multimodal.videoPruningRate", "flag", "--video-pruning-rate", since="0.11.0"),
    M("multimodal.enableEmbeds", "flag", "--enable-mm-embeds", since="0.11.1"),
    M("multimodal.mediaFetch.allowedDomains", "flag", "--allowed-media-domains", since="0.11.0"),
    M("multimodal.mediaFetch.allowedLocalMediaPath", "flag", "--allowed-local-media-path", since="0.6.4"),
    M(
        "multimodal.mediaFetch.timeoutSeconds",
        "env",
        "VLLM_IMAGE_FETCH_TIMEOUT, VLLM_VIDEO_FETCH_TIMEOUT, VLLM_AUDIO_FETCH_TIMEOUT",
    ),
    M("multimodal.legacy.imageInputType", "flag", "--image-input-type", since="0.4.0", until="0.5.1"),
    M("multimodal.legacy.imageTokenId", "flag", "--image-token-id", since="0.4.0", until="0.5.1"),
    M(
        "multimodal.legacy.imageInputShape",
        "flag",
        "--image-input-shape",
        since="0.4.0",
        until="0.5.1",
        note="comma-joined, e.g. 1,3,336,336",
    ),
    M("multimodal.legacy.imageFeatureSize", "flag", "--image-feature-size", since="0.4.0", until="0.5.1"),
    M("multimodal.legacy.imageProcessor", "flag", "--image-processor", since="0.5.0", until="0.5.1"),
    M(
        "multimodal.legacy.imageProcessorRevision",
        "flag",
        "--image-processor-revision",
        since="0.5.0",
        until="0.5.1",
    ),
    M(
        "multimodal.legacy.disableImageProcessor",
        "flag",
        "--disable-image-processor",
        since="0.5.0",
        until="0.5.1",
        note="the 0.5.0 docs say --no-image-processor, which the parser does not define",
    ),
    # spec.resources
    M("resources.gpu.count", "k8s", "resources.limits[nvidia.com/gpu]", note="must equal TP x PP x DP"),
    M("resources.gpu.product", "k8s", "node affinity on nvidia.com/gpu.product"),
    M("resources.gpu.minMemoryGiB", "k8s", "node affinity on nvidia.com/gpu.memory"),
    M(
        "resources.gpu.migProfile",
        "k8s",
        "resources.limits[nvidia.com/mig-<profile>] instead of nvidia.com/gpu",
        note="GPU operator mixed strategy; one slice per replica",
    ),
    M("resources.cpu", "k8s", "resources.requests.cpu"),
    M("resources.memory", "k8s", "resources.requests/limits.memory"),
    M("resources.shmSize", "k8s", "emptyDir(medium: Memory) at /dev/shm"),
    # spec.podTemplate
    M("podTemplate", "k8s", "the pod template of the Deployment, field by field"),
    # operator behaviour
    M("scaling", "operator", "Deployment replicas, the autoscaler and the /scale subresource"),
    M("rollout", "operator", "Deployment strategy and the rollback controller"),
    M("fitCheck", "operator", "admission webhook and the FitsGPU condition"),
)

#: Flags the operator renders itself from outside the spec; extraArgs may not set them.
OPERATOR_OWNED_FLAGS: dict[str, str] = {
    "--host": "the operator (the pod listens on all addresses)",
    "--port": "the operator (port 8000, the Service's `http` port)",
    "--api-key": "engine.apiKeySecret (a key never goes in arguments)",
    "--hf-token": "model.hfTokenSecret (a token never goes in arguments)",
    "--download-dir": "model.cache",
    "--disable-log-stats": "the operator (it removes the vllm:* metrics the autoscaler reads)",
}

#: Env vars the operator sets from typed fields; ``engine.env`` may not set them.
OPERATOR_OWNED_ENV: tuple[str, ...] = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "VLLM_API_KEY",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "VLLM_MM_INPUT_CACHE_GIB",
    "VLLM_IMAGE_FETCH_TIMEOUT",
    "VLLM_VIDEO_FETCH_TIMEOUT",
    "VLLM_AUDIO_FETCH_TIMEOUT",
)


def _flag_owners() -> dict[str, str]:
    owners: dict[str, str] = {}
    for m in FIELD_MAPPINGS:
        if m.kind != "flag":
            continue
        for name in (m.target.split()[0], *m.aliases):
            if name.startswith("-"):
                owners.setdefault(name, f"spec.{m.path}")
    owners.update(OPERATOR_OWNED_FLAGS)
    return owners


#: flag (``--max-model-len``, ``-tp``) -> the field or component that renders it.
FLAG_OWNERS: dict[str, str] = _flag_owners()


def _shadow_pattern() -> str:
    long_names = sorted({f[2:] for f in FLAG_OWNERS if f.startswith("--")}, key=lambda n: (-len(n), n))
    short_names = sorted({f[1:] for f in FLAG_OWNERS if not f.startswith("--")}, key=lambda n: (-len(n), n))
    # vLLM's FlexibleArgumentParser reads `--max_model_len` as `--max-model-len`, so both spellings are caught.
    longs = "|".join(n.replace("-", "[-_]") for n in long_names)
    shorts = "|".join(short_names)
    # `--flag`, `--flag=value`, `--no-flag` and the dotted JSON form `--flag.key value`.
    return f"^(--(no[-_])?({longs})|-({shorts}))([=.].*)?$"


#: RE2/Python regex matching an argument that sets a flag a typed field renders. Used verbatim in a CEL rule.
SHADOWED_ARG_PATTERN: str = _shadow_pattern()
_SHADOW_RE = re.compile(SHADOWED_ARG_PATTERN)


def shadowed_field(arg: str) -> str | None:
    """The owner of the flag ``arg`` sets, if a typed field or the operator renders it; else None."""
    if not _SHADOW_RE.match(arg):
        return None
    head = arg.split("=", 1)[0].split(".", 1)[0].replace("_", "-")
    if head.startswith("--no-") and head not in FLAG_OWNERS:
        head = "--" + head[len("--no-") :]
    return FLAG_OWNERS.get(head, "a typed field")


def mapping_for(path: str) -> FieldMapping | None:
    """The mapping of ``path`` or of its nearest ancestor that has one."""
    by_path = {m.path: m for m in FIELD_MAPPINGS}
    parts = path.split(".")
    while parts:
        m = by_path.get(".".join(parts))
        if m is not None:
            return m
        parts.pop()
    return None
