"""kopf handlers of VLMBatchJob: admission (the VLMDeployment's refusal policy and GPU quota on the shard's engine),
and one level-based reconcile: observe (the object, its Job, its pods, each running shard's ``GET /progress``) ->
decide (the refusal policy, the rendered Job, :func:`vlm_operator.batchstatus.compute`) -> act (create the Job once,
keep its ``suspend`` in step, write status when it changed, an event when the job completes or fails).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from pydantic import ValidationError

from vlm_operator import (
    admission,
    batchstatus,
    fitcheck,
    inventory,
    kube,
    profile_admission,
    profiles,
    quota,
    quotastore,
)
from vlm_operator.api.batch import BATCH_PLURAL, VLMBatchJob
from vlm_operator.estimator import from_spec
from vlm_operator.models.facts import ModelFacts
from vlm_operator.render import batch as render_batch
from vlm_operator.render import objects
from vlm_operator.settings import Settings

GROUP, VERSION = "vlmops.io", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "VLMBatchJob"
#: The client container's image (``Settings.image``, VLM_OPERATOR_IMAGE), set by :func:`register`.
_client_image = render_batch.DEFAULT_CLIENT_IMAGE
PROGRESS_TIMEOUT_S = 1.5
VALIDATE_BATCH_ID = "validate-batch"

_STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "jobName",
    "shards",
    "shardsSucceeded",
    "shardsFailed",
    "linesTotal",
    "linesDone",
    "linesFailed",
    "images",
    "promptTokens",
    "completionTokens",
    "throughput",
    "estimatedSecondsLeft",
    "progress",
    "startTime",
    "completionTime",
    "shardStatus",
    "gpu",
    "engineVersion",
    "effectiveArgs",
    "estimate",
)


def _client() -> kube.Kube:
    return kube.shared()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(body: Mapping[str, Any]) -> VLMBatchJob:
    """The VLMBatchJob in ``body``, with an unset ``spec.engine.version`` taken from ``status.engineVersion`` (the
    release it first ran, as :func:`vlm_operator.admission.parse` does for a VLMDeployment)."""
    doc: dict[str, Any] = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
    spec, version = doc.get("spec"), admission.engine_version_of(body)
    if isinstance(spec, Mapping) and version is not None:
        engine = spec.get("engine")
        if engine is None or isinstance(engine, Mapping):
            doc["spec"] = {**spec, "engine": {**(engine or {}), "version": version}}
    return VLMBatchJob.model_validate(doc)


# --- admission ---------------------------------------------------------------------------------------------------


def validate_batch(body: kopf.Body, warnings: list[str], old: Any = None, **_: Any) -> None:
    """The VLMDeployment's refusal policy on the shard's engine (same messages), platform profiles and GPU quota
    (``parallelism`` x GPUs per pod)."""
    if old and (body.get("metadata", {}).get("deletionTimestamp") or old.get("spec") == body.get("spec")):
        return  # as for VLMDeployment: never block finalizer removal or metadata-only updates
    try:  # a VLMPlatformProfile's defaults (engine version, image mirror, HF endpoint) apply as to a VLMDeployment
        bj = parse(profile_admission.with_defaults(_client(), body))
    except ValidationError as exc:
        raise kopf.AdmissionError(f"invalid VLMBatchJob: {admission.validation_message(exc)}", code=422) from None
    spec = bj.spec.deployment_spec()
    decision = admission.decide(spec, inventory.SHARED.get(_client()))
    warnings.extend(w[:1000] for w in decision.warnings)
    old_spec = None
    if old and old.get("spec"):
        try:
            old_spec = parse(old).spec.deployment_spec()
        except ValidationError:
            old_spec = None
    meta = body.get("metadata", {})
    verdict = _quota_verdict(meta.get("namespace", ""), spec, old_spec, meta.get("name", ""))
    decision = admission.with_policy(
        decision, (str(r) for r in verdict.refusals), verdict.warnings, admission.REASON_PROFILE
    )
    warnings.extend(w[:1000] for w in verdict.warnings)
    if not decision.allowed:
        raise kopf.AdmissionError(decision.message, code=422)


def _quota_verdict(namespace: str, spec: Any, old_spec: Any, name: str) -> profiles.Verdict:
    """Profiles and GPU quota as for a VLMDeployment, with this job's own pods as what it already holds."""
    k = _client()
    verdict = profile_admission._profile_verdict(k, namespace, spec, old_spec)
    try:
        quotas = quotastore.SHARED.list(k, namespace)
        if not quotas:
            return verdict
        own = k.list("v1", "Pod", namespace, render_batch.batch_selector(name)) if name else []
    except Exception as exc:
        return profiles.Verdict(
            verdict.refusals,
            (*verdict.warnings, f"ResourceQuotas could not be read ({str(exc).splitlines()[0][:200]})"),
            verdict.selected,
        )
    message = quota.check(spec, quotas, own)
    if message is not None:  # the VLMDeployment's words, with this kind's field and units
        message = (
            message.replace("spec.scaling: ", "spec.parallelism: ")
            .replace(" replica(s)", " shard(s)")
            .replace("this VLMDeployment holds", "this VLMBatchJob holds")
        )
    return profiles.quota_verdict(verdict, message, spec, old_spec)


