"""kopf's bookkeeping kept in memory (vlm_operator.persistence): nothing lands in the patch kopf sends."""

from __future__ import annotations

import json
from typing import Any

import kopf

from vlm_operator.persistence import MemoryPersistence


def body(uid: str, annotations: dict[str, str] | None = None) -> kopf.Body:
    raw = {
        "apiVersion": "vlmops.io/v1alpha1",
        "kind": "VLMDeployment",
        "metadata": {"name": "a", "namespace": "ns", "uid": uid, "annotations": annotations or {}},
        "spec": {"engine": {"maxModelLen": 4096}},
    }
    return kopf.Body(raw)  # type: ignore[arg-type]


def test_diff_base_is_kept_per_object_without_writing_the_object() -> None:
    mem = MemoryPersistence(prefix="vlmops.io")
    a, b = body("uid-a"), body("uid-b")
    essence = mem.diffbase.build(body=a)
    patch = kopf.Patch()
    mem.diffbase.store(body=a, patch=patch, essence=essence)
    assert not patch  # no PATCH of the object
    assert mem.diffbase.fetch(body=a) == essence
    assert mem.diffbase.fetch(body=b) is None  # another object: seen as created
    mem.forget("uid-a")
    assert mem.diffbase.fetch(body=a) is None and len(mem.diffbase) == 0


def test_an_earlier_versions_annotation_is_still_read() -> None:
    mem = MemoryPersistence(prefix="vlmops.io")
    old = {"spec": {"engine": {"maxModelLen": 2048}}}
    legacy = body("uid-a", {"vlmops.io/last-handled": json.dumps(old)})
    assert mem.diffbase.fetch(body=legacy) == old


def test_progress_is_kept_and_purged_without_writing_the_object() -> None:
    mem = MemoryPersistence(prefix="vlmops.io")
    a = body("uid-a")
    patch = kopf.Patch()
    record: kopf.ProgressRecord = {"started": "2026-12-07T00:00:00", "retries": 1, "delayed": "2026-12-07T00:00:03"}  # type: ignore[typeddict-item]
    mem.progress.store(key=kopf.HandlerId("reconcile_vlmd"), record=record, body=a, patch=patch)
    assert not patch
    assert mem.progress.fetch(key=kopf.HandlerId("reconcile_vlmd"), body=a) == record
    mem.progress.purge(key=kopf.HandlerId("reconcile_vlmd"), body=a, patch=patch)
    assert not patch and mem.progress.fetch(key=kopf.HandlerId("reconcile_vlmd"), body=a) is None


def test_a_legacy_progress_annotation_is_removed_and_touch_still_wakes_kopf() -> None:
    mem = MemoryPersistence(prefix="vlmops.io")
    legacy = body("uid-a", {"vlmops.io/reconcile_vlmd": '{"retries":0}'})
    patch = kopf.Patch()
    mem.progress.purge(key=kopf.HandlerId("reconcile_vlmd"), body=legacy, patch=patch)
    assert patch["metadata"]["annotations"] == {"vlmops.io/reconcile_vlmd": None}
    touch = kopf.Patch()
    mem.progress.touch(body=body("uid-b"), patch=touch, value="2026-12-07T00:00:03")
    assert touch["metadata"]["annotations"]["vlmops.io/touch-dummy"] == "2026-12-07T00:00:03"


def test_the_essence_is_kopfs_without_copying_what_it_drops() -> None:
    mem = MemoryPersistence(prefix="vlmops.io")
    full = kopf.Body(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "uid": "u",
                "resourceVersion": "5",
                "labels": {"a": "1"},
                "annotations": {
                    "x": "y",
                    "vlmops.io/last-handled": "{}",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                },
                "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        }
    )
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="vlmops.io", key="last-handled")
    assert mem.diffbase.build(body=full) == kopfs.build(body=full)
    assert mem.diffbase.build(body=full, extra_fields=["status.phase"]) == kopfs.build(
        body=full, extra_fields=["status.phase"]
    )
    essence = mem.diffbase.build(body=full)
    essence["spec"]["containers"][0]["image"] = "changed"  # a copy: kopf's body is untouched
    assert full["spec"]["containers"][0]["image"] == "i"
    bare = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}})
    assert mem.diffbase.build(body=bare) == kopfs.build(body=bare)


