"""One level-based reconcile of a VLMDeployment: parse, check fit, render, apply what changed, write status.

It is idempotent and edge-free: creation, update, operator restart, a child's change and the drift timer all call
the same function. Nothing is written when nothing changed: children are compared by a hash of the desired object
(an annotation the renderer puts on each), and status only when the computed status differs, so an idle resync
makes no mutating request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from vlm_operator import (
    admission,
    clusterwatch,
    conditions,
    fitcheck,
    inventory,
    profile_admission,
    quota,
    quotastore,
    readiness,
    rollout,
    store,
)
from vlm_operator import operator_metrics as op_metrics
from vlm_operator.api import VLMDeployment
from vlm_operator.autoscale import report as scaling_report
from vlm_operator.estimator import from_spec
from vlm_operator.kube import Kube
from vlm_operator.render import objects

API_VERSION = "vlmops.io/v1alpha1"
KIND = "VLMDeployment"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Moved to :mod:`vlm_operator.admission` (the one refusal policy); kept for callers that import it from here.
validation_message = admission.validation_message

_NOT_CHECKED = fitcheck.FitOutcome("Unknown", "spec not checked")


@dataclass
class Plan:
    vlmd: VLMDeployment
    fit: fitcheck.FitOutcome
    command: tuple[str, ...]
    desired: list[dict[str, Any]]
    render: objects.RenderPlan
    #: The refusal policy's verdict (:func:`vlm_operator.admission.decide`); children exist only when it allows.
    decision: admission.Decision = field(default_factory=admission.Decision)

    @property
    def refused(self) -> str | None:
        """Why no pods are rolled out (what the webhook would have said), or None."""
        return f"not rolled out: {self.decision.message}" if not self.decision.allowed else None


def build_plan(vlmd: VLMDeployment, max_gpus_per_node: Mapping[str, int] | None = None) -> Plan:
    """Pure: the refusal policy, the fit check and the desired children of ``vlmd`` (``max_gpus_per_node``: the
    cluster's GPU inventory). The spec is rendered once, by the policy; a refused spec has no children."""
    model = from_spec.lookup_model(vlmd.spec)  # once: the policy and the fit check share it
    decision = admission.decide(vlmd.spec, max_gpus_per_node, model)
    fit = decision.fit
    if fit is None:
        fit = fitcheck.check(vlmd.spec, max_gpus_per_node, model) if decision.allowed else _NOT_CHECKED
    rendered = decision.rendered
    if rendered is None:
        return Plan(vlmd, fit, (), [], objects.RenderPlan(command=()), decision)
    plan = objects.RenderPlan(
        command=rendered.argv,
        env=rendered.env,
        weights_gib=fit.weights_gib_per_replica,
        host_memory_bytes=fit.host_memory_bytes,
        shm_bytes=max(fit.shm_bytes or 0, objects.SHM_FLOOR_BYTES),
    )
    desired = objects.render_all(vlmd, plan) if decision.allowed else []
    return Plan(vlmd, fit, rendered.argv, desired, plan, decision)


#: Plans by the object's identity, each with the (parsed spec, GPU inventory) it was built for: most reconciles (child
#: events, resyncs) see the same spec, and the policy, fit check and render are pure functions of those (and of the
#: catalog and release tables, fixed for the process). One plan per object (about 28 KiB each): a spec change replaces
#: the object's plan instead of adding one (a rollout of every object used to double the cache), and a deleted
#: object's plan is dropped (:func:`forget_applied`). Bounded; cleared when full. ``Plan.vlmd`` of a remembered plan
#: carries only the identity of the metadata it was built from (nothing reads it).
_PLANS: dict[str, tuple[tuple[str, tuple[tuple[str, int], ...]], Plan]] = {}
_PLANS_MAX = 4096
_plans_lock = threading.Lock()
_V = TypeVar("_V")


def _plan_ident(namespace: Any, name: Any, uid: Any = None) -> str:
    return f"{namespace}/{name}/{uid}" if uid is not None else f"{namespace}/{name}/"


def cached_plan(vlmd: VLMDeployment, max_gpus_per_node: Mapping[str, int] | None = None) -> Plan:
    """:func:`build_plan`, remembered. Not remembered while a Hub lookup runs or the fit is Unknown: the same spec
    can check differently once the Hub answers. Callers never mutate a plan."""
    m = vlmd.metadata  # the render reads only these of the metadata (resourceVersion & co. change on every write)
    ident = _plan_ident(m.get("namespace"), m.get("name"), m.get("uid"))
    key = (vlmd.spec.model_dump_json(), tuple(sorted((max_gpus_per_node or {}).items())))
    with _plans_lock:
        found = _PLANS.get(ident)
    if found is not None and found[0] == key:
        return found[1]
    plan = build_plan(vlmd, max_gpus_per_node)
    if plan.fit.verdict != "Unknown" and not from_spec.hub_lookups_in_flight():
        # Remembered without the object's metadata (its managedFields, labels, annotations: a few KiB of the API
        # server's response per object, kept alive by the plan): nothing reads a plan's ``vlmd`` after the render.
        plan = dataclasses.replace(plan, vlmd=vlmd.model_copy(update={"metadata": _identity(m)}))
        _remember(_PLANS, ident, key, plan)
    return plan


def _remember(cache: dict[str, tuple[Any, _V]], ident: str, key: Any, value: _V) -> None:
    """Keep ``value`` (built for ``key``) as ``ident``'s one entry in ``cache``; a full cache is cleared first."""
    with _plans_lock:
        if len(cache) >= _PLANS_MAX and ident not in cache:
            cache.clear()
        cache[ident] = (key, value)


def _identity(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("namespace", "name", "uid") if k in meta}


def forget_plan(namespace: str, name: str) -> None:
    """Drop the remembered plan and parsed object of a deleted VLMDeployment (any uid of that name)."""
    prefix = _plan_ident(namespace, name)
    with _plans_lock:
        for ident in [i for i in _PLANS if i.startswith(prefix)]:
            del _PLANS[ident]
        for ident in [i for i in _PARSED if i.startswith(prefix)]:
            del _PARSED[ident]


#: The parsed object per object identity, with the (resourceVersion, profile-defaulted spec) it was parsed from: the
#: reconciles of one version (a spec run, the child runs after it, resyncs while nothing changed) validate it once.
#: About 10 KiB each; one per object, dropped on delete (:func:`forget_plan`), cleared when full.
_PARSED: dict[str, tuple[tuple[Any, ...], VLMDeployment]] = {}


def parsed(kube: Kube, body: Mapping[str, Any]) -> VLMDeployment:
    """``admission.parse`` of ``body`` with the platform profile's defaults applied, remembered per object version.
    Raises pydantic's ``ValidationError`` (never remembered)."""
    effective = profile_admission.with_defaults(kube, body)
    meta = body.get("metadata") or {}
    rv = meta.get("resourceVersion")
    ident = _plan_ident(meta.get("namespace"), meta.get("name"), meta.get("uid"))
    # the profile's defaults can change while the object does not; the defaulted spec is then part of the key
    key = (rv, None if effective is body else json.dumps(effective.get("spec"), sort_keys=True, default=str))
    with _plans_lock:
        found = _PARSED.get(ident)
    if rv is not None and found is not None and found[0] == key:
        return found[1]
    vlmd = admission.parse(effective)
    if rv is not None:
        _remember(_PARSED, ident, key, vlmd)
    return vlmd


def _pod_problems(pods: list[dict[str, Any]], template_hash: str | None) -> tuple[conditions.PodProblem, ...]:
    found = []
    for pod in pods:
        ann = pod["metadata"].get("annotations", {})
        if template_hash and ann.get(objects.ANN_SPEC_HASH) != template_hash:
            continue
        smoke_failure = readiness.failed_probe(pod)
        if smoke_failure is not None:  # spec.readiness.multimodalProbe: the pod serves /health but not images
            found.append(conditions.PodProblem(pod["metadata"]["name"], readiness.REASON_FAILED, smoke_failure))
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
                if (last.get("message") or "").strip():  # FallbackToLogsOnError: the container's own last words
                    msg += f"; last log: {rollout.last_lines(last['message'])}"
                found.append(
                    conditions.PodProblem(pod["metadata"]["name"], reason, msg, int(cs.get("restartCount", 0)))
                )
            elif pod.get("status", {}).get("phase") == "Failed" and term:
                found.append(
                    conditions.PodProblem(
                        pod["metadata"]["name"], term.get("reason", "Error"), f"exit code {term.get('exitCode')}"
                    )
                )
    return tuple(sorted(found, key=lambda p: p.pod))


#: How the reconciler reads the cluster for a surge decision: pod spec -> ({node: free GPUs}, this object's
#: non-terminal pods), both from one snapshot of the cluster watch when it runs (:class:`ClusterPods`); the object's
#: pods are listed afresh when that snapshot and the pods the reconcile was given disagree, or without the watch
#: (see :func:`observe`). Called only while a rollout runs; raises when the cluster cannot be read.
FreeGPUs = Callable[[Mapping[str, Any]], "tuple[dict[str, int], list[dict[str, Any]]]"]


@dataclass(frozen=True)
class Observation:
    """Everything one reconcile reads, gathered once by :func:`observe` (from the watch-fed caches when the
    operator runs, by LIST otherwise); :func:`decide` is a pure function of it."""

    body: dict[str, Any]
    #: the VLMDeployment's Deployment, or None
    live: dict[str, Any] | None
    #: this object's pods and ReplicaSets (label selector of :func:`objects.selector_string`); the ReplicaSets can be
    #: a function that lists them: only a rollback reads them (:meth:`rsets`)
    pods: list[dict[str, Any]]
    replica_sets: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]
    #: GFD product -> the most allocatable GPUs one node has (:mod:`vlm_operator.inventory`)
    inventory: Mapping[str, int]
    now: dt.datetime
    free_gpus: FreeGPUs
    #: the namespace's ResourceQuotas (read only when a surge is considered); None where they cannot be listed
    quotas: Callable[[], list[dict[str, Any]]] | None = None
    #: ``live`` came from the watch-fed index, not a GET (it can lag the API server by an event)
    live_cached: bool = False

    def rsets(self) -> list[dict[str, Any]]:
        return self.replica_sets() if callable(self.replica_sets) else self.replica_sets