# --- reconcile ---------------------------------------------------------------------------------------------------

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vlmbj-progress")
#: pod IPs are dialled directly, never through an HTTP(S)_PROXY from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def read_progress(pods: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``GET http://<podIP>:8090/progress`` of each running shard (pod name -> body); a pod that does not answer is
    left out (its last summary or status stands)."""

    def one(pod: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
        name = str(pod["metadata"]["name"])
        ip = (pod.get("status") or {}).get("podIP")
        url = f"http://{ip}:{render_batch.PROGRESS_PORT}/progress"
        try:
            with urllib.request.urlopen(url, timeout=PROGRESS_TIMEOUT_S) as resp:
                data = json.loads(resp.read(65536))
        except (OSError, ValueError, urllib.error.URLError):
            return name, None
        return name, data if isinstance(data, dict) else None

    return {name: data for name, data in _POOL.map(one, _running(pods)) if data is not None}


def read_engines(pods: Sequence[Mapping[str, Any]], version: str) -> dict[str, tuple[int, int, float | None]]:
    """Each running shard's engine load from ``GET http://<podIP>:8000/metrics`` (the series the autoscaler reads,
    :mod:`vlm_operator.autoscale.vllm_metrics`): pod name -> (requests running, waiting, KV-cache usage)."""
    from vlm_operator.autoscale import vllm_metrics

    def one(pod: Mapping[str, Any]) -> tuple[str, tuple[int, int, float | None] | None]:
        name = str(pod["metadata"]["name"])
        url = f"http://{pod['status']['podIP']}:{objects.HTTP_PORT}/metrics"
        try:
            with _OPENER.open(url, timeout=PROGRESS_TIMEOUT_S) as resp:
                text = resp.read(4 << 20).decode("utf-8", errors="replace")
        except (OSError, ValueError, urllib.error.URLError):
            return name, None
        sample = vllm_metrics.parse_vllm_metrics(name, text, timestamp=0.0, version=version)
        if not isinstance(sample, vllm_metrics.EngineSample):
            return name, None
        return name, (int(sample.running), int(sample.waiting), sample.kv_usage)

    return {name: load for name, load in _POOL.map(one, _running(pods)) if load is not None}


def _running(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and (p.get("status") or {}).get("podIP")
        and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]


def _max_model_len(bj: VLMBatchJob, model: Any) -> int:
    if bj.spec.engine.max_model_len:
        return bj.spec.engine.max_model_len
    if isinstance(model, ModelFacts):
        return int(model.text.max_position_embeddings)
    return render_batch.UNKNOWN_MAX_MODEL_LEN


def _missing_volumes(k: kube.Kube, bj: VLMBatchJob) -> batchstatus.Refusal | None:
    ns = bj.namespace
    src = bj.spec.input
    try:
        if src.pvc is not None and k.get("v1", "PersistentVolumeClaim", ns, src.pvc.claim_name) is None:
            return batchstatus.Refusal(
                batchstatus.REASON_INPUT_NOT_FOUND,
                f"spec.input.pvc.claimName: PersistentVolumeClaim {src.pvc.claim_name!r} does not exist in namespace "
                f"{ns}; create it (with the input file at {src.pvc.path!r}) or fix the name",
            )
        out = bj.spec.output.pvc
        if k.get("v1", "PersistentVolumeClaim", ns, out.claim_name) is None:
            return batchstatus.Refusal(
                batchstatus.REASON_OUTPUT_NOT_FOUND,
                f"spec.output.pvc.claimName: PersistentVolumeClaim {out.claim_name!r} does not exist in namespace "
                f"{ns}; create it or fix the name",
            )
    except Exception as exc:  # no rights to read PVCs (an old Role): let the pods find out
        logging.getLogger(__name__).warning(f"Could not check the PVCs of {ns}/{bj.name}: {exc}")
    return None


def reconcile(k: kube.Kube, namespace: str, name: str, logger: Any) -> None:
    with _locks_guard:
        lock = _locks.setdefault((namespace, name), threading.Lock())
    with lock:
        body = k.get(API_VERSION, KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        _reconcile(k, body, logger)


def _reconcile(k: kube.Kube, body: dict[str, Any], logger: Any) -> None:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    gen = int(meta.get("generation", 1))
    previous: dict[str, Any] = body.get("status") or {}
    now = dt.datetime.now(dt.UTC)
    try:
        bj = parse(profile_admission.with_defaults(k, body))  # a profile's defaults, never stored
    except ValidationError as exc:
        obs = batchstatus.BatchObserved(
            gen,
            0,
            None,
            [],
            {},
            now,
            refused=batchstatus.Refusal(
                admission.REASON_INVALID, f"the spec is invalid: {admission.validation_message(exc)}"
            ),
            previous=previous,
        )
        _write_status(k, body, batchstatus.compute(obs, _now()), logger)
        return
    spec = bj.spec.deployment_spec()
    model = from_spec.lookup_model(spec)
    decision = admission.decide(spec, inventory.SHARED.get(k), model)
    fit = decision.fit or fitcheck.FitOutcome("Unknown", "spec not checked")
    live = k.get("batch/v1", "Job", ns, name)
    pods = k.list("v1", "Pod", ns, render_batch.batch_selector(name)) if live is not None else []
    refused: batchstatus.Refusal | None = None
    if not decision.allowed:
        refused = batchstatus.Refusal(decision.reason or admission.REASON_INVALID, f"not run: {decision.message}")
    elif live is None:
        refused = _missing_volumes(k, bj)
    finished = any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in previous.get("conditions") or []
    )
    args: tuple[str, ...] = decision.rendered.args if decision.rendered is not None else ()
    if live is None and refused is None and not (finished and previous.get("jobName")):
        # create once; a finished job whose Job the TTL removed is not run again
        rendered = decision.rendered
        assert rendered is not None
        plan = objects.RenderPlan(
            command=rendered.argv,
            env=rendered.env,
            weights_gib=fit.weights_gib_per_replica,
            host_memory_bytes=fit.host_memory_bytes,
            shm_bytes=max(fit.shm_bytes or 0, objects.SHM_FLOOR_BYTES),
        )
        settings = render_batch.ClientSettings(
            image=_client_image,
            max_model_len=_max_model_len(bj, model),
        )
        live = k.apply(render_batch.job(bj, plan, settings))
        logger.info(f"Created Job {ns}/{name} ({bj.spec.parallelism} shard(s))")
    progress = read_progress(pods) if live is not None else {}
    engines = read_engines(pods, bj.spec.engine.version) if live is not None else {}
    found = batchstatus.shards(pods, progress, bj.spec.parallelism)
    terminal = batchstatus.terminal_reason(found)
    sticky = any(
        c.get("type") == "Failed"
        and c.get("status") == "True"
        and c.get("reason") == batchstatus.REASON_INPUT_NOT_FOUND
        and c.get("observedGeneration") == gen
        for c in previous.get("conditions") or []
    )
    if live is not None and refused is None:
        _keep_suspend(k, bj, live, bool(terminal or sticky), logger)
    drift = None
    made_from = ((live or {}).get("metadata", {}).get("annotations") or {}).get(render_batch.ANN_BATCH_SPEC_HASH)
    if made_from is not None and made_from != render_batch.spec_hash(bj):
        drift = (
            f"the spec changed after Job {name} was created; a Job's pod template and completions cannot change, so "
            "it runs on with the spec it was made from (only suspend and ttlSecondsAfterFinished follow). To run the "
            "new spec, delete and re-create the VLMBatchJob (its output files are appended to, lines already there "
            "are skipped)"
        )
    obs = batchstatus.BatchObserved(
        generation=gen,
        shards=bj.spec.parallelism,
        job=live,
        pods=pods,
        progress=progress,
        now=now,
        refused=refused,
        fit_verdict=fit.verdict,
        fit_message=fit.message,
        fit_summary=fit.summary,
        gpu=fitcheck.gpu_label(spec, spec.engine.gpus_per_pod),
        engine_version=bj.spec.engine.version,
        effective_args=args,
        previous=previous,
        suspended=bj.spec.suspend,
        drift=drift,
        engines=engines,
    )
    _write_status(k, body, batchstatus.compute(obs, _now()), logger)


def _keep_suspend(k: kube.Kube, bj: VLMBatchJob, live: Mapping[str, Any], stop: bool, logger: Any) -> None:
    """``spec.suspend`` onto the Job (and the TTL). ``stop``: a shard reported input that does not exist; suspend
    so no retry burns GPU time. Under a Kueue queue the operator only ever suspends: Kueue resumes when it admits."""
    if batchstatus.job_condition(live, "Complete") or batchstatus.job_condition(live, "Failed"):
        return
    want = bj.spec.suspend or stop
    have = bool((live.get("spec") or {}).get("suspend"))
    patch: dict[str, Any] = {}
    if want != have and (want or not bj.queue_name):
        patch["suspend"] = want
    ttl = bj.spec.ttl_seconds_after_finished
    if (live.get("spec") or {}).get("ttlSecondsAfterFinished") != ttl:
        patch["ttlSecondsAfterFinished"] = ttl
    if patch:
        k.patch("batch/v1", "Job", bj.namespace, bj.name, {"spec": patch}, "application/merge-patch+json")
        logger.info(f"Patched Job {bj.namespace}/{bj.name}: {patch}")


def _write_status(k: kube.Kube, body: dict[str, Any], new: dict[str, Any], logger: Any) -> None:
    old = body.get("status") or {}
    if all(old.get(key) == new.get(key) for key in _STATUS_KEYS):
        return
    meta = body["metadata"]
    k.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], {key: new.get(key) for key in _STATUS_KEYS})
    before = {c.get("type"): c.get("status") for c in old.get("conditions") or []}
    for c in new["conditions"]:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True" and before.get(c["type"]) != "True":
            try:  # the two outcomes a person waits for
                k.event(
                    {"apiVersion": API_VERSION, "kind": KIND, **body},
                    "Normal" if c["type"] == "Complete" else "Warning",
                    c["reason"],
                    c["message"],
                )
            except Exception as exc:
                logger.warning(f"Could not record an event: {exc}")


def reconcile_batch(namespace: str | None, name: str | None, logger: kopf.Logger, **_: Any) -> None:
    if namespace and name:
        reconcile(_client(), namespace, name, logger)


def poll_batch(namespace: str | None, name: str | None, status: kopf.Status, logger: kopf.Logger, **_: Any) -> None:
    """Live progress while shards run; nothing to read once the job finished."""
    conds: list[dict[str, Any]] = list(dict(status or {}).get("conditions") or [])
    done = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conds)
    if namespace and name and not done:
        reconcile(_client(), namespace, name, logger)


def batch_child_changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """A shard's pod or the Job moved (a shard ended, the Job completed): recompute the owner's status."""
    meta = body.get("metadata", {})
    owner = (meta.get("labels") or {}).get(render_batch.LABEL_BATCH)
    ns = meta.get("namespace")
    if owner and ns:
        reconcile(_client(), ns, owner, logger)


def register(settings: Settings, r: kopf.OperatorRegistry) -> None:
    """Register the VLMBatchJob handlers with ``r`` (called by :func:`vlm_operator.handlers.register`)."""
    global _client_image
    if settings.image:
        _client_image = settings.image
    on = kopf.on
    for changed in (on.resume, on.create, on.update):
        changed(GROUP, VERSION, BATCH_PLURAL, registry=r)(reconcile_batch)
    kopf.timer(GROUP, VERSION, BATCH_PLURAL, interval=settings.batch_poll_seconds, initial_delay=1, registry=r)(
        poll_batch
    )
    on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": objects.MANAGED_BY}, registry=r)(
        batch_child_changed
    )
    on.event("", "v1", "pods", labels={render_batch.LABEL_BATCH: kopf.PRESENT}, registry=r)(batch_child_changed)
    if settings.webhook:
        # as the VLMDeployment's: failurePolicy Fail, sideEffects None (kopf serves it at /validate-batch)
        on.validate(
            GROUP,
            VERSION,
            BATCH_PLURAL,
            id=VALIDATE_BATCH_ID,
            operations=["CREATE", "UPDATE"],
            ignore_failures=False,
            side_effects=False,
            registry=r,
        )(validate_batch)
