"""The one refusal policy: what is wrong with a spec, as a pure function of the spec, the fit check and the cluster's
GPU nodes. The validating webhook and the reconciler both run :func:`decide`, so a spec applied with the webhook
off shows in status exactly what the webhook would have said, and "admitted" means "renders".

It covers, in order: processorKwargs keys and values, attention heads vs tensor parallelism, whether the release
serves the model's architecture, node size (GPUs per pod vs the largest node of the product), whether the spec renders
to a ``vllm serve`` command for its release, and the GPU-memory fit. Schema errors come before it (pydantic, see
:func:`validation_message`). Each refusal names the field, the value and a fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from vlm_operator import fitcheck, gpus, inventory
from vlm_operator.api import VLMDeployment, VLMDeploymentSpec
from vlm_operator.models.facts import ModelFacts

if TYPE_CHECKING:
    from vlm_operator.estimator.from_spec import ModelLookup
    from vlm_operator.render.args import RenderedCommand

#: ``Decision.reason`` values (the reason of the ``Degraded``/``Stalled`` condition when the reconciler refuses).
REASON_INVALID = "InvalidSpec"
REASON_DOES_NOT_FIT = "DoesNotFit"
REASON_UNSERVED = "UnservedArchitecture"
REASON_NODE = "NoNodeLargeEnough"
#: A VLMPlatformProfile refuses the change (vlm_operator.profiles); the message names the profile and the rule.
REASON_PROFILE = "PlatformProfile"


def validation_message(exc: ValidationError) -> str:
    """Pydantic's errors as ``spec.field: message`` lines (the user's camelCase paths)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def engine_version_of(body: Mapping[str, Any]) -> str | None:
    """The vLLM release an object runs when its spec names none: the one recorded in ``status.engineVersion`` when
    the operator first reconciled it. An operator upgrade with a newer default therefore re-renders nothing; a user
    who wants the new release sets ``spec.engine.version``."""
    spec = body.get("spec")
    engine = spec.get("engine") if isinstance(spec, Mapping) else None
    if isinstance(engine, Mapping) and engine.get("version"):
        return str(engine["version"])
    recorded = (body.get("status") or {}).get("engineVersion")
    return str(recorded) if recorded else None


def parse(body: Mapping[str, Any]) -> VLMDeployment:
    """The VLMDeployment in ``body`` (as read from the API server or an admission request), with an unset
    ``spec.engine.version`` resolved by :func:`engine_version_of`. Raises pydantic's ``ValidationError``."""
    doc: dict[str, Any] = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
    spec, version = doc.get("spec"), engine_version_of(body)
    if isinstance(spec, Mapping) and version is not None:
        engine = spec.get("engine")
        if engine is None or isinstance(engine, Mapping):
            doc["spec"] = {**spec, "engine": {**(engine or {}), "version": version}}
    return VLMDeployment.model_validate(doc)


@dataclass(frozen=True)
class Decision:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    fit: fitcheck.FitOutcome | None = field(default=None)
    #: Why the first error refuses the spec (``REASON_*``); empty when allowed.
    reason: str = ""
    #: The rendered command when the spec renders (the reconciler uses it instead of rendering again).
    rendered: RenderedCommand | None = None

    @property
    def allowed(self) -> bool:
        return not self.errors

    @property
    def message(self) -> str:
        """All errors in one line, as the webhook returns them and status shows them."""
        return " | ".join(self.errors)


def with_policy(decision: Decision, refusals: Iterable[str], warnings: Iterable[str], reason: str) -> Decision:
    """``decision`` with a platform policy's refusals and warnings added (the webhook adds the VLMPlatformProfile
    verdict here, so one Decision carries every refusal and the message lists them all)."""
    refusals, warnings = tuple(refusals), tuple(warnings)
    if not refusals and not warnings:
        return decision
    return replace(
        decision,
        errors=decision.errors + refusals,
        warnings=decision.warnings + warnings,
        reason=decision.reason or (reason if refusals else ""),
    )


