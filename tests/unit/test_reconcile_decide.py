"""``reconcile.decide`` on recorded observations: no cluster, no kube client, the clock is part of the observation."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from vlm_operator import reconcile, rollout
from vlm_operator.api import VLMDeployment
from vlm_operator.render import objects

NOW = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)
OOM = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "torch.OutOfMemoryError: CUDA\n"}}


def body(max_model_len: int, last_good: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "vlmops.io/v1alpha1",
        "kind": "VLMDeployment",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": 2},
        "spec": {
            "model": {"name": "llava-hf/llava-1.5-7b-hf"},
            "engine": {"version": "0.11.0", "maxModelLen": max_model_len},
            "resources": {"gpu": {"product": "L4"}},
        },
        "status": {"lastGoodPodTemplateHash": last_good} if last_good else {},
    }


def deployment_for(b: dict[str, Any]) -> dict[str, Any]:
    """The Deployment as the API server would return it after the operator applied ``b``'s rendering."""
    plan = reconcile.build_plan(
        VLMDeployment.model_validate({k: b[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    )
    dep = copy.deepcopy(plan.desired[0])
    dep["metadata"]["uid"] = "dep-uid"
    return dep


def template_hash(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["metadata"]["annotations"][objects.ANN_SPEC_HASH])


def replica_set(dep: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "m-rs", "ownerReferences": [{"uid": "dep-uid"}]},
        "spec": {"template": copy.deepcopy(dep["spec"]["template"])},
    }


def crashing_pod(h: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "m-1", "annotations": {objects.ANN_SPEC_HASH: h}},
        "spec": {"nodeName": "gpu-l4-0"},
        "status": {
            "phase": "Running",
            "startTime": (NOW - dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "vllm",
                    "started": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": OOM,
                }
            ],
        },
    }


def observation(
    b: dict[str, Any], live: dict[str, Any] | None, pods: list[Any], rsets: list[Any]
) -> reconcile.Observation:
    def no_reads(_: Any) -> tuple[dict[str, int], list[dict[str, Any]]]:
        raise AssertionError("this decision must not need the cluster's free GPUs")

    return reconcile.Observation(b, live, pods, rsets, {"NVIDIA-L4": 4}, NOW, no_reads)