@dataclass
class Decision:
    """What :func:`decide` concluded: the children to apply, the rollout view, the events, and why (``details``)."""

    plan: Plan
    refused: str | None
    deployment: dict[str, Any] | None
    others: list[dict[str, Any]]
    roll: _RolloutView
    template_hash: str
    details: list[str]


def observe(
    kube: Kube,
    body: dict[str, Any],
    pods: list[dict[str, Any]] | None = None,
    replica_sets: list[dict[str, Any]] | None = None,
    deployment: tuple[dict[str, Any] | None] | None = None,
) -> Observation:
    """Read what the decision needs. ``pods`` come from the operator's watch-fed index (handlers pass them); without
    them (CLI, tests, a resync before the index is warm) they are listed once. ``replica_sets`` are listed only if a
    rollback asks for them, once per reconcile: the operator keeps no watch of ReplicaSets, whose events (several per
    pod started) only a rollback would read."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    # ``deployment``: (the Deployment or None) from the watch-fed index; read afresh when the index is not known
    live = deployment[0] if deployment is not None else kube.get("apps/v1", "Deployment", ns, name)
    selector = objects.selector_string(name)
    if pods is None:
        pods = kube.list("v1", "Pod", ns, selector) if live else []
    rsets: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]] = replica_sets or []
    if replica_sets is None:
        rsets = functools.cache(lambda: kube.list("apps/v1", "ReplicaSet", ns, selector) if live else [])

    known = pods

    def free_gpus(pod_spec: Mapping[str, Any]) -> tuple[dict[str, int], list[dict[str, Any]]]:
        free, own = CLUSTER_PODS.free_and_own(kube, pod_spec, ns, name)
        # The object's pods come from the same snapshot as the free GPUs when that snapshot holds the same pods as
        # the ones this reconcile was given (the pod index, or the LIST above), alike in all that the decision reads
        # of them (node, phase, deletion, revision, PodScheduled): then a surge pod counts either as bound in both
        # the free GPUs and the held pods or in neither. A reconcile is started by a pod's event after the pod index
        # holds it, so a pod the ReplicaSet controller just created, or the scheduler's "Insufficient
        # nvidia.com/gpu" on it, is never missed: either the snapshot has caught up with that event, or the views
        # differ and the pods are listed afresh, as they always were before. A pod neither watch has delivered yet
        # brings its own event, and with it a reconcile.
        if own is None or not _same_pods(own, known):
            own = kube.list("v1", "Pod", ns, selector, field_selector=_NON_TERMINAL)
        return free, own

    return Observation(
        body,
        live,
        list(pods),
        rsets,
        inventory.SHARED.get(kube),
        dt.datetime.now(dt.UTC),
        free_gpus,
        lambda: quotastore.SHARED.list(kube, ns),
        live_cached=deployment is not None,
    )


_NON_TERMINAL = "status.phase!=Succeeded,status.phase!=Failed"


def _rollout_view(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """What :func:`decide_rollout` reads of one of the object's own pods (:func:`_waiting_for_gpus`,
    :func:`rollout.bound_pods`): deletion, revision, node, phase and the scheduler's verdict."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    scheduled = next(
        (
            (c.get("status"), c.get("reason"), c.get("message"))
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled"
        ),
        None,
    )
    revision = (meta.get("annotations") or {}).get(objects.ANN_SPEC_HASH)
    return (meta.get("deletionTimestamp"), revision, spec.get("nodeName"), status.get("phase"), scheduled)


