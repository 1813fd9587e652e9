"""Pure GPU-memory estimator for vLLM serving VLMs: weights, activations, KV cache, verdict and recommendations.

No kopf/kubernetes imports and no clock: every function here is arithmetic over an :class:`EstimateRequest`.
"""

from vlm_operator.estimator.core import Estimate, estimate
from vlm_operator.estimator.request import EngineSettings, EstimateRequest, GPUSpec, MultimodalSettings

__all__ = ["EngineSettings", "Estimate", "EstimateRequest", "GPUSpec", "MultimodalSettings", "estimate"]
