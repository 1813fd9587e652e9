"""The built-in autoscaler's loop (``scaling.mode: Internal``): read metrics, run the pure policy, write ``/scale``.

One loop per VLMDeployment whose ``spec.scaling.mode`` is ``Internal``; the operator runs it as a kopf daemon
(``autoscaler_daemon`` in :mod:`vlm_operator.handlers`, which kopf starts when the mode becomes ``Internal`` and stops
when it changes or the object goes). This module imports no ``kopf``. Every ``pollIntervalSeconds`` the loop

1. reads the object (for the scaling targets, the metrics source and the engine version);
2. lists the object's pods and reads one sample per *ready* pod: ``GET http://<podIP>:8000/metrics`` for
   ``metrics.type: Pods``, or one instant query to the Prometheus HTTP API for ``metrics.type: Prometheus``;
3. reads ``/scale`` and runs :func:`~vlm_operator.autoscale.policy.desired_replicas` with the state of the previous
   poll (kept in kopf's per-object ``memo``) and ``now`` from an injected monotonic clock;
4. when the decision changes replicas, writes them through the VLMDeployment's ``/scale`` subresource only (a merge
   patch conditional on the resourceVersion it decided from, so a concurrent ``kubectl scale`` wins and is re-read at
   the next poll), with field manager ``vlm-operator-autoscaler``, and records an event;
5. files the decision in :mod:`vlm_operator.autoscale.report`; the reconciler (the only status writer) turns it into
   the ``ScalingActive`` and ``MetricsAvailable`` conditions. When their status or reason changes the loop asks for a
   reconcile at once; otherwise the messages are refreshed by the next reconcile.

``dryRun`` records decisions (condition, events, metrics) without writing ``/scale``. ``Manual`` and ``External``
objects get no daemon: the reconciler follows ``spec.scaling.replicas``, whoever wrote it.

:class:`Autoscaler` holds everything but kopf, so unit tests drive it with a fake API, fake scrapes and a fake clock;
:func:`run` is the daemon's body (poll, wait, poll) with the HTTP client the operator uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from vlm_operator import admission, conditions, quota, quotastore, reconcile
from vlm_operator import operator_metrics as op_metrics
from vlm_operator.autoscale import report as reports
from vlm_operator.autoscale.policy import Decision, PolicyState, PolicyTuning, Reason, desired_replicas
from vlm_operator.autoscale.vllm_metrics import (
    EngineSample,
    PodReading,
    parse_prometheus_query,
    parse_vllm_metrics,
    prometheus_query,
    scrape_failed,
)
from vlm_operator.render import objects

API_VERSION, KIND = reconcile.API_VERSION, reconcile.KIND
#: The field manager of the autoscaler's ``/scale`` writes: ``managedFields`` shows who set the count.
FIELD_MANAGER = "vlm-operator-autoscaler"
#: The poll interval used when the spec cannot be read.
FALLBACK_INTERVAL = 5.0
#: Upper bound of one scrape or query; a pod slower than this reads as ``ScrapeFailed``.
SCRAPE_TIMEOUT = 2.0

Logger = logging.Logger | logging.LoggerAdapter[Any]
#: ``fetch(url, timeout)`` → ``(HTTP status, body)``; raises on a network failure.
Fetch = Callable[[str, float], Awaitable[tuple[int, str]]]


class KubeLike(Protocol):
    """The calls the loop makes (:class:`vlm_operator.kube.Kube` has them)."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...
    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...
    def get_scale(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def scale(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        replicas: int,
        *,
        resource_version: str | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]: ...
    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


#: Ready, with an IP, and not terminating: the pods the policy reads.
pod_ready = conditions.pod_serving


def served_model_name(pod: dict[str, Any]) -> str | None:
    """The ``model_name`` label vLLM puts on its series: the first ``--served-model-name``, else the model."""
    containers = pod.get("spec", {}).get("containers") or []
    if not containers:
        return None
    args = [str(a) for a in (containers[0].get("command") or []) + (containers[0].get("args") or [])]
    for flag in ("--served-model-name", "--model"):
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args) and not args[i + 1].startswith("-"):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    for i, arg in enumerate(args):  # `vllm serve MODEL ...`
        if arg == "serve" and i + 1 < len(args) and not args[i + 1].startswith("-"):
            return args[i + 1]
    return None


