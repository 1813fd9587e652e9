"""Replay one load trace through four autoscalers and compare them: our policy, the Kubernetes HPA, KEDA, WVA.

A discrete-time simulation (1 s steps, seeded, a few seconds of CPU) of a VLMDeployment behind a Service:

* requests arrive as a Poisson process whose rate follows the trace; each has a service time (and, for the image
  trace, a number of images that lengthens it). A Service spreads them round-robin over the ready pods;
* each pod runs up to ``CONCURRENCY`` requests at once (vLLM's batch) and queues the rest in its own waiting queue,
  which is what ``vllm:num_requests_waiting`` reports;
* a new pod serves only ``STARTUP_S`` seconds after it is created (loading a VLM takes minutes); a pod removed by a
  scale-down stops taking requests, finishes what it holds and then goes away (still counted until it has).

The scalers, each with the same target of ``TARGET`` waiting requests per replica and the same min/max:

* ``ours``: :func:`vlm_operator.autoscale.policy.desired_replicas` every 5 s on each pod's ``/metrics``, rendered in
  vLLM's exposition format and parsed by :mod:`vlm_operator.autoscale.vllm_metrics`, with ``spec.scaling``'s defaults;
* ``HPA``, ``KEDA`` and ``WVA``: our own models of those autoscalers' algorithms, with their default parameters.
  Each constant below names the upstream file (and release) it comes from.

Each trace is replayed with several seeds (different Poisson arrivals and service times) and every table cell is
the median over the seeds, so one lucky or unlucky run does not decide a comparison.

Run ``python benchmarks/autoscale.py`` (``--seeds N`` seeds from ``--seed``, ``--traces step,small`` for a subset,
``--per-seed`` for every run's row, ``--delay S`` to start the load steps S seconds later).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from vlm_operator.api.scaling import ScalingSpec
from vlm_operator.autoscale.policy import PolicyState, PolicyTuning, desired_replicas
from vlm_operator.autoscale.vllm_metrics import PodReading, parse_vllm_metrics

CONCURRENCY = 8  # requests a pod runs at once
STARTUP_S = 180  # pod created -> Ready
TARGET = 4.0  # waiting requests per replica, for every scaler
MIN_REPLICAS, MAX_REPLICAS = 1, 12
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
#: Prometheus scrape interval that the HPA (through an adapter), KEDA and WVA read from.
PROMETHEUS_SCRAPE = 15

# Kubernetes HPA (autoscaling/v2), as of Kubernetes v1.34:
# - the sync period (--horizontal-pod-autoscaler-sync-period 15 s), the tolerance (0.1) and the scale-down
#   stabilization window (--horizontal-pod-autoscaler-downscale-stabilization 5 min) are the controller defaults in
#   pkg/controller/podautoscaler/config/v1alpha1/defaults.go (RecommendedDefaultHPAControllerConfiguration);
# - the default behavior: scale-up stabilization 0 s and policies "4 pods or 100 % per 15 s, the larger"
#   (scaleUpLimitMinimumPods, scaleUpLimitPercent, scaleUpPeriod), scale-down "100 % per 15 s", in
#   pkg/apis/autoscaling/v2/defaults.go;
# - desired = ceil(ratio x pods with metrics), pods without a metric counted as 0 on a scale-up and as at target
#   on a scale-down, and the tolerance applied again to the corrected ratio: calcPlainMetricReplicas in
#   pkg/controller/podautoscaler/replica_calculator.go.
HPA_SYNC = 15
HPA_TOLERANCE = 0.1
HPA_DOWN_STABILIZATION = 300
HPA_UP_PODS, HPA_UP_PERCENT, HPA_UP_PERIOD = 4, 100, 15

# KEDA ScaledObject, KEDA v2.15 (keda-docs content/docs/2.15/reference/scaledobject-spec.md;
# apis/keda/v1alpha1/scaledobject_types.go): pollingInterval defaults to 30 s, cooldownPeriod to 300 s. KEDA hands
# the scaling between 1 and N replicas to an HPA it creates (the HPA defaults above) with the trigger as an External
# metric; with ``metricType: AverageValue`` the HPA's desired count is ceil(total / target). The model reads the
# metric as cached at each pollingInterval (the trigger's ``useCachedMetrics: true``; without it each HPA sync
# queries Prometheus directly and the row would track the HPA's). cooldownPeriod only applies to scaling to and from
# zero, which minReplicas 1 rules out, so it never acts here.
KEDA_POLLING_INTERVAL = 30
KEDA_COOLDOWN = 300


# --------------------------------------------------------------------------------------------------------------------
# The simulated deployment
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Request:
    arrival: float
    service: float
    images: int = 0


@dataclass
class Pod:
    name: str
    ready_at: float
    draining: bool = False
    waiting: deque[Request] = field(default_factory=deque)
    running: list[float] = field(default_factory=list)  # remaining seconds of each running request
    mm_items: float = 0.0  # vllm:mm_cache_queries_total

    def ready(self, t: float) -> bool:
        return t >= self.ready_at and not self.draining

    def empty(self) -> bool:
        return not self.waiting and not self.running


@dataclass
class Snapshot:
    """What a Prometheus scrape saw: per ready pod (waiting, running, kv usage)."""

    t: float
    pods: dict[str, tuple[float, float, float]]
    starting: int


class Cluster:
    def __init__(self, replicas: int) -> None:
        self.pods: list[Pod] = []
        self.serial = itertools.count()
        self.rr = 0
        self.waits: list[float] = []
        for _ in range(replicas):
            self.pods.append(Pod(f"vlm-{next(self.serial)}", ready_at=-1.0))

    @property
    def replicas(self) -> int:
        return sum(1 for p in self.pods if not p.draining)

    def scale(self, n: int, t: float) -> None:
        current = [p for p in self.pods if not p.draining]
        if n > len(current):
            self.pods += [Pod(f"vlm-{next(self.serial)}", ready_at=t + STARTUP_S) for _ in range(n - len(current))]
        elif n < len(current):
            # A ReplicaSet deletes not-ready pods first, then (here) the least busy.
            victims = sorted(current, key=lambda p: (p.ready(t), len(p.waiting) + len(p.running)))[: len(current) - n]
            for p in victims:
                if p.ready_at > t:
                    self.pods.remove(p)
                else:
                    p.draining = True

    def step(self, t: float, arrivals: Sequence[Request]) -> None:
        ready = [p for p in self.pods if p.ready(t)]
        for r in arrivals:
            pod = ready[self.rr % len(ready)]
            self.rr += 1
            pod.waiting.append(r)
            pod.mm_items += r.images
        for p in self.pods:
            if t < p.ready_at:
                continue
            p.running = [left - 1.0 for left in p.running if left > 1.0]
            while p.waiting and len(p.running) < CONCURRENCY:
                r = p.waiting.popleft()
                self.waits.append(max(0.0, t - r.arrival))  # arrivals within second t start at t at the earliest
                p.running.append(r.service)
        self.pods = [p for p in self.pods if not (p.draining and p.empty())]

    def snapshot(self, t: float) -> Snapshot:
        pods = {
            p.name: (float(len(p.waiting)), float(len(p.running)), 0.9 * len(p.running) / CONCURRENCY)
            for p in self.pods
            if p.ready(t)
        }
        return Snapshot(t, pods, starting=sum(1 for p in self.pods if t < p.ready_at))


def vllm_metrics_text(p: Pod) -> str:
    """The pod's ``/metrics`` as vLLM V1 (v0.11) serves it, for the gauges the autoscaler reads."""
    lab = f'{{engine="0",model_name="{MODEL}"}}'
    kv = 0.9 * len(p.running) / CONCURRENCY
    return (
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{lab} {float(len(p.running))}\n"
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{lab} {float(len(p.waiting))}\n"
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc{lab} {kv}\n"
        "# HELP vllm:mm_cache_queries_total Multi-modal cache queries, in terms of number of queried items.\n"
        "# TYPE vllm:mm_cache_queries_total counter\n"
        f"vllm:mm_cache_queries_total{lab} {p.mm_items}\n"
    )


