"""What the validating webhook decides, as a pure function of the spec, the fit check and the cluster's GPU nodes.

The webhook (handlers) only gathers the node inventory and turns the result into an admission response. The same
fit check runs in the reconciler, so a spec that was admitted with ``fitCheck: Warn`` and one that was refused say
the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vlm_operator import fitcheck, gpus, inventory
from vlm_operator.api import VLMDeploymentSpec


@dataclass(frozen=True)
class Decision:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    fit: fitcheck.FitOutcome | None = field(default=None)

    @property
    def allowed(self) -> bool:
        return not self.errors


def decide(spec: VLMDeploymentSpec, max_gpus_per_node: Mapping[str, int]) -> Decision:
    """``max_gpus_per_node`` maps a GFD product name to the most allocatable GPUs one node of it has."""
    from vlm_operator.api.processor_kwargs import FAMILY_BY_ARCHITECTURE, check_processor_kwargs
    from vlm_operator.estimator import from_spec

    errors: list[str] = []
    warnings: list[str] = []
    e = spec.engine

    facts = from_spec.model_facts_for(spec)
    if facts is not None:
        family = FAMILY_BY_ARCHITECTURE.get(facts.architecture)
        if spec.multimodal.processor_kwargs and family:
            errors += [
                f"spec.multimodal.{p}; fix: remove the key or use one of the known options"
                for p in check_processor_kwargs(family, spec.multimodal.processor_kwargs)
            ]
        if e.enable_expert_parallel and not facts.text.is_moe:
            warnings.append(
                f"spec.engine.enableExpertParallel has no effect: {facts.model_id} is not a mixture-of-experts model"
            )
        heads = facts.num_attention_heads
        if heads and heads % e.tensor_parallel_size:
            divisors = [d for d in (1, 2, 4, 8, 16) if heads % d == 0]
            errors.append(
                f"spec.engine.tensorParallelSize: {e.tensor_parallel_size} does not divide the model's {heads} "
                f"attention heads; fix: use one of {divisors}"
            )

    per_pod = e.tensor_parallel_size * e.pipeline_parallel_size
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
            errors.append(
                f"spec.engine: tensorParallelSize x pipelineParallelSize = {per_pod} GPUs per pod, but the largest "
                f"{product} node has {most}; fix: lower the parallelism to {most} or pick a product with larger nodes"
            )

    fit = None
    if spec.fit_check != "Off" and not errors:
        fit = fitcheck.check(spec, max_gpus_per_node)
        warnings += list(fit.warnings)
        if fit.verdict == "DoesNotFit":
            if spec.fit_check == "Enforce":
                errors.append(f"spec does not fit the GPU (fitCheck: Enforce): {fit.message}")
            else:
                warnings.append(f"fitCheck: Warn: {fit.message}")
        elif fit.verdict == "Unknown":
            if spec.fit_check_explicit and spec.fit_check == "Enforce":
                errors.append(
                    f"fitCheck: Enforce, but {fit.message}; fix: use a catalog model (vlmctl estimate --help), run "
                    "the operator with --hub so it can read the model's config from the Hub (apply again once a "
                    "slow lookup has finished), or set fitCheck: Warn"
                )
            else:
                warnings.append(f"FitsGPU will be Unknown: {fit.message}")
        elif fit.verdict == "Tight":
            warnings.append(f"fits with little room: {fit.message}")
    return Decision(tuple(errors), tuple(warnings), fit)
