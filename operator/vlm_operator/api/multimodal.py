"""``spec.multimodal``: every setting of vLLM's MultiModalConfig, typed, plus the pre-0.5.1 ``--image-*`` flags.

What an unset ``limitPerPrompt`` modality means
    It means what vLLM does when ``--limit-mm-per-prompt`` does not name the modality: 999 items per prompt on the
    V1 engine from ~v0.8.4 (#15799), 1 before (and 1 with no flag at all before v0.5.5). vLLM V1 profiles the
    modality whose single item costs the most tokens, so a silent 999 is what makes a harmless-looking spec crash
    at start-up. :meth:`LimitPerPrompt.effective` returns that number for a version, the estimator sizes memory
    with it, and the renderer writes it into the arguments explicitly for each modality the model supports, so
    the rendered command, the estimate and ``status.effectiveArgs`` always agree and an engine upgrade that changes
    vLLM's default cannot change a running deployment behind the user's back.

Legacy (vLLM 0.4.0–0.5.0)
    The first VLM support fixed the image input with four flags. ``legacy`` holds them and is exclusive with every
    modern field: a spec is either for the old engine or the new one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from vlm_operator.releases import default_limit_per_prompt

from ._base import ApiModel, CelRule, LongStr, MediumStr, ShortStr

Modality = Literal["image", "video", "audio"]
MODALITIES: tuple[Modality, ...] = ("image", "video", "audio")

Count = Annotated[int, Field(ge=0, le=10_000)]
Pixels = Annotated[int, Field(ge=1, le=65_536)]


class ImageLimit(ApiModel):
    """Images per prompt, and optionally the largest image size to profile with."""

    count: Count = 1
    """Most images in one prompt. 0 disables the modality (a text-only prompt path; when every modality is 0
    vLLM skips the vision encoder)."""
    width: Pixels | None = None
    """Width of the dummy images vLLM profiles with (v0.11.1+). Only shrinks the profiling input; a larger
    request image still costs its full token count at run time. Unset means the model's worst case."""
    height: Pixels | None = None
    """Height of the dummy images vLLM profiles with (v0.11.1+); see ``width``."""


class VideoLimit(ApiModel):
    """Videos per prompt, and optionally the frame count and frame size to profile with."""

    count: Count = 1
    """Most videos in one prompt. Set 0 on models whose video worst case dominates profiling (Qwen2-VL family)
    unless videos are really served."""
    num_frames: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """Frames per dummy video vLLM profiles with (v0.11.1+, key ``num_frames``); unset means the model's worst
    case."""
    width: Pixels | None = None
    """Frame width of the dummy videos (v0.11.1+)."""
    height: Pixels | None = None
    """Frame height of the dummy videos (v0.11.1+)."""


class AudioLimit(ApiModel):
    """Audio clips per prompt, and optionally the clip length to profile with."""

    count: Count = 1
    """Most audio clips in one prompt."""
    length: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    """Length of the dummy clips vLLM profiles with, in samples (v0.11.1+); unset means the model's worst case."""


class LimitPerPrompt(ApiModel):
    """Most items of each modality one prompt may carry (``--limit-mm-per-prompt``). An unset modality takes
    vLLM's default for the engine version: 999 in V1 from v0.8.4, 1 before. The operator renders that number
    explicitly and the estimator sizes memory with it."""

    image: ImageLimit | None = None
    """Images per prompt; unset means vLLM's default for the version (999 from v0.8.4)."""
    video: VideoLimit | None = None
    """Videos per prompt; unset means vLLM's default for the version (999 from v0.8.4)."""
    audio: AudioLimit | None = None
    """Audio clips per prompt; unset means vLLM's default for the version (999 from v0.8.4)."""

    def effective(self, modality: Modality, version: str) -> int:
        """The per-prompt limit vLLM enforces for ``modality`` at ``version``: the set count or vLLM's default."""
        item: ImageLimit | VideoLimit | AudioLimit | None = getattr(self, modality)
        return item.count if item is not None else default_limit_per_prompt(version)

    def has_size_hints(self) -> bool:
        """Whether any modality sets a profiling size (the rich form, v0.11.1+)."""
        fields = ("width", "height", "num_frames", "length")
        return any(
            getattr(item, f, None) is not None for item in (self.image, self.video, self.audio) for f in fields if item
        )

    def to_vllm(self) -> dict[str, Any]:
        """The JSON value for ``--limit-mm-per-prompt`` (rich form where size hints are set), set modalities only."""
        out: dict[str, Any] = {}
        for modality in MODALITIES:
            item: ImageLimit | VideoLimit | AudioLimit | None = getattr(self, modality)
            if item is None:
                continue
            hints = item.model_dump(by_alias=False, exclude_none=True)
            out[modality] = hints if len(hints) > 1 else item.count
        return out


