"""One level-based reconcile of a VLMDeployment: parse, check fit, render, apply what changed, write status.

It is idempotent and edge-free: creation, update, operator restart, a child's change and the drift timer all call
the same function. Nothing is written when nothing changed: children are compared by a hash of the desired object
(an annotation the renderer puts on each), and status only when the computed status differs, so an idle resync
makes no mutating request.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from vlm_operator import fitcheck, status
from vlm_operator.api import VLMDeployment
from vlm_operator.kube import Kube
from vlm_operator.render import objects

API_VERSION = "vlmops.io/v1alpha1"
KIND = "VLMDeployment"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validation_message(exc: ValidationError) -> str:
    """Pydantic's errors as ``spec.field: message`` lines (the user's camelCase paths)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


@dataclass
class Plan:
    vlmd: VLMDeployment
    fit: fitcheck.FitOutcome
    command: tuple[str, ...]
    desired: list[dict[str, Any]]


def build_plan(vlmd: VLMDeployment) -> Plan:
    """Pure: the fit check and the desired children of ``vlmd``."""
    from vlm_operator.render import args as render_args

    fit = fitcheck.check(vlmd.spec)
    rendered = render_args.render_command(vlmd.spec)
    plan = objects.RenderPlan(
        command=rendered.argv,
        env=rendered.env,
        weights_gib=fit.weights_gib_per_replica,
        host_memory_bytes=fit.host_memory_bytes,
        shm_bytes=max(fit.shm_bytes or 0, objects.SHM_FLOOR_BYTES),
        min_gpu_memory_mib=fit.min_gpu_memory_mib,
    )
    return Plan(vlmd, fit, rendered.argv, objects.render_all(vlmd, plan))


