"""The scaling policy: a pure function from (state, per-pod readings, scaling spec, now) to a decision.

No I/O and no clock: the caller passes ``now`` (seconds, the same clock as the readings' timestamps) and keeps the
returned :class:`PolicyState` for the next call. Calling it twice with the same arguments gives the same decision,
which is what lets the unit tests and ``benchmarks/autoscale.py`` drive it through hours of simulated load in
milliseconds. ``docs/autoscaling.md`` explains the rules; the short version:

* **Need.** ``need = (waiting + running) / (capacity + targetQueueDepth)`` replicas, where ``capacity`` is the most
  requests one pod has been seen running at once (learned; :attr:`PolicyTuning.capacity_per_replica` overrides it).
  A replica at the target holds ``capacity`` running and ``targetQueueDepth`` waiting requests, so ``need`` is the
  number of replicas that would hold today's requests at the target. Optional floors: ``ready × kvUsage /
  maxKvCacheUsage`` and ``imagesPerSecond / targetImagesPerSecond``. A 10 % tolerance band below the current
  count (the HPA's default) suppresses scale-downs that would not move the ratio enough; upwards there is none.
* **Keep.** A scale-down must also leave the remaining pods below :attr:`PolicyTuning.scale_down_utilization` of
  their slots: ``keep = (waiting + running) / (capacity × 0.8)``. Without it the policy would shrink to the point
  where every slot is busy, the queue would grow again and the count would cycle.
* **Up fast.** Scale up once every recommendation in the last ``scaleUpWindowSeconds`` (default 0: the first poll
  that sees it) is above the current count, to the smallest of them, at most ``scaleUpMaxStep`` replicas at a time.
  Pods still starting count as capacity that will arrive: only the rest is added, at once. While they start, more
  is added only when the need passes twice the count (:attr:`PolicyTuning.starting_tolerance`), since the queue
  that grows on the ready pods until they serve is not load the final count must hold. Once the ready pods alone
  have held the load while those pods start, a new queue is new load and this hold no longer applies. Beside a
  ready pod with free slots (one that has just become ready), one replica at a time: the queue is a backlog.
* **Down slow.** Scale down to the largest recommendation of the last ``scaleDownStabilizationSeconds``, one
  replica at a time, ``cooldownSeconds`` after any change, and never while a ready pod's reading is missing or stale.
  The window counts only readings taken with every pod ready: a count is judged on a window in which it served.
* ``minReplicas`` / ``maxReplicas`` clamp everything; ``dryRun`` returns the decision without changing replicas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from .vllm_metrics import EngineSample, MissingSample, PodReading, freshen

#: ``maxReplicas`` unset (allowed outside ``Internal`` mode) means no upper bound; the API caps replicas at 10 000.
_NO_MAX = 10_000
_EPS = 1e-9


class Reason(StrEnum):
    """Why a decision came out as it did; used as the condition reason, the event reason and a metric label."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    HOLD = "Hold"
    STABILIZING = "Stabilizing"
    COOLDOWN = "Cooldown"
    MISSING_METRICS = "MissingMetrics"
    PODS_STARTING = "PodsStarting"
    AT_MAX = "AtMax"
    AT_MIN = "AtMin"
    DRY_RUN = "DryRun"


class ScalingTargets(Protocol):
    """The fields of ``spec.scaling`` the policy reads; :class:`vlm_operator.api.scaling.ScalingSpec` has them all.

    ``replicas`` is the current value of the ``/scale`` subresource, i.e. the count the policy changes.
    """

    @property
    def replicas(self) -> int: ...
    @property
    def min_replicas(self) -> int: ...
    @property
    def max_replicas(self) -> int | None: ...
    @property
    def target_queue_depth(self) -> float: ...
    @property
    def max_kv_cache_usage(self) -> float | None: ...
    @property
    def scale_up_window_seconds(self) -> int: ...
    @property
    def scale_up_max_step(self) -> int: ...
    @property
    def scale_down_stabilization_seconds(self) -> int: ...
    @property
    def cooldown_seconds(self) -> int: ...
    @property
    def poll_interval_seconds(self) -> int: ...
    @property
    def dry_run(self) -> bool: ...