_SHM_OBJECT_NEEDS_SHM = CelRule(
    rule="!has(self.shmMaxObjectSizeMiB) || (has(self.type) && self.type == 'shm')",
    message="processorCache.shmMaxObjectSizeMiB applies only with type: shm",
    field_path=".shmMaxObjectSizeMiB",
)


class ProcessorCache(ApiModel):
    """The multimodal processor cache: preprocessed items kept in host RAM so repeated images skip the processor.
    Each API server process and each engine core keeps its own copy, so it costs
    ``sizeGiB x (apiServerCount + dataParallelSize)`` of container memory; with ``shm`` it is one shared ring buffer
    in ``/dev/shm``."""

    __cel__ = (_SHM_OBJECT_NEEDS_SHM,)

    size_gib: float | None = Field(default=None, ge=0, le=1024, alias="sizeGiB")
    """Cache size in GiB per process (``--mm-processor-cache-gb``, v0.10.2+; ``VLLM_MM_INPUT_CACHE_GIB`` before).
    0 disables it. Unset means vLLM's default, 4 GiB."""
    type: Literal["lru", "shm"] | None = None
    """``lru``: a cache per process; ``shm``: one shared-memory ring buffer (``--mm-processor-cache-type``,
    v0.11.0+). Unset means ``lru``."""
    shm_max_object_size_mib: int | None = Field(default=None, ge=1, le=65_536, alias="shmMaxObjectSizeMiB")
    """Largest single item the shm cache stores, in MiB (``--mm-shm-cache-max-object-size-mb``, v0.11.0+; vLLM's
    default 128). Only with ``type: shm``."""

    @model_validator(mode="after")
    def _check(self) -> ProcessorCache:
        if self.shm_max_object_size_mib is not None and self.type != "shm":
            raise _SHM_OBJECT_NEEDS_SHM.error()
        return self


class MediaFetch(ApiModel):
    """Limits on fetching media from URLs in requests. vLLM downloads every ``image_url``/``video_url`` a client
    sends, from inside the cluster: without limits that is a server-side request forgery surface."""

    allowed_domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )
    """Host names media URLs may point at (``--allowed-media-domains``); empty means any host."""
    allowed_local_media_path: LongStr | None = None
    """A directory in the container that ``file://`` media URLs may read (``--allowed-local-media-path``); unset
    means local files are refused."""
    timeout_seconds: int | None = Field(default=None, ge=1, le=3600)
    """Timeout for one media download, applied to images, videos and audio (``VLLM_IMAGE_FETCH_TIMEOUT``,
    ``VLLM_VIDEO_FETCH_TIMEOUT``, ``VLLM_AUDIO_FETCH_TIMEOUT``); unset keeps vLLM's defaults (5 s, 30 s, 10 s)."""


#: The vision tower patch size the legacy feature-size check assumes: CLIP ViT-L/14, the tower of LLaVA-1.5, the
#: model the 0.4.x/0.5.0 ``--image-*`` flags were designed around (vllm@114332b88:docs/source/models/vlm.rst).
LEGACY_PATCH_SIZE = 14

_LEGACY_INPUTS_TOGETHER = CelRule(
    rule="has(self.imageInputType) == has(self.imageTokenId) && has(self.imageTokenId) == has(self.imageInputShape) "
    "&& has(self.imageInputShape) == has(self.imageFeatureSize)",
    message="legacy imageInputType, imageTokenId, imageInputShape and imageFeatureSize are set together",
)
_LEGACY_PIXEL_SHAPE = CelRule(
    rule="!has(self.imageInputType) || !has(self.imageInputShape) || self.imageInputType != 'pixel_values' || "
    "size(self.imageInputShape) == 4",
    message="legacy imageInputShape for pixel_values has four dimensions: batch, channels, height, width",
    field_path=".imageInputShape",
    value=("got %d", "size(self.imageInputShape)"),
)
_LEGACY_FEATURE_SIZE = CelRule(
    rule="!has(self.imageInputShape) || !has(self.imageFeatureSize) || size(self.imageInputShape) != 4 || "
    "self.imageInputShape[2] != self.imageInputShape[3] || "
    f"(self.imageInputShape[2] % {LEGACY_PATCH_SIZE} == 0 && self.imageFeatureSize == "
    f"(self.imageInputShape[2] / {LEGACY_PATCH_SIZE}) * (self.imageInputShape[3] / {LEGACY_PATCH_SIZE}))",
    message=f"legacy imageFeatureSize must equal (H/{LEGACY_PATCH_SIZE})² for a square imageInputShape "
    "(576 for 1,3,336,336)",
    field_path=".imageFeatureSize",
    value=("got %d for H %d", "self.imageFeatureSize", "self.imageInputShape[2]"),
)
_LEGACY_EMBED_SHAPE = CelRule(
    rule="!has(self.imageInputType) || !has(self.imageInputShape) || !has(self.imageFeatureSize) || "
    "self.imageInputType != 'image_features' || "
    "(size(self.imageInputShape) == 3 && self.imageInputShape[1] == self.imageFeatureSize)",
    message="legacy imageInputShape for image_features is batch, imageFeatureSize, hidden size",
    field_path=".imageInputShape",
)


