"""Rollout decisions for GPU pods, as pure functions of what the reconciler observed: how to replace pods, whether a
new revision has failed, and what to remember about a rollback.

Why this exists: a Deployment's rolling update knows nothing about GPUs. With ``maxSurge: 1`` the surge pod waits
forever for a GPU that the old pod holds (kuberay#1476/#4239, LLMKube#192); with ``maxSurge: 0`` every rollout
loses capacity even when a spare GPU exists; and a new config that OOMs at start-up crash-loops until someone
notices. So, on every reconcile while a rollout runs:

- :func:`choose_strategy` looks at free allocatable GPUs on the nodes the pod can use (nodes' allocatable
  ``nvidia.com/gpu`` minus the GPU requests of pods bound there, :func:`free_gpus`) and surges (``maxUnavailable 0``)
  only when a surge pod fits, otherwise replaces in place; a new pod Pending for GPUs turns a surge into an in-place
  replacement, so nothing waits forever;
- :func:`assess_revision` tells a slow but healthy load (Running, ``started``, not crashing, inside the startup
  budget that :func:`vlm_operator.render.objects.startup_budget_seconds` derives from the model size) from a
  failed one (restarts or failed pods at ``failureThreshold``, or not Ready once the budget has passed);
- :class:`RollbackRecord` is what the reconciler keeps on the Deployment after going back to the last good pod
  template, so that the failed template is not re-applied in a loop and the reason survives operator restarts.

Nothing here talks to the API server; inputs are the API's JSON objects (dicts) and an injected clock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from vlm_operator import gpus
from vlm_operator.api.rollout import RolloutSpec
from vlm_operator.conditions import condition_true

GPU_RESOURCE = "nvidia.com/gpu"
#: The Deployment annotation that holds a :class:`RollbackRecord` (JSON).
ANN_ROLLBACK = "vlmops.io/rolled-back"
#: The pod-template annotation that names a revision (same as render.objects.ANN_SPEC_HASH; not imported, so that
#: this module stays free of the renderer).
ANN_SPEC_HASH = "vlmops.io/spec-hash"
#: Messages shown in status and events are cut to this length.
MESSAGE_LIMIT = 900

Mode = Literal["Surge", "InPlace"]


# --------------------------------------------------------------------------------------------------------------------
# Capacity: which nodes a pod can use, and how many GPUs are free on them
# --------------------------------------------------------------------------------------------------------------------
def quantity_int(value: Any) -> int:
    """An integer quantity (GPUs); 0 when it is not one."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def gpu_resource(pod_spec: Mapping[str, Any]) -> str:
    """The GPU resource a pod asks for: ``nvidia.com/gpu``, or a MIG slice ``nvidia.com/mig-<profile>``."""
    for c in (*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])):
        res = c.get("resources") or {}
        for key in (*(res.get("requests") or {}), *(res.get("limits") or {})):
            if key == GPU_RESOURCE or key.startswith(gpus.MIG_RESOURCE_PREFIX):
                return str(key)
    return GPU_RESOURCE


def gpu_request(pod_spec: Mapping[str, Any], resource: str = GPU_RESOURCE) -> int:
    """GPUs (or MIG slices, for ``resource``) a pod reserves: the sum over its containers (requests, else limits), or
    the largest init container's."""

    def one(c: Mapping[str, Any]) -> int:
        res = c.get("resources") or {}
        return quantity_int((res.get("requests") or {}).get(resource, (res.get("limits") or {}).get(resource)))

    main = sum(one(c) for c in pod_spec.get("containers") or [])
    init = max((one(c) for c in pod_spec.get("initContainers") or []), default=0)
    return max(main, init)


def _expr_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), list(expr.get("values") or [])
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        try:
            have, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    fields = {"metadata.name": node.get("metadata", {}).get("name", "")}
    exprs = term.get("matchExpressions") or []
    field_exprs = term.get("matchFields") or []
    if not exprs and not field_exprs:
        return False  # an empty term matches no objects (core/v1 NodeSelectorTerm)
    return all(_expr_matches(e, labels) for e in exprs) and all(_expr_matches(e, fields) for e in field_exprs)