@dataclass(frozen=True)
class PolicyTuning:
    """Knobs that ``spec.scaling`` does not (yet) expose; the defaults are what the operator uses."""

    #: Scale-downs whose ``need / current`` ratio is at least ``1 - tolerance`` are skipped. 0.1 is the HPA's default
    #: (``--horizontal-pod-autoscaler-tolerance``, pkg/controller/podautoscaler/config/v1alpha1/defaults.go).
    tolerance: float = 0.1
    #: Scale-ups whose ratio is at most ``1 + scale_up_tolerance`` are skipped. 0: the queue over its target on busy
    #: pods is the signal, and a VLM pod takes minutes to start, so a band on the way up only adds to the wait. A
    #: burst that crosses the target adds a pod; the scale-down rules keep that from turning into a flap.
    scale_up_tolerance: float = 0.0
    #: A reading older than this many poll intervals counts as missing (``Stale``).
    stale_after_polls: int = 3
    #: While pods are starting, a further scale-up needs ``need > current × (1 + starting_tolerance)``. The
    #: starting pods count as capacity that will arrive, but until they do the queue keeps growing on the ready
    #: pods, and that growth alone would push the count past what the load needs once they serve (and back down:
    #: a flap). A step whose need outgrows the coming capacity by more than this still adds pods at once.
    starting_tolerance: float = 1.0
    #: How long not-yet-ready pods count as capacity coming. Loading a VLM takes minutes; past this a pod is presumed
    #: stuck (unschedulable, crash-looping) and the ordinary tolerance applies again.
    startup_grace_seconds: float = 900.0
    #: Requests one replica runs at once. ``None`` learns it: the most running requests seen on one pod.
    capacity_per_replica: float | None = None
    #: A scale-down must leave the remaining pods running at most this fraction of their capacity. Arrivals are an
    #: open stream: a fleet sized to be exactly full has no slack, its queue grows and the next scale-up follows.
    scale_down_utilization: float = 0.8
    #: A ready pod with nothing waiting and at most this fraction of its slots busy has spare capacity: while one is
    #: there, a scale-up adds one replica at a time (the queue is a backlog on the other pods, not a shortage).
    spare_pod_running: float = 0.5
    #: Multimodal items per second one replica should take (the multimodal signal); ``None`` disables the signal.
    target_mm_items_per_second: float | None = None


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between calls. Immutable; each :class:`Decision` carries the next one."""

    #: ``(time, recommendation)`` pairs, oldest first, kept for the longer of the two windows.
    history: tuple[tuple[float, int], ...] = ()
    #: Start of the current unbroken run of calls with complete readings; reset by missing metrics.
    history_since: float | None = None
    #: Since when every recommendation has been above the current count.
    above_since: float | None = None
    #: When replicas last changed by this policy's decision (dry-run decisions do not count).
    last_scale_time: float | None = None
    #: Since when fewer pods are ready than ``replicas`` (new pods starting); ``None`` when all are ready.
    starting_since: float | None = None
    #: The recommendation the latest scale-up answered (before the step limit): while its pods start, the count may
    #: still go up to it, a step at a time, without the need having to pass ``starting_tolerance``.
    asked: int = 0
    #: Whether, since the pods now starting were created, a poll saw the ready pods alone hold the load (the need at
    #: most the ready count). Then the starting pods were not what the load was waiting for, and a queue that builds
    #: up afterwards is new load, not the growth they explain: the starting tolerance does not hold it back.
    ready_held: bool = False
    #: The most requests seen running on one pod: the learned per-replica capacity.
    peak_running: float = 0.0
    #: Last ``vllm:mm_cache_queries_total`` per pod, as ``(pod, value, timestamp)``, for the items-per-second rate.
    mm_last: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class Signals:
    """The inputs a decision was made from, for status, events and the operator's own metrics."""

    ready: int = 0
    fresh: int = 0
    missing: tuple[MissingSample, ...] = ()
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float | None = None
    mm_items_per_second: float | None = None
    capacity: float = 0.0
    #: Replicas needed by the queue rule, and by the KV and multimodal floors (``None`` when not in use).
    need_queue: float = 0.0
    #: Replicas that keep slot use at or below ``scale_down_utilization``: the floor of a scale-down.
    need_keep: float = 0.0
    need_kv: float | None = None
    need_mm: float | None = None
    #: This call's recommendation, clamped to min/max, before the windows, step limit and cooldown.
    recommendation: int = 0


