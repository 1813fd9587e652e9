"""Estimator throughput, `vlmctl estimate` cold start, and the Hub resolver against a fake Hub on loopback.

Run: ``.venv/bin/python benchmarks/estimator.py`` (prints a table; no arguments).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def estimates_per_second(model: str, seconds: float = 1.0) -> float:
    from vlm_operator import gpus
    from vlm_operator.estimator.core import estimate
    from vlm_operator.estimator.request import EngineSettings, EstimateRequest, GPUSpec
    from vlm_operator.models import catalog

    p = gpus.lookup("H100")
    req = EstimateRequest(
        catalog.lookup(model),
        GPUSpec(p.short_name, p.cuda_memory_bytes, p.compute_capability),
        EngineSettings(max_model_len=32768),
    )
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        estimate(req)
        n += 1
    return n / (time.perf_counter() - start)


def cold_start(runs: int = 5) -> tuple[float, float]:
    cmd = [
        sys.executable,
        "-m",
        "vlm_operator",
        "estimate",
        "--model",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "--gpu",
        "H100",
        "--max-model-len",
        "32768",
        "--output",
        "json",
    ]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=False, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times), max(times)


def hub_lookups(runs: int = 5) -> dict[str, float]:
    """Median seconds per Hub lookup: cold (network, a sharded 2-shard checkpoint), from the disk cache (a new
    resolver, as a restarted operator), and from memory. The fake Hub runs in this process on loopback."""
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fakehub import FakeHub, safetensors_blob

    from vlm_operator.models import catalog
    from vlm_operator.models.hub import HubResolver, HubSettings

    qwen = next(e for e in catalog.raw_entries() if e["id"] == "Qwen/Qwen2.5-VL-7B-Instruct")
    shard = {f"model.layers.{i}.mlp.up_proj.weight": ("BF16", [64, 64]) for i in range(400)}
    out: dict[str, list[float]] = {"cold": [], "disk": [], "memory": []}
    with FakeHub() as hub:
        for i in range(runs):
            repo = f"bench/vlm-{i}"
            hub.add(
                repo,
                {
                    "config.json": qwen["config"],
                    "preprocessor_config.json": {"max_pixels": 1003520},
                    "model.safetensors.index.json": {"metadata": {}, "weight_map": {"a": "a.safetensors"}},
                    "a.safetensors": safetensors_blob(shard),
                },
            )
            with tempfile.TemporaryDirectory() as d:
                settings = HubSettings(endpoint=hub.endpoint, cache_dir=Path(d))
                r = HubResolver(settings)
                for key, resolver in (("cold", r), ("disk", HubResolver(settings)), ("memory", r)):
                    t = time.perf_counter()
                    resolver.resolve(repo)
                    out[key].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vlm-operator estimator benchmark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for model in ("Qwen/Qwen2.5-VL-7B-Instruct", "google/gemma-3-27b-it", "llava-hf/llava-v1.6-mistral-7b-hf"):
        table.add_row(f"estimates/s ({model})", f"{estimates_per_second(model):,.0f}")
    med, worst = cold_start()
    table.add_row("vlmctl estimate cold start, median of 5 (s)", f"{med:.3f}")
    table.add_row("vlmctl estimate cold start, max of 5 (s)", f"{worst:.3f}")
    for key, secs in hub_lookups().items():
        table.add_row(f"Hub lookup, {key}, median of 5 (ms)", f"{secs * 1000:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
