"""kopf handlers: thin glue from watch events and admission requests to :mod:`vlm_operator.reconcile`,
:mod:`vlm_operator.admission`, :mod:`vlm_operator.readiness` and the autoscaler loop
(:mod:`vlm_operator.autoscale.loop`). No logic of their own.

Importing this module registers nothing and reads no environment. :func:`register` registers every handler with a
kopf registry (kopf's default one unless told), using the :class:`~vlm_operator.settings.Settings` that
``vlmctl operator run`` built at start-up (the drift and readiness intervals, the webhook on or off and how it is
served).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from vlm_operator import (
    admission,
    childwatch,
    inventory,
    kube,
    persistence,
    profile_admission,
    quotastore,
    readiness,
    reconcile,
    resync,
    webhook_certs,
    webhook_config,
    webhook_server,
    workqueue,
)
from vlm_operator.autoscale import loop
from vlm_operator.estimator import from_spec
from vlm_operator.handlers import batch
from vlm_operator.render import batch as render_batch
from vlm_operator.render import objects
from vlm_operator.settings import Settings

GROUP, VERSION, PLURAL = "vlmops.io", "v1alpha1", "vlmdeployments"
#: How soon a create/update whose fit check gave up waiting for the Hub is checked again.
HUB_RECHECK_S = 3.0
#: How soon a handler that raised (an API error, a conflict, an API server that is down) runs again. kopf's default is
#: 60 s (kopf 1.45.2, kopf/_cogs/configs/configuration.py: ``ExecutionSettings.default_backoff = 60``; applied in
#: kopf/_core/actions/execution.py, ``handler.backoff if handler.backoff is not None else ...default_backoff``), which
#: made convergence after an operator kill or an API fault take about a minute. Set per handler through the
#: decorators' ``backoff=`` argument, which every kopf release since 1.x accepts. 10 s keeps retries of a failing
#: object at one per 10 s (no hot loop) and convergence after a fault within about 10 s of the API answering again.
HANDLER_BACKOFF_S = 10.0
#: kopf's throttling after an unexpected error outside handlers (a status patch that failed even after its own retries)
#: grows 1, 1, 2, 3, 5, ... up to 610 s by default (``QueueingSettings.error_delays``, same file). Capped at the handler
#: backoff; the last delay repeats while the errors go on (kopf/_core/actions/throttlers.py, ``throttled``).
ERROR_DELAYS_S = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, HANDLER_BACKOFF_S)
#: A VLMDeployment being deleted keeps kopf's finalizer until its timers have exited; a sync timer that is running
#: (a resync in its thread) cannot be cancelled, and kopf looks again only after ``BackgroundSettings.
#: cancellation_polling``, 60 s by default (same file; kopf/_core/engines/daemons.py, ``stop_daemons``): a deletion that
#: met a running timer took a minute. 2 s: the timer's reconcile is done by then.
TIMER_EXIT_POLL_S = 2.0
WEBHOOK_NAME = "vlm-operator.vlmops.io"
#: The validating handler's id: kopf serves it at /<id> and names its webhook <id>.<WEBHOOK_NAME>.
VALIDATE_ID = "validate"

MANAGED = {"app.kubernetes.io/managed-by": objects.MANAGED_BY}
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={objects.MANAGED_BY}"
#: kopf's bookkeeping for VLMDeployments, in this process's memory (see ``configure``)
#: VLMDeployments have no kopf create/update/resume handler of this operator, so kopf never stores their essence: it
#: may refer to the event's spec instead of copying it on every event.
#: ``essence_free``: the other kinds kopf watches with no kopf changing, timer or daemon handler (the VLMBatchJobs'
#: pods and Jobs; tests/unit/test_persistence.py checks the registry for it): kopf needs no essence of their events.
#: The VLMDeployments' own children are not kopf's (:mod:`vlm_operator.childwatch`).
ESSENCE_FREE = ("Pod", "Job")
PERSISTENCE = persistence.MemoryPersistence(
    prefix="vlmops.io", share_spec_of=("VLMDeployment",), essence_free=ESSENCE_FREE
)

#: What :func:`register` was given for kopf's default registry (the operator process's); :func:`configure` reads it.
_settings: Settings | None = None


def _client() -> kube.Kube:
    return kube.shared()


class QuietPerEventSuccess(logging.Filter):
    """Drops kopf's INFO line "<Handler|Webhook|Indexer> '<id>' succeeded." for the handlers that run on every watch
    event or admission request (kopf 1.45.2, kopf/_core/actions/execution.py, ``execute_handler_once``): at 1,000
    objects they were most of the log (about 21,000 lines in three minutes) and a few per cent of the operator's CPU.
    Their failures, and every other line, are kept."""

    def __init__(self, ids: frozenset[str]) -> None:
        super().__init__()
        self.ends = tuple(f"'{i}' succeeded." for i in ids)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        return not (record.levelno == logging.INFO and isinstance(msg, str) and msg.endswith(self.ends))


#: the handlers that run on every watch event or admission request (see :class:`QuietPerEventSuccess`)
PER_EVENT_IDS = frozenset(
    {
        "vlmd_event",
        VALIDATE_ID,
        "batch_child_changed",
        batch.VALIDATE_BATCH_ID,
    }
)


def quiet_kopf_success_lines() -> None:
    """Install :class:`QuietPerEventSuccess` on kopf's per-object logger (once per process)."""
    objects_log = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietPerEventSuccess) for f in objects_log.filters):
        objects_log.addFilter(QuietPerEventSuccess(PER_EVENT_IDS))


