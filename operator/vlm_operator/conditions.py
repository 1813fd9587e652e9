"""The one place that decides a VLMDeployment's status, as a pure function of what the reconciler observed.

Why a pure function: status is read by kubectl (``kubectl wait --for=condition=Ready``), by kstatus (Flux,
``kubectl apply --prune``, cli-utils) and by Argo CD. If several code paths wrote pieces of it they would disagree;
here one function computes the whole status from an :class:`Observed` snapshot and a timestamp, and the reconciler
writes it only when it changed.

Conditions:
- ``FitsGPU``: the fit check's verdict (``Unknown`` when the model could not be resolved).
- ``Ready``: every desired replica runs the current pod template and is ready.
- ``Progressing``: a rollout is under way (or waiting for GPUs).
- ``Degraded``: something is wrong that waiting will not fix (crash loop, rollback, refused spec).
- ``Reconciling`` / ``Stalled``: the two "abnormal-true" conditions kstatus understands
  (sigs.k8s.io/cli-utils pkg/kstatus/status/generic.go), mirroring Progressing and Degraded so that kstatus reports
  InProgress while rolling out, Failed when stuck, and Current when done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CondStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class FitResult:
    """What the fit check concluded, in the words status shows."""

    verdict: Literal["Fits", "Tight", "DoesNotFit", "Unknown"]
    message: str
    summary: dict[str, Any] = field(default_factory=dict)


#: The PodProblem reason of a pod whose multimodal readiness probe failed (:mod:`vlm_operator.readiness`).
SMOKE_PROBE_FAILED = "SmokeProbeFailed"


@dataclass(frozen=True)
class PodProblem:
    """A pod of the current template that is failing, as the kubelet reports it."""

    pod: str
    reason: str  # CrashLoopBackOff, OOMKilled, Error, ...
    message: str
    restarts: int = 0


@dataclass(frozen=True)
class Observed:
    """Everything ``compute_status`` needs, gathered by the reconciler."""

    generation: int
    desired_replicas: int
    fit: FitResult
    #: The Deployment's status, or None if it does not exist yet (or was not created because the spec is refused).
    deployment_status: dict[str, Any] | None = None
    deployment_generation: int | None = None
    #: A reason the reconciler refused to create pods (the fit check under Enforce, an unusable spec).
    refused: str | None = None
    refused_reason: str = "DoesNotFit"
    selector: str | None = None
    url: str | None = None
    gpu: str | None = None
    engine_version: str | None = None
    effective_args: tuple[str, ...] = ()
    pod_template_hash: str | None = None
    last_good_pod_template_hash: str | None = None
    problems: tuple[PodProblem, ...] = ()
    #: Set when the rollout controller went back to the last good template.
    rolled_back: str | None = None
    #: Why the rollout waits (e.g. no free GPU for a surge pod); shown in Progressing.
    waiting: str | None = None
    #: How the rollout replaces pods now (surge or in place, and why); shown in Progressing while it runs.
    strategy: str | None = None
    #: The Deployment reports ProgressDeadlineExceeded (its deadline is derived from the model size).
    deadline_exceeded: bool = False
    previous_conditions: tuple[dict[str, Any], ...] = ()
    #: The built-in autoscaler's conditions, ``(type, status, reason, message)`` each (``scaling.mode: Internal``
    #: only; see :mod:`vlm_operator.autoscale.report`). ``None`` outside Internal mode; ``()`` before its first poll,
    #: which keeps the ones already in status.
    scaling: tuple[tuple[str, CondStatus, str, str], ...] | None = None


#: Condition types the autoscaler's report fills in (Internal mode only).
SCALING_CONDITIONS = ("ScalingActive", "MetricsAvailable", "ScalingLimited")


def _scaling_conditions(obs: Observed, prev: dict[str, dict[str, Any]], now: str) -> list[dict[str, Any]]:
    if obs.scaling is None:
        return []
    if not obs.scaling:
        return [prev[t] for t in SCALING_CONDITIONS if t in prev]
    return [_cond(t, st, reason, msg, obs.generation, now, prev) for t, st, reason, msg in obs.scaling]


def condition_true(obj_status: Mapping[str, Any] | None, type_: str) -> bool:
    """Whether a status (a pod's, a node's or our own) has condition ``type_`` with status True."""
    return any(c.get("type") == type_ and c.get("status") == "True" for c in (obj_status or {}).get("conditions") or [])


def pod_serving(pod: Mapping[str, Any]) -> bool:
    """Ready, with an IP, and not terminating: the pods that take traffic and report metrics."""
    st = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or not st.get("podIP"):
        return False
    return condition_true(st, "Ready")


def _cond(
    type_: str,
    status: CondStatus,
    reason: str,
    message: str,
    generation: int,
    now: str,
    prev: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    old = prev.get(type_)
    changed = old is None or old.get("status") != status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),  # type: ignore[union-attr]
    }


def quota_refusal(deployment_status: Mapping[str, Any]) -> str | None:
    """The API server's ResourceQuota refusal of the Deployment's pods, with its numbers, if there is one.

    The ReplicaSet controller records a refused pod create as ``ReplicaFailure=True`` (reason ``FailedCreate``) and
    the Deployment controller copies it to the Deployment (k8s.io/kubernetes pkg/controller/replicaset and
    pkg/controller/deployment/util). A quota refusal reads ``pods "x" is forbidden: exceeded quota: <name>,
    requested: ..., used: ..., limited: ...``; only the part from ``exceeded quota`` on is kept.
    """
    for c in deployment_status.get("conditions") or []:
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            message = str(c.get("message") or "")
            at = message.find("exceeded quota")
            if at >= 0:
                return message[at:][:500]
    return None


def compute_status(obs: Observed, now: str) -> dict[str, Any]:
    """The whole ``status`` object (camelCase, as stored) for ``obs``; ``now`` is an RFC 3339 timestamp."""
    prev = {c.get("type", ""): c for c in obs.previous_conditions}
    ds = obs.deployment_status or {}
    desired = obs.desired_replicas
    replicas = int(ds.get("replicas", 0) or 0)
    ready = int(ds.get("readyReplicas", 0) or 0)
    available = int(ds.get("availableReplicas", 0) or 0)
    dep_current = obs.deployment_status is not None and ds.get("observedGeneration") == obs.deployment_generation
    # Until the Deployment controller has seen the Deployment's latest template, its updatedReplicas still counts the
    # pods of the template before it: none of them runs the new one (``kubectl rollout status`` waits for the same
    # observedGeneration; k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go). Counting them would write a status
    # that says "1 updated" and then "0 updated" in every rollout.
    updated = int(ds.get("updatedReplicas", 0) or 0) if dep_current or obs.deployment_generation is None else 0

    conds: list[dict[str, Any]] = []

    def add(type_: str, status: CondStatus, reason: str, message: str) -> None:
        conds.append(_cond(type_, status, reason, message, obs.generation, now, prev))

    fit_status: CondStatus = {"Fits": "True", "Tight": "True", "DoesNotFit": "False"}.get(  # type: ignore[assignment]
        obs.fit.verdict, "Unknown"
    )
    add("FitsGPU", fit_status, obs.fit.verdict, obs.fit.message)

    rolled_out = dep_current and updated == desired and replicas == desired and ready >= desired
    if obs.refused is not None:
        add("Ready", "False", obs.refused_reason, obs.refused)
        add("Progressing", "False", obs.refused_reason, obs.refused)
    elif obs.deployment_status is None:
        add("Ready", "False", "Creating", "creating the Deployment")
        add("Progressing", "True", "Creating", "creating the Deployment")
    elif rolled_out:
        what = "scaled to zero" if desired == 0 else f"{ready}/{desired} replicas ready"
        add("Ready", "True", "ScaledToZero" if desired == 0 else "AllReplicasReady", what)
        add("Progressing", "False", "RolloutComplete", f"the current pod template runs on {updated} replica(s)")
    else:
        add("Ready", "False", "ReplicasNotReady", f"{ready}/{desired} replicas ready, {updated} updated")
        reason, msg = "RollingOut", f"{updated}/{desired} replicas updated, {ready} ready"
        if obs.strategy:
            msg += f"; {obs.strategy}"
        if obs.waiting:
            reason, msg = "WaitingForGPUs", obs.waiting
        quota = quota_refusal(ds)
        if quota:
            reason, msg = "QuotaExceeded", f"{ready}/{desired} replicas ready; pods cannot be created: {quota}"
        if obs.deadline_exceeded:
            reason = "ProgressDeadlineExceeded"
        add("Progressing", "True", reason, msg)

    if obs.rolled_back is not None:
        add("Degraded", "True", "RolledBack", obs.rolled_back)
    elif obs.problems:
        p = obs.problems[0]
        detail = f"pod {p.pod}: {p.reason}" + (f" ({p.message})" if p.message else "")
        if p.restarts:
            detail += f", {p.restarts} restarts"
        # A failed multimodal readiness probe keeps its own reason (the pod runs; its image requests fail).
        add("Degraded", "True", p.reason if p.reason == SMOKE_PROBE_FAILED else "PodsFailing", detail)
    elif obs.refused is not None:
        add("Degraded", "True", obs.refused_reason, obs.refused)
    elif obs.deadline_exceeded and not rolled_out:
        add("Degraded", "True", "ProgressDeadlineExceeded", "the rollout did not finish within its progress deadline")
    else:
        add("Degraded", "False", "AsExpected", "")

    by_type = {c["type"]: c for c in conds}
    progressing = by_type["Progressing"]["status"] == "True"
    degraded = by_type["Degraded"]["status"] == "True"
    # kstatus takes the first of Reconciling/Stalled that is True, in list order; they are mutually exclusive here so
    # that a crash loop reads Failed (with the Degraded message), not InProgress, even while the rollout is unfinished.
    reconciling = progressing and not degraded
    add(
        "Reconciling",
        "True" if reconciling else "False",
        by_type["Progressing"]["reason"],
        by_type["Progressing"]["message"] if reconciling else "",
    )
    add("Stalled", "True" if degraded else "False", by_type["Degraded"]["reason"], by_type["Degraded"]["message"])

    conds.extend(_scaling_conditions(obs, prev, now))

    out: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": conds,
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "estimate": {"verdict": obs.fit.verdict, "message": obs.fit.message[:1000], **obs.fit.summary},
    }
    optional = {
        "selector": obs.selector,
        "url": obs.url,
        "gpu": obs.gpu,
        "engineVersion": obs.engine_version,
        "podTemplateHash": obs.pod_template_hash,
        "lastGoodPodTemplateHash": obs.last_good_pod_template_hash,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if obs.effective_args:
        out["effectiveArgs"] = list(obs.effective_args)
    return out


def transitions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of each condition whose status changed."""
    before = {c.get("type"): c.get("status") for c in old}
    return [
        (c["type"], c["status"], c["reason"], c["message"])
        for c in new
        if before.get(c["type"]) != c["status"] and c["type"] not in ("Reconciling", "Stalled")
    ]


#: The conditions whose flips are worth an event, and the status that means trouble: a person wants to hear when a
#: VLMDeployment goes Degraded, stops fitting its GPUs or stops autoscaling (``MissingMetrics``), and when that
#: clears. Routine progress (Ready and Progressing flipping on every create, scale and rollout) is in status, not in
#: events: an event per flip was most of the operator's writes (the rollout's own RolloutSurge/RolloutInPlace/
#: RolledBack events say what a rollout does).
_EVENTFUL = {"Degraded": "True", "FitsGPU": "False", "ScalingActive": "False"}


def notable_transitions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(event type, condition type, status, reason, message) of the flips a person wants an event for: a condition of
    ``_EVENTFUL`` turning bad (Warning, also on the first status), and turning good again after it was bad (Normal)."""
    before = {c.get("type"): c.get("status") for c in old}
    out = []
    for type_, st, reason, message in transitions(old, new):
        bad = _EVENTFUL.get(type_)
        if bad is None:
            continue
        if st == bad:
            out.append(("Warning", type_, st, reason, message))
        elif before.get(type_) == bad:
            out.append(("Normal", type_, st, reason, message))
    return out