@dataclass(frozen=True)
class Decision:
    """The result of one policy evaluation."""

    #: What ``/scale`` should say now. Equals the current count unless the policy acts (never in dry run).
    replicas: int
    #: Where the policy would go this step, dry run or not.
    recommended: int
    reason: Reason
    message: str
    state: PolicyState
    signals: Signals = field(default_factory=Signals)


def _ceil(x: float) -> int:
    return math.ceil(x - _EPS)


def _mm_rate(
    prev: tuple[tuple[str, float, float], ...], fresh: Sequence[EngineSample]
) -> tuple[float | None, tuple[tuple[str, float, float], ...]]:
    """Items per second summed over pods, from each pod's counter delta since the previous call (reset-aware)."""
    last = {pod: (value, ts) for pod, value, ts in prev}
    total: float | None = None
    for s in fresh:
        if s.mm_items_total is None or s.pod not in last:
            continue
        value, ts = last[s.pod]
        if s.timestamp <= ts:
            continue
        # A counter that went down was reset (pod restarted): count from zero, as Prometheus's rate() does.
        delta = s.mm_items_total - value if s.mm_items_total >= value else s.mm_items_total
        total = (total or 0.0) + delta / (s.timestamp - ts)
    current = {s.pod: (s.mm_items_total, s.timestamp) for s in fresh if s.mm_items_total is not None}
    kept = {pod: v for pod, v in last.items() if pod not in current}
    merged = {**kept, **current}
    return total, tuple((pod, v, t) for pod, (v, t) in sorted(merged.items()))


