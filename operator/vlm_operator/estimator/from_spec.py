"""Map a ``VLMDeploymentSpec`` (the pydantic API) onto the estimator's own :class:`EstimateRequest`.

The only estimator module that imports the API package; everything else takes the plain request. The model comes
from the built-in catalog (by ``spec.model.name``) or, when the operator was started with the Hub resolver
(``configure_hub``), from the Hub at ``spec.model.revision`` through ``spec.model.hfEndpoint``. A model neither knows
raises :class:`UnresolvedModel` with the reason, so callers can report "Unknown" instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlm_operator import gpus
from vlm_operator.api import VLMDeploymentSpec
from vlm_operator.estimator.request import GIB, EngineSettings, EstimateRequest, GPUSpec, MultimodalSettings
from vlm_operator.models import catalog
from vlm_operator.models.facts import ModelFacts

if TYPE_CHECKING:
    from vlm_operator.models.hub import HubResolver

#: used when the spec names neither a GPU product nor a minimum memory
DEFAULT_GPU = "H100"


class UnresolvedModel(LookupError):
    """The spec's model is not in the built-in catalog and the Hub resolver is off or could not resolve it."""


#: set by the operator when it runs with the Hub resolver (``VLM_OPERATOR_HUB=1``); None = catalog only
_hub: HubResolver | None = None


def configure_hub(resolver: HubResolver | None) -> None:
    """Let specs name models outside the catalog; their facts come from the Hub (cached)."""
    global _hub
    _hub = resolver


def hub_lookups_in_flight() -> int:
    """Hub lookups still running in the background (a fit check that gave up waiting reports Unknown until then)."""
    return 0 if _hub is None else _hub.lookups_in_flight()


@contextmanager
def using_hub(resolver: HubResolver | None) -> Iterator[None]:
    """``configure_hub`` for the duration of a block (the CLI's ``-f``), restoring what was there."""
    previous = _hub
    configure_hub(resolver)
    try:
        yield
    finally:
        configure_hub(previous)


def gpu_for(spec: VLMDeploymentSpec) -> GPUSpec:
    req = spec.resources.gpu
    if req.product:
        return GPUSpec.of(gpus.lookup(req.product), req.resolved_mig())
    if req.min_memory_gib:
        fitting = gpus.products_with_memory_at_least(int(req.min_memory_gib * 1024))
        if fitting:
            return GPUSpec.of(min(fitting, key=lambda p: p.memory_mib))
        return GPUSpec(f"{req.min_memory_gib} GiB GPU", int(req.min_memory_gib * GIB))
    return GPUSpec.of(gpus.lookup(DEFAULT_GPU))


def alternatives(spec: VLMDeploymentSpec | None = None) -> tuple[GPUSpec, ...]:
    """What a "larger GPU" recommendation may pick: every whole GPU, and for a MIG spec the product's other slices."""
    whole = tuple(GPUSpec.of(p) for p in gpus.GPU_PRODUCTS)
    if spec is None or spec.resources.gpu.resolved_mig() is None or not spec.resources.gpu.product:
        return whole
    p = gpus.lookup(spec.resources.gpu.product)
    return tuple(GPUSpec.of(p, m) for m in p.mig_profiles) + whole


def resolve_model(spec: VLMDeploymentSpec) -> ModelFacts:
    """Facts for the spec's model: the catalog first, then the Hub when configured; UnresolvedModel says why not."""
    try:
        return catalog.lookup(spec.model.name)
    except catalog.UnknownModelError:
        pass
    if _hub is None:
        raise UnresolvedModel(
            f"{spec.model.name!r} is not in the built-in model catalog (and the operator's Hub resolver is off)"
        )
    from vlm_operator.models.hub import HubError

    try:
        return _hub.resolve(spec.model.name, spec.model.revision, endpoint=spec.model.hf_endpoint)
    except HubError as exc:
        raise UnresolvedModel(str(exc)) from None


#: What resolving a spec's model gives: its facts, or why there are none. Callers resolve once (:func:`lookup_model`)
#: and pass the result to the refusal policy and the fit check, which never resolve it themselves.
ModelLookup = ModelFacts | UnresolvedModel


def lookup_model(spec: VLMDeploymentSpec) -> ModelLookup:
    """:func:`resolve_model` that returns the :class:`UnresolvedModel` instead of raising it."""
    try:
        return resolve_model(spec)
    except UnresolvedModel as exc:
        return exc


def model_facts_for(spec: VLMDeploymentSpec) -> ModelFacts | None:
    """Facts for the spec's model, or None when neither the catalog nor the Hub resolver knows it."""
    try:
        return resolve_model(spec)
    except UnresolvedModel:
        return None


def request_from_spec(
    spec: VLMDeploymentSpec, model: ModelLookup | None = None
) -> tuple[EstimateRequest, tuple[GPUSpec, ...]]:
    """The estimator request for ``spec`` and the GPUs a "larger GPU" recommendation may pick from. ``model`` is the
    spec's model as the caller resolved it (resolved here when None); an :class:`UnresolvedModel` is raised."""
    if isinstance(model, UnresolvedModel):
        raise model
    facts = model if model is not None else resolve_model(spec)
    e = spec.engine
    mm = spec.multimodal
    version = str(e.version)
    limits: dict[str, int] = {m: mm.effective_limit(m, version) for m in facts.modalities}  # type: ignore[arg-type]
    frames: int | None = None
    video_io = mm.media_io_kwargs.get("video") if mm.media_io_kwargs else None
    if isinstance(video_io, dict) and isinstance(video_io.get("num_frames"), int):
        frames = int(video_io["num_frames"])
    cache = mm.processor_cache
    request = EstimateRequest(
        model=facts,
        gpu=gpu_for(spec),
        engine=EngineSettings.taken_from(e),
        multimodal=MultimodalSettings(
            limit_per_prompt=limits,
            processor_kwargs=dict(mm.processor_kwargs or {}),
            encoder_tp_mode=mm.encoder_tp_mode,
            skip_mm_profiling=mm.skip_profiling,
            video_num_frames=frames,
            processor_cache_gb=cache.size_gib if cache is not None else None,
            processor_cache_type=(cache.type or "lru") if cache is not None else "lru",
        ),
        vllm_version=version,
    )
    return request, alternatives(spec)


def request_from_file(path: str, gpu: str | None = None) -> EstimateRequest:
    """``vlmctl estimate -f vlmd.yaml``: a VLMDeployment manifest (or a bare spec) from YAML."""
    import yaml

    from vlm_operator.api import VLMDeployment

    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a VLMDeployment manifest")
    spec_data = data.get("spec", data) if "kind" in data or "spec" in data else data
    spec = VLMDeployment.model_validate({"spec": spec_data}).spec
    try:
        req, _ = request_from_spec(spec)
    except UnresolvedModel as exc:
        raise ValueError(str(exc)) from None
    if gpu:
        from dataclasses import replace

        req = replace(req, gpu=GPUSpec.of(gpus.lookup(gpu)))
    return req