def decide(
    spec: VLMDeploymentSpec, max_gpus_per_node: Mapping[str, int] | None, model: ModelLookup | None = None
) -> Decision:
    """``max_gpus_per_node`` maps a GFD product name to the most allocatable GPUs one node of it has (empty or None
    when the inventory is unknown: node-size checks are skipped). ``model`` is the spec's model as the caller
    resolved it (:func:`~vlm_operator.estimator.from_spec.lookup_model`); resolved here, once, when None. The fit
    check gets the same facts: the model is never looked up twice."""
    from vlm_operator.api.processor_kwargs import check_processor_kwargs
    from vlm_operator.estimator import from_spec
    from vlm_operator.render import args as render_args

    max_gpus_per_node = max_gpus_per_node or {}
    errors: list[str] = []
    reasons: list[str] = []
    warnings: list[str] = []
    e = spec.engine

    def refuse(reason: str, message: str) -> None:
        errors.append(message)
        reasons.append(reason)

    if model is None:
        model = from_spec.lookup_model(spec)
    facts = model if isinstance(model, ModelFacts) else None
    if facts is not None:
        if spec.multimodal.processor_kwargs:
            for p in sorted(check_processor_kwargs(facts.family, spec.multimodal.processor_kwargs)):  # key order varies
                refuse(REASON_INVALID, f"spec.multimodal.{p}; fix: remove the key or use one of the known options")
        if e.enable_expert_parallel and not facts.text.is_moe:
            warnings.append(
                f"spec.engine.enableExpertParallel has no effect: {facts.model_id} is not a mixture-of-experts model"
            )
        from vlm_operator.estimator import EstimateRequest
        from vlm_operator.estimator.core import architecture_support

        served = architecture_support(EstimateRequest(model=facts, gpu=from_spec.gpu_for(spec), vllm_version=e.version))
        if served.refused:
            refuse(REASON_UNSERVED, f"spec.engine.version: {served.message}")
        elif served.message:
            warnings.append(served.message)
        heads = facts.num_attention_heads
        if heads and heads % e.tensor_parallel_size:
            divisors = [d for d in (1, 2, 4, 8, 16) if heads % d == 0]
            refuse(
                REASON_INVALID,
                f"spec.engine.tensorParallelSize: {e.tensor_parallel_size} does not divide the model's {heads} "
                f"attention heads; fix: use one of {divisors}",
            )

    per_pod = e.gpus_per_pod
    mig = spec.resources.gpu.mig_profile
    if spec.resources.gpu.product and mig and max_gpus_per_node:
        product = gpus.lookup(spec.resources.gpu.product).product
        if not max_gpus_per_node.get(inventory.mig_key(product, mig)):
            warnings.append(
                f"no {product} node offers {gpus.mig_resource(mig)} yet (GPU operator, mixed MIG strategy); pods will "
                "stay Pending until one does"
            )
    elif spec.resources.gpu.product and max_gpus_per_node:
        product = gpus.lookup(spec.resources.gpu.product).product
        most = max_gpus_per_node.get(product)
        if most is None:
            warnings.append(f"no node in the cluster has {product} GPUs yet; pods will stay Pending until one joins")
        elif per_pod > most:
            refuse(
                REASON_NODE,
                f"spec.engine: tensorParallelSize x pipelineParallelSize x dataParallelSize = {e.tensor_parallel_size}"
                f" x {e.pipeline_parallel_size} x {e.data_parallel_size} = {per_pod} GPUs per pod, but the largest "
                f"{product} node has {most}; fix: {_node_fix(spec, most)}",
            )

    rendered = None
    try:
        rendered = render_args.render_command(spec)
    except render_args.RenderError as exc:
        refuse(REASON_INVALID, f"{exc}; fix: {_render_fix(exc)}")
    else:
        warnings += list(rendered.warnings)

    fit = None
    if spec.fit_check != "Off" and not errors:
        fit = fitcheck.check(spec, max_gpus_per_node, model)
        warnings += list(fit.warnings)
        if fit.invalid is not None:
            refuse(REASON_INVALID, fit.invalid)
        elif fit.verdict == "DoesNotFit":
            if spec.fit_check == "Enforce":
                refuse(REASON_DOES_NOT_FIT, f"spec does not fit the GPU (fitCheck: Enforce): {fit.message}")
            else:
                warnings.append(f"fitCheck: Warn: {fit.message}")
        elif fit.verdict == "Unknown":
            if spec.fit_check_explicit and spec.fit_check == "Enforce":
                refuse(
                    REASON_DOES_NOT_FIT,
                    f"fitCheck: Enforce, but {fit.message}; fix: use a catalog model (vlmctl estimate --help), run "
                    "the operator with --hub so it can read the model's config from the Hub (apply again once a "
                    "slow lookup has finished), or set fitCheck: Warn",
                )
            else:
                warnings.append(f"FitsGPU will be Unknown: {fit.message}")
        elif fit.verdict == "Tight":
            warnings.append(f"fits with little room: {fit.message}")
    unique = tuple(dict.fromkeys(warnings))  # the estimator repeats the architecture warning
    return Decision(tuple(errors), unique, fit, reasons[0] if reasons else "", rendered)


def _node_fix(spec: VLMDeploymentSpec, most: int) -> str:
    e = spec.engine
    if e.data_parallel_size > 1 and e.gpus_per_engine <= most:
        return (
            f"set dataParallelSize 1 and scale out with scaling.replicas (one {e.gpus_per_engine}-GPU engine per pod "
            f"fits), or lower tensorParallelSize x pipelineParallelSize x dataParallelSize to {most}"
        )
    return f"lower the parallelism to {most} GPUs per pod or pick a product with larger nodes"


def _render_fix(exc: Exception) -> str:
    field_path = getattr(exc, "field", "")
    if str(field_path).startswith("engine.extraArgs"):
        return "remove the flag, or check its spelling against `vllm serve --help` of this release"
    if field_path == "engine.version":
        return "pick a release from docs/vllm-releases.md"
    return "unset the field or pick an engine.version that has the flag"