def _tolerates(taint: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_fits(node: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> bool:
    """Whether the scheduler could place ``pod_spec`` on ``node`` as far as labels and taints go (nodeSelector,
    required node affinity, NoSchedule/NoExecute taints, cordon); resources are :func:`free_gpus`'s business."""
    if node.get("spec", {}).get("unschedulable"):
        return False
    labels = node.get("metadata", {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(_term_matches(t, node) for t in terms):
        return False
    tolerations = pod_spec.get("tolerations") or []
    return all(
        _tolerates(t, tolerations)
        for t in node.get("spec", {}).get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
    )


def _holds_resources(pod: Mapping[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed") and bool(
        pod.get("spec", {}).get("nodeName")
    )


def free_gpus(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], pod_spec: Mapping[str, Any]
) -> dict[str, int]:
    """Free GPUs on each node that ``pod_spec`` could use: allocatable ``nvidia.com/gpu`` (or the MIG slice the pod
    asks for) minus the requests of the non-terminal pods bound to it (a terminating pod still holds its GPU)."""
    resource = gpu_resource(pod_spec)
    eligible = {
        n["metadata"]["name"]: quantity_int((n.get("status", {}).get("allocatable") or {}).get(resource, 0))
        for n in nodes
        if node_fits(n, pod_spec)
    }
    for pod in pods:
        node = pod.get("spec", {}).get("nodeName")
        if node in eligible and _holds_resources(pod):
            eligible[node] -= gpu_request(pod.get("spec", {}), resource)
    return {k: max(0, v) for k, v in sorted(eligible.items())}


def gpu_holdings(pod: Mapping[str, Any]) -> tuple[str, dict[str, int]] | None:
    """(node, {GPU resource: count}) that ``pod`` holds as :func:`free_gpus` counts it (bound, not finished), for every
    resource :func:`gpu_resource` can name (``nvidia.com/gpu``, ``nvidia.com/mig-*``); None when it holds none. A
    watch keeps the sum of these per node up to date (:mod:`vlm_operator.clusterwatch`) instead of walking every pod
    of the cluster on each count."""
    if not _holds_resources(pod):
        return None
    spec = pod.get("spec") or {}
    keys: set[str] = set()
    for c in (*(spec.get("containers") or []), *(spec.get("initContainers") or [])):
        res = c.get("resources") or {}
        for key in (*(res.get("requests") or {}), *(res.get("limits") or {})):
            if key == GPU_RESOURCE or key.startswith(gpus.MIG_RESOURCE_PREFIX):
                keys.add(str(key))
    held = {k: n for k in sorted(keys) if (n := gpu_request(spec, k))}
    return (str(spec["nodeName"]), held) if held else None


def bound_pods(pods: Iterable[Mapping[str, Any]]) -> int:
    """Pods (of one Deployment) that hold a node's resources, terminating ones included."""
    return sum(1 for p in pods if _holds_resources(p))


def pending_for_resources(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when ``pod`` is Pending because no node has room (``Insufficient nvidia.com/gpu``)."""
    if pod.get("status", {}).get("phase") != "Pending" or pod.get("spec", {}).get("nodeName"):
        return None
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            msg = str(c.get("message") or "")
            if "Insufficient" in msg or "Too many pods" in msg:
                return msg
    return None


# --------------------------------------------------------------------------------------------------------------------
# Strategy
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StrategyDecision:
    """How the Deployment replaces pods now, and why (the reason and message go to status and an event)."""

    mode: Mode
    max_surge: int
    max_unavailable: int
    reason: str
    message: str

    def strategy(self) -> dict[str, Any]:
        """The Deployment's ``spec.strategy``."""
        return {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": self.max_surge, "maxUnavailable": self.max_unavailable},
        }


def describe_strategy(max_surge: int, max_unavailable: int) -> str:
    """How a rollout replaces pods, in the words the Progressing condition shows for as long as the strategy holds.

    Only the strategy's numbers: the why of a decision (free GPUs, the quota) changes with every pod the cluster
    places, and a status message that carried it was rewritten on every reconcile of a rollout (a status write, and a
    watch event for every watcher). The why goes to the ``RolloutSurge``/``RolloutInPlace`` event of the decision."""
    if max_surge >= 1:
        return f"surging {max_surge} pod(s) at a time, none unavailable"
    what = "1 pod" if max_unavailable <= 1 else f"up to {max_unavailable} pods"
    return f"replacing in place, {what} at a time"


def strategy_of(deployment_strategy: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """(maxSurge, maxUnavailable) of a live Deployment's strategy, if it is one this module writes."""
    if not deployment_strategy or deployment_strategy.get("type") != "RollingUpdate":
        return None
    ru = deployment_strategy.get("rollingUpdate") or {}
    surge, unavailable = ru.get("maxSurge"), ru.get("maxUnavailable")
    if isinstance(surge, int) and isinstance(unavailable, int) and (surge, unavailable) != (0, 0):
        return surge, unavailable
    return None


def choose_strategy(
    rollout: RolloutSpec,
    gpus_per_pod: int,
    free_per_node: Mapping[str, int] | None,
    held_surge_pods: int = 0,
    pending: str | None = None,
    gpu_label: str = "GPU",
    quota_room: tuple[str, int] | None = None,
) -> StrategyDecision:
    """Surge or replace in place, from the GPUs that are free now.

    ``free_per_node``: :func:`free_gpus` for the nodes the pod can use, or None when it could not be read.
    ``held_surge_pods``: pods of this Deployment already bound beyond its replica count (surge pods that got their
    GPUs; they stay counted as room, so a running surge does not flip to in-place as soon as it has started).
    ``pending``: the scheduler's message for a new pod Pending for resources, if any. A surge that leaves a pod
    Pending switches to in-place, which frees an old pod's GPU for it: a rollout never waits forever.
    ``quota_room``: (what the tightest ResourceQuota says, how many extra pods it admits now, counting the surge pods
    already held), or None without a quota. A surge pod the quota refuses would never be created, so with no room
    the rollout replaces in place; a terminating old pod keeps its quota until it is gone, then its replacement fits.
    """
    in_place = max(1, rollout.max_unavailable)

    def replace(reason: str, why: str) -> StrategyDecision:
        return StrategyDecision("InPlace", 0, in_place, reason, f"{describe_strategy(0, in_place)}: {why}")

    if rollout.surge_policy == "Never":
        return replace("SurgePolicyNever", "rollout.surgePolicy is Never")
    quota_cap: int | None = None
    if quota_room is not None:
        if quota_room[1] < 1:
            return replace("QuotaFull", f"no room for an extra pod in the namespace quota: {quota_room[0]}")
        quota_cap = quota_room[1]
    if rollout.surge_policy == "Always":
        n = max(1, rollout.max_surge) if quota_cap is None else min(max(1, rollout.max_surge), quota_cap)
        return StrategyDecision(
            "Surge", n, 0, "SurgePolicyAlways", f"surging up to {n} pod(s), none unavailable: surgePolicy is Always"
        )
    if rollout.max_surge < 1:
        return replace("NoSurgeAllowed", "rollout.maxSurge is 0")
    if pending is not None:
        return replace("SurgePodPending", f"a new pod is Pending for GPUs ({_short(pending, 200)})")
    if free_per_node is None:
        return replace("CapacityUnknown", "free GPUs could not be read")
    per = max(1, gpus_per_pod)
    fits = sum(free // per for free in free_per_node.values())
    slots = fits + max(0, held_surge_pods)
    free_total = sum(free_per_node.values())
    if slots < 1:
        return replace("NoSpareGPU", f"{free_total} free {gpu_label} GPU(s), no node has {per} free for an extra pod")
    n = min(rollout.max_surge, slots) if quota_cap is None else min(rollout.max_surge, slots, quota_cap)
    return StrategyDecision(
        "Surge",
        n,
        0,
        "SpareGPUs",
        f"{describe_strategy(n, 0)}: room for {slots} extra pod(s) of {per} {gpu_label} GPU(s)",
    )


# --------------------------------------------------------------------------------------------------------------------
# Health of a revision
# --------------------------------------------------------------------------------------------------------------------
def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class PodHealth:
    """What matters about one pod for a rollout verdict, read from its status."""

    name: str
    template_hash: str | None
    phase: str
    ready: bool
    started: bool
    restarts: int
    deleting: bool
    #: The most telling failure the kubelet reports: (reason, exit code, termination message / last log lines).
    failure: tuple[str, int | None, str] | None
    crash_looping: bool
    running_since: dt.datetime | None

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodHealth:
        meta, st = pod.get("metadata", {}), pod.get("status", {})
        statuses = st.get("containerStatuses") or []
        ready = condition_true(st, "Ready")
        failure: tuple[str, int | None, str] | None = None
        crash = False
        started = bool(statuses) and all(bool(c.get("started")) for c in statuses)
        since: dt.datetime | None = _parse_time(st.get("startTime"))
        for c in statuses:
            state = c.get("state") or {}
            term = state.get("terminated") or (c.get("lastState") or {}).get("terminated")
            waiting = (state.get("waiting") or {}).get("reason")
            if waiting == "CrashLoopBackOff":
                crash = True
            if term and (failure is None or term.get("reason") == "OOMKilled"):
                code = term.get("exitCode")
                failure = (
                    str(term.get("reason") or "Error"),
                    code if isinstance(code, int) else None,
                    term.get("message") or "",
                )
            if waiting in ("ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "CreateContainerError"):
                failure = failure or (waiting, None, (state.get("waiting") or {}).get("message") or "")
            running = _parse_time((state.get("running") or {}).get("startedAt"))
            if running and (since is None or running > since):
                since = running
        return cls(
            name=meta.get("name", ""),
            template_hash=(meta.get("annotations") or {}).get(ANN_SPEC_HASH),
            phase=st.get("phase", "Pending"),
            ready=ready,
            started=started,
            restarts=max((int(c.get("restartCount", 0) or 0) for c in statuses), default=0),
            deleting=bool(meta.get("deletionTimestamp")),
            failure=failure,
            crash_looping=crash,
            running_since=since,
        )

    def describe(self) -> str:
        """``pod P: OOMKilled (exit code 137), 3 restarts; last log: ...``"""
        text = f"pod {self.name}"
        if self.failure:
            reason, code, _ = self.failure
            text += f": {reason}" + (f" (exit code {code})" if code is not None else "")
        elif self.crash_looping:
            text += ": CrashLoopBackOff"
        if self.restarts:
            text += f", {self.restarts} restart(s)"
        if self.failure and self.failure[2].strip():
            text += f"; last log: {last_lines(self.failure[2])}"
        return text


def last_lines(message: str, lines: int = 3) -> str:
    """The last non-empty lines of a termination message (the kubelet's ``FallbackToLogsOnError`` log tail)."""
    kept = [line.strip() for line in message.strip().splitlines() if line.strip()][-lines:]
    return _short(" | ".join(kept), 400)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RevisionVerdict:
    """``Failed`` says the revision will not work without a spec change; ``Progressing`` covers slow loads."""

    state: Literal["Healthy", "Progressing", "Failed"]
    reason: str
    message: str


def assess_revision(
    pods: Sequence[PodHealth], failure_threshold: int, startup_budget_s: int, now: dt.datetime
) -> RevisionVerdict:
    """Whether one revision's pods (same spec-hash) have failed.

    Failed: a pod restarted ``failure_threshold`` times (crash loop, or the kubelet killing it for failing its
    startup probe); ``failure_threshold`` pods ended in phase Failed; or a pod is still not Ready after the whole
    startup budget. A pod that is Running, started and below the restart threshold is a slow but healthy load until
    the budget has passed, however long that is. Pods Pending for GPUs are a capacity matter, never a failure.
    """
    live = [p for p in pods if not p.deleting]
    for p in live:
        if p.restarts >= failure_threshold:
            return RevisionVerdict("Failed", p.failure[0] if p.failure else "CrashLoopBackOff", p.describe())
    failed = [p for p in pods if p.phase == "Failed"]
    if len(failed) >= failure_threshold:
        first = failed[0]
        return RevisionVerdict(
            "Failed", first.failure[0] if first.failure else "Failed", f"{len(failed)} pods failed; {first.describe()}"
        )
    for p in live:
        if p.phase == "Running" and not p.ready and p.running_since is not None:
            waited = (now - p.running_since).total_seconds()
            if waited > startup_budget_s:
                return RevisionVerdict(
                    "Failed",
                    "StartupTimeout",
                    f"pod {p.name} is not ready {int(waited)}s after it started (startup budget {startup_budget_s}s)",
                )
    if live and all(p.ready for p in live):
        return RevisionVerdict("Healthy", "Ready", "")
    return RevisionVerdict("Progressing", "Loading", "")


def should_roll_back(
    rollout: RolloutSpec, verdict: RevisionVerdict, running_hash: str | None, last_good_hash: str | None
) -> bool:
    """Roll back when the running revision failed, auto-rollback is on, and a different good revision exists."""
    return (
        rollout.auto_rollback
        and verdict.state == "Failed"
        and last_good_hash is not None
        and running_hash is not None
        and running_hash != last_good_hash
    )


# --------------------------------------------------------------------------------------------------------------------
# Memory of a rollback
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollbackRecord:
    """Kept as a Deployment annotation after a rollback: the failed template is not applied again while the spec
    still renders it (a change of the pod template retries), and status can say why after an operator restart."""

    failed_hash: str
    good_hash: str
    generation: int
    message: str

    def encode(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, annotations: Mapping[str, str] | None) -> RollbackRecord | None:
        raw = (annotations or {}).get(ANN_ROLLBACK)
        if not raw:
            return None
        try:
            d = json.loads(raw)
            return cls(str(d["failed_hash"]), str(d["good_hash"]), int(d["generation"]), str(d["message"]))
        except (ValueError, KeyError, TypeError):
            return None

    def status_message(self) -> str:
        return _short(
            f"generation {self.generation}'s pod template {self.failed_hash} failed and was rolled back to "
            f"{self.good_hash}: {self.message}. The spec is unchanged; change the pod template to retry.",
            MESSAGE_LIMIT,
        )