def test_a_failed_revision_is_rolled_back_to_the_last_good_template_with_details() -> None:
    good = deployment_for(body(4096))
    good_hash = template_hash(good)
    bad_body = body(2048, last_good=good_hash)
    live = deployment_for(bad_body)  # the new (failing) template is what runs now
    bad_hash = template_hash(live)
    assert bad_hash != good_hash
    obs = observation(bad_body, live, [crashing_pod(bad_hash)], [replica_set(good)])
    vlmd = VLMDeployment.model_validate({k: bad_body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    d = reconcile.decide(vlmd, obs)
    assert d.refused is None and d.deployment is not None
    assert template_hash(d.deployment) == good_hash  # the Deployment goes back to the good template
    assert rollout.ANN_ROLLBACK in d.deployment["metadata"]["annotations"]
    assert d.roll.event is not None and d.roll.event[1] == "RolledBack"
    assert any("OOMKilled" in x for x in d.details)


def test_an_idle_object_keeps_its_strategy_and_reads_nothing_more() -> None:
    b = body(4096)
    live = deployment_for(b)
    live["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    pod = crashing_pod(template_hash(live))
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    vlmd = VLMDeployment.model_validate({k: b[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    d = reconcile.decide(vlmd, observation(b, live, [pod], []))
    assert d.deployment is not None
    assert d.deployment["spec"]["strategy"] == live["spec"]["strategy"]
    assert d.deployment["spec"]["template"] == live["spec"]["template"]  # rendered once, identical
    assert d.roll.event is None and d.details == []


def test_a_refused_spec_decides_nothing_to_apply() -> None:
    b = body(4096)
    b["spec"]["engine"]["extraArgs"] = ["--bogus-flag"]
    vlmd = VLMDeployment.model_validate({k: b[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    d = reconcile.decide(vlmd, observation(b, None, [], []))
    assert d.deployment is None and d.others == []
    assert d.refused is not None and "spec.engine.extraArgs" in d.refused
    assert d.details == [d.refused]


class StoreKube:
    """An in-memory API server for one reconcile: objects by (kind, namespace, name), reads and writes counted."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.store = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs}
        self.gets: list[str] = []
        self.applies: list[str] = []
        self.status_writes = 0
        self.patches: list[dict[str, Any]] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append(kind)
        return copy.deepcopy(self.store.get((kind, namespace, name)))

    def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applies.append(obj["kind"])
        self.store[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = copy.deepcopy(obj)
        return obj

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.status_writes += 1
        self.patches.append(status)
        obj = self.store[(kind, namespace, name)]
        obj["status"] = {**(obj.get("status") or {}), **status}

    def event(self, *_: Any) -> None:
        pass


def _applied_world(b: dict[str, Any]) -> tuple[StoreKube, dict[str, Any]]:
    plan = reconcile.build_plan(
        VLMDeployment.model_validate({k: b[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    )
    dep = deployment_for(b)
    return StoreKube(b, dep, *copy.deepcopy(plan.desired[1:])), dep


def test_the_deployment_comes_from_the_index_and_is_read_only_when_it_must_change() -> None:
    import logging

    b = body(4096)
    kube, dep = _applied_world(b)
    log = logging.getLogger("test")
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(copy.deepcopy(dep),))  # type: ignore[arg-type]
    assert kube.applies == [] and kube.status_writes == 1  # the first status (read from a fresh Deployment)
    kube.gets.clear()
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(copy.deepcopy(dep),))  # type: ignore[arg-type]
    assert "Deployment" not in kube.gets and kube.applies == []  # the index is current: no GET, no write
    assert kube.status_writes == 1
    # the index still holds the Deployment of an older spec (this process just applied the new one): read afresh,
    # find it current, write nothing
    stale = deployment_for(body(2048))
    kube.gets.clear()
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(stale,))  # type: ignore[arg-type]
    assert kube.gets.count("Deployment") == 1 and kube.applies == []
    # gone from the index and from the API server: applied again
    del kube.store[("Deployment", "ns", "m")]
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(None,))  # type: ignore[arg-type]
    assert kube.applies == ["Deployment"]


def test_the_plan_is_remembered_per_spec_and_inventory() -> None:
    b = body(4096)
    vlmd = VLMDeployment.model_validate({k: b[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    first = reconcile.cached_plan(vlmd, {"NVIDIA-L4": 4})
    b2 = copy.deepcopy(b)
    b2["metadata"]["resourceVersion"] = "99"  # a status write: same spec, same plan
    again = VLMDeployment.model_validate({k: b2[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    assert reconcile.cached_plan(again, {"NVIDIA-L4": 4}) is first
    assert reconcile.cached_plan(again, {"NVIDIA-L4": 8}) is not first  # another inventory
    b3 = body(2048)
    changed = VLMDeployment.model_validate({k: b3[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    other = reconcile.cached_plan(changed, {"NVIDIA-L4": 4})
    assert other is not first and other.command != first.command
    assert other.command == reconcile.build_plan(changed, {"NVIDIA-L4": 4}).command


def test_a_create_that_applies_the_deployment_leaves_the_status_to_the_child_reconcile() -> None:
    import logging

    b = body(4096)
    log = logging.getLogger("test")
    kube = StoreKube(b)
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(None,), defer_status=True)  # type: ignore[arg-type]
    assert "Deployment" in kube.applies and kube.status_writes == 0
    # the reconcile the Deployment's event brings writes it (nothing left to apply)
    kube.applies.clear()
    dep = kube.store[("Deployment", "ns", "m")]
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(dep,), thorough=False)  # type: ignore[arg-type]
    assert kube.applies == [] and kube.status_writes == 1
    # a handler reconcile that changes nothing writes the status itself
    other = StoreKube(body(4096, last_good="x"))
    other.store.update({k: v for k, v in kube.store.items() if k[0] != "VLMDeployment"})
    reconcile.reconcile(other, "ns", "m", log, pods=[], replica_sets=[], deployment=(dep,), defer_status=True)  # type: ignore[arg-type]
    assert other.applies == [] and other.status_writes == 1


def test_a_spec_change_replaces_the_objects_plan_instead_of_adding_one() -> None:
    # a rollout of every object used to keep both plans of each (old and new spec): twice the memory at 1,000 objects
    reconcile._PLANS.clear()
    for max_len in (4096, 2048, 1024):
        b = body(max_len)
        vlmd = VLMDeployment.model_validate({k: b[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        plan = reconcile.cached_plan(vlmd, {"NVIDIA-L4": 4})
        assert reconcile.cached_plan(vlmd, {"NVIDIA-L4": 4}) is plan
        assert len(reconcile._PLANS) == 1
    other = body(4096)
    other["metadata"]["name"] = "m2"
    vlmd2 = VLMDeployment.model_validate({k: other[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    reconcile.cached_plan(vlmd2, {"NVIDIA-L4": 4})
    assert len(reconcile._PLANS) == 2
    # a deleted object's plan goes with the rest of what the process remembers of it
    reconcile.forget_applied(b["metadata"]["namespace"], b["metadata"]["name"])
    assert [i.split("/")[1] for i in reconcile._PLANS] == ["m2"]


def test_a_status_change_from_a_lagging_index_is_computed_from_a_fresh_read() -> None:
    import logging

    def ready(status: dict[str, Any]) -> str:
        return next(c["status"] for c in status["conditions"] if c["type"] == "Ready")

    b = body(4096)
    kube, dep = _applied_world(b)
    log = logging.getLogger("test")
    serving = copy.deepcopy(dep)
    serving["metadata"].update({"generation": 1, "resourceVersion": "20"})
    serving["status"] = {
        "observedGeneration": 1,
        "replicas": 1,
        "readyReplicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
    }
    kube.store[("Deployment", "ns", "m")] = serving
    # the API server's Deployment serves; the index still holds it from before its pod was ready
    lagging = copy.deepcopy(serving)
    lagging["metadata"]["resourceVersion"] = "12"
    lagging["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(lagging,))  # type: ignore[arg-type]
    (written,) = kube.patches
    assert kube.gets.count("Deployment") == 1  # read afresh because the status was about to change
    assert written["readyReplicas"] == 1 and ready(written) == "True"
    # with that status stored, the lagging index again: nothing would change from the fresh read, nothing is written
    kube.gets.clear()
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(lagging,))  # type: ignore[arg-type]
    assert len(kube.patches) == 1
    # an index that is current and a status that stays: no GET of the Deployment at all
    kube.gets.clear()
    reconcile.reconcile(kube, "ns", "m", log, pods=[], replica_sets=[], deployment=(copy.deepcopy(serving),))  # type: ignore[arg-type]
    assert "Deployment" not in kube.gets and len(kube.patches) == 1


class VersionedKube(StoreKube):
    """A :class:`StoreKube` whose writes give the stored object a new resourceVersion and return it, like the API."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        super().__init__(*objs)
        self.rv = 100

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        super().apply(obj)
        self.rv += 1
        stored = self.store[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])]
        stored["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(stored)

    def patch_status(  # type: ignore[override]
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        super().patch_status(api_version, kind, namespace, name, status)
        self.rv += 1
        stored = self.store[(kind, namespace, name)]
        stored["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(stored)


def _known_world() -> tuple[VersionedKube, reconcile.Known]:
    """An API server holding one new object, and the operator's known copies with the watch's copy of it (no status
    yet)."""
    b = body(4096)
    b["metadata"]["resourceVersion"] = "10"
    known = reconcile.Known()
    known.objects.seen(("ns", "m"), copy.deepcopy(b))
    return VersionedKube(copy.deepcopy(b)), known


def test_with_the_operators_known_copies_a_reconcile_reads_nothing_afresh() -> None:
    import logging

    log = logging.getLogger("test")
    kube, known = _known_world()
    none: dict[str, Any] = {"Service": None, "PodDisruptionBudget": None}  # their indexes: neither exists yet
    run = dict(pods=[], replica_sets=[], deployment=(None,), known=known, children=none)
    # the create: the children are applied without reading them (their indexes say they do not exist); the status is
    # left to the child event's run
    reconcile.reconcile(kube, "ns", "m", log, defer_status=True, **run)  # type: ignore[arg-type]
    assert kube.gets == [] and sorted(kube.applies) == ["Deployment", "PodDisruptionBudget", "Service"]
    assert kube.status_writes == 0
    # the child event's run: the Deployment index has not caught up, but the applied Deployment is known, so nothing is
    # applied again; the status is written
    reconcile.reconcile(kube, "ns", "m", log, thorough=False, **run)  # type: ignore[arg-type]
    assert kube.gets == [] and len(kube.applies) == 3 and kube.status_writes == 1
    # the watch has not brought the status back yet, but the PATCH's response is known: nothing is written again
    reconcile.reconcile(kube, "ns", "m", log, thorough=False, **run)  # type: ignore[arg-type]
    assert kube.gets == [] and len(kube.applies) == 3 and kube.status_writes == 1
    # without ``known`` (the CLI, tests) the object is read
    reconcile.reconcile(kube, "ns", "m", log, thorough=False, pods=[], replica_sets=[], deployment=(None,))  # type: ignore[arg-type]
    assert "VLMDeployment" in kube.gets


def test_an_object_version_is_parsed_once() -> None:
    kube = StoreKube()
    b = body(4096)
    b["metadata"]["resourceVersion"] = "7"
    first = reconcile.parsed(kube, b)  # type: ignore[arg-type]
    assert reconcile.parsed(kube, copy.deepcopy(b)) is first  # the same version: not validated again
    b2 = body(2048)
    b2["metadata"]["resourceVersion"] = "8"
    second = reconcile.parsed(kube, b2)  # type: ignore[arg-type]
    assert second is not first and second.spec.engine.max_model_len == 2048
    bad = body(2048)
    bad["metadata"]["resourceVersion"] = "9"
    bad["spec"]["engine"]["maxModelLen"] = "many"
    with pytest.raises(ValidationError):
        reconcile.parsed(kube, bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        reconcile.parsed(kube, bad)  # type: ignore[arg-type]  # a refusal is never remembered as a parse
    unversioned = body(1024)  # no resourceVersion (a test's body, the CLI's file): parsed every time
    assert reconcile.parsed(kube, unversioned) is not reconcile.parsed(kube, unversioned)  # type: ignore[arg-type]
    reconcile.forget_plan("ns", "m")
    assert reconcile.parsed(kube, copy.deepcopy(b2)) is not second  # type: ignore[arg-type]


def test_service_and_pdb_come_from_their_index_and_a_deleted_one_is_applied_again() -> None:
    import logging

    log = logging.getLogger("test")
    kube, known = _known_world()
    none: dict[str, Any] = {"Service": None, "PodDisruptionBudget": None}
    run = dict(pods=[], replica_sets=[], deployment=(None,), known=known, thorough=True)
    reconcile.reconcile(kube, "ns", "m", log, children=none, **run)  # type: ignore[arg-type]
    assert kube.gets == [] and sorted(kube.applies) == ["Deployment", "PodDisruptionBudget", "Service"]
    # the indexes have not caught up yet (still empty): what this process applied stands, nothing is applied again,
    # not even by a thorough run (the drift resync), and nothing is read
    reconcile.reconcile(kube, "ns", "m", log, children=none, **run)  # type: ignore[arg-type]
    assert kube.gets == [] and len(kube.applies) == 3
    # the indexes hold them now
    indexed = {k: copy.deepcopy(kube.store[(k, "ns", "m")]) for k in ("Service", "PodDisruptionBudget")}
    reconcile.reconcile(kube, "ns", "m", log, children=indexed, **run)  # type: ignore[arg-type]
    assert kube.gets == [] and len(kube.applies) == 3
    # the Service is deleted: its watch says so (child_deleted) and the index drops it; the next run applies it again
    known.child_deleted("Service", "ns", "m")
    reconcile.reconcile(kube, "ns", "m", log, children={**indexed, "Service": None}, **run)  # type: ignore[arg-type]
    assert kube.applies[3:] == ["Service"] and kube.gets == []
    # someone edited the PDB (its hash annotation is gone), newer than anything this process applied: applied again
    edited = copy.deepcopy(indexed["PodDisruptionBudget"])
    edited["metadata"]["annotations"] = {}
    edited["metadata"]["resourceVersion"] = str(kube.rv + 1)
    kube.rv += 1
    fresh_service = copy.deepcopy(kube.store[("Service", "ns", "m")])
    reconcile.reconcile(  # type: ignore[arg-type]
        kube, "ns", "m", log, children={"Service": fresh_service, "PodDisruptionBudget": edited}, **run
    )
    assert kube.applies[4:] == ["PodDisruptionBudget"] and kube.gets == []


def _strategy(max_surge: int, max_unavailable: int) -> dict[str, Any]:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}}


def _progressing(
    vlmd: VLMDeployment,
    b: dict[str, Any],
    live: dict[str, Any],
    strategy: dict[str, Any],
    pods: list[dict[str, Any]],
    free: dict[str, int],
) -> tuple[reconcile.Decision, dict[str, Any]]:
    """``decide`` and ``status_for`` with ``live`` running ``strategy``, ``pods`` its pods (and the cluster's bound
    ones) and ``free`` the free GPUs: the decision and the Progressing condition."""
    dep = copy.deepcopy(live)
    dep["spec"]["strategy"] = strategy
    bound = copy.deepcopy(pods)
    obs = reconcile.Observation(
        copy.deepcopy(b), dep, copy.deepcopy(pods), [], {"NVIDIA-L4": 4}, NOW, lambda _: (free, bound)
    )
    d = reconcile.decide(vlmd, obs)
    status = reconcile.status_for(vlmd, obs, d, dep, reconcile._template_hash(dep))
    return d, next(c for c in status["conditions"] if c["type"] == "Progressing")


def test_a_rollouts_progressing_message_holds_while_its_strategy_holds() -> None:
    # The free-GPU count changes with every pod the cluster places; a Progressing message that carried it was a status
    # write (and a watch event) per reconcile of every object in a rollout. The why is in the decision's event.
    old = body(4096)
    live = deployment_for(old)
    live["spec"]["strategy"] = _strategy(1, 0)
    live["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
    new = body(2048)
    vlmd = VLMDeployment.model_validate({k: new[k] for k in ("apiVersion", "kind", "metadata", "spec")})

    old_pod = {"metadata": {"name": "m-old", "annotations": {objects.ANN_SPEC_HASH: template_hash(live)}}, "status": {}}

    def progressing(free: dict[str, int], strategy: dict[str, Any]) -> tuple[reconcile.Decision, dict[str, Any]]:
        return _progressing(vlmd, new, live, strategy, [old_pod], free)

    surge = live["spec"]["strategy"]
    d1, p1 = progressing({"gpu-l4-0": 4, "gpu-l4-1": 4}, surge)  # room for 8 extra pods
    d2, p2 = progressing({"gpu-l4-0": 1}, surge)  # room for 1
    assert d1.roll.decision is not None and d2.roll.decision is not None
    assert (d1.roll.decision.reason, d2.roll.decision.reason) == ("SpareGPUs", "SpareGPUs")
    assert "room for 8" in d1.roll.decision.message and "room for 1" in d2.roll.decision.message  # the details
    assert p1["status"] == "True" and p1["message"] == p2["message"]  # ... but one status
    assert p1["message"].endswith("; surging 1 pod(s) at a time, none unavailable"), p1["message"]
    # no spare GPU: the decision switches to in place, and the message says so
    _, p3 = progressing({}, surge)
    assert p3["message"].endswith("; replacing in place, 1 pod at a time"), p3["message"]
    # an in-place rollout under way (the old pod still runs) is not decided again: its message stays (it used to lose
    # the strategy)
    in_place = _strategy(0, 1)
    live["spec"]["template"] = copy.deepcopy(deployment_for(new)["spec"]["template"])  # the new template is applied
    d4, p4 = progressing({"gpu-l4-0": 4}, in_place)
    assert d4.roll.decision is None and p4["message"] == p3["message"]
    # between the old pod's end and its replacement's start no pod of another template is left: still the same
    new["status"] = {"lastGoodPodTemplateHash": template_hash(deployment_for(old))}
    old_pod["status"] = {"phase": "Succeeded"}
    d5, p5 = progressing({"gpu-l4-0": 4}, in_place)
    assert d5.roll.decision is None and p5["message"] == p3["message"]
    # once that template is the last good one (the rollout completed), a scale-up shows no strategy
    new["status"] = {"lastGoodPodTemplateHash": template_hash(live)}
    new["spec"]["scaling"] = {"replicas": 2}
    vlmd = VLMDeployment.model_validate({k: new[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    _, p6 = progressing({"gpu-l4-0": 4}, in_place)
    assert p6["status"] == "True" and p6["message"] == "1/2 replicas updated, 1 ready", p6["message"]


def test_a_pending_pod_reads_waiting_for_gpus_only_while_nothing_frees_one() -> None:
    old = body(4096)
    live = deployment_for(old)
    live["status"] = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1}
    new = body(2048, last_good=template_hash(live))
    vlmd = VLMDeployment.model_validate({k: new[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    live["spec"]["template"] = copy.deepcopy(deployment_for(new)["spec"]["template"])  # the new template is applied
    unschedulable = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
            }
        ],
    }

    def pod(name: str, h: str, status: dict[str, Any]) -> dict[str, Any]:
        labels = objects.labels_for("m")
        meta = {"name": name, "namespace": "ns", "labels": labels, "annotations": {objects.ANN_SPEC_HASH: h}}
        return {"metadata": meta, "status": status}

    old_pod = pod("m-old", template_hash(deployment_for(old)), {"phase": "Running"})
    new_pod = pod("m-new", template_hash(live), unschedulable)

    def progressing(strategy: tuple[int, int], pods: list[dict[str, Any]]) -> tuple[reconcile.Decision, dict[str, Any]]:
        return _progressing(vlmd, new, live, _strategy(*strategy), pods, {})

    # the surge pod is Pending: this reconcile switches to in place (which frees the old pod's GPU): rolling out
    d, p = progressing((1, 0), [old_pod, new_pod])
    assert d.roll.decision is not None and (d.roll.decision.mode, d.roll.decision.reason) == (
        "InPlace",
        "SurgePodPending",
    )
    assert (p["reason"], p["message"].split("; ")[-1]) == ("RollingOut", "replacing in place, 1 pod at a time"), p
    # in place, the old pod terminating: the new one waits for its GPU, as planned
    terminating = copy.deepcopy(old_pod)
    terminating["metadata"]["deletionTimestamp"] = "2026-12-07T00:59:00Z"
    _, p = progressing((0, 1), [terminating, new_pod])
    assert p["reason"] == "RollingOut", p
    # in place, but the Deployment controller has not taken up the switch yet (it will end the old pod next)
    live["metadata"]["generation"], live["status"]["observedGeneration"] = 3, 2
    _, p = progressing((0, 1), [old_pod, new_pod])
    assert p["reason"] == "RollingOut", p
    live["metadata"]["generation"] = 2
    # in place with nothing left to free (another workload took the GPU): that is waiting for GPUs
    _, p = progressing((0, 1), [new_pod])
    assert p["reason"] == "WaitingForGPUs" and "Insufficient nvidia.com/gpu" in p["message"], p
