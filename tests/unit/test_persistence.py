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