class LegacyImageInput(ApiModel):
    """The image flags of vLLM 0.4.0–0.5.0 (removed in 0.5.1, #5852/#6089). The OpenAI server of 0.4.x accepted
    no images at all; 0.5.0 served one image per prompt, resized to the fixed ``imageInputShape``."""

    __cel__ = (_LEGACY_INPUTS_TOGETHER, _LEGACY_PIXEL_SHAPE, _LEGACY_FEATURE_SIZE, _LEGACY_EMBED_SHAPE)

    image_input_type: Literal["pixel_values", "image_features"] | None = None
    """What the model receives (``--image-input-type``): raw ``pixel_values`` or precomputed ``image_features``."""
    image_token_id: int | None = Field(default=None, ge=0, le=10_000_000)
    """Id of the image placeholder token (``--image-token-id``); 32000 for LLaVA-1.5."""
    image_input_shape: list[Annotated[int, Field(ge=1, le=100_000)]] | None = Field(
        default=None, min_length=3, max_length=4
    )
    """Input shape (``--image-input-shape``, rendered comma-joined): ``[1, 3, 336, 336]`` (batch, channels, height,
    width) for ``pixel_values``, or ``[1, 576, 1024]`` (batch, features, hidden size) for ``image_features``."""
    image_feature_size: int | None = Field(default=None, ge=1, le=1_000_000)
    """Image tokens per image (``--image-feature-size``). For a square ``pixel_values`` shape it must be
    (H/14)², the patch count of a ViT-L/14 tower: 576 for 336x336."""
    image_processor: MediumStr | None = None
    """Hugging Face image processor to use (``--image-processor``, 0.5.0 only); unset means the model's."""
    image_processor_revision: ShortStr | None = None
    """Revision of ``imageProcessor`` (``--image-processor-revision``, 0.5.0 only)."""
    disable_image_processor: bool | None = None
    """Skip the image processor (``--disable-image-processor``, 0.5.0 only; the 0.5.0 docs misspell it as
    ``--no-image-processor``)."""

    @property
    def has_image_input(self) -> bool:
        return self.image_input_type is not None

    def rendered_shape(self) -> str | None:
        """``imageInputShape`` as vLLM 0.4/0.5 parses it: ``1,3,336,336``."""
        return None if self.image_input_shape is None else ",".join(str(d) for d in self.image_input_shape)

    @model_validator(mode="after")
    def _check(self) -> LegacyImageInput:
        present = {
            x is not None
            for x in (self.image_input_type, self.image_token_id, self.image_input_shape, self.image_feature_size)
        }
        if len(present) != 1:
            raise _LEGACY_INPUTS_TOGETHER.error()
        shape = self.image_input_shape
        if self.image_input_type is None or shape is None:
            return self
        if self.image_input_type == "pixel_values":
            if len(shape) != 4:
                raise _LEGACY_PIXEL_SHAPE.error(f"got {len(shape)}")
            h, w = shape[2], shape[3]
            p = LEGACY_PATCH_SIZE
            if h == w and (h % p != 0 or self.image_feature_size != (h // p) * (w // p)):
                raise _LEGACY_FEATURE_SIZE.error(f"got {self.image_feature_size} for H {h}")
        elif len(shape) != 3 or shape[1] != self.image_feature_size:
            raise _LEGACY_EMBED_SHAPE.error()
        return self


#: camelCase names of the modern fields that never mix with ``legacy``.
MODERN_FIELDS: tuple[str, ...] = (
    "limitPerPrompt",
    "processorKwargs",
    "mediaIoKwargs",
    "processorCache",
    "encoderTPMode",
    "interleaveStrings",
    "skipProfiling",
    "videoPruningRate",
    "enableEmbeds",
)

_LEGACY_EXCLUSIVE = CelRule(
    rule="!has(self.legacy) || !(" + " || ".join(f"has(self.{f})" for f in MODERN_FIELDS) + ")",
    message="multimodal.legacy (vLLM 0.4.0–0.5.0) cannot be combined with " + ", ".join(MODERN_FIELDS),
    field_path=".legacy",
    value=(
        "set: %s",
        "[" + ", ".join(f"has(self.{f}) ? '{f}' : ''" for f in MODERN_FIELDS) + "].filter(n, n != '')[0]",
    ),
)


class MultimodalSpec(ApiModel):
    """Multimodal engine settings: vLLM's MultiModalConfig, media fetch limits, and the legacy image flags."""

    __cel__ = (_LEGACY_EXCLUSIVE,)

    limit_per_prompt: LimitPerPrompt | None = None
    """Most images, videos and audio clips per prompt, each with optional profiling sizes
    (``--limit-mm-per-prompt``). An unset modality means vLLM's default for ``engine.version``: 999 in V1 from
    v0.8.4, 1 before. The operator renders that number explicitly and the fit check assumes it."""
    processor_kwargs: dict[str, Any] = Field(
        default_factory=dict, max_length=32, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Keyword arguments for the model's Hugging Face processor (``--mm-processor-kwargs``, v0.6.2+), e.g.
    ``{max_pixels: 1003520}`` for Qwen2.5-VL or ``{num_crops: 4}`` for Phi-3.5-vision. They change the tokens per
    image and so the memory estimate. Keys are checked against the model family at admission."""
    media_io_kwargs: dict[str, Any] = Field(
        default_factory=dict, max_length=8, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Options for the media loaders, keyed by modality (``--media-io-kwargs``, v0.10.0+), e.g.
    ``{video: {num_frames: 40}}``; vLLM's video loader reads 32 frames by default."""
    processor_cache: ProcessorCache | None = None
    """The multimodal processor cache in host RAM; unset means vLLM's default (4 GiB, ``lru``)."""
    encoder_tp_mode: Literal["weights", "data"] = Field(default="weights", alias="encoderTPMode")
    """How the vision encoder uses tensor parallelism (``--mm-encoder-tp-mode``, v0.10.2+; ``data`` also as
    ``--enable-multimodal-encoder-data-parallel`` from v0.9.1): ``weights`` shards its weights across the TP ranks;
    ``data`` keeps a full copy on every rank and splits the image batch instead, trading GPU memory for speed."""
    interleave_strings: bool = False
    """Keep text and media in the order the request gives them (``--interleave-mm-strings``, v0.10.0+). Needs
    ``engine.chatTemplateContentFormat: string``."""
    skip_profiling: bool = False
    """Skip profiling the encoder and encoder cache at start-up (``--skip-mm-profiling``, v0.10.2+). vLLM then no
    longer guards the encoder's peak memory; the operator's fit check still counts it."""
    video_pruning_rate: float | None = Field(default=None, ge=0, lt=1)
    """Fraction of video tokens to prune (``--video-pruning-rate``, v0.11.0+, EVS), in [0, 1); unset means none."""
    enable_embeds: bool = False
    """Accept precomputed ``*_embeds`` inputs (``--enable-mm-embeds``, v0.11.1+)."""
    media_fetch: MediaFetch | None = None
    """Limits on downloading media from request URLs (SSRF protection)."""
    legacy: LegacyImageInput | None = None
    """The ``--image-*`` flags of vLLM 0.4.0–0.5.0. Only with such an ``engine.version``, and never together with
    the modern fields above."""

    def uses_modern_fields(self) -> list[str]:
        """camelCase names of the modern fields the user set."""
        out = []
        for name, info in type(self).model_fields.items():
            alias = info.alias or name
            if alias in MODERN_FIELDS and self.is_set(name):
                out.append(alias)
        return out

    def effective_limit(self, modality: Modality, version: str) -> int:
        """Items of ``modality`` one prompt may carry at ``version``, unset meaning vLLM's default."""
        if self.limit_per_prompt is None:
            return default_limit_per_prompt(version)
        return self.limit_per_prompt.effective(modality, version)

    @model_validator(mode="after")
    def _check(self) -> MultimodalSpec:
        if self.legacy is not None and self.uses_modern_fields():
            raise _LEGACY_EXCLUSIVE.error(f"set: {self.uses_modern_fields()[0]}")
        return self
