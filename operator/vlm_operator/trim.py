"""Compact copies of the operator's children for its watch-fed indexes (``handlers``: ``vlmd_pods``,
``vlmd_deployments``, ``vlmd_services``, ``vlmd_pdbs``).

An index keeps one entry per child for as long as the child exists; a full copy of each watch event's body (with its
``managedFields``, the pod's container images and IDs, volumes, the Deployment's status history) is
most of what those entries would weigh, and copying it is a cost on every event. Each function here keeps exactly the
fields that a reader of the index uses, copied (so nothing is shared with kopf's body), and nothing else. The readers:

- :mod:`vlm_operator.reconcile`: ``_pod_problems``, ``_old_revision_left``, ``_waiting_for_gpus`` and
  ``decide_rollout`` (pods); ``observe`` -> ``decide_rollout`` (and its ``_good_template``: the Deployment's uid and
  pod template), ``_template_hash``, ``_same_object``, ``_apply_if_changed``, ``Known.child``,
  ``status_for`` and ``act`` (the Deployment: its annotations, uid, generation, resourceVersion, pod template,
  strategy and status; the Service and PodDisruptionBudget: their object hash and resourceVersion);
- :mod:`vlm_operator.rollout`: ``PodHealth.of``, ``pending_for_resources``, ``bound_pods`` (pods);
- :mod:`vlm_operator.readiness`: ``due``, ``failed_probe``, ``probe_pods`` (pods: the readiness gate, the serving
  container's start, the pod's IP and gate condition);
- :mod:`vlm_operator.conditions`: ``compute_status`` and ``quota_refusal`` (the Deployment's status).

A reader that needs another field adds it here (``tests/unit/test_trim.py`` checks that every reader gives the same
answer on a trimmed child as on the full one). Pure: no kopf, no kubernetes client.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from vlm_operator.render.objects import ANN_OBJECT_HASH

_POD_META = ("name", "namespace", "uid", "deletionTimestamp")
_POD_SPEC = ("nodeName", "readinessGates")
_POD_STATUS = ("phase", "podIP", "startTime", "conditions")
#: Of each container status: what ``rollout.PodHealth.of``, ``reconcile._pod_problems`` and
#: ``readiness.container_start`` read (not the image, its ID, the container ID, resources, mounts).
_CONTAINER_STATUS = ("name", "ready", "started", "restartCount", "state", "lastState")
_DEPLOYMENT_META = ("name", "namespace", "uid", "generation", "resourceVersion", "annotations")
_DEPLOYMENT_SPEC = ("template", "strategy")
_SCALARS = frozenset({str, int, float, bool, type(None)})
_intern = sys.intern


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars), as plain dicts and lists: cheaper than ``copy.deepcopy``
    (no memo) and than a JSON round trip of a small subtree. The keys are interned: every copy of a pod template
    shares one ``"terminationMessagePath"`` instead of holding its own (a JSON decoder makes new key strings for each
    document; ~15% of a pod template's copy)."""
    kind = type(value)
    if kind is dict:
        return {_intern(k): v if type(v) in _SCALARS else copy_json(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else copy_json(v) for v in value]
    if kind in _SCALARS or not isinstance(value, Mapping):  # a scalar (or a tuple, which no JSON decoder makes)
        return value
    return {_intern(k): copy_json(v) for k, v in value.items()}  # a mapping view (kopf's)


def _pick(src: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """``keys`` of ``src`` (a mapping; anything else counts as empty) that are set, each copied."""
    if not isinstance(src, Mapping):
        return {}
    return {k: copy_json(src[k]) for k in keys if src.get(k) is not None}


def pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """The pod as the operator reads it: name, uid, spec-hash annotation (all annotations: a pod has few),
    deletionTimestamp; node and readiness gates; phase, IP, start time, conditions and container states."""
    meta = body.get("metadata") or {}
    out_meta = _pick(meta, _POD_META)
    annotations = meta.get("annotations")
    if annotations:
        out_meta["annotations"] = dict(annotations)  # str -> str: a shallow copy is a full one
    status = body.get("status") or {}
    out_status = _pick(status, _POD_STATUS)
    statuses = status.get("containerStatuses")
    if statuses:
        out_status["containerStatuses"] = [_pick(cs, _CONTAINER_STATUS) for cs in statuses]
    return {"metadata": out_meta, "spec": _pick(body.get("spec"), _POD_SPEC), "status": out_status}


def deployment(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment as the reconciler reads it: identity, generation, resourceVersion and annotations (object hash,
    rollback record); pod template and strategy; the whole status (a few counters and conditions)."""
    return {
        "metadata": _pick(body.get("metadata"), _DEPLOYMENT_META),
        "spec": _pick(body.get("spec"), _DEPLOYMENT_SPEC),
        "status": copy_json(body.get("status") or {}),
    }


def hashed(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Service or PodDisruptionBudget as the reconciler reads it: the object hash the renderer put on it, and the
    identity and resourceVersion (to tell the index from a newer copy this process applied)."""
    meta = body.get("metadata") or {}
    out_meta = _pick(meta, ("name", "namespace", "resourceVersion"))
    annotations = meta.get("annotations") or {}
    if ANN_OBJECT_HASH in annotations:
        out_meta["annotations"] = {ANN_OBJECT_HASH: annotations[ANN_OBJECT_HASH]}
    return {"kind": body.get("kind"), "metadata": out_meta}
