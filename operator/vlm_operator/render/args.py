"""The vLLM command line for a VLMDeployment, exact for its ``engine.version``. Pure.

:func:`render_command` turns a parsed spec into the container command (``vllm serve M --flag value ...``) and the
env vars that stand in for flags a release does not have yet. Every flag it writes is looked up in the flag table
extracted from the real releases (:mod:`vlm_operator.releases.flags`): a flag the release lacks, a value outside the
release's ``choices``, or a value in the wrong shape for the flag's kind raises :class:`RenderError` naming the spec
field, the release, and the releases that do have the flag. Nothing is silently dropped.

Version rules (the vLLM PRs named per rule; exact releases from the flag table):

- Entry point: ``python3 -m vllm.entrypoints.openai.api_server --model M`` before 0.5.2, ``vllm serve M`` from
  0.5.2 (dbfe254ed, #5090). ``--host 0.0.0.0 --port 8000`` always: the operator owns them.
- Legacy ``--image-*`` flags (0.4.0-0.5.0, #3042; removed in 0.5.1 by #5852/#6089); ``--image-processor``,
  ``--image-processor-revision`` and ``--disable-image-processor`` exist only in 0.5.0 (#4197).
- ``--limit-mm-per-prompt``: ``nullable_kvs`` (``image=4,video=0``) from 0.5.5 (#7126) to 0.8.4; JSON from 0.8.5
  (e78587a64, #16789; the key=value fallback was removed in 0.10.0, #20969). The rich per-modality form
  (``{"image":{"count":2,"width":1024,...}}``, snake_case keys) only from 0.11.1 (79aa24467, #25631).
- Processor cache: ``VLLM_MM_INPUT_CACHE_GIB`` env (#14805) until ``--mm-processor-cache-gb`` exists (#22441;
  0.10.1 in the table, parsed as int there and as float from 0.10.2); size 0 as ``--disable-mm-preprocessor-cache``
  (#11305, 0.6.6-0.12.x, removed by #30397) where the size flag does not exist yet. ``--mm-processor-cache-type`` and
  ``--mm-shm-cache-max-object-size-mb`` from 0.11.0 (#20452).
- Encoder TP mode ``data``: ``--mm-encoder-tp-mode data`` (#23190, 0.10.2+), else
  ``--enable-multimodal-encoder-data-parallel`` (#18368, 0.9.1-0.12.x). ``weights`` is every release's behaviour
  and is not rendered.
- Media fetch timeout: ``VLLM_IMAGE_FETCH_TIMEOUT``, ``VLLM_VIDEO_FETCH_TIMEOUT``, ``VLLM_AUDIO_FETCH_TIMEOUT``
  env (vllm/envs.py); a release that does not read one of them ignores it.

Defaults: a field left at its API default is not rendered, so vLLM applies its own default, with one deliberate
exception, ``--limit-mm-per-prompt`` (see :func:`effective_limits`). Booleans that are False are not rendered;
``enablePrefixCaching: false`` renders ``--no-enable-prefix-caching`` where the release has that
BooleanOptionalAction (0.6.5+, #10724) and nothing before (prefix caching was off by default in V0).

Secrets never reach the arguments: the HF token and the API key are env vars from Secrets (see ``objects.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel

from vlm_operator.api import MODALITIES, VLMDeploymentSpec
from vlm_operator.api.multimodal import AudioLimit, ImageLimit, VideoLimit
from vlm_operator.releases import VllmVersion
from vlm_operator.releases import flags as F
from vlm_operator.render.objects import CHAT_TEMPLATE_DIR, HTTP_PORT

__all__ = [
    "FROM_CATALOG",
    "LEGACY_ENTRYPOINT",
    "SERVE_ENTRYPOINT",
    "RenderError",
    "RenderedCommand",
    "effective_limits",
    "flag_availability",
    "render_command",
]

SERVE_ENTRYPOINT: Final = ("vllm", "serve")
LEGACY_ENTRYPOINT: Final = ("python3", "-m", "vllm.entrypoints.openai.api_server")
#: First release with ``vllm serve MODEL`` (dbfe254ed, #5090).
SERVE_SINCE: Final = "0.5.2"
#: First release whose ``--limit-mm-per-prompt`` takes per-modality dicts (79aa24467, #25631).
RICH_LIMITS_SINCE: Final = "0.11.1"
#: ``VLLM_MM_INPUT_CACHE_GIB`` (#14805, 2025-03-15); the API's own minimum for ``processorCache.sizeGiB``.
CACHE_ENV_SINCE: Final = "0.8.0"
LISTEN_HOST: Final = "0.0.0.0"

#: Sentinel for :func:`render_command`'s ``model_modalities``: look the model up in the built-in catalog.
FROM_CATALOG: Final = "catalog"


class RenderError(ValueError):
    """A spec field cannot be expressed for the chosen vLLM release."""

    def __init__(self, field: str, version: str, message: str) -> None:
        self.field = field
        self.version = version
        super().__init__(f"spec.{field}: {message}")


@dataclass(frozen=True)
class RenderedCommand:
    """The container command and the env vars that belong to it."""

    argv: tuple[str, ...]
    """The full command: entry point, model, then flags; the user's ``extraArgs`` last."""
    env: tuple[tuple[str, str], ...]
    """(name, value) pairs, sorted by name, for settings that are env vars in this release."""
    version: str
    """``engine.version`` the command is for."""
    flag_table_version: str
    """The flag-table release whose flags were used (the version itself, or the nearest covered one below it)."""
    entrypoint: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def args(self) -> tuple[str, ...]:
        """Everything after the entry point (model included): what ``status.effectiveArgs`` shows."""
        return self.argv[len(self.entrypoint) :]


