"""The pure rollout decisions: capacity, surge or in-place, revision health, the rollback record."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from vlm_operator import conditions, rollout
from vlm_operator.api.rollout import RolloutSpec

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, gpus: int, product: str = "NVIDIA-A10G", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product, **extra.get("labels", {})}},
        "spec": {
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, *extra.get("taints", [])]
        },
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


def pod(node_name: str | None, gpus: int, phase: str = "Running", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": meta.get("name", "p"), "annotations": meta.get("annotations", {})},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": phase, **meta.get("status", {})},
    }


POD_SPEC: dict[str, Any] = {
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A10G"]}
                        ]
                    }
                ]
            }
        }
    },
    "containers": [{"resources": {"requests": {"nvidia.com/gpu": "2"}}}],
}


# ---------------------------------------------------------------------------------------------------- capacity
def test_free_gpus_counts_only_nodes_the_pod_can_use_minus_bound_requests() -> None:
    nodes = [
        node("a", 8),
        node("b", 8, product="NVIDIA-L4"),  # wrong product
        node("c", 4, taints=[{"key": "team", "value": "x", "effect": "NoSchedule"}]),  # untolerated taint
        {**node("d", 4), "spec": {**node("d", 4)["spec"], "unschedulable": True}},  # cordoned
    ]
    pods = [pod("a", 2), pod("a", 2, phase="Failed"), pod("a", 1, phase="Pending"), pod("b", 8), pod(None, 2)]
    assert rollout.free_gpus(nodes, pods, POD_SPEC) == {"a": 5}
    # a toleration and a nodeSelector change which nodes count
    spec = {**POD_SPEC, "tolerations": [*POD_SPEC["tolerations"], {"key": "team", "operator": "Equal", "value": "x"}]}
    assert set(rollout.free_gpus(nodes, [], spec)) == {"a", "c"}
    spec = {**spec, "nodeSelector": {"pool": "mine"}}
    assert rollout.free_gpus([node("a", 8), node("e", 2, labels={"pool": "mine"})], [], spec) == {"e": 2}


def test_free_gpus_counts_mig_slices_for_a_mig_pod() -> None:
    mig_node = node("m", 0, product="NVIDIA-A10G")
    mig_node["status"]["allocatable"]["nvidia.com/mig-3g.40gb"] = "2"
    mig_spec = {**POD_SPEC, "containers": [{"resources": {"limits": {"nvidia.com/mig-3g.40gb": "1"}}}]}
    assert rollout.gpu_resource(mig_spec) == "nvidia.com/mig-3g.40gb"
    assert rollout.gpu_resource(POD_SPEC) == "nvidia.com/gpu"
    holder = pod("m", 0)
    holder["spec"]["containers"] = [{"resources": {"requests": {"nvidia.com/mig-3g.40gb": "1"}}}]
    assert rollout.free_gpus([mig_node, node("a", 8)], [holder, pod("a", 2)], mig_spec) == {"a": 0, "m": 1}
    assert rollout.free_gpus([mig_node, node("a", 8)], [holder, pod("a", 2)], POD_SPEC) == {"a": 6, "m": 0}


def test_gpu_request_sums_containers_and_falls_back_to_limits() -> None:
    spec = {
        "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "2"}}},
            {"resources": {"requests": {"nvidia.com/gpu": "1"}}},
            {},
        ],
        "initContainers": [{"resources": {"requests": {"nvidia.com/gpu": "4"}}}],
    }
    assert rollout.gpu_request(spec) == 4
    assert rollout.gpu_request({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == 0


def test_pending_for_resources_reads_the_schedulers_condition() -> None:
    msg = "0/7 nodes are available: 1 Insufficient nvidia.com/gpu."
    p = pod(None, 1, phase="Pending", status={"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}
    ]})  # fmt: skip
    assert rollout.pending_for_resources(p) == msg
    assert rollout.pending_for_resources(pod(None, 1, phase="Pending")) is None
    assert rollout.pending_for_resources(pod("a", 1)) is None


# ---------------------------------------------------------------------------------------------------- strategy
def test_surge_when_a_surge_pod_fits() -> None:
    d = rollout.choose_strategy(RolloutSpec(), 2, {"a": 3, "b": 1})
    assert (d.mode, d.max_surge, d.max_unavailable, d.reason) == ("Surge", 1, 0, "SpareGPUs")
    assert d.strategy() == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    # maxSurge caps it, room caps it
    assert rollout.choose_strategy(RolloutSpec(maxSurge=3), 2, {"a": 8}).max_surge == 3
    assert rollout.choose_strategy(RolloutSpec(maxSurge=3), 2, {"a": 4, "b": 1}).max_surge == 2


def test_in_place_when_no_node_has_room_for_one_more_pod() -> None:
    # 3 free GPUs in total, but split so that no node has the 2 one pod needs
    d = rollout.choose_strategy(RolloutSpec(), 2, {"a": 1, "b": 1, "c": 1}, gpu_label="NVIDIA-A10G")
    assert (d.mode, d.max_surge, d.max_unavailable, d.reason) == ("InPlace", 0, 1, "NoSpareGPU")
    assert "NVIDIA-A10G" in d.message and "in place" in d.message
    assert rollout.choose_strategy(RolloutSpec(maxUnavailable=2), 2, {}).max_unavailable == 2
    # maxUnavailable 0 cannot replace in place; one at a time is the least that makes progress
    assert rollout.choose_strategy(RolloutSpec(maxUnavailable=0), 2, {}).max_unavailable == 1


def test_a_running_surge_keeps_its_room_but_a_pending_surge_pod_switches_to_in_place() -> None:
    # the surge pod got the last free GPU: it still counts as room, so the rollout keeps surging
    d = rollout.choose_strategy(RolloutSpec(), 1, {"a": 0}, held_surge_pods=1)
    assert d.mode == "Surge"
    # the surge pod is Pending for GPUs (someone took the spare): replace in place, which frees an old pod's GPU
    d = rollout.choose_strategy(RolloutSpec(), 1, {"a": 5}, pending="0/3 nodes: Insufficient nvidia.com/gpu")
    assert (d.mode, d.max_surge, d.reason) == ("InPlace", 0, "SurgePodPending")


@pytest.mark.parametrize(
    ("spec", "free", "want"),
    [
        (RolloutSpec(surgePolicy="Never"), {"a": 8}, ("InPlace", "SurgePolicyNever")),
        (RolloutSpec(surgePolicy="Always"), {}, ("Surge", "SurgePolicyAlways")),
        (RolloutSpec(maxSurge=0), {"a": 8}, ("InPlace", "NoSurgeAllowed")),
        (RolloutSpec(), None, ("InPlace", "CapacityUnknown")),
    ],
)
def test_policies_and_unknown_capacity(spec: RolloutSpec, free: dict[str, int] | None, want: tuple[str, str]) -> None:
    d = rollout.choose_strategy(spec, 1, free)
    assert (d.mode, d.reason) == want
    assert d.max_surge + d.max_unavailable >= 1  # never a strategy the API server refuses


def test_strategy_of_reads_back_what_was_written() -> None:
    d = rollout.choose_strategy(RolloutSpec(), 1, {"a": 1})
    assert rollout.strategy_of(d.strategy()) == (1, 0)
    assert rollout.strategy_of({"type": "Recreate"}) is None
    assert rollout.strategy_of(None) is None


# ---------------------------------------------------------------------------------------------------- health
def container(**kw: Any) -> dict[str, Any]:
    return {"name": "vllm", "started": kw.get("started", True), "restartCount": kw.get("restarts", 0),
            "state": kw.get("state", {"running": {"startedAt": kw.get("started_at", ts(10))}}),
            "lastState": kw.get("last", {})}  # fmt: skip


def health(phase: str = "Running", ready: bool = False, **kw: Any) -> rollout.PodHealth:
    obj = {
        "metadata": {"name": kw.get("name", "vlm-abc"), "annotations": {rollout.ANN_SPEC_HASH: "new"}},
        "status": {
            "phase": phase,
            "startTime": kw.get("start", ts(10)),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [container(**kw)],
        },
    }
    return rollout.PodHealth.of(obj)


OOM = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "loading\ntorch.OutOfMemoryError: CUDA\n"}}


def test_crash_loop_past_the_threshold_fails_with_the_pods_own_reason() -> None:
    p = health(started=False, restarts=3, state={"waiting": {"reason": "CrashLoopBackOff"}}, last=OOM)
    v = rollout.assess_revision([p], failure_threshold=3, startup_budget_s=600, now=NOW)
    assert (v.state, v.reason) == ("Failed", "OOMKilled")
    assert "exit code 137" in v.message and "3 restart" in v.message
    assert "torch.OutOfMemoryError: CUDA" in v.message  # the last log line, from the termination message
    # below the threshold it is still a rollout in progress
    p2 = health(started=False, restarts=2, state={"waiting": {"reason": "CrashLoopBackOff"}}, last=OOM)
    assert rollout.assess_revision([p2], 3, 600, NOW).state == "Progressing"


def test_repeatedly_failed_pods_fail_the_revision() -> None:
    failed = [
        health(phase="Failed", name=f"p{i}", started=False, state={"terminated": {"exitCode": 1, "reason": "Error"}})
        for i in range(3)
    ]
    assert rollout.assess_revision(failed[:2], 3, 600, NOW).state == "Progressing"
    v = rollout.assess_revision(failed, 3, 600, NOW)
    assert (v.state, v.reason) == ("Failed", "Error") and "3 pods failed" in v.message


def test_a_slow_but_healthy_load_is_not_a_failure_until_the_startup_budget_passes() -> None:
    slow = health(started=True, started_at=ts(500), start=ts(500))
    assert rollout.assess_revision([slow], 3, startup_budget_s=878, now=NOW).state == "Progressing"
    late = health(started=True, started_at=ts(900), start=ts(900))
    v = rollout.assess_revision([late], 3, startup_budget_s=878, now=NOW)
    assert (v.state, v.reason) == ("Failed", "StartupTimeout") and "878s" in v.message
    assert rollout.assess_revision([health(ready=True)], 3, 878, NOW).state == "Healthy"


def test_pending_pods_and_deleted_pods_are_not_failures() -> None:
    pending = rollout.PodHealth.of({"metadata": {"name": "x"}, "status": {"phase": "Pending"}})
    assert rollout.assess_revision([pending], 1, 10, NOW).state == "Progressing"
    gone = rollout.PodHealth.of(
        {
            "metadata": {"name": "y", "deletionTimestamp": ts(1)},
            "status": {"phase": "Running", "containerStatuses": [container(restarts=9)]},
        }
    )
    assert rollout.assess_revision([gone], 3, 10, NOW).state == "Progressing"


def test_should_roll_back_needs_opt_in_and_a_different_good_template() -> None:
    failed = rollout.RevisionVerdict("Failed", "OOMKilled", "m")
    assert rollout.should_roll_back(RolloutSpec(), failed, "new", "old")
    assert not rollout.should_roll_back(RolloutSpec(autoRollback=False), failed, "new", "old")
    assert not rollout.should_roll_back(RolloutSpec(), failed, "new", None)  # never been good: nothing to go back to
    assert not rollout.should_roll_back(RolloutSpec(), failed, "old", "old")
    assert not rollout.should_roll_back(RolloutSpec(), rollout.RevisionVerdict("Progressing", "", ""), "new", "old")


def test_rollback_record_round_trips_and_tolerates_junk() -> None:
    rec = rollout.RollbackRecord("bad", "good", 4, "pod x: OOMKilled (exit code 137)")
    assert rollout.RollbackRecord.decode({rollout.ANN_ROLLBACK: rec.encode()}) == rec
    assert rollout.RollbackRecord.decode({rollout.ANN_ROLLBACK: "{not json"}) is None
    assert rollout.RollbackRecord.decode(None) is None
    msg = rec.status_message()
    assert "OOMKilled" in msg and "generation 4" in msg and "good" in msg


def test_status_shows_the_strategy_and_the_rollback() -> None:
    fit = conditions.FitResult("Fits", "ok")
    rolling = conditions.Observed(
        2, 2, fit, deployment_status={"replicas": 2, "updatedReplicas": 1, "readyReplicas": 1}, strategy="surging"
    )
    prog = next(c for c in conditions.compute_status(rolling, "t")["conditions"] if c["type"] == "Progressing")
    assert prog["status"] == "True" and "surging" in prog["message"]
    back = conditions.Observed(2, 2, fit, deployment_status={}, rolled_back="OOMKilled (exit code 137)")
    deg = next(c for c in conditions.compute_status(back, "t")["conditions"] if c["type"] == "Degraded")
    assert (deg["status"], deg["reason"]) == ("True", "RolledBack") and "OOMKilled" in deg["message"]


def test_a_surge_pod_must_fit_the_quota_else_replace_in_place() -> None:
    full = rollout.choose_strategy(RolloutSpec(), 1, {"a": 8}, quota_room=("gpu-quota has 4 of 4 used", 0))
    assert (full.mode, full.reason, full.max_surge) == ("InPlace", "QuotaFull", 0)
    assert "gpu-quota has 4 of 4 used" in full.message and full.message.startswith("replacing in place")
    always = rollout.choose_strategy(RolloutSpec(surgePolicy="Always"), 1, None, quota_room=("q", 0))
    assert always.mode == "InPlace"  # a surge the quota refuses would never be created: no deadlock
    one = rollout.choose_strategy(RolloutSpec(maxSurge=3), 1, {"a": 8}, quota_room=("q", 1))
    assert (one.mode, one.max_surge) == ("Surge", 1)
    assert rollout.choose_strategy(RolloutSpec(maxSurge=3), 1, {"a": 8}, quota_room=None).max_surge == 3