def _pod_problems(pods: list[dict[str, Any]], template_hash: str | None) -> tuple[status.PodProblem, ...]:
    found = []
    for pod in pods:
        ann = pod["metadata"].get("annotations", {})
        if template_hash and ann.get(objects.ANN_SPEC_HASH) != template_hash:
            continue
        for cs in pod.get("status", {}).get("containerStatuses", []):
            waiting = cs.get("state", {}).get("waiting") or {}
            last = cs.get("lastState", {}).get("terminated") or {}
            term = cs.get("state", {}).get("terminated") or {}
            if waiting.get("reason") in (
                "CrashLoopBackOff",
                "ImagePullBackOff",
                "ErrImagePull",
                "CreateContainerError",
            ):
                reason = last.get("reason") or waiting["reason"]
                msg = f"exit code {last['exitCode']}" if "exitCode" in last else waiting.get("message", "")
                found.append(status.PodProblem(pod["metadata"]["name"], reason, msg, int(cs.get("restartCount", 0))))
            elif pod.get("status", {}).get("phase") == "Failed" and term:
                found.append(
                    status.PodProblem(
                        pod["metadata"]["name"], term.get("reason", "Error"), f"exit code {term.get('exitCode')}"
                    )
                )
    return tuple(sorted(found, key=lambda p: p.pod))


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def reconcile(kube: Kube, namespace: str, name: str, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Reconcile one VLMDeployment. Watch events, the drift timer and child events can all ask at once; they are
    serialized per object, and each run reads the object afresh so it never writes a status computed from a stale
    view over a newer one."""
    with _locks_guard:
        lock = _locks.setdefault((namespace, name), threading.Lock())
    with lock:
        body = kube.get(API_VERSION, KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        _reconcile(kube, body, logger)


def _reconcile(kube: Kube, body: dict[str, Any], logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation", 1))
    old_status: dict[str, Any] = body.get("status") or {}
    prev_conds = tuple(old_status.get("conditions") or [])
    try:
        vlmd = VLMDeployment.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    except ValidationError as exc:
        msg = f"the spec is invalid: {validation_message(exc)}"
        obs = status.Observed(
            generation,
            0,
            status.FitResult("Unknown", "spec not checked"),
            refused=msg,
            refused_reason="InvalidSpec",
            previous_conditions=prev_conds,
        )
        _write_status(kube, body, status.compute_status(obs, _now()), logger)
        return

    desired_replicas = vlmd.spec.scaling.replicas
    plan = build_plan(vlmd)
    fit = plan.fit
    refused: str | None = None
    if fit.verdict == "DoesNotFit" and vlmd.spec.fit_check == "Enforce":
        refused = f"not rolled out: {fit.message}"
    elif fit.verdict == "Unknown" and vlmd.spec.fit_check == "Enforce" and vlmd.spec.fit_check_explicit:
        refused = f"not rolled out: fitCheck is Enforce and {fit.message}"

    dep_obj = plan.desired[0]
    template_hash = dep_obj["spec"]["template"]["metadata"]["annotations"][objects.ANN_SPEC_HASH]
    if refused is None:
        for obj in plan.desired:
            _apply_if_changed(kube, obj, logger)

    current = kube.get("apps/v1", "Deployment", ns, name)
    pods = kube.list("v1", "Pod", ns, objects.selector_string(name)) if current else []
    dep_status = current.get("status", {}) if current else None
    running_hash = (
        current["spec"]["template"]["metadata"].get("annotations", {}).get(objects.ANN_SPEC_HASH) if current else None
    )
    last_good = old_status.get("lastGoodPodTemplateHash")
    obs = status.Observed(
        generation=generation,
        desired_replicas=desired_replicas,
        fit=status.FitResult(fit.verdict, fit.message, fit.summary),
        deployment_status=dep_status,
        deployment_generation=current["metadata"].get("generation") if current else None,
        refused=refused,
        selector=objects.selector_string(name),
        url=objects.url(vlmd),
        gpu=fitcheck.gpu_label(vlmd.spec, objects.gpus_per_replica(vlmd.spec)),
        engine_version=vlmd.spec.engine.version,
        effective_args=plan.command if refused is None else (),
        pod_template_hash=template_hash if refused is None else running_hash,
        last_good_pod_template_hash=last_good,
        problems=_pod_problems(pods, running_hash),
        previous_conditions=prev_conds,
    )
    new_status = status.compute_status(obs, _now())
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in new_status["conditions"])
    if ready and refused is None:
        new_status["lastGoodPodTemplateHash"] = template_hash
    _write_status(kube, body, new_status, logger)


def _apply_if_changed(kube: Kube, obj: dict[str, Any], logger: Any) -> None:
    meta = obj["metadata"]
    live = kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    want = meta["annotations"][objects.ANN_OBJECT_HASH]
    if live is not None and live["metadata"].get("annotations", {}).get(objects.ANN_OBJECT_HASH) == want:
        return
    kube.apply(obj)
    logger.info(f"Applied {obj['kind']} {meta['namespace']}/{meta['name']} (hash {want})")


_STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "replicas",
    "readyReplicas",
    "updatedReplicas",
    "availableReplicas",
    "selector",
    "url",
    "gpu",
    "engineVersion",
    "effectiveArgs",
    "estimate",
    "podTemplateHash",
    "lastGoodPodTemplateHash",
)


def _write_status(kube: Kube, body: dict[str, Any], new: dict[str, Any], logger: Any) -> None:
    old = body.get("status") or {}
    if all(old.get(k) == new.get(k) for k in _STATUS_KEYS):
        return
    meta = body["metadata"]
    patch = {k: new.get(k) for k in _STATUS_KEYS}  # None deletes a key that no longer applies (merge patch)
    kube.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], patch)
    for type_, st, reason, message in status.transitions(old.get("conditions") or [], new["conditions"]):
        bad = (type_ == "Degraded" and st == "True") or (type_ in ("Ready", "FitsGPU") and st == "False")
        try:
            kube.event(body, "Warning" if bad else "Normal", reason or type_, f"{type_}={st}: {message}")
        except Exception as exc:  # an event is best-effort; never fail a reconcile for it
            logger.warning(f"Could not record an event: {exc}")
