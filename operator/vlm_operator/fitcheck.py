"""The fit check that both the admission webhook and the reconciler run, so they can never disagree.

It maps a spec to an estimator request, runs the estimator with its recommendations, and phrases the verdict the
way status, events and admission messages show it. Pure: no API calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vlm_operator import gpus
from vlm_operator.api import VLMDeploymentSpec

if TYPE_CHECKING:
    from vlm_operator.estimator.from_spec import ModelLookup

GIB = 1024**3
#: Below this much KV headroom (in maxModelLen sequences) a fitting spec is reported as Tight.
TIGHT_CONCURRENCY = 2.0

Verdict = Literal["Fits", "Tight", "DoesNotFit", "Unknown"]


@dataclass(frozen=True)
class FitOutcome:
    verdict: Verdict
    message: str
    #: status.estimate fields (camelCase, as the CRD names them)
    summary: dict[str, Any] = field(default_factory=dict)
    recommendations: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: figures the renderer needs
    weights_gib_per_replica: float | None = None
    host_memory_bytes: int | None = None
    shm_bytes: int | None = None
    #: A refusal (``spec.<field>: <problem>; fix: ...``) when the estimator found a setting vLLM would reject
    #: (min_pixels > max_pixels, batched tokens below maxModelLen, ...); the verdict is then Unknown.
    invalid: str | None = None

    @property
    def resolved(self) -> bool:
        return self.verdict != "Unknown"


def gpu_label(spec: VLMDeploymentSpec, n: int) -> str:
    req = spec.resources.gpu
    if req.product and req.mig_profile:
        return f"{n}x {gpus.lookup(req.product).product} MIG {req.mig_profile}"
    if req.product:
        return f"{n}x {gpus.lookup(req.product).product}"
    if req.min_memory_gib:
        return f"{n}x >={req.min_memory_gib}GiB"
    return f"{n}x GPU"


def check(
    spec: VLMDeploymentSpec, max_gpus_per_node: Mapping[str, int] | None = None, model: ModelLookup | None = None
) -> FitOutcome:
    """Estimate ``spec`` on its GPU and phrase the verdict with its figures and the best fix.

    ``model`` is the spec's model as the caller resolved it (:func:`~vlm_operator.estimator.from_spec.lookup_model`);
    only when it is None (``vlmctl render``, tests) is it resolved here. ``max_gpus_per_node`` (GFD product name ->
    the most allocatable GPUs one node of it has; empty or None when unknown)
    keeps the recommended fixes to what the cluster can schedule."""
    from vlm_operator.estimator import from_spec
    from vlm_operator.estimator.recommend import estimate_with_recommendations

    try:
        req, alternatives = from_spec.request_from_spec(spec, model)
    except from_spec.UnresolvedModel as exc:
        return FitOutcome("Unknown", f"the fit check could not resolve the model: {exc}")
    from vlm_operator.estimator.core import check_architecture
    from vlm_operator.estimator.memory import InputError
    from vlm_operator.estimator.tokens import TokenError

    try:
        served = check_architecture(req)
    except InputError as exc:
        return FitOutcome(
            "Unknown", f"the estimator cannot size this spec: {exc}", invalid=f"spec.engine.version: {exc}"
        )
    try:
        est = estimate_with_recommendations(req, alternatives, _by_short_name(max_gpus_per_node))
    except (InputError, TokenError) as exc:
        message = f"the estimator cannot size this spec: {exc}"
        return FitOutcome("Unknown", message, invalid=_as_refusal(exc))
    j = est.to_json()
    n_gpus = spec.engine.gpus_per_engine  # the weights are per engine; its data-parallel copies load the same files
    recs = tuple(_phrase(r) for r in j.get("recommendations", []))
    summary: dict[str, Any] = {
        "gpu": req.gpu.name,
        "gpuMemoryGiB": round(req.gpu.memory_bytes / GIB, 2),
        "weightsGiB": j["weights_gib"],
        "activationGiB": j["activation_gib"],
        "kvCacheGiB": j["kv_cache_gib"],
        "kvCacheTokens": max(0, int(j["kv_cache_tokens"])),
        "maxConcurrency": max(0.0, float(j["max_concurrency"])),
        "hostMemoryGiB": j["details"]["host_memory_gib"],
    }
    if j["image_tokens_per_item"].get("image") is not None:
        summary["tokensPerImage"] = int(j["image_tokens_per_item"]["image"])
    figures = (
        f"on {req.gpu.name} ({req.gpu.memory_bytes / GIB:.1f} GiB): weights {j['weights_gib']:.2f} GiB, "
        f"activations {j['activation_gib']:.2f} GiB, non-torch {j['non_torch_gib']:.2f} GiB, "
        f"CUDA graphs {j['cuda_graph_gib']:.2f} GiB, KV cache {j['kv_cache_gib']:.2f} GiB "
        f"= {j['kv_cache_tokens']} tokens, max concurrency {j['max_concurrency']:.2f} at maxModelLen "
        f"{j['details']['max_model_len']}"
    )
    if est.fits:
        tight = est.max_concurrency < TIGHT_CONCURRENCY
        verdict: Verdict = "Tight" if tight else "Fits"
        message = f"{verdict.lower()}: {figures}"
    else:
        verdict = "DoesNotFit"
        why = "; ".join(est.reasons) or "the KV cache cannot hold one maxModelLen sequence"
        message = f"does not fit: {why}. Estimate {figures}."
        none = " No change or pair of changes found that fits; use a larger GPU or more TP."
        message += f" Fix: {recs[0]}" if recs else none
    if len(recs) > 1:
        message += " Other fixes: " + "; ".join(recs[1:4])
    host = est.host_memory_bytes
    return FitOutcome(
        verdict,
        message,
        summary,
        recs,
        tuple(([served] if served else []) + list(est.warnings)),
        weights_gib_per_replica=float(j["weights_gib"]) * max(1, n_gpus),
        host_memory_bytes=math.ceil(host) if host else None,
        shm_bytes=math.ceil(est.shm_bytes) if est.shm_bytes else None,
    )


#: Estimator setting names (as its errors spell them) -> the spec field a user sets.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("min_pixels", "spec.multimodal.processorKwargs"),
    ("max_pixels", "spec.multimodal.processorKwargs"),
    ("dynamic_patch", "spec.multimodal.processorKwargs"),
    ("num_crops", "spec.multimodal.processorKwargs"),
    ("mm processor kwarg", "spec.multimodal.processorKwargs"),
    ("tensor_parallel_size", "spec.engine.tensorParallelSize"),
    ("pipeline_parallel_size", "spec.engine.pipelineParallelSize"),
    ("data_parallel_size", "spec.engine.dataParallelSize"),
    ("max_num_batched_tokens", "spec.engine.maxNumBatchedTokens"),
    ("max_num_seqs", "spec.engine.maxNumSeqs"),
    ("max_model_len", "spec.engine.maxModelLen"),
    ("block_size", "spec.engine.blockSize"),
    ("gpu_memory_utilization", "spec.engine.gpuMemoryUtilization"),
    ("limit_mm_per_prompt", "spec.multimodal.limitPerPrompt"),
    ("input", "spec.multimodal.limitPerPrompt"),
    ("takes no", "spec.multimodal.limitPerPrompt"),
    ("mm_processor_cache_gb", "spec.multimodal.processorCache.sizeGiB"),
    ("encoder TP mode", "spec.multimodal.encoderTPMode"),
    ("frame", "spec.multimodal.mediaIOKwargs"),
)


def _as_refusal(exc: Exception) -> str | None:
    """The estimator's complaint as a refusal naming the spec field, or None when it is the estimator's own limit
    (a dtype or quantization it does not model: vLLM may still accept it, so that stays a warning)."""
    text = str(exc)
    if text.startswith("unsupported"):
        return None
    for word, path in _FIELDS:
        if word in text:
            return f"{path}: {text}; fix: correct the value so vLLM can start"
    return f"spec: {text}; fix: correct the setting so vLLM can start"


def _by_short_name(inventory: Mapping[str, int] | None) -> dict[str, int] | None:
    """The estimator names GPUs by the GPU table's short names; the cluster by GFD product names."""
    if not inventory:
        return None
    out: dict[str, int] = {}
    for product, n in inventory.items():
        try:
            short = gpus.lookup(product).short_name
        except gpus.UnknownGPUError:
            continue
        out[short] = max(out.get(short, 0), n)
    return out


def _phrase(rec: dict[str, Any]) -> str:
    text = rec.get("summary") or rec.get("description") or rec.get("text")
    if text:
        return str(text)
    return ", ".join(f"{k}={v}" for k, v in sorted(rec.items()))
