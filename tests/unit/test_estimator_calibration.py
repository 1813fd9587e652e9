"""Calibration against public vLLM start-up logs (tests/data/calibration/logs.json).

Reports the error of each term per log (run with ``-s`` to see the table) and bounds it. Terms are compared only
where the log shows them and the issue shows the flags that drive them.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vlm_operator import gpus
from vlm_operator.estimator.core import Estimate, estimate
from vlm_operator.estimator.memory import KVPlan, kv_layout, plan_kv
from vlm_operator.estimator.request import GIB, EngineSettings, EstimateRequest, GPUSpec
from vlm_operator.models import catalog
from vlm_operator.models.facts import QuantFacts

DATA = Path(__file__).resolve().parents[1] / "data" / "calibration" / "logs.json"
RECORDS: list[dict[str, Any]] = json.loads(DATA.read_text())["records"]


def run(rec: dict[str, Any]) -> Estimate:
    facts = catalog.lookup(rec["model"])
    q = rec.get("quantization_override")
    if q:
        facts = replace(facts, quantization=QuantFacts(q["method"], bits=q["bits"], group_size=0))
    p = gpus.lookup(rec["gpu"])
    return estimate(
        EstimateRequest(
            facts,
            GPUSpec(p.short_name, p.cuda_memory_bytes, p.compute_capability),
            EngineSettings(**rec["flags"], engine=rec["engine"]),
            vllm_version=rec["vllm_version"],
        )
    )


def kv_from_logged_available(rec: dict[str, Any], e: Estimate) -> KVPlan:
    """KV tokens from the *logged* available KV memory: isolates the per-token/block arithmetic."""
    groups = kv_layout(e.request.model, tp=e.resolved.tp, pp=e.resolved.pp, kv_bytes=2)
    return plan_kv(
        groups,
        kv_bytes=rec["observed"]["kv_gib"] * GIB,
        block_size=e.resolved.block_size,
        max_model_len=e.resolved.max_model_len,
        max_num_batched_tokens=e.resolved.max_num_batched_tokens,
        hybrid=False,
        tokens_as_concurrency=False,
    )


def errors() -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {
        "weights": [],
        "kv_tokens": [],
        "kv_tokens_given_kv_gib": [],
        "activation": [],
    }
    for rec in RECORDS:
        e = run(rec)
        o = rec["observed"]
        if "weights_gib" in o:
            out["weights"].append((rec["id"], e.weights_bytes / GIB / o["weights_gib"] - 1))
        if "kv_tokens" in o and "weights_gib" in o:
            out["kv_tokens"].append((rec["id"], e.kv_cache_tokens / o["kv_tokens"] - 1))
        if "kv_tokens" in o and "kv_gib" in o:
            out["kv_tokens_given_kv_gib"].append(
                (rec["id"], kv_from_logged_available(rec, e).tokens / o["kv_tokens"] - 1)
            )
        if "activation_gib" in o and "max_model_len" in rec["flags"]:
            out["activation"].append((rec["id"], e.activation_bytes / GIB / o["activation_gib"] - 1))
    return out


def test_calibration_report_and_bounds() -> None:
    errs = errors()
    print("\nterm                      n   median|err|  max|err|")
    summary: dict[str, tuple[float, float]] = {}
    for term, values in errs.items():
        abs_errs = [abs(v) for _, v in values]
        med, mx = statistics.median(abs_errs), max(abs_errs)
        summary[term] = (med, mx)
        print(f"{term:24s} {len(values):3d}   {med:9.2%}  {mx:8.2%}")
        for rid, v in values:
            print(f"    {rid:45s} {v:+.2%}")
    assert summary["weights"][0] <= 0.03 and summary["weights"][1] <= 0.05
    assert summary["kv_tokens_given_kv_gib"][1] <= 0.02
    assert summary["kv_tokens"][0] <= 0.10 and summary["kv_tokens"][1] <= 0.15
    assert summary["activation"][1] <= 0.5


def test_calibration_records_are_complete() -> None:
    assert len(RECORDS) >= 8
    for rec in RECORDS:
        assert rec["source"].startswith("https://github.com/")
        assert "llm-d" not in rec["source"]
        assert {"model", "gpu", "vllm_version", "engine", "flags", "observed"} <= set(rec)
        catalog.lookup(rec["model"])
        gpus.lookup(rec["gpu"])


@pytest.mark.parametrize("rec", RECORDS, ids=[r["id"] for r in RECORDS])
def test_every_record_estimates(rec: dict[str, Any]) -> None:
    e = run(rec)
    assert e.weights_bytes > 0
