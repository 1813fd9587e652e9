"""GPU ResourceQuota awareness, as pure functions over the namespace's ResourceQuotas and this VLMDeployment's pods.

Kubernetes counts extended resources such as ``nvidia.com/gpu`` only under the ``requests.`` prefix in a
ResourceQuota (kubernetes.io/docs/concepts/policy/resource-quotas, "Resource quota for extended resources"), so the
quota names are ``requests.nvidia.com/gpu`` and, for MIG slices, ``requests.nvidia.com/mig-<profile>``. What is left
for a VLMDeployment is ``hard - used`` of the tightest quota, plus what its own running pods already hold (a spec
change does not need those twice). Terminating pods still count: the quota releases them only once they are gone.

Admission can only warn or refuse early: two creates can race for the same headroom, so the API server's own quota
admission stays the real limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vlm_operator import gpus
from vlm_operator.api import VLMDeploymentSpec


def quota_resource(spec: VLMDeploymentSpec) -> str:
    """The ResourceQuota name that limits this spec's pods: ``requests.nvidia.com/gpu`` or the MIG slice's."""
    mig = spec.resources.gpu.mig_profile
    return "requests." + (gpus.mig_resource(mig) if mig else "nvidia.com/gpu")


def gpus_per_replica(spec: VLMDeploymentSpec) -> int:
    return 1 if spec.resources.gpu.mig_profile else spec.engine.gpus_per_pod


def min_replicas(spec: VLMDeploymentSpec) -> int:
    """The replicas it must have: ``replicas`` when the user owns the count, ``minReplicas`` under an autoscaler."""
    s = spec.scaling
    return s.replicas if s.mode == "Manual" else min(s.min_replicas, s.replicas)


def _qty(raw: Any) -> int:
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return 0


def held_by_pods(pods: Iterable[Mapping[str, Any]], resource: str) -> int:
    """GPUs (of quota ``resource``) that ``pods`` request and will keep holding: not finished, not terminating."""
    name = resource.removeprefix("requests.")
    total = 0
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue  # it still counts in the quota's `used`, and will be gone: not ours to reuse
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        spec = pod.get("spec") or {}
        # a native sidecar (an init container that keeps running: a VLMBatchJob's engine) holds its GPUs too
        sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        for c in [*(spec.get("containers") or []), *sidecars]:
            res = c.get("resources") or {}
            total += _qty((res.get("requests") or {}).get(name, (res.get("limits") or {}).get(name, 0)))
    return total


@dataclass(frozen=True)
class Headroom:
    quota: str  #: the ResourceQuota that is tightest
    resource: str
    hard: int
    used: int
    mine: int  #: what this VLMDeployment's pods already hold (and would hand over to a new revision)

    @property
    def left(self) -> int:
        return max(self.hard - self.used + self.mine, 0)


def headroom(quotas: Iterable[Mapping[str, Any]], resource: str, mine: int) -> Headroom | None:
    """The tightest quota on ``resource`` in the namespace, or None when none limits it."""
    best: Headroom | None = None
    for q in quotas:
        st = q.get("status") or {}
        hard = (st.get("hard") or (q.get("spec") or {}).get("hard") or {}).get(resource)
        if hard is None:
            continue
        h = Headroom(
            str((q.get("metadata") or {}).get("name", "?")),
            resource,
            _qty(hard),
            _qty((st.get("used") or {}).get(resource, 0)),
            mine,
        )
        if best is None or h.left < best.left:
            best = h
    return best


def check(
    spec: VLMDeploymentSpec, quotas: Iterable[Mapping[str, Any]], own_pods: Iterable[Mapping[str, Any]]
) -> str | None:
    """A message when the replicas this spec must have need more GPUs than the namespace's quota leaves, else None."""
    resource = quota_resource(spec)
    h = headroom(quotas, resource, held_by_pods(own_pods, resource))
    if h is None:
        return None
    per, n = gpus_per_replica(spec), min_replicas(spec)
    need = per * n
    if need <= h.left:
        return None
    fits = h.left // per if per else 0
    return (
        f"spec.scaling: {n} replica(s) x {per} GPU(s) = {need} {resource.removeprefix('requests.')} exceed what "
        f"ResourceQuota {h.quota} leaves: hard {h.hard}, used {h.used} (this VLMDeployment holds {h.mine}), left "
        f"{h.left}; only {fits} replica(s) can start until the quota is raised"
    )


# The quota's ``used`` is the API server's own count, and it already charges terminating pods. The pod evaluator
# (kubernetes pkg/quota/v1/evaluator/core/pods.go, ``QuotaV1Pod``, v1.31) drops a pod from compute usage only when
# its phase is Succeeded or Failed, or when it is stuck: past ``deletionTimestamp + deletionGracePeriodSeconds``
# (a lost node). A pod that is shutting down normally keeps its GPUs in ``used`` until it is gone, so
# ``hard - used`` needs no correction for terminating pods.


@dataclass(frozen=True)
class QuotaLimit:
    """The most replicas a VLMDeployment may have under the tightest quota, and the numbers that say why."""

    quota: str
    resource: str
    hard: int
    used: int
    per_replica: int
    max_replicas: int

    def message(self, wants: int) -> str:
        res = self.resource.removeprefix("requests.")
        return (
            f"wants {wants} replicas, namespace quota {self.quota} leaves room for {self.max_replicas} "
            f"({self.used} of {self.hard} {res} used, {self.per_replica} per replica)"
        )


def replica_limit(
    quotas: Iterable[Mapping[str, Any]], resource: str, per_replica: int, holding: int
) -> QuotaLimit | None:
    """The most replicas allowed: ``holding`` (this VLMDeployment's live, not terminating pods, already counted in
    ``used``) plus ``floor((hard - used) / per_replica)`` of the tightest quota on ``resource``; None without one."""
    best: QuotaLimit | None = None
    for q in quotas:
        h = headroom([q], resource, 0)
        if h is None:
            continue
        room = max(h.hard - h.used, 0) // per_replica if per_replica > 0 else 0
        lim = QuotaLimit(h.quota, resource, h.hard, h.used, per_replica, holding + room)
        if best is None or lim.max_replicas < best.max_replicas:
            best = lim
    return best


def live_replicas(pods: Iterable[Mapping[str, Any]]) -> int:
    """This VLMDeployment's pods that hold quota and will keep it: not finished, not terminating."""
    return sum(
        1
        for p in pods
        if not (p.get("metadata") or {}).get("deletionTimestamp")
        and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )


def clamp_replicas(current: int, wanted: int, limit: QuotaLimit | None) -> tuple[int, str | None]:
    """``wanted`` capped by ``limit`` for a scale-up, with the message saying so (None when the quota did not bite).
    The quota never pushes below ``current``: it stops growth, it does not take running replicas away."""
    if limit is None or wanted <= current or wanted <= limit.max_replicas:
        return wanted, None
    return max(current, limit.max_replicas), limit.message(wanted)