def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = _settings or Settings()
    # kopf would post a "Handler succeeded" event per run; those are writes with no value to users.
    settings.posting.level = logging.WARNING
    quiet_kopf_success_lines()
    # kopf's own bookkeeping (handler progress, the last-handled spec) stays in memory, not in the object: two PATCHes
    # of every object per create or update saved; the reconcile is level-based, so a restart loses nothing
    # (:mod:`vlm_operator.persistence`). Status has one writer: the reconciler.
    PERSISTENCE.install(settings)
    settings.watching.server_timeout = 300
    # kopf watches only the pods and Jobs of VLMBatchJobs (handlers/batch.py), with a server-side label selector; the
    # VLMDeployments' children are watched by the operator itself (:mod:`vlm_operator.childwatch`).
    settings.watching.label_selectors[("", "v1", "pods")] = f"{MANAGED_SELECTOR},{render_batch.LABEL_BATCH}"
    settings.watching.label_selectors[("batch", "v1", "jobs")] = MANAGED_SELECTOR
    settings.networking.request_timeout = 60
    settings.queueing.error_delays = ERROR_DELAYS_S
    settings.background.cancellation_polling = TIMER_EXIT_POLL_S
    if not ours.webhook:
        return
    files = webhook_certs.serving_files(ours.webhook_host, mounted=ours.webhook_cert_dir)
    server_args: dict[str, Any] = {
        "addr": ours.webhook_addr,
        "port": ours.webhook_port,
        "host": ours.webhook_host,
        "certfile": files.certfile,
        "pkeyfile": files.keyfile,
        "cafile": files.cafile,
    }
    if ours.webhook_service:  # in a cluster: the API server reaches the webhook through its Service, not a URL
        settings.admission.server = webhook_server.ServiceWebhookServer(
            service=webhook_server.ServiceRef.parse(ours.webhook_service), **server_args
        )
    elif ours.webhook_url:  # replicas behind a load balancer, one shared certificate
        settings.admission.server = webhook_server.AdvertisedWebhookServer(advertised=ours.webhook_url, **server_args)
    else:
        settings.admission.server = kopf.WebhookServer(**server_args)
    owner = ours.webhook_config
    if owner == "operator":
        settings.admission.managed = WEBHOOK_NAME
    elif owner == "chart":  # the chart made the configuration; keep only its CA bundle current (patch by name)
        names = [webhook_config.webhook_name(i, WEBHOOK_NAME) for i in (VALIDATE_ID, batch.VALIDATE_BATCH_ID)]
        _client().patch(
            webhook_config.API_VERSION,
            webhook_config.KIND,
            None,
            WEBHOOK_NAME,
            webhook_config.ca_bundle_patch(names, Path(files.cafile).read_bytes()),
        )