@dataclass
class Autoscaler:
    """One VLMDeployment's loop state and I/O. :meth:`poll_once` is one poll; it never raises."""

    kube: KubeLike
    namespace: str
    name: str
    fetch: Fetch
    #: The policy's clock (seconds); readings are stamped with it too.
    clock: Callable[[], float] = time.monotonic
    #: Wall clock, only to place Prometheus's sample times on :attr:`clock`.
    wall: Callable[[], float] = time.time
    #: Called (awaited) when the conditions' status or reason changed and no ``/scale`` write will trigger a
    #: reconcile by itself.
    on_change: Callable[[], Awaitable[None]] | None = None
    tuning: PolicyTuning = field(default_factory=PolicyTuning)
    log: Logger = field(default_factory=lambda: logging.getLogger("vlm_operator.autoscaler"))
    state: PolicyState = field(default_factory=PolicyState)
    last_decision: Decision | None = None
    #: Every decision's ``(now, reason, replicas before, replicas after)``, the latest 1000, for tests and debugging.
    history: list[tuple[float, str, int, int]] = field(default_factory=list)
    _last_dry_target: int | None = None
    #: The ``ScalingLimited`` message while the quota holds the count down (kept across polls that only hold).
    _quota_limited: str | None = None

    async def poll_once(self) -> float:
        """Poll, decide, act; return the seconds until the next poll (``pollIntervalSeconds``)."""
        try:
            return await self._poll()
        except Exception as exc:  # never let one bad poll end the loop; say so in status and try again
            self.log.warning(f"autoscaler poll failed: {type(exc).__name__}: {exc}")
            await self._file(reports.source_failed(f"{type(exc).__name__}: {exc}", 0), acted=False)
            return FALLBACK_INTERVAL

    async def _poll(self) -> float:
        ns, name = self.namespace, self.name
        body = await asyncio.to_thread(self.kube.get, API_VERSION, KIND, ns, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return FALLBACK_INTERVAL
        try:
            vlmd = admission.parse(body)
        except ValidationError as exc:
            why = f"the spec is invalid: {admission.validation_message(exc)}"
            await self._file(reports.source_failed(why, 0), acted=False)
            return FALLBACK_INTERVAL
        scaling = vlmd.spec.scaling
        interval = float(scaling.poll_interval_seconds)
        if scaling.mode != "Internal":
            reports.clear(ns, name)
            return interval

        pods = await asyncio.to_thread(self.kube.list, "v1", "Pod", ns, objects.selector_string(name))
        ready = sorted((p for p in pods if pod_ready(p)), key=lambda p: str(p["metadata"]["name"]))
        version = vlmd.spec.engine.version
        timeout = min(SCRAPE_TIMEOUT, interval)
        if scaling.metrics.type == "Prometheus" and scaling.metrics.prometheus_url:
            readings = await self._query_prometheus(scaling.metrics.prometheus_url, ready, version, timeout)
        else:
            readings = list(await asyncio.gather(*(self._scrape(p, version, timeout) for p in ready)))

        # Read /scale last, right before deciding: the count the decision starts from, and the version it is
        # conditional on.
        scale = await asyncio.to_thread(self.kube.get_scale, API_VERSION, KIND, ns, name)
        if scale is None:
            return interval
        current = int(scale.get("spec", {}).get("replicas", 0) or 0)
        rv = scale.get("metadata", {}).get("resourceVersion")
        now = self.clock()
        decision = desired_replicas(
            self.state, readings, scaling.model_copy(update={"replicas": current}), now, tuning=self.tuning
        )
        decision, limited = await self._within_quota(decision, vlmd.spec, pods, current)
        acted = decision.replicas != current
        if acted:
            try:
                await asyncio.to_thread(
                    self.kube.scale,
                    API_VERSION,
                    KIND,
                    ns,
                    name,
                    decision.replicas,
                    resource_version=rv,
                    field_manager=FIELD_MANAGER,
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # Someone else scaled (or status moved) since the read: drop this decision, re-decide next poll.
                self.log.info(f"/scale changed under the autoscaler ({current} → {decision.replicas} not written)")
                return interval
            op_metrics.observe_scale_write(ns, name, before=current, after=decision.replicas)
            self.log.info(f"scaled {current} → {decision.replicas}: {decision.reason.value}: {decision.message}")
        self.state = decision.state
        self.last_decision = decision
        self.history = [*self.history[-999:], (now, decision.reason.value, current, decision.replicas)]
        s = decision.signals
        op_metrics.observe_decision(
            ns,
            name,
            reason=decision.reason.value,
            recommended=decision.recommended,
            waiting=s.waiting,
            running=s.running,
            missing=len(s.missing),
        )
        await self._events(body, decision, current, acted)
        await self._file(reports.report(decision, limited=limited), acted=acted)
        return interval

    async def _within_quota(
        self, decision: Decision, spec: Any, pods: Sequence[dict[str, Any]], current: int
    ) -> tuple[Decision, str | None]:
        """Cap a scale-up at what the namespace's tightest GPU ResourceQuota admits (:func:`quota.clamp_replicas`);
        returns the decision and, when the quota bit, the message for the ``ScalingLimited`` condition."""
        try:
            quotas = await asyncio.to_thread(quotastore.SHARED.list, self.kube, self.namespace)
        except ApiException as exc:  # no RBAC to read quotas: the API server's quota admission stays the limit
            self.log.warning(f"could not read ResourceQuotas: {exc.status} {exc.reason}")
            return decision, None
        resource = quota.quota_resource(spec)
        limit = quota.replica_limit(quotas, resource, quota.gpus_per_replica(spec), quota.live_replicas(pods))
        capped, why = quota.clamp_replicas(current, decision.replicas, limit)
        if why is None:
            # Holding this poll (a window, pods starting, a tolerance) while the quota still holds the count down: still
            # limited, so the condition does not flip with every poll. It clears when the quota has room again or no
            # request waits any more.
            if limit is not None and decision.recommended > max(current, limit.max_replicas):
                self._quota_limited = limit.message(decision.recommended)
            elif not (limit is not None and current >= limit.max_replicas and decision.signals.waiting > 0):
                self._quota_limited = None
            return decision, self._quota_limited
        self._quota_limited = why
        state = decision.state
        if capped == current:  # nothing changes: no cooldown starts
            state = dataclasses.replace(state, last_scale_time=self.state.last_scale_time)
        return dataclasses.replace(decision, replicas=capped, message=f"{decision.message}; {why}", state=state), why

    async def _scrape(self, pod: dict[str, Any], version: str, timeout: float) -> PodReading:
        pod_name = str(pod["metadata"]["name"])
        url = f"http://{pod['status']['podIP']}:{objects.HTTP_PORT}/metrics"
        try:
            status, text = await self.fetch(url, timeout)
        except Exception as exc:  # refused, timed out, reset: the pod has no reading, which is not "idle"
            return scrape_failed(pod_name, f"GET {url}: {type(exc).__name__} {exc}".strip())
        if status != 200:
            return scrape_failed(pod_name, f"GET {url}: HTTP {status}")
        return parse_vllm_metrics(
            pod_name, text, timestamp=self.clock(), version=version, model_name=served_model_name(pod)
        )

    async def _query_prometheus(
        self, base: str, ready: Sequence[dict[str, Any]], version: str, timeout: float
    ) -> list[PodReading]:
        names = [str(p["metadata"]["name"]) for p in ready]
        if not names:
            return []
        query = prometheus_query(namespace=self.namespace, pods=names)
        url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        response: dict[str, Any]
        try:
            status, text = await self.fetch(url, timeout)
            decoded = json.loads(text)
            response = decoded if isinstance(decoded, dict) else {"status": "error", "error": "not a JSON object"}
            if status != 200 and response.get("status") == "success":
                response = {"status": "error", "errorType": f"HTTP {status}", "error": text[:200]}
        except Exception as exc:
            response = {"status": "error", "errorType": type(exc).__name__, "error": str(exc)}
        readings = parse_prometheus_query(response, pods=names, version=version, model_name=served_model_name(ready[0]))
        # Prometheus stamps samples with wall-clock evaluation times; the policy runs on the monotonic clock.
        offset = self.clock() - self.wall()
        return [
            dataclasses.replace(r, timestamp=r.timestamp + offset) if isinstance(r, EngineSample) else r
            for r in readings
        ]

    async def _events(self, body: dict[str, Any], decision: Decision, current: int, acted: bool) -> None:
        event: tuple[str, str] | None = None
        if acted:
            arrow = f"{current} → {decision.replicas}"
            msg = decision.message if decision.message.startswith(arrow) else f"{arrow}: {decision.message}"
            event = (decision.reason.value, msg)
        if decision.reason == Reason.DRY_RUN:
            if decision.recommended != self._last_dry_target:
                event = ("DryRun", f"would scale {current} → {decision.recommended}: {decision.message}")
            self._last_dry_target = decision.recommended
        else:
            self._last_dry_target = None
        if event is None:
            return
        try:
            await asyncio.to_thread(self.kube.event, body, "Normal", event[0], event[1])
        except Exception as exc:  # an event is best-effort
            self.log.warning(f"could not record an event: {exc}")

    async def _file(self, rep: reports.ScalingReport, *, acted: bool) -> None:
        old = reports.put(self.namespace, self.name, rep)
        if acted or self.on_change is None:
            return  # the /scale write is a spec change: the reconcile it triggers reads the new report
        if old is None or old.key() != rep.key():
            await self.on_change()


class Stopped(Protocol):
    """kopf's ``DaemonStopped``: true once the daemon is asked to stop; ``wait`` wakes early when it is."""

    def __bool__(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


def aiohttp_fetch(session: aiohttp.ClientSession) -> Fetch:
    async def fetch(url: str, timeout: float) -> tuple[int, str]:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return resp.status, await resp.text()

    return fetch


async def run(
    kube: KubeLike,
    namespace: str,
    name: str,
    memo: MutableMapping[str, Any],
    stopped: Stopped,
    log: Logger,
    on_change: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Poll until ``stopped``: the body of the operator's daemon. The :class:`Autoscaler` is kept in ``memo`` (kopf's
    per-object memo), so the policy's state survives a daemon restart."""
    # trust_env=False (the default): pod IPs are dialled directly, never through a proxy.
    async with aiohttp.ClientSession() as session:
        scaler: Autoscaler | None = memo.get("autoscaler")
        if scaler is None:
            scaler = Autoscaler(kube, namespace, name, aiohttp_fetch(session), log=log)
            memo["autoscaler"] = scaler
        scaler.fetch, scaler.on_change, scaler.log = aiohttp_fetch(session), on_change, log
        log.info("autoscaler started")
        try:
            while not stopped:
                started = time.monotonic()
                interval = await scaler.poll_once()
                await stopped.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            reports.clear(namespace, name)
            op_metrics.forget_autoscaler(namespace, name)
            log.info("autoscaler stopped")
