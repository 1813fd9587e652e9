"""Moved to :mod:`vlm_operator.releases` (the one model of each vLLM release); this path stays for callers that
still import it."""

from vlm_operator.releases import (
    DEFAULT_IMAGE_REPOSITORY,
    DEFAULT_VLLM_VERSION,
    MIN_VLLM_VERSION,
    VERSION_PATTERN,
    VllmVersion,
    default_api_server_count,
    default_gpu_memory_utilization,
    default_image,
    default_limit_per_prompt,
    default_processor_cache_gib,
    is_v1_default,
)

__all__ = [
    "DEFAULT_IMAGE_REPOSITORY",
    "DEFAULT_VLLM_VERSION",
    "MIN_VLLM_VERSION",
    "VERSION_PATTERN",
    "VllmVersion",
    "default_api_server_count",
    "default_gpu_memory_utilization",
    "default_image",
    "default_limit_per_prompt",
    "default_processor_cache_gib",
    "is_v1_default",
]
