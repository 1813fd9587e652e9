"""The multimodal readiness gate (``spec.readiness.multimodalProbe``): one image request per container start.

A pod rendered with the gate carries ``readinessGates: [{conditionType: vlmops.io/multimodal-ready}]``; the kubelet
keeps it out of Ready (and so out of the Service's endpoints) until the pod's status has that condition True
(Kubernetes pkg/kubelet/status/generate.go, GeneratePodReadyCondition: Ready needs ContainersReady and every
readiness gate's condition True). This module sets the condition:

* a pod whose containers are Ready and whose gate condition is not True for the current container start gets the
  smoke request of :mod:`vlm_operator.smoke` at ``http://<podIP>:<port>``;
* the answer becomes the condition: True (reason ``SmokeProbePassed``) or False (reason ``SmokeProbeFailed``, the
  probe's error as message), written with a strategic merge patch of ``pods/status`` that merges conditions by type
  and leaves the kubelet's own conditions alone;
* a failing pod is probed again after a backoff (5 s doubling to 5 min), kept in memory per pod and container start
  (an operator restart probes at once, which is harmless).

"The current container start" is the vLLM container's ``restartCount`` and ``state.running.startedAt``; the
condition's ``lastProbeTime`` not before ``startedAt`` means it was written for this start. A crashed and restarted
container therefore is probed again before its gate holds.

:func:`due`, :func:`gate_condition_patch` and :func:`backoff_seconds` are pure; :func:`probe_pods` does the I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlm_operator import conditions, smoke
from vlm_operator.api import MULTIMODAL_READY_CONDITION
from vlm_operator.render import objects

if TYPE_CHECKING:
    from vlm_operator.kube import Kube

GATE = MULTIMODAL_READY_CONDITION
REASON_PASSED = "SmokeProbePassed"
REASON_FAILED = conditions.SMOKE_PROBE_FAILED
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0
FORBIDDEN = (
    "spec.readiness.multimodalProbe needs patch on pods/status, which the operator lacks: install the chart with "
    "multimodalReadiness=true (or add the rule rbac.MULTIMODAL_READINESS); the gated pods stay not Ready"
)
#: A condition message longer than this is cut (the error of a rejected processor kwarg quotes the kwargs).
MESSAGE_MAX = 1000


def gated(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's spec names the multimodal readiness gate."""
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    return any(g.get("conditionType") == GATE for g in gates)


