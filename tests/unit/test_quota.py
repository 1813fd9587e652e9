"""GPU ResourceQuota awareness (operator/vlm_operator/quota.py) and how the profile turns it into a warning or a
refusal (profiles.quota_verdict)."""

from __future__ import annotations

from typing import Any

from tests.manifests import parsed_spec
from vlm_operator import profiles, quota
from vlm_operator.api import VLMDeploymentSpec
from vlm_operator.api.profile import VLMPlatformProfile


def vspec(**over: Any) -> VLMDeploymentSpec:
    raw: dict[str, Any] = {"model": {"name": "llava-hf/llava-1.5-7b-hf"}, "resources": {"gpu": {"product": "L4"}}}
    return parsed_spec(raw, **over)


def rq(name: str, resource: str, hard: int, used: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"hard": {resource: str(hard)}, "used": {resource: str(used)}}}


def pod(
    gpus: int, *, terminating: bool = False, phase: str = "Running", resource: str = "nvidia.com/gpu"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if terminating:
        meta["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"resources": {"limits": {resource: str(gpus)}, "requests": {resource: str(gpus)}}}]},
        "status": {"phase": phase},
    }


GPU = "requests.nvidia.com/gpu"


def test_the_tightest_quota_counts_and_own_running_pods_are_given_back() -> None:
    quotas = [rq("loose", GPU, 100, 10), rq("team", GPU, 8, 6)]
    h = quota.headroom(quotas, GPU, mine=2)
    assert h is not None and (h.quota, h.left) == ("team", 4)
    assert quota.headroom([rq("cpu-only", "requests.cpu", 10, 1)], GPU, 0) is None


def test_terminating_and_finished_pods_are_not_given_back() -> None:
    pods = [pod(2), pod(2, terminating=True), pod(2, phase="Succeeded")]
    assert quota.held_by_pods(pods, GPU) == 2


def test_the_message_has_the_numbers_and_the_quota_name() -> None:
    spec = vspec(**{"engine.tensorParallelSize": 2, "scaling.replicas": 3})
    msg = quota.check(spec, [rq("team-gpus", GPU, 4, 2)], [pod(2)])
    assert msg == (
        "spec.scaling: 3 replica(s) x 2 GPU(s) = 6 nvidia.com/gpu exceed what ResourceQuota team-gpus leaves: hard 4, "
        "used 2 (this VLMDeployment holds 2), left 4; only 2 replica(s) can start until the quota is raised"
    )
    assert quota.check(vspec(**{"scaling.replicas": 2}), [rq("team-gpus", GPU, 4, 2)], []) is None


def test_under_an_autoscaler_min_replicas_count_and_mig_slices_use_their_own_quota() -> None:
    auto = vspec(
        **{"scaling.mode": "Internal", "scaling.minReplicas": 1, "scaling.maxReplicas": 8, "scaling.replicas": 4}
    )
    assert quota.min_replicas(auto) == 1
    assert quota.check(auto, [rq("q", GPU, 1, 0)], []) is None
    mig = vspec(**{"resources.gpu.product": "A100-80GB", "resources.gpu.migProfile": "3g.40gb", "scaling.replicas": 2})
    assert quota.quota_resource(mig) == "requests.nvidia.com/mig-3g.40gb"
    msg = quota.check(mig, [rq("q", "requests.nvidia.com/mig-3g.40gb", 1, 0), rq("g", GPU, 0, 0)], [])
    assert msg is not None and "2 nvidia.com/mig-3g.40gb exceed what ResourceQuota q leaves" in msg


def test_warn_by_default_refuse_under_enforce_and_never_for_an_unchanged_shape() -> None:
    spec = vspec(**{"scaling.replicas": 3})
    msg = quota.check(spec, [rq("q", GPU, 2, 0)], [])
    assert msg is not None
    warn = profiles.quota_verdict(profiles.Verdict(), msg, spec, None)
    assert warn.allowed and warn.warnings == (msg,)
    enforce = VLMPlatformProfile.model_validate({"metadata": {"name": "strict"}, "spec": {"quotaCheck": "Enforce"}})
    refused = profiles.quota_verdict(profiles.Verdict(selected=enforce), msg, spec, None)
    (r,) = refused.refusals
    assert (r.profile, r.rule, r.field) == ("strict", "quotaCheck", "spec.scaling")
    assert str(r).endswith("(VLMPlatformProfile strict, rule quotaCheck)")
    # an update that does not raise replicas or GPUs per replica is never refused or warned about
    same = profiles.quota_verdict(profiles.Verdict(selected=enforce), msg, spec, spec)
    assert same.allowed and not same.warnings


def test_replica_limit_is_live_replicas_plus_whole_pods_left_in_the_tightest_quota() -> None:
    quotas = [rq("loose", GPU, 100, 8), rq("gpu-quota", GPU, 10, 8)]
    lim = quota.replica_limit(quotas, GPU, per_replica=1, holding=2)
    assert lim is not None and (lim.quota, lim.max_replicas) == ("gpu-quota", 4)
    two_each = quota.replica_limit([rq("gpu-quota", GPU, 10, 7)], GPU, per_replica=2, holding=1)
    assert two_each is not None and two_each.max_replicas == 1 + 1  # 3 GPUs left: one more 2-GPU pod, not 1.5
    over = quota.replica_limit([rq("gpu-quota", GPU, 4, 6)], GPU, per_replica=1, holding=3)
    assert over is not None and over.max_replicas == 3  # lowered under usage: no room, never negative
    assert quota.replica_limit([rq("cpu", "requests.cpu", 10, 1)], GPU, 1, 1) is None


def test_live_replicas_leave_out_terminating_and_finished_pods() -> None:
    # A terminating pod's GPUs stay in the quota's `used` until it is gone (QuotaV1Pod), so it must not count as a
    # replica as well: that would give its GPUs away twice.
    pods = [pod(1), pod(1, terminating=True), pod(1, phase="Failed"), pod(1, phase="Pending")]
    assert quota.live_replicas(pods) == 2


def test_clamp_caps_growth_with_the_numbers_and_never_scales_down() -> None:
    lim = quota.replica_limit([rq("gpu-quota", GPU, 10, 8)], GPU, per_replica=1, holding=0)
    assert lim is not None and lim.max_replicas == 2
    capped, why = quota.clamp_replicas(1, 4, lim)
    assert capped == 2
    assert why is not None and why.startswith(
        "wants 4 replicas, namespace quota gpu-quota leaves room for 2 (8 of 10 nvidia.com/gpu used"
    )
    assert quota.clamp_replicas(1, 2, lim) == (2, None)  # fits: untouched
    assert quota.clamp_replicas(3, 1, lim) == (1, None)  # scaling down is never held back
    assert quota.clamp_replicas(3, 5, lim)[0] == 3  # already above the room: stays, not pushed down
    assert quota.clamp_replicas(1, 9, None) == (9, None)