def desired_replicas(
    state: PolicyState,
    samples: Sequence[PodReading],
    spec: ScalingTargets,
    now: float,
    *,
    tuning: PolicyTuning | None = None,
) -> Decision:
    """Decide the replica count. ``samples`` holds one reading per *ready* pod (missing ones included).

    Pods counted in ``spec.replicas`` without a reading are taken to be starting. The returned decision carries the
    state to pass to the next call.
    """
    tune = tuning or PolicyTuning()
    current = spec.replicas
    lo = spec.min_replicas
    hi = spec.max_replicas if spec.max_replicas is not None else _NO_MAX
    max_age = spec.poll_interval_seconds * tune.stale_after_polls
    readings = [freshen(r, now=now, max_age=max_age) for r in samples]
    fresh = [r for r in readings if isinstance(r, EngineSample)]
    missing = tuple(r for r in readings if isinstance(r, MissingSample))
    ready = len(readings)

    starting = current > ready
    starting_since = (state.starting_since if state.starting_since is not None else now) if starting else None
    in_grace = starting_since is not None and now - starting_since < tune.startup_grace_seconds
    peak = max([state.peak_running, *(s.running for s in fresh)])
    mm_rate, mm_last = _mm_rate(state.mm_last, fresh)
    st = replace(state, starting_since=starting_since, peak_running=peak, mm_last=mm_last)

    def decide(target: int, reason: Reason, message: str, st: PolicyState, signals: Signals) -> Decision:
        if target == current:
            return Decision(current, current, reason, message, st, signals)
        if spec.dry_run:
            return Decision(current, target, Reason.DRY_RUN, f"dry run, would {reason.value}: {message}", st, signals)
        acted = replace(st, last_scale_time=now, above_since=None)
        if target > current:
            # The pods this creates are the "earlier new pods" that hold back the next scale-up; their grace starts now.
            acted = replace(acted, starting_since=now, ready_held=False)
        return Decision(target, target, reason, message, acted, signals)

    # The bounds are constraints, not load: a count outside them is corrected at once, windows or not.
    if current < lo:
        return decide(lo, Reason.SCALE_UP, f"{current} replicas is below minReplicas {lo}", st, Signals(ready=ready))
    if current > hi:
        return decide(hi, Reason.SCALE_DOWN, f"{current} replicas is above maxReplicas {hi}", st, Signals(ready=ready))

    if not fresh:
        st = replace(st, history_since=None, above_since=None)
        if ready == 0 and current == 0:
            msg = "scaled to zero: there is no pod to read load from; waking up needs an external trigger"
            return Decision(current, current, Reason.AT_MIN, msg, st, Signals())
        if ready == 0:
            msg = f"0 of {current} pods ready yet"
            return Decision(current, current, Reason.PODS_STARTING, msg, st, Signals())
        msg = "no usable reading from any ready pod: " + "; ".join(f"{m.pod}: {m.reason} {m.detail}" for m in missing)
        return Decision(current, current, Reason.MISSING_METRICS, msg, st, Signals(ready=ready, missing=missing))

    # --- this call's recommendation -----------------------------------------------------------------------------
    waiting = sum(s.waiting for s in fresh)
    running = sum(s.running for s in fresh)
    capacity = tune.capacity_per_replica if tune.capacity_per_replica is not None else max(1.0, peak)
    need_queue = (waiting + running) / (capacity + spec.target_queue_depth)
    kv_values = [s.kv_usage for s in fresh if s.kv_usage is not None]
    kv_mean = sum(kv_values) / len(kv_values) if kv_values else None
    need_kv = None
    if spec.max_kv_cache_usage is not None and kv_mean is not None:
        # The HPA's proportional rule on the KV gauge: replicas x usage / ceiling (over the pods that report it).
        need_kv = len(kv_values) * kv_mean / spec.max_kv_cache_usage
    need_mm = None
    if tune.target_mm_items_per_second is not None and mm_rate is not None:
        need_mm = mm_rate / tune.target_mm_items_per_second
    need = max(need_queue, need_kv or 0.0, need_mm or 0.0)
    need_keep = (waiting + running) / (capacity * tune.scale_down_utilization)
    up_bar, down_bar = current * (1.0 + tune.scale_up_tolerance), current * (1.0 - tune.tolerance)
    if current > 0 and need <= up_bar:
        # Not enough to scale up. Going down is bounded by the utilization floor, which never pushes up by itself
        # (the learned capacity is a lower bound, so the floor may overstate what is needed).
        need = max(need, min(float(current), need_keep))
    raw = current if current > 0 and down_bar - _EPS <= need <= up_bar + _EPS else _ceil(need)
    rec = min(hi, max(lo, raw))
    signals = Signals(
        ready=ready,
        fresh=len(fresh),
        missing=missing,
        waiting=waiting,
        running=running,
        kv_usage=kv_mean,
        mm_items_per_second=mm_rate,
        capacity=capacity,
        need_queue=need_queue,
        need_keep=need_keep,
        need_kv=need_kv,
        need_mm=need_mm,
        recommendation=rec,
    )
    keep = max(spec.scale_up_window_seconds, spec.scale_down_stabilization_seconds)
    history = (*(h for h in state.history if h[0] > now - keep), (now, rec))
    # A partial picture may still scale up (missing pods count as idle, which only damps the step, as the HPA does
    # for pods without metrics), but it restarts the unbroken run of complete readings that a scale-down needs.
    # Pods still starting also restart it: a scale-down is judged on a full window in which the current count served.
    # While pods start, the ready ones carry the whole load and the readings do not show what the count can hold;
    # a count raised on a burst would otherwise come down a window after the decision, before its pods had served.
    history_since = now if missing or state.history_since is None or in_grace else state.history_since
    ready_held = in_grace and (state.ready_held or need <= ready + _EPS)
    st = replace(st, history=history, history_since=history_since, ready_held=ready_held)
    load = f"{waiting:g} waiting + {running:g} running on {len(fresh)} pods, capacity {capacity:g}/pod"
    why = f"{load} → need {need:.2f} replicas"
    if need_kv is not None and need_kv >= need - _EPS and need_kv > need_queue:
        why += f" (KV usage {kv_mean:.2f} > ceiling {spec.max_kv_cache_usage:g})"
    if need_mm is not None and need_mm >= need - _EPS and need_mm > need_queue:
        why += f" (multimodal {mm_rate:.1f} items/s)"
    missing_note = ", ".join(f"{m.pod}: {m.reason}" for m in missing)

    # --- up ---------------------------------------------------------------------------------------------------------
    if rec > current:
        # ``current`` counts the pods still starting: they are capacity that will arrive, so only the rest is added,
        # now, rather than after they are ready (which would add capacity in rounds of one start-up time). While
        # they start the queue still grows on the ready pods; only a need well past the coming capacity adds more.
        coming = in_grace and not state.ready_held
        # A scale-up decided with no pod starting records the recommendation it answered; while its pods start, the
        # ramp the step limit held back goes on up to it. Past it, each further step needs the need to outgrow the
        # coming capacity again, and does not move ``asked``: the queue's growth alone must not ramp to the maximum.
        limit, asked = (rec, rec) if not coming else (rec, state.asked)
        if coming and need <= current * (1.0 + tune.starting_tolerance):
            limit = min(rec, state.asked)
            if limit <= current:
                msg = (
                    f"{current - ready} of {current} pods starting, counted as capacity coming; "
                    f"more only above a need of {current * (1.0 + tune.starting_tolerance):.1f} ({why})"
                )
                return Decision(current, current, Reason.PODS_STARTING, msg, replace(st, above_since=None), signals)
        above_since = state.above_since if state.above_since is not None else now
        st = replace(st, above_since=above_since)
        held = now - above_since
        if held < spec.scale_up_window_seconds:
            msg = f"above target for {held:.0f}s of {spec.scale_up_window_seconds}s ({why})"
            return Decision(current, current, Reason.STABILIZING, msg, st, signals)
        window = [r for t, r in history if t >= now - spec.scale_up_window_seconds]
        # A ready pod with nothing waiting and most of its slots free (typically one that has just become ready) means
        # the fleet is not out of capacity: the queue is a backlog on the other pods, which a Service's round robin
        # does not move; the new pod takes only its share of new requests. The need then overstates the shortage, so
        # add one replica at a time, and let the ramp of the starting pods stop there.
        spare = [s.pod for s in fresh if s.waiting == 0 and s.running <= tune.spare_pod_running * capacity]
        step = 1 if spare else spec.scale_up_max_step
        if spare:
            asked = min(asked, current + 1)
            why += f"; {spare[0]} has free slots, one replica at a time"
        target = min(min(window), limit, current + step, hi)
        if not spec.dry_run:
            st = replace(st, asked=asked)
        return decide(target, Reason.SCALE_UP, f"{current} → {target}: {why}", st, signals)

    st = replace(st, above_since=None)
    # --- down -------------------------------------------------------------------------------------------------------
    if rec < current:
        if missing:
            msg = f"not scaling down with readings missing ({missing_note}); {why}"
            return Decision(current, current, Reason.MISSING_METRICS, msg, st, signals)
        window_s = spec.scale_down_stabilization_seconds
        observed = now - history_since
        if observed < window_s:
            msg = f"load low, {observed:.0f}s of {window_s}s of readings so far ({why})"
            return Decision(current, current, Reason.STABILIZING, msg, st, signals)
        highest = max(r for t, r in history if t > now - window_s)
        if highest >= current:
            msg = f"a recommendation of {highest} in the last {window_s}s keeps {current} ({why})"
            return Decision(current, current, Reason.STABILIZING, msg, st, signals)
        if state.last_scale_time is not None and now - state.last_scale_time < spec.cooldown_seconds:
            left = spec.cooldown_seconds - (now - state.last_scale_time)
            msg = f"cooldown after the last change, {left:.0f}s left ({why})"
            return Decision(current, current, Reason.COOLDOWN, msg, st, signals)
        target = max(highest, current - 1)
        return decide(target, Reason.SCALE_DOWN, f"{current} → {target}: {why}", st, signals)

    # --- hold -------------------------------------------------------------------------------------------------------
    if missing:
        return Decision(
            current, current, Reason.MISSING_METRICS, f"readings missing ({missing_note}); {why}", st, signals
        )
    if raw > hi and current == hi:
        return Decision(current, current, Reason.AT_MAX, f"at maxReplicas {hi}: {why}", st, signals)
    if raw < lo and current == lo:
        return Decision(current, current, Reason.AT_MIN, f"at minReplicas {lo}: {why}", st, signals)
    return Decision(current, current, Reason.HOLD, why, st, signals)
