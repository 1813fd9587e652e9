"""Moved to :mod:`vlm_operator.releases` (the one model of each vLLM release); this path stays for callers that
still import it. ``Version`` here is the release tuple ``(major, minor, patch)``; every function of
:mod:`vlm_operator.releases` accepts it."""

from __future__ import annotations

from vlm_operator.releases import (
    cuda_graphs_in_budget,
    default_api_server_count,
    default_engine,
    default_gpu_memory_utilization,
    default_limit_per_prompt,
    default_max_num_batched_tokens,
    default_max_num_seqs,
    engine_for,
    hybrid_allocator,
    mm_cache_default_gb,
    reports_tokens_as_concurrency,
    v1_sampler_path,
    v1_snapshot_after_distributed_init,
)
from vlm_operator.releases import parse_version as _parse

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """``0.8.5``, ``v0.10.1.1``, ``0.11.0rc1`` -> (0, 8, 5) ... Raises ``ValueError`` on anything else."""
    return _parse(text).release


__all__ = [
    "Version",
    "cuda_graphs_in_budget",
    "default_api_server_count",
    "default_engine",
    "default_gpu_memory_utilization",
    "default_limit_per_prompt",
    "default_max_num_batched_tokens",
    "default_max_num_seqs",
    "engine_for",
    "hybrid_allocator",
    "mm_cache_default_gb",
    "parse_version",
    "reports_tokens_as_concurrency",
    "v1_sampler_path",
    "v1_snapshot_after_distributed_init",
]
