"""A ResourceQuota refusal of the pods reaches the VLMDeployment's status with its numbers (quota_refusal)."""

from __future__ import annotations

from vlm_operator import conditions

REFUSAL = (
    'pods "llava-1-5-7b-6d9f-x2" is forbidden: exceeded quota: team-gpus, requested: requests.nvidia.com/gpu=1, '
    "used: requests.nvidia.com/gpu=2, limited: requests.nvidia.com/gpu=2"
)


def deployment_status(conditions: list[dict[str, str]]) -> dict[str, object]:
    return {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "conditions": conditions}


def test_a_quota_refusal_shows_in_progressing_with_the_numbers() -> None:
    ds = deployment_status([{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": REFUSAL}])
    obs = conditions.Observed(
        generation=1,
        desired_replicas=3,
        fit=conditions.FitResult("Fits", "fits"),
        deployment_status=ds,
        deployment_generation=1,
    )
    out = conditions.compute_status(obs, "2026-12-07T00:00:00Z")
    prog = next(c for c in out["conditions"] if c["type"] == "Progressing")
    assert prog["status"] == "True" and prog["reason"] == "QuotaExceeded"
    assert prog["message"] == (
        "2/3 replicas ready; pods cannot be created: exceeded quota: team-gpus, requested: requests.nvidia.com/gpu=1, "
        "used: requests.nvidia.com/gpu=2, limited: requests.nvidia.com/gpu=2"
    )


def test_other_create_failures_and_cleared_conditions_are_not_quota() -> None:
    assert conditions.quota_refusal(deployment_status([])) is None
    other = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "admission webhook x"}
    assert conditions.quota_refusal(deployment_status([other])) is None
    cleared = {"type": "ReplicaFailure", "status": "False", "reason": "FailedCreate", "message": REFUSAL}
    assert conditions.quota_refusal(deployment_status([cleared])) is None