def container_start(pod: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(restartCount, startedAt)`` of the serving container when it runs and is ready, else None."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != objects.CONTAINER:
            continue
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        if not cs.get("ready") or not started:
            return None
        return int(cs.get("restartCount") or 0), str(started)
    return None


def gate_condition(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == GATE:
            return dict(cond)
    return None


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _current(cond: Mapping[str, Any] | None, started: str) -> bool:
    """Whether ``cond`` was written after the container start ``started``."""
    if cond is None:
        return False
    probed, start = _parse_time(cond.get("lastProbeTime")), _parse_time(started)
    return probed is not None and start is not None and probed >= start


def backoff_seconds(failures: int) -> float:
    """The wait before probing again after ``failures`` failed probes of one container start."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_BASE_SECONDS * 2 ** (failures - 1), BACKOFF_MAX_SECONDS))


@dataclass
class Backoff:
    """Failed probes per (pod uid, container start) and when the next may run (monotonic seconds)."""

    failures: dict[tuple[str, int, str], int] = field(default_factory=dict)
    next_at: dict[tuple[str, int, str], float] = field(default_factory=dict)

    def record(self, key: tuple[str, int, str], ok: bool, now: float) -> None:
        if ok:
            self.failures.pop(key, None)
            self.next_at.pop(key, None)
            return
        self.failures[key] = self.failures.get(key, 0) + 1
        self.next_at[key] = now + backoff_seconds(self.failures[key])

    def forget_except(self, live: Iterable[tuple[str, int, str]]) -> None:
        keep = set(live)
        for key in [k for k in self.failures if k not in keep]:
            self.failures.pop(key, None)
            self.next_at.pop(key, None)


def probe_key(pod: Mapping[str, Any]) -> tuple[str, int, str] | None:
    start = container_start(pod)
    if start is None:
        return None
    return str((pod.get("metadata") or {}).get("uid", "")), start[0], start[1]


def due(pod: Mapping[str, Any], backoff: Backoff, now: float) -> bool:
    """Whether the pod should be probed now: gated, not terminating, with an IP, its container running and ready,
    its gate condition not True for this container start, and any backoff after a failure over."""
    if not gated(pod) or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if not (pod.get("status") or {}).get("podIP"):
        return False
    key = probe_key(pod)
    if key is None:
        return False
    cond = gate_condition(pod)
    if cond is not None and cond.get("status") == "True" and _current(cond, key[2]):
        return False
    return now >= backoff.next_at.get(key, 0.0)


def gate_condition_patch(result: smoke.SmokeResult, now: str) -> dict[str, Any]:
    """The ``pods/status`` strategic merge patch that records ``result`` as the gate condition."""
    if result.ok:
        cond = {
            "status": "True",
            "reason": REASON_PASSED,
            "message": f"image request answered in {result.latency_s:.1f}s",
        }
    else:
        message = f"image request failed: {result.error or 'unknown error'}"
        cond = {"status": "False", "reason": REASON_FAILED, "message": message[:MESSAGE_MAX]}
    return {"status": {"conditions": [{"type": GATE, **cond, "lastProbeTime": now, "lastTransitionTime": now}]}}


def failed_probe(pod: Mapping[str, Any]) -> str | None:
    """The message of a False gate condition on a pod that has the gate, else None (what status reports)."""
    if not gated(pod):
        return None
    cond = gate_condition(pod)
    if cond is None or cond.get("status") != "False":
        return None
    return str(cond.get("message") or REASON_FAILED)


def served_model(base_url: str, timeout: float = 10.0) -> str | None:
    """The first model id ``GET /v1/models`` lists (what the chat request names), or None if that fails."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(base_url.rstrip("/") + "/v1/models", timeout=timeout) as resp:
            data = json.loads(resp.read().decode("utf-8", "replace")).get("data") or []
    except (OSError, ValueError, AttributeError):
        return None
    first = data[0] if data and isinstance(data[0], dict) else {}
    return str(first["id"]) if first.get("id") else None


def _probe(base_url: str, timeout: float) -> smoke.SmokeResult:
    return smoke.smoke_check(base_url, served_model(base_url), timeout=timeout)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: ``(namespace, pod name, patch)``: writes a pod's status (the operator passes a kube client's strategic patch).
PatchStatus = Callable[[str, str, dict[str, Any]], None]


def probe_pods(
    pods: Iterable[Mapping[str, Any]],
    patch_status: PatchStatus,
    backoff: Backoff,
    now: float,
    probe: Callable[[str, float], smoke.SmokeResult] = _probe,
    timeout: float = 30.0,
    utc_now: Callable[[], str] = _utc_now,
) -> list[tuple[str, smoke.SmokeResult]]:
    """Probe every due pod and write its gate condition; returns ``(pod name, result)`` for each probe sent."""
    done: list[tuple[str, smoke.SmokeResult]] = []
    pods = list(pods)
    for pod in pods:
        if not due(pod, backoff, now):
            continue
        key = probe_key(pod)
        assert key is not None  # due() checked it
        meta = pod["metadata"]
        result = probe(f"http://{pod['status']['podIP']}:{objects.HTTP_PORT}", timeout)
        # The condition keeps its lastTransitionTime when the status does not change (API conventions).
        patch = gate_condition_patch(result, utc_now())
        old = gate_condition(pod)
        if old is not None and old.get("status") == patch["status"]["conditions"][0]["status"]:
            patch["status"]["conditions"][0]["lastTransitionTime"] = old.get("lastTransitionTime") or utc_now()
        patch_status(meta["namespace"], meta["name"], patch)
        backoff.record(key, result.ok, now)
        done.append((meta["name"], result))
    backoff.forget_except(k for k in (probe_key(p) for p in pods) if k is not None)
    return done


def run(client: Kube, pods: Iterable[Mapping[str, Any]], backoff: Backoff) -> list[tuple[str, smoke.SmokeResult]]:
    """:func:`probe_pods` with a kube client's ``pods/status`` strategic patch (what the operator's timer calls)."""

    def patch(namespace: str, name: str, body: dict[str, Any]) -> None:
        client.patch_status_strategic("v1", "Pod", namespace, name, body)

    return probe_pods(pods, patch, backoff, time.monotonic())
