"""The multimodal readiness gate: the API field, the rendered readinessGate, when a pod is probed, the condition
written, the backoff, what status says, and the simulated kubelet's gate semantics. Pure code only; the probe is
an injected function (the HTTP probe itself is tested against servers in tests/integration and tests/engine)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import sample
from vlm_operator import conditions, readiness, reconcile
from vlm_operator.api import MULTIMODAL_READY_CONDITION, VLMDeployment
from vlm_operator.reconcile import build_plan
from vlm_operator.render import objects
from vlm_operator.simulator import podwatcher
from vlm_operator.smoke import SmokeResult

ROOT = Path(__file__).resolve().parents[2]
STARTED = "2026-12-07T01:00:00Z"
BEFORE = "2026-12-07T00:59:00Z"
AFTER = "2026-12-07T01:00:30Z"
OK = SmokeResult(True, 200, None, 0.4)
REJECTED = SmokeResult(False, 400, "HTTP 400: Unexpected keyword argument 'not_a_kwarg'", 0.2)


def vlmd(probe: bool | None) -> VLMDeployment:
    doc = sample("llava-1.5-7b-l4", "ns")
    doc["metadata"]["uid"] = "u1"
    if probe is not None:
        doc["spec"]["readiness"] = {"multimodalProbe": probe}
    return VLMDeployment.model_validate(doc)


def pod_spec_of(v: VLMDeployment) -> dict[str, Any]:
    dep = next(o for o in build_plan(v).desired if o["kind"] == "Deployment")
    spec: dict[str, Any] = dep["spec"]["template"]["spec"]
    return spec


def pod(
    *,
    gated: bool = True,
    ready: bool = True,
    gate: dict[str, Any] | None = None,
    restarts: int = 0,
    ip: str | None = "127.0.0.5",
    name: str = "p1",
) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [{"type": "ContainersReady", "status": "True" if ready else "False"}]
    if gate is not None:
        conditions.append({"type": MULTIMODAL_READY_CONDITION, **gate})
    status_: dict[str, Any] = {
        "phase": "Running",
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": objects.CONTAINER,
                "ready": ready,
                "restartCount": restarts,
                "state": {"running": {"startedAt": STARTED}},
            }
        ],
    }
    if ip:
        status_["podIP"] = ip
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "annotations": {}},
        "spec": {"readinessGates": [{"conditionType": MULTIMODAL_READY_CONDITION}]} if gated else {},
        "status": status_,
    }


# --- API and rendering ---------------------------------------------------------------------------------------


def test_the_probe_is_off_by_default_and_the_pod_has_no_gate() -> None:
    v = vlmd(None)
    assert v.spec.readiness.multimodal_probe is False
    assert "readinessGates" not in pod_spec_of(v)
    assert "readinessGates" not in pod_spec_of(vlmd(False))


def test_enabling_the_probe_renders_the_readiness_gate() -> None:
    assert pod_spec_of(vlmd(True))["readinessGates"] == [{"conditionType": "vlmops.io/multimodal-ready"}]


def test_the_crd_schema_has_the_field() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "vlmops.io_vlmdeployments.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["readiness"]["properties"]["multimodalProbe"]["type"] == "boolean"


def test_a_non_boolean_probe_value_is_refused() -> None:
    with pytest.raises(ValueError, match="multimodalProbe"):
        vlmd("sometimes")  # type: ignore[arg-type]


# --- when a pod is probed ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "want"),
    [
        (pod(), True),  # gated, containers ready, no condition yet
        (pod(gated=False), False),
        (pod(ready=False), False),
        (pod(ip=None), False),
        (pod(gate={"status": "True", "lastProbeTime": AFTER}), False),  # passed for this start
        (pod(gate={"status": "True", "lastProbeTime": BEFORE}), True),  # passed for an earlier start
        (pod(gate={"status": "False", "lastProbeTime": AFTER}), True),  # failed, no backoff recorded
    ],
)
def test_due(p: dict[str, Any], want: bool) -> None:
    assert readiness.due(p, readiness.Backoff(), now=100.0) is want


def test_a_terminating_pod_is_not_probed() -> None:
    p = pod()
    p["metadata"]["deletionTimestamp"] = AFTER
    assert not readiness.due(p, readiness.Backoff(), now=0.0)


def test_backoff_doubles_and_caps() -> None:
    assert [readiness.backoff_seconds(n) for n in (0, 1, 2, 3)] == [0.0, 5.0, 10.0, 20.0]
    assert readiness.backoff_seconds(30) == readiness.BACKOFF_MAX_SECONDS


# --- probing and the condition written ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.patches.append((namespace, name, body))


def test_a_passing_probe_sets_the_gate_true_at_the_pod_ip() -> None:
    urls: list[str] = []
    rec = Recorder()

    def probe(url: str, timeout: float) -> SmokeResult:
        urls.append(url)
        return OK

    done = readiness.probe_pods([pod()], rec, readiness.Backoff(), 0.0, probe=probe, utc_now=lambda: AFTER)
    assert urls == [f"http://127.0.0.5:{objects.HTTP_PORT}"]
    assert done == [("p1", OK)]
    (ns, name, body) = rec.patches[0]
    assert (ns, name) == ("ns", "p1")
    cond = body["status"]["conditions"][0]
    assert cond["type"] == MULTIMODAL_READY_CONDITION and cond["status"] == "True"
    assert cond["reason"] == "SmokeProbePassed" and cond["lastProbeTime"] == AFTER


def test_a_failing_probe_sets_false_with_the_error_and_backs_off() -> None:
    rec, backoff = Recorder(), readiness.Backoff()
    calls = 0

    def probe(url: str, timeout: float) -> SmokeResult:
        nonlocal calls
        calls += 1
        return REJECTED

    readiness.probe_pods([pod()], rec, backoff, 0.0, probe=probe, utc_now=lambda: AFTER)
    cond = rec.patches[0][2]["status"]["conditions"][0]
    assert cond["status"] == "False" and cond["reason"] == "SmokeProbeFailed"
    assert "Unexpected keyword argument 'not_a_kwarg'" in cond["message"]
    failed = pod(gate=cond)
    # within the backoff: no probe; after it: one more, and the next wait is longer
    readiness.probe_pods([failed], rec, backoff, 4.0, probe=probe, utc_now=lambda: AFTER)
    assert calls == 1
    readiness.probe_pods([failed], rec, backoff, 5.0, probe=probe, utc_now=lambda: AFTER)
    assert calls == 2
    readiness.probe_pods([failed], rec, backoff, 14.0, probe=probe, utc_now=lambda: AFTER)
    assert calls == 2
    # the unchanged False status keeps its transition time
    assert rec.patches[1][2]["status"]["conditions"][0]["lastTransitionTime"] == cond["lastTransitionTime"]


def test_a_restarted_container_is_probed_again_and_gone_pods_are_forgotten() -> None:
    rec, backoff = Recorder(), readiness.Backoff()
    readiness.probe_pods([pod()], rec, backoff, 0.0, probe=lambda u, t: REJECTED, utc_now=lambda: AFTER)
    assert backoff.failures
    restarted = pod(restarts=1, gate={"status": "False", "lastProbeTime": AFTER})
    assert readiness.due(restarted, backoff, now=1.0)  # a new start has no backoff
    readiness.probe_pods([], rec, backoff, 2.0, probe=lambda u, t: OK)
    assert not backoff.failures and not backoff.next_at


def test_a_long_error_is_cut() -> None:
    long = SmokeResult(False, 400, "x" * 5000, 0.1)
    cond = readiness.gate_condition_patch(long, AFTER)["status"]["conditions"][0]
    assert len(cond["message"]) == readiness.MESSAGE_MAX


# --- status --------------------------------------------------------------------------------------------------


def test_a_failed_probe_is_degraded_smoke_probe_failed_naming_the_pod_and_error() -> None:
    error = "image request failed: HTTP 400: bad kwarg"
    problems = reconcile._pod_problems([pod(name="llava-abc", gate={"status": "False", "message": error})], None)
    assert problems == (conditions.PodProblem("llava-abc", "SmokeProbeFailed", error),)
    obs = conditions.Observed(1, 1, conditions.FitResult("Fits", "fits", {}), problems=problems)
    conds = {c["type"]: c for c in conditions.compute_status(obs, AFTER)["conditions"]}
    assert conds["Degraded"]["status"] == "True" and conds["Degraded"]["reason"] == "SmokeProbeFailed"
    assert "llava-abc" in conds["Degraded"]["message"] and "bad kwarg" in conds["Degraded"]["message"]


def test_a_passed_or_ungated_pod_is_no_problem() -> None:
    assert reconcile._pod_problems([pod(gate={"status": "True"})], None) == ()
    assert reconcile._pod_problems([pod(gated=False, gate={"status": "False"})], None) == ()


# --- the simulated kubelet honours readiness gates -------------------------------------------------------------


def test_the_simulated_kubelet_keeps_a_gated_pod_not_ready_until_the_gate_is_true() -> None:
    p = pod(ready=False)
    patch = podwatcher.ready_status_patch(p, AFTER)
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["ContainersReady"]["status"] == "True"
    assert by_type["Ready"]["status"] == "False" and by_type["Ready"]["reason"] == "ReadinessGatesNotReady"
    applied = copy.deepcopy(p)
    applied["status"].update(patch)
    assert not podwatcher.needs_ready_patch(applied)  # nothing more to write while the gate is pending
    applied["status"]["conditions"].append({"type": MULTIMODAL_READY_CONDITION, "status": "True"})
    assert podwatcher.needs_ready_patch(applied)
    final = {c["type"]: c for c in podwatcher.ready_status_patch(applied, AFTER)["conditions"]}
    assert final["Ready"]["status"] == "True"
    assert final[MULTIMODAL_READY_CONDITION]["status"] == "True"  # the gate condition is kept


def test_the_simulated_kubelet_marks_an_ungated_pod_ready() -> None:
    patch = podwatcher.ready_status_patch(pod(gated=False, ready=False), AFTER)
    assert {c["type"]: c["status"] for c in patch["conditions"]}["Ready"] == "True"