#: The VLMDeployments' children, watched by the operator itself (:mod:`vlm_operator.childwatch`): started with the
#: operator (:func:`start_resync`), in the namespaces it watches (:func:`register`), or cluster-wide.
CHILDREN: list[childwatch.ChildWatches] = []
_WATCH_NAMESPACES: list[str] = []


def _indexes() -> dict[str, Any]:
    """The child indexes a reconcile reads: those whose first LIST is complete (the others: none, so the reconcile
    reads those children from the API server)."""
    return CHILDREN[0].indexes() if CHILDREN else {}


def _scopes(namespaces: Sequence[str]) -> list[str]:
    """Where the child watches list and watch: each namespace the operator watches, or the whole cluster (also when a
    namespace is a pattern, which kopf matches but a watch request cannot)."""
    if any(ch in n for n in namespaces for ch in "*?[!"):
        _LOG.warning(f"namespace patterns {list(namespaces)}: the operator's children are watched cluster-wide")
        return []
    return list(namespaces)


def child_event(
    kind: str,
    type: str,
    key: tuple[str, str],
    name: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> None:
    """A child changed (in its watch's thread): a pod or the Deployment moved (a pod became ready, crashed): the
    owner's status is recomputed, once per burst of events (:data:`QUEUE`). A deleted child drops the fresher copy
    this process kept of it, and its owner applies it again. Of a Service or PodDisruptionBudget only a change of
    what this process applied counts (its own create, an edit that drops or changes the object hash), not the
    disruption controller's updates of a PodDisruptionBudget's status on every pod change."""
    namespace = key[0]
    if type == "DELETED":
        if kind in reconcile.CHILD_KINDS:
            KNOWN.child_deleted(kind, namespace, name)
    elif kind in ("Service", "PodDisruptionBudget"):
        applied = reconcile.applied_hash(kind, namespace, name)
        annotations = ((new or {}).get("metadata") or {}).get("annotations") or {}
        if applied is not None and annotations.get(objects.ANN_OBJECT_HASH) == applied:
            return
    QUEUE.add(key, CHILD_WINDOW_SECONDS, CHILD_SETTLE_MAX_SECONDS)


#: The newest known VLMDeployments (their watch, and the status PATCH responses of this process's reconciles) and the
#: Deployments this process applied that their index has not caught up with: a reconcile of the operator reads no
#: object afresh (:class:`vlm_operator.reconcile.Known`).
KNOWN = reconcile.Known()


def _reconcile(
    namespace: str,
    name: str,
    logger: kopf.Logger | logging.Logger,
    kwargs: dict[str, Any],
    thorough: bool = True,
    defer_status: bool = False,
) -> bool:
    """Reconcile with the object and its children read from the watch-fed caches (``kwargs``: the child indexes by
    name, :func:`_indexes`); False when the object is gone."""
    key = (namespace, name)
    pods, deps = kwargs.get("vlmd_pods"), kwargs.get("vlmd_deployments")
    deployment = None
    if deps is not None:  # the index is known: the Deployment is what it holds (None: there is none)
        deployment = (_held(deps, key),)
    children: dict[str, dict[str, Any] | None] | None = None
    svcs, pdbs = kwargs.get("vlmd_services"), kwargs.get("vlmd_pdbs")
    if svcs is not None and pdbs is not None:  # both indexes known: the Service and PDB are what they hold
        children = {"Service": _held(svcs, key), "PodDisruptionBudget": _held(pdbs, key)}
    try:
        return reconcile.reconcile(
            _client(),
            namespace,
            name,
            logger,
            pods=list(pods.get(key, [])) if pods is not None else None,
            thorough=thorough,
            deployment=deployment,
            defer_status=defer_status,
            known=KNOWN if KNOWN.objects.known(key) else None,
            children=children,
        )
    except ApiException as exc:
        if exc.status == 404 and _gone(namespace, name):
            # deleted while this reconcile ran (its status PATCH or a child's apply met the 404): nothing is left to
            # reconcile, and the children go with their owner
            logger.info(f"{namespace}/{name} was deleted while it was reconciled; not reconciled again")
            return False
        if not namespace_terminating(exc):
            raise
        # the namespace is being deleted: its children cannot be created any more and the object goes with it
        logger.info(f"namespace {namespace} is being deleted; {name} is not reconciled again")
        return True


def _held(index: Any, key: tuple[str, str]) -> dict[str, Any] | None:
    """What a child index of one child per owner holds for ``key`` (its latest entry), or None."""
    found = list(index.get(key, []))
    return found[-1] if found else None


def _gone(namespace: str, name: str) -> bool:
    """The VLMDeployment no longer exists, or is being deleted (read afresh after a 404)."""
    body = _client().get(reconcile.API_VERSION, reconcile.KIND, namespace, name)
    return body is None or bool(body["metadata"].get("deletionTimestamp"))


def namespace_terminating(exc: ApiException) -> bool:
    """The API server's refusal to create anything in a namespace that is being deleted (HTTP 403 with the
    ``NamespaceTerminating`` cause; k8s.io/apiserver plugin/pkg/admission/namespace/lifecycle)."""
    return exc.status == 403 and "because it is being terminated" in str(exc.body or "")


_LOG = logging.getLogger("vlm_operator.reconcile")
#: Keys whose next run was asked for by the VLMDeployment's own watch (new, changed or listed): a run that applies the
#: Deployment leaves the status to the child event that follows.
_SPEC_RUN: set[tuple[str, str]] = set()
_asked_lock = threading.Lock()


def reconcile_key(key: Any) -> float | None:
    """The work queue's run: one reconcile of ``key``; seconds until it is to run again, or None."""
    namespace, name = key
    if RESYNC.paused():
        return None  # kopf's peering paused this replica; the watch lists every object again when it resumes
    with _asked_lock:
        spec_run = key in _SPEC_RUN
        _SPEC_RUN.discard(key)
    try:
        # a Deployment this changes brings a child event (half a second later) whose run writes the status
        _reconcile(namespace, name, _LOG, _indexes(), thorough=False, defer_status=spec_run)
    except BaseException:
        if spec_run:
            with _asked_lock:
                _SPEC_RUN.add(key)
        raise
    if from_spec.hub_lookups_in_flight():
        # The fit check gave up waiting for the Hub (FitsGPU Unknown) while the lookup goes on: check again soon
        # rather than at the next drift resync.
        return HUB_RECHECK_S
    return None


#: How long child events of one VLMDeployment are gathered into one reconcile: each event moves the run to half a
#: second after itself, up to two seconds after the first (:meth:`vlm_operator.workqueue.WorkQueue.add`).
CHILD_WINDOW_SECONDS = 0.5
CHILD_SETTLE_MAX_SECONDS = 2.0
#: Every reconcile the watches ask for (:mod:`vlm_operator.workqueue`): at most one per object at a time, a burst of
#: child events folded into one run, failures retried after 1, 2, 4, 8, then every 10 s.
QUEUE = workqueue.WorkQueue(reconcile_key, workers=6, retry_base_s=1.0, retry_max_s=HANDLER_BACKOFF_S)


def stop_queue(**_: Any) -> None:
    QUEUE.stop()


#: What of each VLMDeployment's last watch event asks for a reconcile when it changes: the uid, and kopf's essence,
#: what kopf's on.update handlers reacted to (the spec, the labels, the annotations other than kopf's own storage of
#: any kopf operator and kubectl's last-applied configuration; never the status, which is what this operator writes).
_ESSENCE: dict[tuple[str, str], tuple[Any, Any]] = {}
_essence_lock = threading.Lock()


def _essence(body: Mapping[str, Any]) -> tuple[Any, Any]:
    kbody = body if isinstance(body, kopf.Body) else kopf.Body(dict(body))  # type: ignore[arg-type]
    return ((body.get("metadata") or {}).get("uid"), PERSISTENCE.diffbase.build(body=kbody))


def vlmd_event(
    type: str | None,
    uid: str | None,
    namespace: str | None,
    name: str | None,
    body: Mapping[str, Any] | None = None,
    **_: Any,
) -> None:
    """Every watch event of a VLMDeployment: kept as the newest known copy; a new one (or one listed at start-up), or
    one whose spec, labels or annotations changed, is queued for a reconcile; the drift resync learns of it.
    A deleted one drops kopf's bookkeeping, the reconciler's memory of it and its place in the drift resync."""
    if not namespace or not name:
        return
    key = (namespace, name)
    if type == "DELETED":
        RESYNC.discard(key)
        KNOWN.forget(namespace, name)
        reconcile.forget_applied(namespace, name)
        with _essence_lock:
            _ESSENCE.pop(key, None)
        with _asked_lock:
            _SPEC_RUN.discard(key)
        if uid:
            PERSISTENCE.forget(uid)
        return
    RESYNC.add(key)
    if body is None:
        return
    KNOWN.objects.seen(key, body)
    essence = _essence(body)
    with _essence_lock:
        changed = type is None or _ESSENCE.get(key) != essence
        _ESSENCE[key] = essence
    if changed:
        with _asked_lock:
            _SPEC_RUN.add(key)
        QUEUE.add(key)


_RESYNC_LOG = logging.getLogger("vlm_operator.resync")


def resync_vlmd(key: Any) -> bool:
    """The drift resync of one object (:mod:`vlm_operator.resync`): a thorough reconcile (where the Service and
    PodDisruptionBudget indexes are not known yet it reads both, so one that was deleted or edited comes back; with
    them it compares the indexed ones). False when the object is gone."""
    namespace, name = key
    return _reconcile(namespace, name, _RESYNC_LOG, _indexes(), thorough=True)


#: The operator-wide drift resync (:func:`register` sets its interval; ``vlmctl operator run`` tells it when kopf's
#: peering pauses this replica). Not a kopf timer: a timer puts kopf's finalizer on every object.
RESYNC = resync.ResyncLoop(resync_vlmd, interval_s=Settings().drift_seconds)
_RESYNC_TASK: list[asyncio.Task[None]] = []


async def start_resync(**_: Any) -> None:
    if not CHILDREN:
        CHILDREN.append(childwatch.ChildWatches(_client(), MANAGED_SELECTOR, _scopes(_WATCH_NAMESPACES), child_event))
    CHILDREN[0].start()  # their first LISTs run in their own threads; a reconcile reads an index once it is listed
    _RESYNC_TASK.append(asyncio.create_task(RESYNC.run(), name="vlm drift resync"))
    # the rollouts' free-GPU count: its watches list every node and pod in their own threads from now on; the fit
    # check's GPU inventory reads the same node watch
    reconcile.CLUSTER_PODS.warm(_client())
    inventory.SHARED.watched = reconcile.CLUSTER_PODS.max_gpus_per_node


async def stop_resync(**_: Any) -> None:
    inventory.SHARED.watched = None
    while CHILDREN:
        CHILDREN.pop().stop()
    while _RESYNC_TASK:
        task = _RESYNC_TASK.pop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


_READINESS_BACKOFF: dict[tuple[str, str], readiness.Backoff] = {}


def _has_multimodal_probe(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("readiness") or {}).get("multimodalProbe"))


