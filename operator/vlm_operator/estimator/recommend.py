"""Ranked changes that make a spec fit (or give it headroom), each re-checked with the estimator.

Order (least disruptive first, as the issue asks): lower ``maxModelLen`` (never below what the image limit needs),
lower ``maxNumSeqs``, lower ``max_pixels``, fewer images per prompt, TP x2, an fp8 KV cache, a larger GPU.
Only candidates whose re-estimate fits are returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from vlm_operator.estimator import memory, tokens
from vlm_operator.estimator.core import Estimate, estimate
from vlm_operator.estimator.request import GIB, EstimateRequest, GPUSpec

#: "tight": fits, but fewer than this many max-length requests fit in the KV cache.
TIGHT_CONCURRENCY = 2.0


@dataclass(frozen=True)
class Recommendation:
    rank: int
    change: str
    #: the setting(s) changed, in VLMDeployment/vllm-serve terms
    settings: dict[str, Any]
    kv_cache_gib: float
    max_concurrency: float

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "change": self.change,
            "summary": f"{self.change} (KV {self.kv_cache_gib:.2f} GiB, {self.max_concurrency:.2f}x)",
            "settings": self.settings,
            "kv_cache_gib": round(self.kv_cache_gib, 3),
            "max_concurrency": round(self.max_concurrency, 2),
        }


def _try(req: EstimateRequest) -> Estimate | None:
    try:
        return estimate(req)
    except (memory.InputError, tokens.TokenError, ValueError):
        return None


def _fits(req: EstimateRequest) -> Estimate | None:
    e = _try(req)
    return e if e is not None and e.fits else None


def _largest_fitting(lo: int, hi: int, build: Callable[[int], EstimateRequest]) -> tuple[int, Estimate] | None:
    """Largest x in [lo, hi] whose request fits, assuming fit is monotone (smaller x never needs more memory)."""
    best: tuple[int, Estimate] | None = None
    first = _fits(build(lo))
    if first is None:
        return None
    best = (lo, first)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        e = _fits(build(mid))
        if e is not None:
            lo, best = mid, (mid, e)
        else:
            hi = mid - 1
    return best


def _candidates(
    base: Estimate, gpus: tuple[GPUSpec, ...], max_gpus_per_node: Mapping[str, int] | None = None
) -> Iterator[tuple[str, dict[str, Any], EstimateRequest]]:
    req = base.request
    r = base.resolved
    # the image item sets the floor; the profiled video of the Qwen/GLM families is sized from maxModelLen itself
    per_item = base.image_tokens_per_item
    item = per_item["image"] if "image" in per_item else max(per_item.values(), default=0)
    images = r.limits.get("image", 0)
    # "never below what the image limit needs": an explicit limit needs limit x worst item; vLLM's implicit
    # default (999) only promises one image per prompt.
    explicit = req.multimodal.limit_per_prompt.get("image") is not None
    floor_len = (min(images, 64) if explicit else min(images, 1)) * item + 256

    # 1. maxModelLen: the largest that fits, but never below what the image limit needs.
    if r.max_model_len > floor_len:
        found = _largest_fitting(floor_len, r.max_model_len - 1, lambda x: req.with_engine(max_model_len=x))
        if found is not None:
            n = found[0] // 256 * 256 if found[0] >= floor_len + 256 else found[0]
            yield f"lower maxModelLen to {n}", {"maxModelLen": n}, req.with_engine(max_model_len=n)
    # 2. maxNumSeqs (shrinks the sampler and the V1 encoder profiling batch).
    if r.max_num_seqs > 1:
        found = _largest_fitting(1, r.max_num_seqs - 1, lambda x: req.with_engine(max_num_seqs=x))
        if found is not None:
            yield f"lower maxNumSeqs to {found[0]}", {"maxNumSeqs": found[0]}, req.with_engine(max_num_seqs=found[0])
    # 3. max_pixels (Qwen-VL family and GLM-4.xV).
    if req.model.family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v") and images:
        unit = (req.model.vision.patch_size * req.model.vision.merge_size) if req.model.vision else 28
        current = tokens.merged_kwargs(req.model, r.processor_kwargs).get("max_pixels")
        size = tokens.merged_kwargs(req.model, r.processor_kwargs).get("size")
        if current is None and isinstance(size, dict):
            current = size.get("longest_edge")
        cur_units = int(current or unit * unit * 1280) // (unit * unit)
        if cur_units > 4:

            def with_px(units: int) -> EstimateRequest:
                kw = dict(r.processor_kwargs)
                kw.pop("size", None)
                kw["max_pixels"] = units * unit * unit
                return req.with_multimodal(processor_kwargs=kw)

            found = _largest_fitting(4, cur_units - 1, with_px)
            if found is not None:
                px = found[0] * unit * unit
                change = f"cap max_pixels at {px} (spec.multimodal.processorKwargs, --mm-processor-kwargs)"
                yield change, {"processorKwargs": {"max_pixels": px}}, with_px(found[0])
    # 4. images per prompt.
    if images > 1:
        cap = min(images - 1, 64)
        limits = dict(r.limits)

        def with_images(k: int) -> EstimateRequest:
            return req.with_multimodal(limit_per_prompt=dict(limits, image=k))

        found = _largest_fitting(1, cap, with_images)
        if found is not None:
            yield (
                f"limit images per prompt to {found[0]}",
                {"limitMmPerPrompt": {"image": found[0]}},
                with_images(found[0]),
            )
    # 4b. no videos, when a video sets the encoder profile (Qwen/GLM size the profiled video to fill maxModelLen).
    if r.limits.get("video", 0) > 0 and base.profile.modality == "video":
        no_video = req.with_multimodal(limit_per_prompt=dict(r.limits, video=0))
        yield "no videos per prompt (images only)", {"limitMmPerPrompt": {"video": 0}}, no_video
    # 5. more tensor parallelism on the same GPU: the smallest power-of-two multiple (up to 8) that fits.
    pp = max(1, req.engine.pipeline_parallel_size)

    def room(g: GPUSpec, tp: int) -> bool:
        """A pod of tp x pp GPUs fits on one node of ``g`` (unknown inventory: assume it does). A product the cluster
        lacks gets no "larger GPU" recommendation; the current product keeps its own warning."""
        if g.mig:
            return tp * pp == 1
        if not max_gpus_per_node:
            return True
        most = max_gpus_per_node.get(g.name)
        if most is None:
            return g.name == req.gpu.name
        return tp * pp <= most

    # wider TP that divides the heads (up to 8); on this GPU only as wide as its nodes allow
    more_tp = [t for t in (r.tp * 2, r.tp * 4, r.tp * 8) if t <= 8 and req.model.text.num_heads % t == 0]
    tps = [t for t in more_tp if room(req.gpu, t)]
    for tp in tps:
        cand = req.with_engine(tensor_parallel_size=tp)
        if _fits(cand) is not None or tp == tps[-1]:
            yield f"tensorParallelSize {tp}", {"tensorParallelSize": tp}, cand
            break
    # 6. fp8 KV cache.
    if not req.engine.kv_cache_dtype.lower().startswith("fp8") and req.gpu.compute_capability >= (8, 0):
        yield "fp8 KV cache", {"kvCacheDtype": "fp8"}, req.with_engine(kv_cache_dtype="fp8")
    # 7. a larger GPU: the smallest that fits, first at the current TP, then with more TP.
    larger = [g for g in sorted(gpus, key=lambda g: g.memory_bytes) if g.memory_bytes > req.gpu.memory_bytes]
    for tp in (r.tp, *more_tp):
        fitting = next(
            (g for g in larger if room(g, tp) and _fits(replace(req, gpu=g).with_engine(tensor_parallel_size=tp))),
            None,
        )
        if fitting is not None:
            cand = replace(req, gpu=fitting).with_engine(tensor_parallel_size=tp)
            if tp == r.tp:
                yield f"a larger GPU: {fitting.name}", {"gpu": fitting.name}, cand
            else:
                yield (
                    f"a larger GPU with more TP: {fitting.name}, tensorParallelSize {tp}",
                    {"gpu": fitting.name, "tensorParallelSize": tp},
                    cand,
                )
            break


#: a change to a spec that already fits must add at least this factor of concurrency to be worth listing
MIN_HEADROOM_GAIN = 1.05


def recommend(
    base: Estimate, gpus: tuple[GPUSpec, ...] = (), max_gpus_per_node: Mapping[str, int] | None = None
) -> tuple[Recommendation, ...]:
    """Ranked changes that fit, for a spec that does not fit or is tight; () when it fits comfortably.

    ``max_gpus_per_node`` (GPU short name -> the most GPUs one node of it has) keeps the list to what the cluster can
    schedule: no tensor parallelism wider than a node, no "larger GPU" the cluster does not have."""
    if base.fits and base.max_concurrency >= TIGHT_CONCURRENCY:
        return ()
    out: list[Recommendation] = []
    for change, settings, candidate in _candidates(base, gpus, max_gpus_per_node):
        e = _fits(candidate)
        if e is None:
            continue
        if base.fits and e.max_concurrency < base.max_concurrency * MIN_HEADROOM_GAIN:
            continue  # for a tight spec, only list changes that add real headroom (not 1.93x -> 1.94x)
        out.append(Recommendation(len(out) + 1, change, settings, max(e.kv_cache_bytes, 0.0) / GIB, e.max_concurrency))
    if not out and not base.fits:
        out = _pairs(base, gpus, max_gpus_per_node)
    return tuple(out)


#: settings that change where or how wide the engine runs; paired with one that changes what it holds
STRUCTURAL = frozenset({"tensorParallelSize", "kvCacheDtype", "gpu"})
MAX_PAIRS = 3


def _pairs(
    base: Estimate, gpus: tuple[GPUSpec, ...], max_gpus_per_node: Mapping[str, int] | None
) -> list[Recommendation]:
    """When no single change fits: one structural change (more TP, an fp8 KV cache, a larger GPU) plus the gentlest
    content change (maxModelLen, maxNumSeqs, max_pixels, images per prompt) found on top of it, each re-checked."""
    out: list[Recommendation] = []
    for change, settings, candidate in _candidates(base, gpus, max_gpus_per_node):
        if not set(settings) <= STRUCTURAL:
            continue
        inner = _try(candidate)
        if inner is None:
            continue
        for change2, settings2, candidate2 in _candidates(inner, gpus, max_gpus_per_node):
            if set(settings2) & STRUCTURAL:
                continue
            e = _fits(candidate2)
            if e is not None:
                merged = {**settings, **settings2}
                kv = max(e.kv_cache_bytes, 0.0) / GIB
                out.append(Recommendation(len(out) + 1, f"{change} and {change2}", merged, kv, e.max_concurrency))
                break
        if len(out) >= MAX_PAIRS:
            break
    return out


def estimate_with_recommendations(
    req: EstimateRequest, gpus: tuple[GPUSpec, ...] = (), max_gpus_per_node: Mapping[str, int] | None = None
) -> Estimate:
    base = estimate(req)
    return replace(base, recommendations=recommend(base, gpus, max_gpus_per_node))