# --------------------------------------------------------------------------------------------------------------------
# Scalers
# --------------------------------------------------------------------------------------------------------------------
class Scaler(Protocol):
    name: str

    def tick(self, t: float, cluster: Cluster, prom: Snapshot) -> int | None: ...


class Ours:
    def __init__(
        self,
        name: str = "ours",
        tuning: PolicyTuning | None = None,
        poll: int = 5,
        spec_overrides: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        self.tuning = tuning
        self.poll = poll
        self.overrides = spec_overrides or {}
        self.state = PolicyState()

    def tick(self, t: float, cluster: Cluster, prom: Snapshot) -> int | None:
        if t % self.poll:
            return None
        readings: list[PodReading] = [
            parse_vllm_metrics(p.name, vllm_metrics_text(p), timestamp=t, version="0.11.0", model_name=MODEL)
            for p in cluster.pods
            if p.ready(t)
        ]
        spec = ScalingSpec(
            mode="Internal",
            replicas=cluster.replicas,
            min_replicas=MIN_REPLICAS,
            max_replicas=MAX_REPLICAS,
            target_queue_depth=TARGET,
            poll_interval_seconds=self.poll,
            **self.overrides,
        )
        d = desired_replicas(self.state, readings, spec, t, tuning=self.tuning)
        self.state = d.state
        return d.replicas


class Hpa:
    """The HPA (autoscaling/v2, default behavior) on a Pods metric: the average ``vllm:num_requests_waiting`` over the
    pods, read from Prometheus through an adapter. ``external=True`` is KEDA's shape: the sum as an External
    ``AverageValue`` metric, read every ``metric_period`` seconds. Parameters and sources: the constants above."""

    SYNC = HPA_SYNC
    TOLERANCE = HPA_TOLERANCE
    DOWN_WINDOW = HPA_DOWN_STABILIZATION

    def __init__(self, name: str, metric_period: int, external: bool) -> None:
        self.name = name
        self.metric_period = metric_period
        self.external = external
        self.metric: Snapshot | None = None
        self.recs: deque[tuple[float, int]] = deque()

    def tick(self, t: float, cluster: Cluster, prom: Snapshot) -> int | None:
        if t % self.metric_period == 0:
            self.metric = prom  # KEDA's poll (or the HPA reading the adapter) sees the last Prometheus scrape
        if t % self.SYNC or self.metric is None:
            return None
        current = cluster.replicas
        values = [w for w, _, _ in self.metric.pods.values()]
        if self.external:
            # External metric, AverageValue: usage ratio = total / (target x current); desired = ceil(total / target).
            total = sum(values)
            ratio = total / (TARGET * current) if current else 0.0
            rec = current if abs(ratio - 1) <= self.TOLERANCE else math.ceil(total / TARGET)
        elif not values:
            rec = current
        else:
            ratio = statistics.fmean(values) / TARGET
            rec = current if abs(ratio - 1) <= self.TOLERANCE else math.ceil(ratio * len(values))
            missing = max(0, current - len(values))
            if missing and ratio > 1:
                # Pods without a metric count as 0 for a scale-up, and the result is checked again.
                ratio2 = sum(values) / (len(values) + missing) / TARGET
                rec = current if abs(ratio2 - 1) <= self.TOLERANCE or ratio2 < 1 else math.ceil(ratio2 * current)
            elif missing and ratio < 1:
                # ... and as exactly at target for a scale-down.
                ratio2 = (sum(values) + missing * TARGET) / current / TARGET
                rec = current if abs(ratio2 - 1) <= self.TOLERANCE or ratio2 > 1 else math.ceil(ratio2 * current)
        rec = min(MAX_REPLICAS, max(MIN_REPLICAS, rec))
        self.recs.append((t, rec))
        while self.recs and self.recs[0][0] <= t - self.DOWN_WINDOW:
            self.recs.popleft()
        if rec > current:
            # The larger of +HPA_UP_PODS and +HPA_UP_PERCENT per HPA_UP_PERIOD (= one sync here).
            return min(rec, max(current * (100 + HPA_UP_PERCENT) // 100, current + HPA_UP_PODS))
        stabilized = max(r for _, r in self.recs)
        return min(current, stabilized)


class Wva:
    """The llm-d workload-variant-autoscaler's saturation rule (llm-d-incubation/workload-variant-autoscaler,
    docs/saturation-scaling-config.md, its defaults): a 60 s loop, one replica at a time. A replica is saturated at
    KV usage >= 0.8 or a queue >= 5; scale up when the mean spare capacity of the unsaturated ones is below 0.1 KV or
    3 queue slots; scale down when the load of one replica spread over the rest keeps that spare; never while a pod
    is pending."""

    PERIOD = 60
    KV_SAT, QUEUE_SAT = 0.8, 5.0
    KV_SPARE, QUEUE_SPARE = 0.1, 3.0

    def __init__(self) -> None:
        self.name = "WVA"

    def tick(self, t: float, cluster: Cluster, prom: Snapshot) -> int | None:
        if t % self.PERIOD:
            return None
        current = cluster.replicas
        pods = list(prom.pods.values())
        if not pods or prom.starting:
            return None
        free = [(self.KV_SAT - kv, self.QUEUE_SAT - w) for w, _, kv in pods if kv < self.KV_SAT and w < self.QUEUE_SAT]
        if (
            not free
            or statistics.fmean(f[0] for f in free) < self.KV_SPARE
            or statistics.fmean(f[1] for f in free) < self.QUEUE_SPARE
        ):
            return min(MAX_REPLICAS, current + 1)
        n = len(pods)
        if n > MIN_REPLICAS:
            kv_after = sum(kv for _, _, kv in pods) / (n - 1)
            q_after = sum(w for w, _, _ in pods) / (n - 1)
            if self.KV_SAT - kv_after >= self.KV_SPARE and self.QUEUE_SAT - q_after >= self.QUEUE_SPARE:
                return current - 1
        return None


# --------------------------------------------------------------------------------------------------------------------
# Traces and the replay
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Trace:
    key: str
    name: str
    duration: int
    rate: Callable[[float], float]  # requests per second at time t
    service: Callable[[random.Random, float], tuple[float, int]]  # (seconds, images) of a request arriving at t
    #: ``(start, end)`` of each phase whose load rose: reaction and drain are measured per step, the worst reported.
    steps: tuple[tuple[int, int], ...] = ()
    start_replicas: int = 1


def text_service(rng: random.Random, t: float) -> tuple[float, int]:
    return rng.uniform(4.0, 12.0), 1


def images_service(rng: random.Random, t: float) -> tuple[float, int]:
    # Image-heavy from minute 10: requests carry 6-10 images instead of 1; the vision encoder adds 1.2 s each.
    n = rng.randint(6, 10) if 600 <= t < 2400 else 1
    return rng.uniform(2.0, 6.0) + 1.2 * n, n


def _phases(*phases: tuple[int, float]) -> Callable[[float], float]:
    """A rate that is ``rate`` from each ``start`` until the next phase."""

    def rate(t: float) -> float:
        current = phases[0][1]
        for start, r in phases:
            if t >= start:
                current = r
        return current

    return rate


# Mean service 8 s and 8 at once: one replica serves 1 req/s.
TRACES = (
    Trace(
        "step",
        "step: 1 -> 6 -> 1 req/s (10 min, 30 min, 30 min)",
        duration=70 * 60,
        rate=_phases((0, 1.0), (600, 6.0), (2400, 1.0)),
        service=text_service,
        steps=((600, 2400),),
    ),
    Trace(
        "small",
        "small step: 1 -> 3 -> 1 req/s (10 min, 30 min, 30 min)",
        duration=70 * 60,
        rate=_phases((0, 1.0), (600, 3.0), (2400, 1.0)),
        service=text_service,
        steps=((600, 2400),),
    ),
    Trace(
        "double",
        "double step: 1 -> 3.5 -> 7 -> 1 req/s (10 min, 10 min, 20 min, 30 min)",
        duration=70 * 60,
        rate=_phases((0, 1.0), (600, 3.5), (1200, 7.0), (2400, 1.0)),
        service=text_service,
        steps=((600, 2400), (1200, 2400)),  # the first step's backlog may drain after the second
    ),
    Trace(
        "steady",
        "steady: 4 req/s for 2 h (Poisson), from 5 replicas",
        duration=2 * 3600,
        rate=lambda t: 4.0,
        service=text_service,
        start_replicas=5,
    ),
    Trace(
        "wave",
        "oscillating: 2.5 <-> 5.5 req/s, 4 min period, 2 h, from 5 replicas",
        duration=2 * 3600,
        rate=lambda t: 5.5 if (t // 120) % 2 else 2.5,
        service=text_service,
        start_replicas=5,
    ),
    Trace(
        "image",
        "image-heavy: 2.5 req/s throughout, 1 -> 6-10 images per request (10 min, 30 min, 30 min)",
        duration=70 * 60,
        rate=lambda t: 2.5,
        service=images_service,
        steps=((600, 2400),),
    ),
)


def delayed(trace: Trace, delay: int) -> Trace:
    """``trace`` with its first phase ``delay`` seconds longer: every later phase (and the image load) comes later.

    Whether a scaler flaps can depend on where a step falls relative to its own earlier decisions (a scale-down due
    300 s after a burst); replaying the step traces with a few delays shows whether a result holds for other times.
    """
    if not delay or not trace.steps:
        return trace

    def rate(t: float) -> float:
        return trace.rate(min(t, trace.steps[0][0] - 1) if t < trace.steps[0][0] + delay else t - delay)

    def service(rng: random.Random, t: float) -> tuple[float, int]:
        return trace.service(rng, min(t, trace.steps[0][0] - 1) if t < trace.steps[0][0] + delay else t - delay)

    return replace(
        trace,
        name=f"{trace.name}, steps {delay} s later",
        duration=trace.duration + delay,
        rate=rate,
        service=service,
        steps=tuple((a + delay, b + delay) for a, b in trace.steps),
    )


def arrivals(trace: Trace, seed: int) -> list[list[Request]]:
    rng = random.Random(seed)
    per_second: list[list[Request]] = [[] for _ in range(trace.duration)]
    t = 0.0
    while True:
        t += rng.expovariate(max(trace.rate(t), 1e-6))
        if t >= trace.duration:
            return per_second
        service, images = trace.service(rng, t)
        per_second[int(t)].append(Request(t, service, images))


@dataclass
class Result:
    name: str
    replicas: list[int]
    waiting: list[float]
    ready: list[int]
    pods: list[int]
    waits: list[float]


def replay(trace: Trace, scaler: Scaler, seed: int) -> Result:
    cluster = Cluster(trace.start_replicas)
    per_second = arrivals(trace, seed)
    prom = cluster.snapshot(0)
    res = Result(scaler.name, [], [], [], [], [])
    for t in range(trace.duration):
        if t % PROMETHEUS_SCRAPE == 0:
            prom = cluster.snapshot(t)
        want = scaler.tick(float(t), cluster, prom)
        if want is not None and want != cluster.replicas:
            cluster.scale(want, t)
        cluster.step(float(t), per_second[t])
        res.replicas.append(cluster.replicas)
        res.waiting.append(float(sum(len(p.waiting) for p in cluster.pods)))
        res.ready.append(sum(1 for p in cluster.pods if p.ready(t)))
        res.pods.append(len(cluster.pods))
    # Requests still queued when the trace ends count with the wait they had so far (a lower bound).
    res.waits = cluster.waits + [trace.duration - r.arrival for p in cluster.pods for r in p.waiting]
    return res


# --------------------------------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------------------------------
def flaps(series: Sequence[int]) -> int:
    """Reversals of direction: an increase followed (later) by a decrease, or the other way round."""
    moves = [b - a for a, b in itertools.pairwise(series) if b != a]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


def over_target(res: Result, t: int) -> bool:
    """The queue is above the target: more than ``TARGET`` waiting requests per ready replica."""
    return res.waiting[t] > TARGET * max(1, res.ready[t])


#: Dips of the queue under its target shorter than this do not end an excursion over it (see :func:`reaction`).
GAP = 5

#: ``reaction`` when the replica count was already at ``MAX_REPLICAS`` as the queue crossed the target.
AT_MAX = -1.0


def reaction(res: Result, start: int, end: int) -> float | None:
    """Seconds from the queue crossing the target (after ``start``) to the next ``/scale`` write that adds replicas.

    ``None`` when the queue never crossed the target in ``[start, end)`` (nothing to react to) or no write came;
    :data:`AT_MAX` when the count was already at the maximum. A write between ``start`` and the crossing counts as
    a reaction of 0 s (the scaler saw the load coming).
    """
    first = next((t for t in range(start, end) if over_target(res, t)), None)
    if first is None:
        return None
    if res.replicas[first] >= MAX_REPLICAS:
        return AT_MAX
    up = next((t for t in range(start, end) if res.replicas[t] > res.replicas[t - 1]), None)
    if up is None:
        return None
    # The crossing is the start of the excursion over target that the write answered: near a utilization of 1 the
    # queue flickers around the target, and a flicker that went back under is no crossing to react to. Dips under
    # the target shorter than GAP seconds do not end an excursion.
    crossing = up
    while crossing > start and any(over_target(res, u) for u in range(max(start, crossing - GAP), crossing)):
        crossing -= 1
    if crossing == up and not over_target(res, up):
        return 0.0  # written while the queue was under target: the scaler saw the load coming
    return float(up - crossing)


def drain(res: Result, start: int, end: int, hold: int = 60) -> float | None:
    """Seconds from ``start`` until the queue is at or below target (TARGET per ready pod) and stays so for ``hold``.

    0 when it never went over; ``None`` (never) when it is still over ``hold`` seconds before ``end``.
    """
    was_over = False
    for t in range(start, end - hold):
        was_over = was_over or over_target(res, t)
        if was_over and not any(over_target(res, u) for u in range(t, t + hold)):
            return float(t - start)
    return None if was_over else 0.0


def percentile(xs: Sequence[float], q: float) -> float:
    if not xs:
        return 0.0
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))]


@dataclass
class Row:
    """One scaler on one trace with one seed."""

    scaler: str
    reaction: float | None  # worst over the steps; AT_MAX or None as in :func:`reaction`
    drain: float | None  # worst over the steps; math.inf when a step never drained
    replica_min: float
    flaps: int
    max_replicas: int
    p50_wait: float
    p95_wait: float
    over_30s: float  # share of requests that waited longer than 30 s


def measure(trace: Trace, res: Result) -> Row:
    reactions = [reaction(res, a, b) for a, b in trace.steps]
    real = [r for r in reactions if r is not None and r != AT_MAX]
    react = max(real) if real else (AT_MAX if AT_MAX in reactions else None)
    drains = [drain(res, a, b) for a, b in trace.steps]
    dr = max((math.inf if d is None else d) for d in drains) if drains else None
    waits = res.waits
    return Row(
        scaler=res.name,
        reaction=react,
        drain=dr,
        replica_min=sum(res.pods) / 60,
        flaps=flaps(res.replicas),
        max_replicas=max(res.replicas),
        p50_wait=percentile(waits, 0.5),
        p95_wait=percentile(waits, 0.95),
        over_30s=sum(1 for w in waits if w > 30.0) / len(waits) if waits else 0.0,
    )


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    if v == AT_MAX:
        return "at max"
    return "never" if math.isinf(v) else f"{v:.0f} s"


def summary(trace: Trace, rows: Sequence[Row]) -> list[str]:
    """Medians over the seeds of one scaler's rows (flaps: median and the worst seed)."""
    reacts = [r.reaction for r in rows if r.reaction is not None and r.reaction != AT_MAX]
    at_max = sum(1 for r in rows if r.reaction == AT_MAX)
    if not trace.steps:
        react, dr = "-", "-"
    else:
        react = fmt_s(_median(reacts)) if reacts else ("at max" if at_max else "no crossing")
        dr = fmt_s(_median([r.drain if r.drain is not None else 0.0 for r in rows]))
    fl = [r.flaps for r in rows]
    return [
        rows[0].scaler,
        react,
        dr,
        f"{_median([r.replica_min for r in rows]):.0f}",
        f"{_median(fl):g} ({max(fl)})",
        f"{_median([r.max_replicas for r in rows]):g}",
        f"{_median([r.p50_wait for r in rows]):.1f} s",
        f"{_median([r.p95_wait for r in rows]):.0f} s",
        f"{100 * _median([r.over_30s for r in rows]):.1f} %",
    ]


HEAD = ["scaler", "reaction", "drain", "replica-min", "flaps (worst)", "max repl", "p50 wait", "p95 wait", "> 30 s"]


def render(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def scalers(trace: Trace) -> list[Scaler]:
    out: list[Scaler] = [Ours()]
    if trace.key == "image":
        # At 8 images a request takes ~13.6 s, so one replica (8 at once) serves ~0.6 req/s, ~4.7 images/s at full
        # use. The multimodal signal is told 4 images/s per replica (about 85 % of that).
        out.append(Ours("ours + images/s", PolicyTuning(target_mm_items_per_second=4.0)))
    return [*out, Hpa("HPA", HPA_SYNC, external=False), Hpa("KEDA", KEDA_POLLING_INTERVAL, external=True), Wva()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=7, help="first seed (default 7)")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds, from --seed on (default 5)")
    ap.add_argument(
        "--traces",
        default=",".join(t.key for t in TRACES),
        help=f"comma-separated subset of {', '.join(t.key for t in TRACES)} (default all)",
    )
    ap.add_argument("--per-seed", action="store_true", help="also print every seed's row")
    ap.add_argument(
        "--delay", type=int, default=0, help="start the load steps this many seconds later (lengthens the first phase)"
    )
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.traces.split(",") if k.strip()]
    unknown = sorted(set(keys) - {t.key for t in TRACES})
    if unknown:
        ap.error(f"--traces: unknown {', '.join(unknown)}; pick from {', '.join(t.key for t in TRACES)}")
    seeds = list(range(args.seed, args.seed + max(1, args.seeds)))
    started = time.perf_counter()

    print(
        f"Autoscaler replay (1 s steps; pods serve {CONCURRENCY} at once, need {STARTUP_S} s to start; "
        f"target {TARGET:g} waiting per replica; replicas {MIN_REPLICAS}-{MAX_REPLICAS})"
    )
    print(f"seeds {seeds[0]}-{seeds[-1]}: each cell is the median over the seeds; flaps also show the worst seed")
    print("reaction: queue over target -> the /scale write adding replicas; drain: step -> queue back at target")
    print("for 60 s (worst step of the trace); wait: time a request queued before it started (user's view)\n")
    for trace in (delayed(t, args.delay) for t in TRACES if t.key in keys):
        per_scaler: dict[str, list[Row]] = {}
        for seed in seeds:
            for s in scalers(trace):
                row = measure(trace, replay(trace, s, seed))
                per_scaler.setdefault(row.scaler, []).append(row)
                if args.per_seed:
                    print(f"  {trace.key} seed {seed}: {summary(trace, [row])}")
        print(f"## {trace.name}")
        print(render(HEAD, [summary(trace, rows) for rows in per_scaler.values()]))
        print()
    print(f"(ran in {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