def multimodal_readiness(
    namespace: str | None, name: str | None, spec: kopf.Spec, logger: kopf.Logger, **kwargs: Any
) -> None:
    """``spec.readiness.multimodalProbe``: probe the pods that wait on the gate (:mod:`vlm_operator.readiness`)."""
    if not namespace or not name or not (spec.get("readiness") or {}).get("multimodalProbe"):
        return
    pods = _indexes().get("vlmd_pods")
    if pods is None:
        return  # the pod watch has not listed yet: the next tick probes
    backoff = _READINESS_BACKOFF.setdefault((namespace, name), readiness.Backoff())
    try:
        probed = readiness.run(_client(), list(pods.get((namespace, name), [])), backoff)
    except ApiException as exc:
        if exc.status != 403:
            raise
        logger.error(readiness.FORBIDDEN)
        return
    for pod, result in probed:
        logger.info(f"multimodal probe of pod {pod}: " + ("passed" if result.ok else f"failed: {result.error}"))


async def vlmd_event_async(**kwargs: Any) -> None:
    """:func:`vlmd_event` in kopf's event loop: it only takes short locks and queues the reconcile, so kopf's worker
    of each object takes its next event at once instead of holding it (a decoded body) behind a blocking reconcile
    (docs/performance.md, "Operator RSS")."""
    vlmd_event(**kwargs)