def flag_availability(flag: str) -> str:
    """Which covered releases have ``flag``, in words: ``vLLM >= 0.8.3``, ``vLLM 0.4.0-0.5.0``, or ``no release``."""
    have = [v for v in F.supported_versions() if F.has_flag(v, flag)]
    if not have:
        return "no vLLM release in the flag table"
    newest = F.supported_versions()[-1]
    if have[-1] == newest:
        return f"vLLM >= {have[0]}"
    return f"vLLM {have[0]}-{have[-1]}" if have[0] != have[-1] else f"vLLM {have[0]} only"


def _num(value: int | float) -> str:
    """A number as argparse reads it back exactly: ints plain, whole floats without ``.0``, else ``repr``."""
    if isinstance(value, bool):  # pragma: no cover - guarded by the API types
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _json(obj: Any) -> str:
    """Compact JSON with sorted keys: one spelling per value, so the spec hash only moves when the value does."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _changed(model: BaseModel, name: str) -> bool:
    """Whether field ``name`` holds something other than its API default (the API's notion of "set")."""
    value = getattr(model, name)
    if value is None:
        return False
    default = type(model).model_fields[name].get_default(call_default_factory=True)
    return bool(value != default)


class _Argv:
    """Collects flags, checking each against the release's flag table as it goes."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.flags = F.flags_for(version)
        self.out: list[str] = []

    def _info(self, field: str, flag: str) -> F.FlagInfo:
        info = self.flags.lookup(flag)
        if info is None:
            raise RenderError(
                field,
                self.version,
                f"vLLM {self.version} has no {flag}; it exists in {flag_availability(flag)}",
            )
        return info

    def has(self, flag: str) -> bool:
        return self.flags.lookup(flag) is not None

    def require(self, field: str, flag: str) -> F.FlagInfo:
        """The flag's info; RenderError naming ``field`` when the release lacks it."""
        return self._info(field, flag)

    def switch(self, field: str, flag: str) -> None:
        info = self._info(field, flag)
        if info.kind not in ("store_true", "boolean-optional"):
            raise RenderError(field, self.version, f"{flag} takes a value in vLLM {self.version}, not a bare switch")
        if flag.startswith("--no-") and info.kind != "boolean-optional":  # pragma: no cover - lookup guarantees it
            raise RenderError(field, self.version, f"vLLM {self.version} has no {flag}")
        self.out.append(flag)

    def value(self, field: str, flag: str, value: str | int | float) -> None:
        info = self._info(field, flag)
        if info.kind not in ("value", "optional-value") or info.nargs not in (None, "?", 1):
            raise RenderError(field, self.version, f"{flag} is a {info.kind} flag in vLLM {self.version}")
        text = value if isinstance(value, str) else _num(value)
        if info.value_type == "int" and not isinstance(value, str) and not float(value).is_integer():
            raise RenderError(
                field, self.version, f"vLLM {self.version} parses {flag} as a whole number; {text} is not one"
            )
        if info.choices is not None and text not in {str(c) for c in info.choices}:
            allowed = ", ".join(sorted(str(c) for c in info.choices))
            raise RenderError(field, self.version, f"{flag} {text} is not accepted by vLLM {self.version} ({allowed})")
        self.out += [flag, text]

    def values(self, field: str, flag: str, values: Sequence[str]) -> None:
        info = self._info(field, flag)
        if info.kind != "value":
            raise RenderError(field, self.version, f"{flag} is a {info.kind} flag in vLLM {self.version}")
        if len(values) > 1 and info.nargs not in ("+", "*"):
            many = [v for v in F.supported_versions() if (i := F.flags_for(v).lookup(flag)) and i.nargs in ("+", "*")]
            since = f"; several from vLLM {many[0]}" if many else ""
            raise RenderError(field, self.version, f"vLLM {self.version} takes one value for {flag}{since}")
        self.out += [flag, *values]

    def json(self, field: str, flag: str, obj: Mapping[str, Any]) -> None:
        info = self._info(field, flag)
        if info.kind != "json-dict":
            raise RenderError(field, self.version, f"{flag} does not take JSON in vLLM {self.version} ({info.kind})")
        self.out += [flag, _json(obj)]

    def kvs(self, field: str, flag: str, pairs: Mapping[str, int]) -> None:
        info = self._info(field, flag)
        if info.kind != "kv-pairs":  # pragma: no cover - callers dispatch on the kind
            raise RenderError(field, self.version, f"{flag} does not take key=value pairs in vLLM {self.version}")
        self.out += [flag, ",".join(f"{k}={pairs[k]}" for k in sorted(pairs))]


def _catalog_modalities(model_name: str) -> tuple[str, ...] | None:
    from vlm_operator.models import catalog

    try:
        return tuple(catalog.lookup(model_name).modalities)
    except catalog.UnknownModelError:
        return None


def effective_limits(
    spec: VLMDeploymentSpec, model_modalities: Iterable[str] | None
) -> dict[str, ImageLimit | VideoLimit | AudioLimit | int]:
    """The per-prompt limits the command makes explicit: modality -> the user's item (count and size hints) or
    vLLM's default count for the version.

    Which modalities appear:

    - every modality the user set in ``multimodal.limitPerPrompt`` (including ``count: 0``), with its count and,
      from 0.11.1, its profiling size hints;
    - when the model's modalities are known (``model_modalities``, normally the built-in catalog), every modality
      the model takes that the user left unset, at vLLM's default for the release
      (:meth:`MultimodalSpec.effective_limit`: 1 before ~0.8.4, 999 from #15799). That is what vLLM would apply
      anyway, and it is the number the estimator sized memory with, so the pod runs exactly what was estimated and
      a later change of vLLM's default cannot change a running deployment;
    - when the model's modalities are unknown (a local path, a model outside the catalog), only what the user set:
      naming a modality the model lacks could make vLLM refuse to start.
    """
    mm = spec.multimodal
    out: dict[str, ImageLimit | VideoLimit | AudioLimit | int] = {}
    lpp = mm.limit_per_prompt
    supported = set(model_modalities or ())
    for modality in MODALITIES:
        item: ImageLimit | VideoLimit | AudioLimit | None = getattr(lpp, modality) if lpp is not None else None
        if item is not None:
            out[modality] = item
        elif modality in supported:
            out[modality] = mm.effective_limit(modality, spec.version)
    return out


def _limit_value(item: ImageLimit | VideoLimit | AudioLimit | int, rich: bool) -> int | dict[str, int]:
    if isinstance(item, int):
        return item
    # vLLM's keys are snake_case (``num_frames``), validated with extra="forbid" (#25631).
    hints: dict[str, int] = item.model_dump(by_alias=False, exclude_none=True)
    return hints if rich and len(hints) > 1 else item.count


def _render_limits(a: _Argv, spec: VLMDeploymentSpec, modalities: Iterable[str] | None) -> None:
    field = "multimodal.limitPerPrompt"
    flag = "--limit-mm-per-prompt"
    user_set = spec.multimodal.limit_per_prompt is not None
    if not a.has(flag):
        if user_set:
            a.require(field, flag)  # raises: the release has no such flag
        return  # before 0.5.5 the limit is 1 per prompt and cannot be changed
    limits = effective_limits(spec, modalities)
    if not limits:
        return
    lpp = spec.multimodal.limit_per_prompt
    rich = VllmVersion(a.version) >= RICH_LIMITS_SINCE
    if lpp is not None and lpp.has_size_hints() and not rich:
        raise RenderError(field, a.version, f"width/height/numFrames/length need vLLM >= {RICH_LIMITS_SINCE} (#25631)")
    values = {m: _limit_value(item, rich) for m, item in limits.items()}
    if a.require(field, flag).kind == "kv-pairs":
        counts = {m: v for m, v in values.items() if isinstance(v, int)}
        a.kvs(field, flag, counts)
    else:
        a.json(field, flag, values)


def _render_model(a: _Argv, spec: VLMDeploymentSpec) -> None:
    m = spec.model
    if m.revision is not None:
        a.value("model.revision", "--revision", m.revision)
    if m.tokenizer is not None:
        a.value("model.tokenizer", "--tokenizer", m.tokenizer)
    if m.trust_remote_code:
        a.switch("model.trustRemoteCode", "--trust-remote-code")
    if m.served_model_name:
        a.values("model.servedModelName", "--served-model-name", list(m.served_model_name))


def _render_engine(a: _Argv, spec: VLMDeploymentSpec) -> None:
    e = spec.engine
    if _changed(e, "dtype"):
        a.value("engine.dtype", "--dtype", e.dtype)
    if e.quantization is not None:
        a.value("engine.quantization", "--quantization", e.quantization)
    if _changed(e, "kv_cache_dtype"):
        a.value("engine.kvCacheDtype", "--kv-cache-dtype", e.kv_cache_dtype)
    numeric: tuple[tuple[str, str, str], ...] = (
        ("max_model_len", "engine.maxModelLen", "--max-model-len"),
        ("max_num_seqs", "engine.maxNumSeqs", "--max-num-seqs"),
        ("max_num_batched_tokens", "engine.maxNumBatchedTokens", "--max-num-batched-tokens"),
        ("gpu_memory_utilization", "engine.gpuMemoryUtilization", "--gpu-memory-utilization"),
        ("kv_cache_memory_bytes", "engine.kvCacheMemoryBytes", "--kv-cache-memory-bytes"),
        ("block_size", "engine.blockSize", "--block-size"),
        ("tensor_parallel_size", "engine.tensorParallelSize", "--tensor-parallel-size"),
        ("pipeline_parallel_size", "engine.pipelineParallelSize", "--pipeline-parallel-size"),
        ("data_parallel_size", "engine.dataParallelSize", "--data-parallel-size"),
        ("api_server_count", "engine.apiServerCount", "--api-server-count"),
    )
    for name, field, flag in numeric:
        if _changed(e, name):
            a.value(field, flag, getattr(e, name))
    if e.enforce_eager:
        a.switch("engine.enforceEager", "--enforce-eager")
    if e.enable_expert_parallel:
        a.switch("engine.enableExpertParallel", "--enable-expert-parallel")
    if e.enable_prefix_caching is True:
        a.switch("engine.enablePrefixCaching", "--enable-prefix-caching")
    elif e.enable_prefix_caching is False:
        info = a.flags.lookup("--enable-prefix-caching")
        if info is not None and info.kind == "boolean-optional":
            a.switch("engine.enablePrefixCaching", "--no-enable-prefix-caching")
        # else: a store_true release (V0, < 0.6.5), where prefix caching is off unless the flag is given.
    if e.chat_template is not None:
        # objects.py mounts the ConfigMap key at CHAT_TEMPLATE_DIR/<key>.
        a.value("engine.chatTemplate", "--chat-template", f"{CHAT_TEMPLATE_DIR}/{e.chat_template.key}")
    if _changed(e, "chat_template_content_format"):
        a.value("engine.chatTemplateContentFormat", "--chat-template-content-format", e.chat_template_content_format)
    if e.generation_config is not None:
        a.value("engine.generationConfig", "--generation-config", e.generation_config)
    if e.override_generation_config is not None:
        overrides = e.override_generation_config.to_vllm()  # snake_case, e.g. max_new_tokens
        if overrides:
            a.json("engine.overrideGenerationConfig", "--override-generation-config", overrides)


def _render_legacy(a: _Argv, spec: VLMDeploymentSpec) -> None:
    lg = spec.multimodal.legacy
    if lg is None:
        return
    base = "multimodal.legacy."
    if lg.image_input_type is not None:
        a.value(base + "imageInputType", "--image-input-type", lg.image_input_type)
    if lg.image_token_id is not None:
        a.value(base + "imageTokenId", "--image-token-id", lg.image_token_id)
    shape = lg.rendered_shape()
    if shape is not None:
        a.value(base + "imageInputShape", "--image-input-shape", shape)
    if lg.image_feature_size is not None:
        a.value(base + "imageFeatureSize", "--image-feature-size", lg.image_feature_size)
    if lg.image_processor is not None:
        a.value(base + "imageProcessor", "--image-processor", lg.image_processor)
    if lg.image_processor_revision is not None:
        a.value(base + "imageProcessorRevision", "--image-processor-revision", lg.image_processor_revision)
    if lg.disable_image_processor:
        # The 0.5.0 docs say --no-image-processor; the 0.5.0 parser only defines --disable-image-processor (#4197).
        a.switch(base + "disableImageProcessor", "--disable-image-processor")


def _render_processor_cache(a: _Argv, spec: VLMDeploymentSpec, env: dict[str, str]) -> None:
    cache = spec.multimodal.processor_cache
    if cache is None:
        return
    field = "multimodal.processorCache.sizeGiB"
    size = cache.size_gib
    if size is not None:
        if a.has("--mm-processor-cache-gb"):
            # #22441: replaces VLLM_MM_INPUT_CACHE_GIB; 0 disables the cache. int in 0.10.1, float from 0.10.2.
            a.value(field, "--mm-processor-cache-gb", size)
        elif size == 0 and a.has("--disable-mm-preprocessor-cache"):
            a.switch(field, "--disable-mm-preprocessor-cache")  # #11305
        elif VllmVersion(a.version) >= CACHE_ENV_SINCE:
            if not float(size).is_integer():
                raise RenderError(
                    field,
                    a.version,
                    f"vLLM {a.version} reads the cache size from VLLM_MM_INPUT_CACHE_GIB as whole GiB; "
                    f"{_num(size)} is not one (fractions need --mm-processor-cache-gb, "
                    f"{flag_availability('--mm-processor-cache-gb')}, float from 0.10.2)",
                )
            env["VLLM_MM_INPUT_CACHE_GIB"] = _num(int(size))  # #14805
        else:
            raise RenderError(
                field,
                a.version,
                f"vLLM {a.version} has no processor cache size setting; VLLM_MM_INPUT_CACHE_GIB exists from "
                f"{CACHE_ENV_SINCE}, --mm-processor-cache-gb in {flag_availability('--mm-processor-cache-gb')}",
            )
    if cache.type is not None:
        a.value("multimodal.processorCache.type", "--mm-processor-cache-type", cache.type)
    if cache.shm_max_object_size_mib is not None:
        a.value(
            "multimodal.processorCache.shmMaxObjectSizeMiB",
            "--mm-shm-cache-max-object-size-mb",
            cache.shm_max_object_size_mib,
        )


def _render_multimodal(
    a: _Argv, spec: VLMDeploymentSpec, modalities: Iterable[str] | None, env: dict[str, str]
) -> None:
    mm = spec.multimodal
    _render_legacy(a, spec)
    _render_limits(a, spec, modalities)
    if mm.processor_kwargs:
        a.json("multimodal.processorKwargs", "--mm-processor-kwargs", mm.processor_kwargs)
    if mm.media_io_kwargs:
        a.json("multimodal.mediaIoKwargs", "--media-io-kwargs", mm.media_io_kwargs)
    _render_processor_cache(a, spec, env)
    if mm.encoder_tp_mode == "data":
        field = "multimodal.encoderTPMode"
        if a.has("--mm-encoder-tp-mode"):
            a.value(field, "--mm-encoder-tp-mode", "data")  # #23190
        elif a.has("--enable-multimodal-encoder-data-parallel"):
            a.switch(field, "--enable-multimodal-encoder-data-parallel")  # #18368, removed by #30397
        else:
            raise RenderError(
                field,
                a.version,
                f"vLLM {a.version} cannot run the encoder data-parallel; "
                f"--enable-multimodal-encoder-data-parallel exists in "
                f"{flag_availability('--enable-multimodal-encoder-data-parallel')}, "
                f"--mm-encoder-tp-mode in {flag_availability('--mm-encoder-tp-mode')}",
            )
    if mm.interleave_strings:
        a.switch("multimodal.interleaveStrings", "--interleave-mm-strings")
    if mm.skip_profiling:
        a.switch("multimodal.skipProfiling", "--skip-mm-profiling")
    if mm.video_pruning_rate is not None:
        a.value("multimodal.videoPruningRate", "--video-pruning-rate", mm.video_pruning_rate)
    if mm.enable_embeds:
        a.switch("multimodal.enableEmbeds", "--enable-mm-embeds")
    fetch = mm.media_fetch
    if fetch is not None:
        if fetch.allowed_local_media_path is not None:
            a.value(
                "multimodal.mediaFetch.allowedLocalMediaPath",
                "--allowed-local-media-path",
                fetch.allowed_local_media_path,
            )
        if fetch.allowed_domains:
            a.values("multimodal.mediaFetch.allowedDomains", "--allowed-media-domains", list(fetch.allowed_domains))
        if fetch.timeout_seconds is not None:
            seconds = str(fetch.timeout_seconds)
            for name in ("VLLM_AUDIO_FETCH_TIMEOUT", "VLLM_IMAGE_FETCH_TIMEOUT", "VLLM_VIDEO_FETCH_TIMEOUT"):
                env[name] = seconds


_NUMBER_RE = re.compile(r"^-\d")


def _check_extra_args(a: _Argv, extra: Sequence[str]) -> None:
    """Every option in ``extraArgs`` must be a flag of the release: a typo would crash-loop the pod."""
    for arg in extra:
        if not arg.startswith("-") or _NUMBER_RE.match(arg) or arg in ("-", "--"):
            continue
        name = arg.split("=", 1)[0]
        if name.startswith("--"):
            name = name.split(".", 1)[0]  # the dotted JSON form, --limit-mm-per-prompt.image 4 (#18208)
        candidates = (name, name.replace("_", "-") if name.startswith("--") else name)
        if not any(a.has(c) for c in candidates):
            raise RenderError(
                "engine.extraArgs",
                a.version,
                f"{arg!r} is not a flag of vLLM {a.version} (flag table release {a.flags.version})",
            )


def render_command(
    spec: VLMDeploymentSpec,
    model_modalities: Iterable[str] | Literal["catalog"] | None = FROM_CATALOG,
) -> RenderedCommand:
    """The vLLM container command for ``spec`` at ``spec.engine.version``.

    ``model_modalities`` says which inputs the model takes (``("image", "video")``), for the explicit per-prompt
    limits (:func:`effective_limits`): the default looks the model up in the built-in catalog; pass the modalities
    the estimator resolved (e.g. from a local config.json) to use those, or None when they are unknown.

    Raises :class:`RenderError` when a set field has no flag in the release, or a value the release refuses.
    """
    version = spec.version
    try:
        a = _Argv(version)
    except F.UnsupportedVersion as exc:
        raise RenderError("engine.version", version, str(exc)) from None
    modalities = _catalog_modalities(spec.model.name) if isinstance(model_modalities, str) else model_modalities
    warnings: list[str] = []
    if not a.flags.exact and F.parse_version(version) > F.parse_version(F.supported_versions()[-1]):
        warnings.append(
            f"vLLM {version} is newer than the flag table's newest release {a.flags.version}; its flags are assumed"
        )
    if VllmVersion(version) >= SERVE_SINCE:
        entry: tuple[str, ...] = SERVE_ENTRYPOINT
        a.out += [spec.model.name]  # positional model_tag (#5090)
    else:
        entry = LEGACY_ENTRYPOINT
        a.value("model.name", "--model", spec.model.name)
    a.value("operator", "--host", LISTEN_HOST)
    a.value("operator", "--port", HTTP_PORT)
    env: dict[str, str] = {}
    _render_model(a, spec)
    _render_engine(a, spec)
    _render_multimodal(a, spec, modalities, env)
    extra = list(spec.engine.extra_args)
    _check_extra_args(a, extra)
    return RenderedCommand(
        argv=(*entry, *a.out, *extra),
        env=tuple(sorted(env.items())),
        version=version,
        flag_table_version=a.flags.version,
        entrypoint=entry,
        warnings=tuple(warnings),
    )
