"""The operator's own Prometheus metrics: replicas, autoscaler decisions, reconcile timings and errors, fit verdicts.

Served by ``vlmctl operator run --metrics-port`` (default 8080 on 127.0.0.1) at ``/metrics``, from a registry of its
own so nothing else in the process leaks in. ``charts/vlm-operator/dashboards/vlm-operator.json`` is a Grafana
dashboard over these series. Every series carries ``namespace`` and ``name`` (of the VLMDeployment) where it is about
one object; :func:`forget` drops an object's series when it is deleted, so a churn of objects does not grow the
exposition forever.

=============================================  =========  =========================================================
series                                          type       meaning
=============================================  =========  =========================================================
``vlm_operator_desired_replicas``               gauge      ``spec.scaling.replicas`` (what ``/scale`` says)
``vlm_operator_current_replicas``               gauge      pods that exist (``status.replicas``)
``vlm_operator_ready_replicas``                 gauge      pods that are ready (``status.readyReplicas``)
``vlm_operator_recommended_replicas``           gauge      the autoscaler's latest recommendation (dry run too)
``vlm_operator_autoscaler_queue_waiting``       gauge      ``vllm:num_requests_waiting`` summed over fresh readings
``vlm_operator_autoscaler_queue_running``       gauge      ``vllm:num_requests_running`` summed over fresh readings
``vlm_operator_autoscaler_missing_readings``    gauge      ready pods without a usable reading at the last poll
``vlm_operator_scaling_decisions_total``        counter    autoscaler decisions, by ``reason`` (``ScaleUp``, …)
``vlm_operator_scale_writes_total``             counter    ``/scale`` writes, by ``direction`` (``up``/``down``)
``vlm_operator_reconcile_duration_seconds``     histogram  one reconcile, whatever its outcome
``vlm_operator_reconcile_errors_total``         counter    reconciles that raised, by exception ``type``
``vlm_operator_fit_verdict``                    gauge      1 for the object's current fit verdict, 0 for the others
=============================================  =========  =========================================================
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

_OBJ = ("namespace", "name")
FIT_VERDICTS = ("Fits", "Tight", "DoesNotFit", "Unknown")

DESIRED = Gauge("vlm_operator_desired_replicas", "spec.scaling.replicas of the VLMDeployment", _OBJ, registry=REGISTRY)
CURRENT = Gauge("vlm_operator_current_replicas", "Pods of the VLMDeployment that exist", _OBJ, registry=REGISTRY)
READY = Gauge("vlm_operator_ready_replicas", "Pods of the VLMDeployment that are ready", _OBJ, registry=REGISTRY)
RECOMMENDED = Gauge(
    "vlm_operator_recommended_replicas",
    "Replicas the built-in autoscaler recommends at its latest poll (also in dry run)",
    _OBJ,
    registry=REGISTRY,
)
WAITING = Gauge(
    "vlm_operator_autoscaler_queue_waiting",
    "vllm:num_requests_waiting summed over the pods with a fresh reading at the latest poll",
    _OBJ,
    registry=REGISTRY,
)
RUNNING = Gauge(
    "vlm_operator_autoscaler_queue_running",
    "vllm:num_requests_running summed over the pods with a fresh reading at the latest poll",
    _OBJ,
    registry=REGISTRY,
)
MISSING = Gauge(
    "vlm_operator_autoscaler_missing_readings",
    "Ready pods without a usable metrics reading at the latest poll",
    _OBJ,
    registry=REGISTRY,
)
DECISIONS = Counter(
    "vlm_operator_scaling_decisions",
    "Decisions of the built-in autoscaler, by reason",
    (*_OBJ, "reason"),
    registry=REGISTRY,
)
SCALE_WRITES = Counter(
    "vlm_operator_scale_writes",
    "Writes of the /scale subresource by the built-in autoscaler, by direction",
    (*_OBJ, "direction"),
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "vlm_operator_reconcile_duration_seconds",
    "Duration of one reconcile of a VLMDeployment (all objects: a histogram per object would cost 15 series each)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "vlm_operator_reconcile_errors",
    "Reconciles that failed with an exception, by exception type",
    (*_OBJ, "type"),
    registry=REGISTRY,
)
FIT = Gauge(
    "vlm_operator_fit_verdict",
    "1 for the VLMDeployment's current fit verdict (Fits, Tight, DoesNotFit, Unknown), 0 for the others",
    (*_OBJ, "verdict"),
    registry=REGISTRY,
)

_PER_OBJECT = (DESIRED, CURRENT, READY, RECOMMENDED, WAITING, RUNNING, MISSING)
_PER_OBJECT_LABELLED = (DECISIONS, SCALE_WRITES, RECONCILE_ERRORS, FIT)


@contextlib.contextmanager
def reconcile_timer(namespace: str, name: str) -> Iterator[None]:
    """Time one reconcile; count it as an error when it raises (the exception propagates unchanged)."""
    start = time.perf_counter()
    try:
        yield
    except Exception as exc:
        RECONCILE_ERRORS.labels(namespace, name, type(exc).__name__).inc()
        raise
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - start)


def observe_object(namespace: str, name: str, *, desired: int, status: dict[str, object], verdict: str) -> None:
    """Replica gauges and the fit verdict after a reconcile computed ``status``."""
    DESIRED.labels(namespace, name).set(desired)
    CURRENT.labels(namespace, name).set(_num(status.get("replicas")))
    READY.labels(namespace, name).set(_num(status.get("readyReplicas")))
    for v in FIT_VERDICTS:
        FIT.labels(namespace, name, v).set(1.0 if v == verdict else 0.0)


def observe_decision(
    namespace: str,
    name: str,
    *,
    reason: str,
    recommended: int,
    waiting: float,
    running: float,
    missing: int,
) -> None:
    """One autoscaler decision."""
    DECISIONS.labels(namespace, name, reason).inc()
    RECOMMENDED.labels(namespace, name).set(recommended)
    WAITING.labels(namespace, name).set(waiting)
    RUNNING.labels(namespace, name).set(running)
    MISSING.labels(namespace, name).set(missing)


def observe_scale_write(namespace: str, name: str, *, before: int, after: int) -> None:
    SCALE_WRITES.labels(namespace, name, "up" if after > before else "down").inc()
    DESIRED.labels(namespace, name).set(after)


def forget_autoscaler(namespace: str, name: str) -> None:
    """Drop the autoscaler's gauges of an object that left ``Internal`` mode (counters stay)."""
    for gauge in (RECOMMENDED, WAITING, RUNNING, MISSING):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def forget(namespace: str, name: str) -> None:
    """Drop every series of a deleted VLMDeployment."""
    for metric in _PER_OBJECT:
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)
    for labelled in _PER_OBJECT_LABELLED:
        # prometheus_client has no "remove by partial labels"; walk the children this object owns.
        for labels in list(labelled._metrics):
            if labels[:2] == (namespace, name):
                with contextlib.suppress(KeyError):
                    labelled.remove(*labels)


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def serve(port: int, addr: str = "127.0.0.1", log: logging.Logger | None = None) -> bool:
    """Serve ``/metrics`` on ``addr:port`` in a background thread. A port in use is logged, not fatal: the operator
    must run without its metrics rather than not at all. ``port`` 0 disables the server."""
    if port == 0:
        return False
    try:
        start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError as exc:
        (log or logging.getLogger(__name__)).warning(f"operator metrics not served on {addr}:{port}: {exc}")
        return False
    return True
