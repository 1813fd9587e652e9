"""What the autoscaler tells the reconciler: its latest decision as two status conditions, kept in a small registry.

The reconciler is the only status writer. The autoscaler loop (``autoscale/loop.py``) therefore never touches
status: after each poll it files a :class:`ScalingReport` here, and the reconciler reads it when it computes the
status of a VLMDeployment in ``Internal`` mode. Both run in the operator process, so an in-process, thread-safe dict
is enough; after an operator restart the registry is empty until the first poll and the reconciler keeps the
conditions already in status.

Conditions (only in ``scaling.mode: Internal``):

* ``ScalingActive``: ``True`` while the autoscaler decides from metrics and acts, with the decision's reason
  (``ScaleUp``, ``ScaleDown``, ``Hold``, ``Stabilizing``, ``Cooldown``, ``PodsStarting``, ``AtMax``, ``AtMin``) and
  message. ``False`` with reason ``MissingMetrics`` when a missing reading holds it back (it never scales down then),
  or ``DryRun`` when ``dryRun`` keeps it from acting (the message says what it would do).
* ``MetricsAvailable``: ``True`` (``AllPodsReporting``) when every ready pod gave a fresh reading; ``False`` with the
  first missing reading's reason (``ScrapeFailed``, ``ParseError``, ``MetricAbsent``, ``Stale``, ``QueryFailed``) and
  every missing pod in the message; ``Unknown`` (``NoReadyPods``) when there is no ready pod to read.
* ``ScalingLimited``: ``True`` (``QuotaLimited``) when the namespace's GPU ResourceQuota capped a scale-up, with the
  numbers ("wants 4 replicas, namespace quota gpu-quota leaves room for 2 (8 of 10 nvidia.com/gpu used, ...)");
  ``False`` (``WithinQuota``) otherwise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from .policy import Decision, Reason

CondStatus = Literal["True", "False", "Unknown"]
SCALING_ACTIVE = "ScalingActive"
METRICS_AVAILABLE = "MetricsAvailable"
SCALING_LIMITED = "ScalingLimited"
#: Condition messages are cut here; a message listing many missing pods would otherwise grow without bound.
MESSAGE_LIMIT = 1000


@dataclass(frozen=True)
class CondSpec:
    """One condition's (type, status, reason, message), before the reconciler stamps times and generation."""

    type: str
    status: CondStatus
    reason: str
    message: str


@dataclass(frozen=True)
class ScalingReport:
    """The autoscaler's latest decision as the reconciler shows it."""

    active: CondSpec
    metrics: CondSpec
    #: The decision's replica count and recommendation (for logs and tests; status shows them in the messages).
    replicas: int
    recommended: int
    limited: CondSpec | None = None

    @property
    def conditions(self) -> tuple[CondSpec, ...]:
        return (self.active, self.metrics) if self.limited is None else (self.active, self.metrics, self.limited)

    def key(self) -> tuple[tuple[str, str, str], ...]:
        """What a change of makes the reconciler run at once (the messages move with every poll; they do not)."""
        return tuple((c.type, c.status, c.reason) for c in self.conditions)


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def report(decision: Decision, limited: str | None = None) -> ScalingReport:
    """The conditions for ``decision`` (pure); ``limited``: why the GPU quota capped it, if it did."""
    s = decision.signals
    if decision.reason in (Reason.MISSING_METRICS, Reason.DRY_RUN):
        active = CondSpec(SCALING_ACTIVE, "False", decision.reason.value, _cut(decision.message))
    else:
        active = CondSpec(SCALING_ACTIVE, "True", decision.reason.value, _cut(decision.message))
    if s.missing:
        first = s.missing[0]
        detail = "; ".join(f"{m.pod}: {m.reason}" + (f" ({m.detail})" if m.detail else "") for m in s.missing)
        msg = f"{len(s.missing)} of {s.ready} ready pods without a usable reading: {detail}"
        metrics = CondSpec(METRICS_AVAILABLE, "False", first.reason, _cut(msg))
    elif s.ready == 0:
        metrics = CondSpec(METRICS_AVAILABLE, "Unknown", "NoReadyPods", "no ready pod to read metrics from")
    else:
        metrics = CondSpec(METRICS_AVAILABLE, "True", "AllPodsReporting", f"{s.fresh} of {s.ready} ready pods report")
    cap = (
        CondSpec(SCALING_LIMITED, "True", "QuotaLimited", _cut(limited))
        if limited
        else CondSpec(SCALING_LIMITED, "False", "WithinQuota", "no GPU ResourceQuota capped the latest decision")
    )
    return ScalingReport(active, metrics, decision.replicas, decision.recommended, cap)


def source_failed(why: str, ready: int) -> ScalingReport:
    """The report when the source as a whole could not be read (e.g. the pod list failed): nothing is decided."""
    return ScalingReport(
        CondSpec(SCALING_ACTIVE, "False", Reason.MISSING_METRICS.value, _cut(f"not deciding: {why}")),
        CondSpec(METRICS_AVAILABLE, "False", "QueryFailed", _cut(why)),
        replicas=-1,
        recommended=-1,
    )


_lock = threading.Lock()
_reports: dict[tuple[str, str], ScalingReport] = {}


def put(namespace: str, name: str, rep: ScalingReport) -> ScalingReport | None:
    """File the latest report; returns the one it replaced."""
    with _lock:
        old = _reports.get((namespace, name))
        _reports[(namespace, name)] = rep
        return old


def get(namespace: str, name: str) -> ScalingReport | None:
    with _lock:
        return _reports.get((namespace, name))


def clear(namespace: str, name: str) -> None:
    with _lock:
        _reports.pop((namespace, name), None)