def validate_vlmd(body: kopf.Body, warnings: list[str], old: Any = None, **_: Any) -> None:
    if old and (body.get("metadata", {}).get("deletionTimestamp") or old.get("spec") == body.get("spec")):
        # An update that leaves the spec as it was (finalizers, annotations, labels, a deletion under way) is never
        # refused: otherwise a spec that got in while the webhook was off, or that a newer policy refuses, could not
        # even have kopf's finalizer removed, and the object (and its namespace) could never be deleted.
        return
    try:
        vlmd = admission.parse(profile_admission.with_defaults(_client(), body))
    except ValidationError as exc:
        raise kopf.AdmissionError(f"invalid VLMDeployment: {admission.validation_message(exc)}", code=422) from None
    decision = admission.decide(vlmd.spec, inventory.SHARED.get(_client()))
    warnings.extend(w[:1000] for w in decision.warnings)
    # platform profiles (VLMPlatformProfile) and GPU quota: limits that check only what this change touches
    old_spec = None
    if old and old.get("spec"):
        try:
            old_spec = admission.parse(old).spec
        except ValidationError:
            old_spec = None
    meta = body.get("metadata", {})
    verdict = profile_admission.admission_verdict(
        _client(), meta.get("namespace", ""), vlmd.spec, old_spec, meta.get("name", "")
    )
    decision = admission.with_policy(
        decision, (str(r) for r in verdict.refusals), verdict.warnings, admission.REASON_PROFILE
    )
    warnings.extend(w[:1000] for w in verdict.warnings)
    if not decision.allowed:
        raise kopf.AdmissionError(decision.message, code=422)


