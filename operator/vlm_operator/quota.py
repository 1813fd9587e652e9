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
        for c in (pod.get("spec") or {}).get("containers") or []:
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
