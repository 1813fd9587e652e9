"""``vlm_operator.trim``: the compact children the operator's indexes keep give every reader the answer the full
bodies give, and share nothing with the body they were copied from.

The bodies in ``tests/data/children/vlm-0000.json`` were read with ``kubectl get -o json --show-managed-fields`` from
the dev cluster of ``benchmarks/operator_scale.py --count 300`` (kube-apiserver v1.36.1, kwok v0.8.0; the pods' status
is kwok's): one VLMDeployment with its Deployment, ReplicaSet and pod after the creates (``created``) and again after
the benchmark's rollout (``rolledOut``: the Deployment of the new template, both ReplicaSets). The ReplicaSets are not
indexed (a rollback lists them); they are here for the rollback's template lookup.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from vlm_operator import readiness, reconcile, rollout, trim
from vlm_operator.api import VLMDeployment
from vlm_operator.render import objects

FIXTURE = json.loads((Path(__file__).parents[1] / "data" / "children" / "vlm-0000.json").read_text())
OOM = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "torch.OutOfMemoryError: CUDA\nline 2\n"}}


def spec_hash(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["metadata"]["annotations"][objects.ANN_SPEC_HASH])


def world(phase: str) -> dict[str, Any]:
    return copy.deepcopy(FIXTURE[phase])


def now_after(pod: dict[str, Any], minutes: float) -> dt.datetime:
    start = dt.datetime.fromisoformat(pod["status"]["startTime"].replace("Z", "+00:00"))
    return start + dt.timedelta(minutes=minutes)


def pod_variants() -> Iterator[tuple[str, dict[str, Any]]]:
    """The captured pod, and the states of it that each reader tells apart."""
    base = world("created")["pods"][0]
    yield "running", base
    crash = copy.deepcopy(base)
    cs = crash["status"]["containerStatuses"][0]
    cs.update(ready=False, started=False, restartCount=4, state={"waiting": {"reason": "CrashLoopBackOff"}})
    cs["lastState"] = OOM
    crash["status"]["conditions"][1]["status"] = "False"
    yield "crash-looping", crash
    pull = copy.deepcopy(crash)
    pull["status"]["containerStatuses"][0].update(
        state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}, lastState={}
    )
    yield "image-pull", pull
    failed = copy.deepcopy(base)
    failed["status"]["phase"] = "Failed"
    failed["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    yield "failed", failed
    pending = copy.deepcopy(base)
    del pending["spec"]["nodeName"]
    pending["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/150 nodes are available: 150 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    yield "pending-for-gpus", pending
    gated = copy.deepcopy(base)
    gated["spec"]["readinessGates"] = [{"conditionType": readiness.GATE}]
    gated["status"]["containerStatuses"][0]["started"] = True
    yield "gated-not-probed", gated
    probed = copy.deepcopy(gated)
    probed["status"]["conditions"].append(
        {
            "type": readiness.GATE,
            "status": "False",
            "reason": readiness.REASON_FAILED,
            "message": "image request failed: 500",
            "lastProbeTime": "2099-01-01T00:00:00Z",
            "lastTransitionTime": "2099-01-01T00:00:00Z",
        }
    )
    yield "gated-failed", probed
    deleting = copy.deepcopy(base)
    deleting["metadata"]["deletionTimestamp"] = "2026-12-07T10:20:00Z"
    yield "terminating", deleting


VARIANTS = list(pod_variants())


def test_the_fixture_is_what_the_api_server_sends() -> None:
    # the point of trimming: kopf's bodies carry managedFields and more than any reader uses
    for phase in ("created", "rolledOut"):
        w = FIXTURE[phase]
        for obj in (w["deployment"], *w["replicaSets"], *w["pods"]):
            assert obj["metadata"]["managedFields"], obj["metadata"]["name"]
    assert len(FIXTURE["rolledOut"]["replicaSets"]) == 2
    assert spec_hash(FIXTURE["created"]["deployment"]) != spec_hash(FIXTURE["rolledOut"]["deployment"])


@pytest.mark.parametrize(
    "kind,pick",
    [
        ("pod", lambda w: w["pods"][0]),
        ("deployment", lambda w: w["deployment"]),
    ],
)
def test_a_trimmed_child_has_no_managed_fields_and_is_a_fraction_of_the_body(kind: str, pick: Any) -> None:
    full = pick(world("created"))
    small = getattr(trim, kind)(full)
    assert "managedFields" not in small["metadata"]
    assert small["metadata"]["name"] == full["metadata"]["name"]
    assert len(json.dumps(small)) < len(json.dumps(full)) / 2


@pytest.mark.parametrize("name,pod", VARIANTS, ids=[n for n, _ in VARIANTS])
def test_every_pod_reader_answers_the_same_on_a_trimmed_pod(name: str, pod: dict[str, Any]) -> None:
    small = trim.pod(pod)
    h = pod["metadata"]["annotations"][objects.ANN_SPEC_HASH]
    now = now_after(pod if "startTime" in pod["status"] else VARIANTS[0][1], 30)
    assert rollout.PodHealth.of(small) == rollout.PodHealth.of(pod)
    assert rollout.pending_for_resources(small) == rollout.pending_for_resources(pod)
    assert rollout.bound_pods([small]) == rollout.bound_pods([pod])
    assert rollout.assess_revision([rollout.PodHealth.of(small)], 3, 600, now) == rollout.assess_revision(
        [rollout.PodHealth.of(pod)], 3, 600, now
    )
    for template_hash in (h, "other", None):
        assert reconcile._pod_problems([small], template_hash) == reconcile._pod_problems([pod], template_hash)
    for template_hash in (h, "other"):
        assert reconcile._old_revision_left([small], template_hash) == reconcile._old_revision_left(
            [pod], template_hash
        )
        assert reconcile._waiting_for_gpus([small], template_hash) == reconcile._waiting_for_gpus([pod], template_hash)
    backoff = readiness.Backoff()
    assert readiness.gated(small) == readiness.gated(pod)
    assert readiness.probe_key(small) == readiness.probe_key(pod)
    assert readiness.due(small, backoff, 0.0) == readiness.due(pod, backoff, 0.0)
    assert readiness.failed_probe(small) == readiness.failed_probe(pod)
    assert readiness.gate_condition(small) == readiness.gate_condition(pod)


def test_the_pod_variants_reach_every_branch_the_readers_have() -> None:
    # the comparison above means something only if the variants differ where the readers look
    by_name = dict(VARIANTS)
    assert reconcile._pod_problems([by_name["crash-looping"]], None)[0].reason == "OOMKilled"
    assert reconcile._pod_problems([by_name["image-pull"]], None)[0].reason == "ImagePullBackOff"
    assert reconcile._pod_problems([by_name["failed"]], None)[0].reason == "Error"
    assert reconcile._pod_problems([by_name["gated-failed"]], None)[0].reason == readiness.REASON_FAILED
    assert rollout.pending_for_resources(by_name["pending-for-gpus"])
    assert readiness.due(by_name["gated-not-probed"], readiness.Backoff(), 0.0)
    assert rollout.PodHealth.of(by_name["terminating"]).deleting
    assert rollout.PodHealth.of(by_name["running"]).ready


def test_readiness_probes_the_same_pods_and_writes_the_same_patch() -> None:
    pods = [pod for _, pod in VARIANTS]
    calls: list[list[tuple[str, str, dict[str, Any]]]] = []
    for batch in (pods, [trim.pod(p) for p in pods]):
        writes: list[tuple[str, str, dict[str, Any]]] = []
        readiness.probe_pods(
            batch,
            lambda ns, name, patch, w=writes: w.append((ns, name, patch)),  # type: ignore[misc]
            readiness.Backoff(),
            0.0,
            probe=lambda url, timeout: readiness.smoke.SmokeResult(ok=True, status=200, error=None, latency_s=1.0),
            utc_now=lambda: "2026-12-07T10:30:00Z",
        )
        calls.append(writes)
    assert calls[0] and calls[0] == calls[1]


def vlmd(body: dict[str, Any]) -> VLMDeployment:
    return VLMDeployment.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})


def observation(
    body: dict[str, Any],
    live: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    rsets: list[dict[str, Any]],
    now: dt.datetime,
) -> reconcile.Observation:
    bound = copy.deepcopy(pods)  # the cluster snapshot is not the index: full pods either way

    def free_gpus(_: Any) -> tuple[dict[str, int], list[dict[str, Any]]]:
        return {"gpu-l4-0": 1, "gpu-l4-1": 0}, bound

    return reconcile.Observation(body, live, pods, rsets, {"NVIDIA-L4": 2}, now, free_gpus, quotas=lambda: [])


def decide_both(
    body: dict[str, Any], live: dict[str, Any], pods: list[dict[str, Any]], rsets: list[dict[str, Any]], now: Any
) -> tuple[reconcile.Decision, reconcile.Decision, dict[str, Any], dict[str, Any]]:
    """``decide`` and ``status_for`` on the full children and on trimmed ones; the trimmed decision is returned
    second."""
    out = []
    for tlive, tpods, trsets in (
        (live, pods, rsets),
        (trim.deployment(live), [trim.pod(p) for p in pods], rsets),
    ):
        obs = observation(copy.deepcopy(body), tlive, tpods, trsets, now)
        d = reconcile.decide(vlmd(body), obs)
        running = reconcile._template_hash(tlive)
        out.append((d, reconcile.status_for(vlmd(body), obs, d, tlive, running)))
    (full_d, full_s), (small_d, small_s) = out
    assert small_d.deployment == full_d.deployment
    assert small_d.others == full_d.others
    assert small_d.roll == full_d.roll
    assert small_d.details == full_d.details and small_d.template_hash == full_d.template_hash
    assert small_s == full_s
    assert reconcile._same_object(trim.deployment(live), full_d) == reconcile._same_object(live, full_d)
    assert reconcile._resource_version(trim.deployment(live)) == reconcile._resource_version(live) is not None
    return full_d, small_d, full_s, small_s


def test_an_idle_object_decides_and_reports_the_same_on_trimmed_children() -> None:
    w = world("created")
    full_d, _, status, _ = decide_both(
        w["vlmd"], w["deployment"], w["pods"], w["replicaSets"], now_after(w["pods"][0], 1)
    )
    assert full_d.roll.event is None
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_a_rollout_under_way_picks_the_same_strategy_on_trimmed_children() -> None:
    before, after = world("created"), world("rolledOut")
    # the new template is applied; the old pod still runs: a rollout is under way
    full_d, _, status, _ = decide_both(
        after["vlmd"], before["deployment"], before["pods"], after["replicaSets"], now_after(before["pods"][0], 1)
    )
    assert full_d.roll.decision is not None and full_d.roll.event is not None
    assert full_d.deployment is not None and spec_hash(full_d.deployment) == spec_hash(after["deployment"])
    assert status["podTemplateHash"] == spec_hash(after["deployment"])


def test_a_failed_revision_rolls_back_to_the_same_template_with_trimmed_children() -> None:
    before, after = world("created"), world("rolledOut")
    good, bad = spec_hash(before["deployment"]), spec_hash(after["deployment"])
    body = after["vlmd"]
    body["status"]["lastGoodPodTemplateHash"] = good
    pod = dict(VARIANTS)["crash-looping"]
    pod["metadata"]["annotations"][objects.ANN_SPEC_HASH] = bad
    full_d, _, _, _ = decide_both(body, after["deployment"], [pod], after["replicaSets"], now_after(pod, 30))
    assert full_d.deployment is not None and spec_hash(full_d.deployment) == good
    assert full_d.roll.rolled_back and full_d.roll.event is not None and full_d.roll.event[1] == "RolledBack"
    # the template re-applied is the old ReplicaSet's, less the controller's pod-template-hash label
    rs_good = next(r for r in after["replicaSets"] if spec_hash(r) == good)
    live = trim.deployment(after["deployment"])
    tmpl = reconcile._good_template(after["replicaSets"], good, live)  # the owner's uid read from the trimmed copy
    assert tmpl == reconcile._good_template(after["replicaSets"], good, after["deployment"])
    assert tmpl is not None and "pod-template-hash" not in tmpl["metadata"]["labels"]
    assert tmpl["spec"] == rs_good["spec"]["template"]["spec"]

    # the next reconcile reads the rolled-back Deployment from the index: it stays rolled back, the same either way
    rolled = copy.deepcopy(after["deployment"])
    rolled["spec"]["template"] = copy.deepcopy(full_d.deployment["spec"]["template"])
    rolled["metadata"]["annotations"].update(full_d.deployment["metadata"]["annotations"])
    again, _, _, _ = decide_both(body, rolled, [pod], after["replicaSets"], now_after(pod, 31))
    assert again.deployment is not None and spec_hash(again.deployment) == good and again.roll.rolled_back


def ids_of(value: Any) -> Iterator[int]:
    if isinstance(value, dict):
        yield id(value)
        for v in value.values():
            yield from ids_of(v)
    elif isinstance(value, list):
        yield id(value)
        for v in value:
            yield from ids_of(v)


@pytest.mark.parametrize("kind", ["pod", "deployment"])
@pytest.mark.parametrize("wrap", [False, True], ids=["dict", "kopf.Body"])
def test_a_trimmed_child_shares_no_dict_or_list_with_the_body(kind: str, wrap: bool) -> None:
    w = world("rolledOut")
    raw = {"pod": w["pods"][0], "deployment": w["deployment"]}[kind]
    if kind == "pod":
        raw["spec"]["readinessGates"] = [{"conditionType": readiness.GATE}]
    pristine = copy.deepcopy(raw)
    small = getattr(trim, kind)(kopf.Body(raw) if wrap else raw)
    assert not set(ids_of(small)) & set(ids_of(raw))
    assert all(type(x) in (dict, list) for x in _containers(small))  # plain JSON, no views of kopf's
    kept = copy.deepcopy(small)

    def scribble(value: Any) -> None:
        if isinstance(value, dict):
            for k in list(value):
                scribble(value[k])
                value[k] = "changed"
        elif isinstance(value, list):
            for v in value:
                scribble(v)
            value.append("changed")

    scribble(raw)  # kopf's body changes (or is reused) after the index took its copy
    assert small == kept
    assert small == getattr(trim, kind)(pristine)


def _containers(value: Any) -> Iterator[Any]:
    if isinstance(value, dict | list):
        yield value
        for v in value.values() if isinstance(value, dict) else value:
            yield from _containers(v)


def test_copy_json_copies_views_and_keeps_scalars() -> None:
    raw = {"a": [1, 2.5, True, None, {"b": "c"}], "d": {"e": []}}
    view = kopf.Body(copy.deepcopy(raw))
    out = trim.copy_json(view)
    assert out == raw and type(out) is dict
    assert trim.copy_json(raw) == raw and trim.copy_json(raw)["a"] is not raw["a"]


def test_copies_from_separate_decodes_share_their_key_strings() -> None:
    text = json.dumps(FIXTURE["rolledOut"]["deployment"])
    a, b = (trim.deployment(json.loads(text)) for _ in range(2))  # two watch events: two decodes
    ka = next(k for k in a["spec"]["template"]["spec"]["containers"][0] if k == "terminationMessagePath")
    kb = next(k for k in b["spec"]["template"]["spec"]["containers"][0] if k == "terminationMessagePath")
    assert ka is kb
    assert a == b and a["spec"]["template"] is not b["spec"]["template"]


def test_a_remembered_plan_keeps_none_of_the_objects_metadata_but_its_identity() -> None:
    body = world("created")["vlmd"]
    body["metadata"]["managedFields"] = copy.deepcopy(FIXTURE["created"]["deployment"]["metadata"]["managedFields"])
    reconcile.forget_plan(body["metadata"]["namespace"], body["metadata"]["name"])
    first = reconcile.cached_plan(vlmd(body), {"NVIDIA-L4": 2})
    assert first.vlmd.metadata == {k: body["metadata"][k] for k in ("namespace", "name", "uid")}
    assert reconcile.cached_plan(vlmd(body), {"NVIDIA-L4": 2}) is first  # still remembered by the full metadata
    assert first.desired == reconcile.build_plan(vlmd(body), {"NVIDIA-L4": 2}).desired  # the render is unchanged
    reconcile.forget_plan(body["metadata"]["namespace"], body["metadata"]["name"])


def test_a_service_or_pdb_keeps_its_object_hash_and_version_only() -> None:
    from vlm_operator.render.objects import ANN_OBJECT_HASH

    body = {
        "kind": "Service",
        "metadata": {
            "name": "m",
            "namespace": "ns",
            "resourceVersion": "42",
            "uid": "u",
            "annotations": {ANN_OBJECT_HASH: "h", "other": "x"},
            "managedFields": [{"manager": "vlm-operator"}],
        },
        "spec": {"ports": [{"port": 8000}]},
    }
    kept = trim.hashed(body)
    assert kept == {
        "kind": "Service",
        "metadata": {"name": "m", "namespace": "ns", "resourceVersion": "42", "annotations": {ANN_OBJECT_HASH: "h"}},
    }
    assert trim.hashed({"kind": "Service", "metadata": {"name": "m"}})["metadata"] == {"name": "m"}  # no hash on it