#: Admission runs on threads of its own. kopf runs every sync handler on one executor
#: (``settings.execution.executor``, kopf 1.45.2 kopf/_core/actions/invocation.py ``invoke``: ``run_in_executor``),
#: a ThreadPoolExecutor of min(32, CPUs + 4) threads: 6 on 2 cores. In a rollout of 1,000 objects every one of them
#: held a reconcile, so an admission request queued behind hundreds of reconciles; the API server gave up on the
#: webhook (failurePolicy Fail) and users' applies were refused or took seconds each (benchmarks/operator_scale.py
#: --full, docs/performance.md). The validation itself takes milliseconds.
_ADMISSION_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="admission")


async def validate_vlmd_async(**kwargs: Any) -> None:
    """:func:`validate_vlmd` on the admission threads, never behind reconciles in kopf's sync-handler executor."""
    await asyncio.get_running_loop().run_in_executor(_ADMISSION_POOL, functools.partial(validate_vlmd, **kwargs))


def _internal(spec: kopf.Spec, **_: Any) -> bool:
    scaling = spec.get("scaling") or {}
    return bool(scaling.get("mode") == "Internal")


async def autoscaler_daemon(
    namespace: str | None, name: str | None, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: loop.Logger, **_: Any
) -> None:
    """``scaling.mode: Internal``: the autoscaler loop (:func:`vlm_operator.autoscale.loop.run`) for one object."""
    if not namespace or not name:
        return
    client = _client()

    async def reconcile_now() -> None:
        await asyncio.to_thread(reconcile.reconcile, client, namespace, name, logger)

    await loop.run(client, namespace, name, memo, stopped, logger, on_change=reconcile_now)


