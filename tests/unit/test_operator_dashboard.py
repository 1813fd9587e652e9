"""The Grafana dashboard reads only series the operator exports, and the demo's Internal-mode sample is valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hack.demo_autoscale import internal_sample
from prometheus_client import generate_latest

from vlm_operator import operator_metrics as op_metrics
from vlm_operator.api import VLMDeployment

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "vlm-operator" / "dashboards" / "vlm-operator.json"


def _exported_names() -> set[str]:
    # touch every labelled family once so it shows up in the exposition
    op_metrics.observe_object("d-ns", "d", desired=1, status={}, verdict="Fits")
    op_metrics.observe_decision("d-ns", "d", reason="Hold", recommended=1, waiting=0, running=0, missing=0)
    op_metrics.observe_scale_write("d-ns", "d", before=1, after=2)
    op_metrics.RECONCILE_ERRORS.labels("d-ns", "d", "X").inc(0)
    with op_metrics.reconcile_timer("d-ns", "d"):
        pass
    text = generate_latest(op_metrics.REGISTRY).decode()
    op_metrics.forget("d-ns", "d")
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_dashboard_queries_only_exported_series() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"\bvlm_operator_[a-z_]+", e)}
    exported = _exported_names()
    assert used, exprs
    assert used <= exported, used - exported
    # every operator series the issue asks for is on the dashboard
    for name in (
        "vlm_operator_desired_replicas",
        "vlm_operator_current_replicas",
        "vlm_operator_scaling_decisions_total",
        "vlm_operator_reconcile_duration_seconds_bucket",
        "vlm_operator_reconcile_errors_total",
        "vlm_operator_fit_verdict",
    ):
        assert name in used, name
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "vlm-operator"


def test_demo_internal_sample_is_a_valid_internal_mode_spec() -> None:
    doc = internal_sample("vlm-demo")
    vlmd = VLMDeployment.model_validate(doc)
    s = vlmd.spec.scaling
    assert s.mode == "Internal" and s.min_replicas < (s.max_replicas or 0)
    assert vlmd.spec.pod_template.annotations["sim.vlmops.io/simulator"] == "true"
    # short windows: the demo's scale-down finishes within its time budget
    assert s.scale_down_stabilization_seconds + 2 * s.cooldown_seconds < 60