def _same_pods(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two views of one object's pods hold the same non-terminal pods (by uid), alike in everything a
    rollout decision reads of them (:func:`_rollout_view`); a view without uids never agrees."""

    def views(pods: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]] | None:
        out = {}
        for p in pods:
            if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            uid = (p.get("metadata") or {}).get("uid")
            if not uid:
                return None
            out[str(uid)] = _rollout_view(p)
        return out

    va = views(a)
    return va is not None and va == views(b)


_log = logging.getLogger(__name__)


class ClusterPods:
    """Every node and every non-terminal pod in the cluster, as a surge decision reads them.

    By default from watches, listed once and kept current (:class:`vlm_operator.clusterwatch.ClusterWatch`, started
    by the first rollout that asks). With ``watch=False`` (``VLM_OPERATOR_CLUSTER_WATCH=0``), or a client that cannot
    watch, a LIST pair at most once per ``ttl_s``, shared by the reconciles of that time: a rollout of hundreds of
    objects at once made one pair per reconcile, each carrying every pod of the cluster. The free-GPU count can be
    ``ttl_s`` old; a surge pod that finds its GPU taken meanwhile is Pending, and the next reconcile replaces in place
    (:func:`decide_rollout`)."""

    def __init__(self, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic, watch: bool = True) -> None:
        self.ttl_s, self.clock, self.watch = ttl_s, clock, watch
        self._value: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self._at = 0.0
        self._lock = threading.Lock()
        self._blind = False
        self._watched: clusterwatch.ClusterWatch | None = None
        self._watch_lock = threading.Lock()

    def _watch_of(self, kube: Kube) -> clusterwatch.ClusterWatch | None:
        """The cluster watch (made on first use), or None where the LIST fallback serves (``watch=False``, a client
        that cannot watch)."""
        if not (self.watch and hasattr(kube, "watch")):
            return None
        with self._watch_lock:
            if self._watched is None:
                self._watched = clusterwatch.ClusterWatch(kube)
            return self._watched

    def free_and_own(
        self, kube: Kube, pod_spec: Mapping[str, Any], namespace: str, name: str
    ) -> tuple[dict[str, int], list[dict[str, Any]] | None]:
        """Free GPUs for ``pod_spec`` (:func:`rollout.free_gpus`) and the non-terminal pods of VLMDeployment
        ``namespace/name`` from the same snapshot; those pods are None when no watch runs (the caller lists them).
        With the watch a count costs O(nodes) (:class:`vlm_operator.clusterwatch.ClusterWatch`)."""
        watched = self._watch_of(kube)
        if watched is not None:
            try:
                return watched.free_gpus(pod_spec, (namespace, name))
            except ApiException as exc:
                if exc.status != 403:
                    raise
                self._warn_blind()
                return {}, None
        nodes, pods = self.get(kube)
        return rollout.free_gpus(nodes, pods, pod_spec), None

    def max_gpus_per_node(self) -> dict[str, int] | None:
        """The fit check's GPU inventory from the node watch
        (:meth:`vlm_operator.clusterwatch.ClusterWatch.max_gpus_per_node`); None where no watch runs or its first LIST
        has not completed (:class:`vlm_operator.inventory.GPUInventory` lists then)."""
        watched = self._watched
        return watched.max_gpus_per_node() if watched is not None else None

    def warm(self, kube: Kube) -> None:
        """Start the watches now (the operator's start-up) instead of at the first rollout, which would otherwise wait
        for the first LIST of every pod in the cluster (seconds at 10,000 pods). Returns at once; a 403 shows at the
        first read, as before. Nothing with ``watch=False``."""
        watched = self._watch_of(kube)
        if watched is not None:
            watched.start()

    def _warn_blind(self) -> None:
        # a namespaced install may not read every pod of the cluster: with no free-GPU count a rollout never surges
        # and replaces its pods in place (it cannot wait for GPUs it cannot see)
        if not self._blind:
            _log.warning(
                "cluster-wide nodes/pods are not readable with this install's rights (HTTP 403): "
                "rollouts replace pods in place instead of surging"
            )
        self._blind = True

    def get(self, kube: Kube) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        watched = self._watch_of(kube)
        with self._lock:  # one LIST pair at a time; the reconciles that wait for it use its result
            try:
                if watched is not None:
                    return watched.get()
                if self._value is None or self.clock() - self._at >= self.ttl_s:
                    nodes = kube.list("v1", "Node", None)
                    pods = kube.list("v1", "Pod", None, field_selector=_NON_TERMINAL)
                    self._value, self._at = (nodes, pods), self.clock()
                return self._value
            except ApiException as exc:
                if exc.status != 403:
                    raise
                self._warn_blind()
                return [], []


#: the process-wide snapshot the reconciles share
CLUSTER_PODS = ClusterPods()


class Known:
    """What the operator process knows of its objects beyond the API server: the newest copy of each VLMDeployment
    (fed by their watch, and by the status PATCH responses of its own reconciles) and, per VLMDeployment, the children
    (Deployment, Service, PodDisruptionBudget) this process last applied while their index has not caught up.

    With it a reconcile reads nothing afresh: the VLMDeployment, its children and pods come from watch-fed caches, and
    no reconcile decides from a copy older than one an earlier reconcile wrote or applied (each copy only moves
    forward; :mod:`vlm_operator.store`)."""

    def __init__(self) -> None:
        self.objects = store.Latest()
        self._applied: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def child(self, kind: str, key: tuple[str, str], indexed: dict[str, Any] | None) -> dict[str, Any] | None:
        """The newer of the indexed child and the one this process applied (dropped once the index holds it)."""
        with self._lock:
            mine = self._applied.get((kind, *key))
            if mine is None:
                return indexed
            mine_rv, indexed_rv = store.version(mine), store.version(indexed)
            if mine_rv is None or (indexed_rv is not None and indexed_rv >= mine_rv):
                del self._applied[(kind, *key)]
                return indexed
            return mine

    def applied(self, kind: str, key: tuple[str, str], body: dict[str, Any] | None) -> None:
        if body is not None and store.version(body) is not None:
            with self._lock:
                kept = self._applied.get((kind, *key))
                if kept is None or (store.version(kept) or 0) < (store.version(body) or 0):
                    self._applied[(kind, *key)] = store.compact(body)

    def child_deleted(self, kind: str, namespace: str, name: str) -> None:
        """A child's watch reported its deletion: what this process applied of it no longer stands."""
        with self._lock:
            self._applied.pop((kind, namespace, name), None)

    def forget(self, namespace: str, name: str) -> None:
        self.objects.forget((namespace, name))
        for kind in CHILD_KINDS:
            self.child_deleted(kind, namespace, name)


#: The children a VLMDeployment's reconcile applies, all named after it.
CHILD_KINDS = ("Deployment", "Service", "PodDisruptionBudget")


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def reconcile(
    kube: Kube,
    namespace: str,
    name: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    pods: list[dict[str, Any]] | None = None,
    replica_sets: list[dict[str, Any]] | None = None,
    thorough: bool = True,
    deployment: tuple[dict[str, Any] | None] | None = None,
    defer_status: bool = False,
    known: Known | None = None,
    children: Mapping[str, dict[str, Any] | None] | None = None,
) -> bool:
    """Reconcile one VLMDeployment: observe, decide, act; False when it no longer exists (or is being deleted).
    Watch events, the drift resync and child events can all ask at once; they are serialized per object, and each
    run reads the object afresh so it never writes a status computed from a stale view over a newer one.
    ``thorough=False`` (a reconcile started by child events) trusts what this process last applied to the Service
    and PodDisruptionBudget instead of reading them (see :data:`_APPLIED`). ``defer_status`` (the operator's create
    and update handlers): when this reconcile changes the Deployment, it writes no status; the Deployment's watch event
    brings a child reconcile within half a second that writes it from a newer view. On create that saves the write of
    a state that lasts half a second (nothing scheduled yet), one of about two per object.
    ``known`` (the operator's :class:`Known`, with ``deployment`` and ``children`` from its indexes): the object comes
    from there, not a GET, and nothing else is read afresh either."""
    with _locks_guard:
        lock = _locks.setdefault((namespace, name), threading.Lock())
    with lock, op_metrics.reconcile_timer(namespace, name):
        if known is not None:
            body = known.objects.get((namespace, name))
            if deployment is not None:
                deployment = (known.child("Deployment", (namespace, name), deployment[0]),)
            else:
                known = None  # the Deployment index is not warm yet: read what the index would have held
        else:
            body = kube.get(API_VERSION, KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            op_metrics.forget(namespace, name)
            return False
        _reconcile(kube, body, logger, pods, replica_sets, thorough, deployment, defer_status, known, children)
        return True


def _reconcile(
    kube: Kube,
    body: dict[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    pods: list[dict[str, Any]] | None = None,
    replica_sets: list[dict[str, Any]] | None = None,
    thorough: bool = True,
    deployment: tuple[dict[str, Any] | None] | None = None,
    defer_status: bool = False,
    known: Known | None = None,
    children: Mapping[str, dict[str, Any] | None] | None = None,
) -> None:
    meta = body["metadata"]
    generation = int(meta.get("generation", 1))
    old_status: dict[str, Any] = body.get("status") or {}
    prev_conds = tuple(old_status.get("conditions") or [])
    try:
        vlmd = parsed(kube, body)  # a profile's defaults, never stored
    except ValidationError as exc:
        msg = f"the spec is invalid: {admission.validation_message(exc)}"
        obs = conditions.Observed(
            generation,
            0,
            conditions.FitResult("Unknown", "spec not checked"),
            refused=msg,
            refused_reason="InvalidSpec",
            engine_version=old_status.get("engineVersion"),  # keep the recorded release (admission.parse)
            previous_conditions=prev_conds,
        )
        _write_status(kube, body, conditions.compute_status(obs, _now()), logger, known)
        return
    observation = observe(kube, body, pods, replica_sets, deployment)
    decision = decide(vlmd, observation, logger)
    if (
        known is None
        and observation.live_cached
        and decision.deployment is not None
        and not _same_object(observation.live, decision)
    ):
        # The indexed Deployment differs from what is wanted: read it afresh before deciding on a write or a rollout
        # (the index can still hold the version before this process's own last apply). Only this path reads it.
        # With ``known`` the index is already overlaid with what this process applied (:meth:`Known.child`).
        meta = body["metadata"]
        live = kube.get("apps/v1", "Deployment", meta["namespace"], meta["name"])
        observation = dataclasses.replace(observation, live=live, live_cached=False)
        decision = decide(vlmd, observation, logger)
    act(
        kube,
        vlmd,
        observation,
        decision,
        logger,
        thorough,
        defer_status,
        known,
        children,
    )


def _same_object(live: dict[str, Any] | None, d: Decision) -> bool:
    """Whether ``live`` carries the object hash of the Deployment ``d`` wants."""
    if live is None or d.deployment is None:
        return False
    want = d.deployment["metadata"]["annotations"][objects.ANN_OBJECT_HASH]
    return bool((live["metadata"].get("annotations") or {}).get(objects.ANN_OBJECT_HASH) == want)


def decide(vlmd: VLMDeployment, obs: Observation, logger: Any = None) -> Decision:
    """Pure (given ``obs.free_gpus``): the refusal policy, the rendered children and the rollout decision."""
    plan = cached_plan(vlmd, obs.inventory)
    details: list[str] = []
    if plan.refused is not None:
        details.append(plan.refused)
        return Decision(plan, plan.refused, None, [], _RolloutView(), "", details)
    template = plan.desired[0]["spec"]["template"]
    template_hash = template["metadata"]["annotations"][objects.ANN_SPEC_HASH]
    roll = decide_rollout(vlmd, plan, obs, template_hash, logger)
    # Render once: the pod template rendered by build_plan is reused unless the rollout went back to a good one.
    dep = objects.deployment(vlmd, plan.render, roll.strategy, roll.template or template, roll.annotations)
    if roll.rolled_back:
        details.append(roll.rolled_back)
    if roll.decision is not None:
        details.append(f"rollout: {roll.decision.reason}: {roll.decision.message}")
    if roll.waiting:
        details.append(roll.waiting)
    return Decision(plan, None, dep, plan.desired[1:], roll, template_hash, details)


def act(
    kube: Kube,
    vlmd: VLMDeployment,
    obs: Observation,
    d: Decision,
    logger: Any,
    thorough: bool = True,
    defer_status: bool = False,
    known: Known | None = None,
    children: Mapping[str, dict[str, Any] | None] | None = None,
) -> None:
    """Apply what changed, record the rollout's event, and write status once. With ``defer_status``, a reconcile that
    changed the Deployment leaves the status to the reconcile its watch event brings (see :func:`reconcile`)."""
    body = obs.body
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    current = obs.live
    running_hash = _template_hash(obs.live)
    applied = None
    if d.deployment is not None:
        applied = _apply_if_changed(kube, d.deployment, logger, obs.live, live_known=obs.live_cached)
        if known is not None:
            known.applied("Deployment", (ns, name), applied)
        current = applied or obs.live
        for obj in d.others:
            kind = obj["kind"]
            if known is not None and children is not None and kind in children:
                # the watch-fed index (and what this process applied since) is what there is: nothing is read
                live = known.child(kind, (ns, name), children[kind])
                known.applied(kind, (ns, name), _apply_if_changed(kube, obj, logger, live, live_known=True))
                continue
            _apply_if_changed(kube, obj, logger, trust_memory=not thorough)
        if d.roll.event is not None:
            _event(kube, body, *d.roll.event, logger)
        running_hash = _template_hash(current)
    new_status = status_for(vlmd, obs, d, current, running_hash)
    if (
        known is None
        and applied is None
        and obs.live_cached
        and obs.live is not None
        and _status_changes(body, new_status)
    ):
        # The indexed Deployment can lag the API server (its watch falls behind under a burst) and so lag what an
        # earlier reconcile read afresh: a status that changes is computed from a fresh read, so it never goes back
        # (Ready True, then False again from an older view). One GET per status write, none per idle reconcile.
        fresh = kube.get("apps/v1", "Deployment", ns, name)
        if fresh is not None and _resource_version(fresh) != _resource_version(obs.live):
            current, running_hash = fresh, _template_hash(fresh)
            new_status = status_for(vlmd, obs, d, current, running_hash)
    fit = d.plan.fit
    op_metrics.observe_object(ns, name, desired=vlmd.spec.scaling.replicas, status=new_status, verdict=fit.verdict)
    if d.details:
        logger.debug(f"{ns}/{name}: " + "; ".join(d.details))
    if defer_status and applied is not None:
        return
    _write_status(kube, body, new_status, logger, known)


def status_for(
    vlmd: VLMDeployment,
    obs: Observation,
    d: Decision,
    current: dict[str, Any] | None,
    running_hash: str | None,
) -> dict[str, Any]:
    """Pure: the whole status after ``act`` applied ``d`` (``current`` is the Deployment as it now is)."""
    body = obs.body
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    old_status: dict[str, Any] = body.get("status") or {}
    last_good = old_status.get("lastGoodPodTemplateHash")
    fit, roll, refused = d.plan.fit, d.roll, d.refused
    dep_status = current.get("status", {}) if current else None
    observed = conditions.Observed(
        generation=int(meta.get("generation", 1)),
        desired_replicas=vlmd.spec.scaling.replicas,
        fit=conditions.FitResult(fit.verdict, fit.message, fit.summary),
        deployment_status=dep_status,
        deployment_generation=current["metadata"].get("generation") if current else None,
        refused=refused,
        refused_reason=d.plan.decision.reason or "DoesNotFit",
        selector=objects.selector_string(name),
        url=objects.url(vlmd),
        gpu=fitcheck.gpu_label(vlmd.spec, vlmd.spec.engine.gpus_per_pod),
        engine_version=vlmd.spec.engine.version,
        effective_args=_effective_args(d.plan, refused, roll),
        pod_template_hash=running_hash if refused is not None or roll.template is not None else d.template_hash,
        last_good_pod_template_hash=last_good,
        problems=_pod_problems(obs.pods, running_hash),
        rolled_back=roll.rolled_back,
        waiting=roll.waiting,
        strategy=roll.describe,
        deadline_exceeded=_deadline_exceeded(dep_status),
        previous_conditions=tuple(old_status.get("conditions") or []),
        scaling=_scaling_conditions(vlmd, ns, name),
    )
    new_status = conditions.compute_status(observed, _now())
    if conditions.condition_true(new_status, "Ready") and running_hash:
        # Ready means every replica runs the Deployment's current template: that template is the last good one.
        new_status["lastGoodPodTemplateHash"] = running_hash
    return new_status


def _effective_args(plan: Plan, refused: str | None, roll: _RolloutView) -> tuple[str, ...]:
    if refused is not None:
        return ()
    if roll.template is not None:  # rolled back: the args of the template that runs
        return tuple(str(a) for a in roll.template["spec"]["containers"][0].get("command", []))
    return plan.command


def _template_hash(dep: dict[str, Any] | None) -> str | None:
    if dep is None:
        return None
    value = dep["spec"]["template"]["metadata"].get("annotations", {}).get(objects.ANN_SPEC_HASH)
    return str(value) if value is not None else None


def _deadline_exceeded(dep_status: dict[str, Any] | None) -> bool:
    return any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in (dep_status or {}).get("conditions") or []
    )


def _old_revision_left(pods: list[dict[str, Any]], template_hash: str) -> bool:
    """Whether a pod of another pod template still runs (or is still being replaced): a rollout is under way."""
    return any(
        (p["metadata"].get("annotations") or {}).get(objects.ANN_SPEC_HASH) != template_hash
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        for p in pods
    )


@dataclass
class _RolloutView:
    """What the rollout step decided for this reconcile."""

    strategy: dict[str, Any] | None = None
    template: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None
    decision: rollout.StrategyDecision | None = None
    #: How the rollout under way replaces pods (:func:`rollout.describe_strategy`), for Progressing; None when idle.
    describe: str | None = None
    rolled_back: str | None = None
    waiting: str | None = None
    event: tuple[str, str, str] | None = None  # (type, reason, message)


def _good_template(replica_sets: list[dict[str, Any]], good_hash: str, live: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of the Deployment's ReplicaSet that ran ``good_hash`` (revisionHistoryLimit keeps it), with
    the controller's ``pod-template-hash`` label dropped so that the Deployment adopts that ReplicaSet again."""
    uid = live["metadata"].get("uid")
    for rs in replica_sets:
        owners = rs["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == uid for o in owners):
            continue
        tmpl: dict[str, Any] = rs["spec"]["template"]
        if tmpl.get("metadata", {}).get("annotations", {}).get(objects.ANN_SPEC_HASH) == good_hash:
            tmpl = json.loads(json.dumps(tmpl))
            tmpl["metadata"].get("labels", {}).pop("pod-template-hash", None)
            tmpl["metadata"].pop("creationTimestamp", None)
            return tmpl
    return None


def _owned_by(pod: Mapping[str, Any], namespace: str, name: str) -> bool:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    want = objects.labels_for(name)
    return meta.get("namespace") == namespace and all(labels.get(k) == v for k, v in want.items())


def decide_rollout(
    vlmd: VLMDeployment, plan: Plan, obs: Observation, desired_hash: str, logger: Any = None
) -> _RolloutView:
    """Roll back a failed revision (or stay rolled back), and pick surge or in-place while a rollout runs.
    Pure given ``obs`` (``obs.free_gpus`` is read only when a surge is considered)."""
    view = _RolloutView()
    live, pods = obs.live, obs.pods
    if live is None:
        return view  # creation: no old pods, the default strategy is as good as any
    meta = obs.body["metadata"]
    ns, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
    last_good = (obs.body.get("status") or {}).get("lastGoodPodTemplateHash")
    spec = vlmd.spec
    running_hash = _template_hash(live)
    record = rollout.RollbackRecord.decode(live["metadata"].get("annotations"))
    apply_hash = desired_hash

    if record is not None and record.failed_hash == desired_hash and spec.rollout.auto_rollback:
        # Still rolled back: the spec renders the template that failed; keep the good one until the template changes.
        # The Deployment that runs it holds it; else its ReplicaSet does.
        tmpl = live["spec"]["template"] if running_hash == record.good_hash else None
        if tmpl is None:
            tmpl = _good_template(obs.rsets(), record.good_hash, live)
        if tmpl is not None:
            view.template, view.annotations = tmpl, {rollout.ANN_ROLLBACK: record.encode()}
            view.rolled_back, apply_hash = record.status_message(), record.good_hash
    elif running_hash == desired_hash and spec.rollout.auto_rollback and last_good and last_good != running_hash:
        budget = objects.startup_budget_seconds(spec, plan.render.weights_gib)
        revision = [rollout.PodHealth.of(p) for p in pods]
        verdict = rollout.assess_revision(
            [p for p in revision if p.template_hash == running_hash], spec.rollout.failure_threshold, budget, obs.now
        )
        if rollout.should_roll_back(spec.rollout, verdict, running_hash, last_good):
            tmpl = _good_template(obs.rsets(), last_good, live)
            if tmpl is None:
                if logger is not None:
                    logger.warning(f"Pod template {running_hash} failed but no ReplicaSet of {last_good} is left")
            else:
                record = rollout.RollbackRecord(desired_hash, last_good, generation, verdict.message)
                view.template, view.annotations = tmpl, {rollout.ANN_ROLLBACK: record.encode()}
                view.rolled_back, apply_hash = record.status_message(), last_good
                view.event = ("Warning", "RolledBack", record.status_message())
                if logger is not None:
                    logger.warning(f"Rolling back {ns}/{name} to pod template {last_good}: {verdict.message}")

    revision_pods = [
        p for p in pods if (p["metadata"].get("annotations") or {}).get(objects.ANN_SPEC_HASH) == apply_hash
    ]
    pending = next((m for p in revision_pods if (m := rollout.pending_for_resources(p))), None)
    if pending:
        view.waiting = f"a new pod is Pending for GPUs: {pending}"
    if apply_hash == running_hash and not _old_revision_left(pods, apply_hash):
        # No pod of another template (idle, creation, scaling): keep what the last rollout chose, so nothing is
        # written. A rollout can be in this state too, between an old pod's end and its replacement's start (an
        # in-place replacement): its template is not the last good one yet, and Progressing keeps its strategy.
        view.strategy = live["spec"].get("strategy")
        current = rollout.strategy_of(view.strategy)
        if last_good and last_good != running_hash and current is not None:
            view.describe = rollout.describe_strategy(*current)
        return view

    starts = apply_hash != running_hash  # this reconcile starts (or redirects) a rollout
    live_strategy = live["spec"].get("strategy")
    current = rollout.strategy_of(live_strategy)
    if not starts and current is not None and current[0] == 0:
        # An in-place rollout under way goes on in place: the GPU it just freed belongs to the replacement pod, and
        # surging into that momentary gap would only flip the strategy back and forth.
        view.strategy, view.describe = live_strategy, rollout.describe_strategy(*current)
        generation, observed = live["metadata"].get("generation"), (live.get("status") or {}).get("observedGeneration")
        if any(p["metadata"].get("deletionTimestamp") for p in pods) or (
            isinstance(generation, int) and isinstance(observed, int) and observed < generation
        ):
            # A new pod Pending while an old one lets go of its GPUs, or before the Deployment controller has taken up
            # the switch to in place (it then ends an old pod): the replacement under way, not a wait for GPUs.
            view.waiting = None
        return view

    free: dict[str, int] | None = None
    gpus = spec.engine.gpus_per_pod
    held = 0
    if spec.rollout.surge_policy == "Auto" and spec.rollout.max_surge >= 1:
        pod_spec = (view.template or plan.desired[0]["spec"]["template"])["spec"]
        own = pods
        try:
            free, bound = obs.free_gpus(pod_spec)
            own = [p for p in bound if _owned_by(p, ns, name)]  # the same snapshot as the free GPUs
        except Exception as exc:  # RBAC without nodes/pods list (namespace-scoped install): replace in place
            if logger is not None:
                logger.warning(f"Could not read free GPUs ({exc}); replacing pods in place")
        # Whether a new pod really waits for GPUs is read from that snapshot, used only where it matches the pod index
        # in what this reads, or from a fresh LIST (see observe's free_gpus). A new pod that waits only for a
        # terminating pod of this deployment to let go of its GPUs is not stuck, so it does not switch the rollout to
        # in-place (which would take down a Ready pod for nothing).
        pending = _waiting_for_gpus(own, apply_hash)
        if pending is None:
            held = max(0, rollout.bound_pods(own) - spec.scaling.replicas)
    decision = rollout.choose_strategy(
        spec.rollout,
        gpus,
        free,
        held,
        pending,
        fitcheck.gpu_label(spec, gpus).split("x ", 1)[-1],
        _quota_room(vlmd, obs, held, logger) if pending is None and spec.rollout.surge_policy != "Never" else None,
    )
    view.decision, view.strategy = decision, decision.strategy()
    view.describe = rollout.describe_strategy(decision.max_surge, decision.max_unavailable)
    if decision.mode == "InPlace" and current != (decision.max_surge, decision.max_unavailable):
        # This reconcile switches the rollout to in place, which frees an old pod's GPUs for the Pending pod: the wait
        # ends here. Reporting WaitingForGPUs for it was a status write, and one more to take it back a moment later.
        view.waiting = None
    if starts or rollout.strategy_of(live_strategy) != (decision.max_surge, decision.max_unavailable):
        view.event = view.event or ("Normal", f"Rollout{decision.mode}", f"{decision.reason}: {decision.message}")
    return view


def _waiting_for_gpus(pods: list[dict[str, Any]], template_hash: str) -> str | None:
    """The scheduler's message for a pod of ``template_hash`` that is Pending for GPUs, unless a pod of the same
    deployment is terminating (its GPUs are about to be free for it)."""
    if any(p["metadata"].get("deletionTimestamp") for p in pods):
        return None
    revision = [p for p in pods if (p["metadata"].get("annotations") or {}).get(objects.ANN_SPEC_HASH) == template_hash]
    return next((m for p in revision if (m := rollout.pending_for_resources(p))), None)


def _quota_room(vlmd: VLMDeployment, obs: Observation, held: int, logger: Any) -> tuple[str, int] | None:
    """What the tightest GPU ResourceQuota says, and how many extra pods it admits now (plus the surge pods already
    held), for :func:`rollout.choose_strategy`; None without a quota or when quotas cannot be read."""
    if obs.quotas is None:
        return None
    try:
        quotas = obs.quotas()
    except Exception as exc:  # RBAC without resourcequotas list: the API server's quota admission stays the limit
        if logger is not None:
            logger.warning(f"Could not read ResourceQuotas ({exc})")
        return None
    resource = quota.quota_resource(vlmd.spec)
    limit = quota.replica_limit(quotas, resource, quota.gpus_per_replica(vlmd.spec), 0)
    if limit is None:
        return None
    res = resource.removeprefix("requests.")
    return f"{limit.quota} has {limit.used} of {limit.hard} {res} used", limit.max_replicas + held


def _event(kube: Kube, body: dict[str, Any], type_: str, reason: str, message: str, logger: Any) -> None:
    try:
        kube.event(body, type_, reason, message)
    except Exception as exc:  # an event is best-effort; never fail a reconcile for it
        logger.warning(f"Could not record an event: {exc}")


#: The object hash (which covers the owner's uid) this process last applied or read on each Service and
#: PodDisruptionBudget. A reconcile started by child events trusts it and skips the GET; the others (create, update,
#: resume, the drift resync) read the object and so still repair one that was deleted or edited.
_APPLIED: dict[tuple[str, str, str], str] = {}


def applied_hash(kind: str, namespace: str, name: str) -> str | None:
    """The object hash this process last applied or found on a child, or None."""
    return _APPLIED.get((kind, namespace, name))


def forget_applied(namespace: str, name: str) -> None:
    """Drop what :data:`_APPLIED` holds for a deleted VLMDeployment's children (they share its name)."""
    for kind in ("Service", "PodDisruptionBudget"):
        _APPLIED.pop((kind, namespace, name), None)
    forget_plan(namespace, name)


def _apply_if_changed(
    kube: Kube,
    obj: dict[str, Any],
    logger: Any,
    live: dict[str, Any] | None = None,
    trust_memory: bool = False,
    live_known: bool = False,
) -> dict[str, Any] | None:
    """Apply ``obj`` unless the live object carries the same object hash; returns the applied object, or None.
    ``live_known``: ``live`` is what there is (None: nothing), so it is not read."""
    meta = obj["metadata"]
    want = meta["annotations"][objects.ANN_OBJECT_HASH]
    key = (obj["kind"], meta["namespace"], meta["name"])
    if trust_memory and _APPLIED.get(key) == want:
        return None
    if live is None and not live_known:
        live = kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    if live is not None and live["metadata"].get("annotations", {}).get(objects.ANN_OBJECT_HASH) == want:
        _APPLIED[key] = want
        return None
    out = kube.apply(obj)
    _APPLIED[key] = want
    logger.info(f"Applied {obj['kind']} {meta['namespace']}/{meta['name']} (hash {want})")
    return out


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


def _status_changes(body: dict[str, Any], new: dict[str, Any]) -> bool:
    old = body.get("status") or {}
    return any(old.get(k) != new.get(k) for k in _STATUS_KEYS)


def _resource_version(obj: dict[str, Any]) -> str | None:
    rv = obj["metadata"].get("resourceVersion")
    return str(rv) if rv is not None else None


def _write_status(
    kube: Kube, body: dict[str, Any], new: dict[str, Any], logger: Any, known: Known | None = None
) -> None:
    if not _status_changes(body, new):
        return
    old = body.get("status") or {}
    meta = body["metadata"]
    patch = {k: new.get(k) for k in _STATUS_KEYS}  # None deletes a key that no longer applies (merge patch)
    stored = kube.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], patch)
    if known is not None and isinstance(stored, dict):
        # the next reconcile starts from this status even before the watch brings it back
        known.objects.offer((meta["namespace"], meta["name"]), stored)
    for ev_type, type_, st, reason, message in conditions.notable_transitions(
        old.get("conditions") or [], new["conditions"]
    ):
        _event(kube, body, ev_type, reason or type_, f"{type_}={st}: {message}".rstrip(": "), logger)


def _scaling_conditions(
    vlmd: VLMDeployment, namespace: str, name: str
) -> tuple[tuple[str, conditions.CondStatus, str, str], ...] | None:
    """The built-in autoscaler's conditions (``scaling.mode: Internal`` only): its latest report, filed by the
    autoscaler loop (``autoscale/loop.py``), or ``()`` before its first poll (status keeps what it shows)."""
    if vlmd.spec.scaling.mode != "Internal":
        return None
    rep = scaling_report.get(namespace, name)
    if rep is None:
        return ()
    return tuple((c.type, c.status, c.reason, c.message) for c in rep.conditions)