def register(
    settings: Settings, registry: kopf.OperatorRegistry | None = None, namespaces: Sequence[str] = ()
) -> kopf.OperatorRegistry:
    """Register every handler with ``registry`` (kopf's default one, which ``kopf.run`` uses, when None) and return
    it. The default registry takes one call per process; its ``settings`` are what :func:`configure` serves by.
    ``namespaces``: the namespaces the operator watches (none: the whole cluster), for the child watches."""
    global _settings
    if registry is None:
        if _settings is not None:
            raise RuntimeError("vlm_operator.handlers.register() was already called for kopf's default registry")
        _settings = settings
        registry = kopf.get_default_registry()
    _WATCH_NAMESPACES[:] = list(namespaces)
    on, r = kopf.on, registry
    on.startup(registry=r)(configure)
    # The VLMDeployments' pods, Deployments, Services and PodDisruptionBudgets are not kopf's: the operator lists and
    # watches them itself (:mod:`vlm_operator.childwatch`, started in ``start_resync``), with an event costing its
    # decoding and a compact copy rather than kopf's processing of an object.
    # No kopf create/update/resume handler: the VLMDeployments' watch events queue their reconciles (``vlmd_event``,
    # :data:`QUEUE`), so kopf neither holds an event behind a blocking reconcile nor keeps a diff base per object.
    # The drift resync: one loop for all objects (:mod:`vlm_operator.resync`), not a kopf timer per object, which
    # would put kopf's finalizer on each (a write per create). Objects that carry that finalizer from an earlier
    # version lose it on their first event: kopf removes its finalizer when no handler of the object needs it
    # (kopf 1.45.2, kopf/_core/reactor/processing.py, process_resource_causes: "Removing the finalizer, as there are
    # no handlers requiring it"). The readiness timer and the autoscaler daemon below keep it, on their objects only.
    RESYNC.interval_s = settings.drift_seconds
    reconcile.CLUSTER_PODS.watch = settings.cluster_watch
    quotastore.SHARED.watch = settings.cluster_watch
    on.startup(registry=r)(start_resync)
    on.cleanup(registry=r)(stop_resync)
    # ``when``: kopf starts this timer only on objects that ask for the probe; it used to wake every 5 s on every
    # object (a thread hop each) just to return.
    kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=settings.readiness_seconds,
        initial_delay=1,
        when=_has_multimodal_probe,
        backoff=HANDLER_BACKOFF_S,
        registry=r,
    )(multimodal_readiness)
    on.event(GROUP, VERSION, PLURAL, id="vlmd_event", registry=r)(vlmd_event_async)
    on.cleanup(registry=r)(stop_queue)
    kopf.daemon(GROUP, VERSION, PLURAL, id="autoscaler", when=_internal, cancellation_timeout=10.0, registry=r)(
        autoscaler_daemon
    )
    # failurePolicy Fail (ignore_failures=False) and sideEffects None (side_effects=False) are set explicitly; kopf
    # hard-codes timeoutSeconds 30 in the configuration it manages (kopf/_core/engines/admission.py, build_webhooks).
    # With the webhook off the handler is not registered at all: kopf refuses to start with admission handlers and no
    # server to serve them.
    if settings.webhook:
        on.validate(
            GROUP,
            VERSION,
            PLURAL,
            id=VALIDATE_ID,
            operations=["CREATE", "UPDATE"],
            ignore_failures=False,
            side_effects=False,
            registry=r,
        )(validate_vlmd_async)
    batch.register(settings, r)  # VLMBatchJob
    return r