def test_clearing_the_essence_removes_only_this_storages_annotations() -> None:
    mem = MemoryPersistence(prefix="vlmops.io")
    kopfs = kopf.AnnotationsProgressStorage(prefix="vlmops.io")
    plain: Any = {"spec": {"a": 1}, "metadata": {"annotations": {"team": "x"}}}
    assert mem.progress.clear(essence=plain) == kopfs.clear(essence=plain) == plain
    legacy: Any = {"spec": {"a": 1}, "metadata": {"annotations": {"team": "x", "vlmops.io/reconcile_vlmd": "{}"}}}
    cleared = mem.progress.clear(essence=legacy)
    assert cleared == kopfs.clear(essence=legacy) == {"spec": {"a": 1}, "metadata": {"annotations": {"team": "x"}}}
    assert "vlmops.io/reconcile_vlmd" in legacy["metadata"]["annotations"]  # the stored essence is not touched


def test_a_shared_spec_essence_equals_kopfs_copy() -> None:
    mem = MemoryPersistence(prefix="vlmops.io", share_spec_of=("Pod",))
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="vlmops.io", key="last-handled")
    raw: Any = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "1"}, "managedFields": [{}]},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running"},
    }
    body = kopf.Body(raw)
    essence = mem.diffbase.build(body=body)
    assert essence == kopfs.build(body=body)
    assert essence["spec"] is raw["spec"]  # referred to, not copied
    empty: Any = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    assert mem.diffbase.build(body=kopf.Body(empty)) == kopfs.build(body=kopf.Body(empty))
    other: Any = {**raw, "kind": "VLMBatchJob"}  # a kind with changing handlers: its essence is stored, so copied
    assert mem.diffbase.build(body=kopf.Body(other))["spec"] is not raw["spec"]


def test_clearing_matches_kopf_on_every_shape_of_metadata() -> None:
    mem = MemoryPersistence(prefix="vlmops.io")
    kopfs = kopf.AnnotationsProgressStorage(prefix="vlmops.io")
    shapes: list[Any] = [
        {"spec": {"a": 1}},
        {"spec": {}, "metadata": {"labels": {"l": "1"}}},
        {"spec": {"a": 1}, "metadata": {"annotations": {"vlmops.io/spec-hash": "h"}}},  # only ours: none left
        {"metadata": {"labels": {"l": "1"}, "annotations": {"vlmops.io/spec-hash": "h", "other/x": "y"}}},
        {"metadata": {"annotations": {"vlmops.io/spec-hash": "h"}}},
    ]
    for essence in shapes:
        before = json.dumps(essence, sort_keys=True)
        assert mem.progress.clear(essence=essence) == kopfs.clear(essence=essence), essence
        assert json.dumps(essence, sort_keys=True) == before  # the input is never changed


def test_essence_free_kinds_build_and_fetch_nothing() -> None:
    mem = MemoryPersistence(prefix="vlmops.io", essence_free=("Deployment",))
    raw: Any = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "uid": "u", "labels": {"a": "1"}, "annotations": {"x": "y"}},
        "spec": {"replicas": 1},
    }
    body = kopf.Body(raw)
    assert mem.diffbase.build(body=body) == {} and mem.diffbase.fetch(body=body) == {}
    # a watched status field (extra_fields) still builds the essence kopf would
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="vlmops.io", key="last-handled")
    fields = [("status", "phase")]
    assert mem.diffbase.build(body=body, extra_fields=fields) == kopfs.build(body=body, extra_fields=fields)
    other: Any = {**raw, "kind": "VLMDeployment"}  # not essence-free: the usual essence
    assert mem.diffbase.build(body=kopf.Body(other))["spec"] == {"replicas": 1}


def test_no_essence_free_kind_has_a_handler_that_reads_essences() -> None:
    # kopf reads an essence (through its diff) only for changing handlers (create/update/resume/delete/field) and to
    # reset a daemon's or timer's idle time; the operator's essence-free kinds must have neither
    from vlm_operator import handlers
    from vlm_operator.settings import Settings

    registry = kopf.OperatorRegistry()
    handlers.register(Settings(), registry)
    plurals = {"Pod": "pods", "Job": "jobs"}  # the kinds kopf watches beside VLMDeployments and VLMBatchJobs
    assert set(handlers.ESSENCE_FREE) == set(plurals)
    readers = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    assert readers  # VLMDeployments and VLMBatchJobs have them
    for handler in readers:
        assert handler.selector is not None
        assert handler.selector.any_name not in plurals.values(), handler.id
        assert handler.selector.plural not in plurals.values(), handler.id
