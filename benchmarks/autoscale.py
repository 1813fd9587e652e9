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
  vLLM's exposition format and parsed by :mod:`vlm_operator.autoscale.metrics`;
* ``HPA``: the HorizontalPodAutoscaler's algorithm on a Pods metric (average ``vllm:num_requests_waiting``) read from
  Prometheus (15 s scrape): 15 s sync, ``desired = ceil(current × metric / target)`` over the pods with metrics, 10 %
  tolerance, pods without a metric counted as 0 on scale-up, default behaviour (up: max of +100 % and +4 pods per
  15 s; down: 300 s stabilization, 100 % per 15 s). Source: kubernetes.io/docs/tasks/run-application/
  horizontal-pod-autoscale (Algorithm details, Default behavior) and pkg/controller/podautoscaler/
  replica_calculator.go;
* ``KEDA``: a ScaledObject with a Prometheus trigger on ``sum(vllm:num_requests_waiting)``, ``metricType:
  AverageValue``, polled every 30 s (KEDA's default ``pollingInterval``) and handed to the same HPA logic as an
  External metric, where ``desired = ceil(total / target)``;
* ``WVA``: the llm-d workload-variant-autoscaler's saturation rule in a 60 s loop, ±1 replica: a replica is saturated
  at KV usage ≥ 0.8 or queue ≥ 5; scale up when the mean spare capacity of the others is below 0.1 KV or 3 queue
  slots; scale down when the load of one replica spread over the rest keeps that spare; never while a pod is
  pending (its ``docs/saturation-scaling-config.md`` defaults).

Run ``python benchmarks/autoscale.py`` (add ``--seed N`` to vary the arrivals).
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
from dataclasses import dataclass, field
from typing import Protocol

from vlm_operator.api.scaling import ScalingSpec
from vlm_operator.autoscale.metrics import PodReading, parse_vllm_metrics
from vlm_operator.autoscale.policy import PolicyState, PolicyTuning, desired_replicas

CONCURRENCY = 8  # requests a pod runs at once
STARTUP_S = 180  # pod created -> Ready
TARGET = 4.0  # waiting requests per replica, for every scaler
MIN_REPLICAS, MAX_REPLICAS = 1, 12
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


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
    """HPA v2 with the default behaviour; ``external=True`` is the KEDA shape (an External AverageValue metric)."""

    SYNC = 15
    TOLERANCE = 0.1
    DOWN_WINDOW = 300

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
            return min(rec, max(2 * current, current + 4))  # max(100 %, 4 pods) per 15 s
        stabilized = max(r for _, r in self.recs)
        return min(current, stabilized)


class Wva:
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
    name: str
    duration: int
    rate: Callable[[float], float]  # requests per second at time t
    service: Callable[[random.Random, float], tuple[float, int]]  # (seconds, images) of a request arriving at t
    step_at: int | None = None
    step_end: int | None = None
    start_replicas: int = 1


def text_service(rng: random.Random, t: float) -> tuple[float, int]:
    return rng.uniform(4.0, 12.0), 1


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
        if t % 15 == 0:
            prom = cluster.snapshot(t)  # Prometheus scrape interval
        want = scaler.tick(float(t), cluster, prom)
        if want is not None and want != cluster.replicas:
            cluster.scale(want, t)
        cluster.step(float(t), per_second[t])
        res.replicas.append(cluster.replicas)
        res.waiting.append(float(sum(len(p.waiting) for p in cluster.pods)))
        res.ready.append(sum(1 for p in cluster.pods if p.ready(t)))
        res.pods.append(len(cluster.pods))
    res.waits = cluster.waits
    return res


def flaps(series: Sequence[int]) -> int:
    moves = [b - a for a, b in itertools.pairwise(series) if b != a]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


def reaction(res: Result, step_at: int) -> float | None:
    base = res.replicas[step_at]
    return next((t - step_at for t in range(step_at, len(res.replicas)) if res.replicas[t] > base), None)


def drain(res: Result, step_at: int, step_end: int, hold: int = 60) -> float | None:
    """Seconds from the step until the queue is at or below target (TARGET per ready pod) and stays so for ``hold``."""
    ok = [res.waiting[t] <= TARGET * max(1, res.ready[t]) for t in range(len(res.waiting))]
    was_over = False
    for t in range(step_at, step_end - hold):
        was_over = was_over or not ok[t]
        if was_over and all(ok[t : t + hold]):
            return float(t - step_at)
    return None


def fmt_s(v: float | None) -> str:
    return "never" if v is None else f"{v:.0f} s"


def p95(xs: Sequence[float]) -> float:
    if not xs:
        return 0.0
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(0.95 * len(ys)))]


def table(trace: Trace, results: Sequence[Result]) -> str:
    head = ["scaler", "reaction", "drain", "replica-min", "flaps", "max repl", "mean wait", "p95 wait"]
    rows = []
    for r in results:
        react = reaction(r, trace.step_at) if trace.step_at is not None else None
        at_max = trace.step_at is not None and r.replicas[trace.step_at] >= MAX_REPLICAS
        dr = drain(r, trace.step_at, trace.step_end or trace.duration) if trace.step_at is not None else None
        rows.append(
            [
                r.name,
                "-" if trace.step_at is None else ("at max" if react is None and at_max else fmt_s(react)),
                fmt_s(dr) if trace.step_at is not None else "-",
                f"{sum(r.pods) / 60:.0f}",
                str(flaps(r.replicas)),
                str(max(r.replicas)),
                f"{statistics.fmean(r.waits):.1f} s" if r.waits else "-",
                f"{p95(r.waits):.0f} s",
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    started = time.perf_counter()

    def anchors() -> list[Scaler]:
        return [
            Ours(),
            Ours("ours, maxStep 4", spec_overrides={"scale_up_max_step": 4}),
            Hpa("HPA", 15, external=False),
            Hpa("KEDA", 30, external=True),
            Wva(),
        ]

    # Mean service 8 s and 8 at once: one replica serves 1 req/s. The step asks for about 6.
    step = Trace(
        "step: 1 -> 6 -> 1 req/s (10 min, 30 min, 30 min)",
        duration=70 * 60,
        rate=lambda t: 6.0 if 600 <= t < 2400 else 1.0,
        service=text_service,
        step_at=600,
        step_end=2400,
    )
    steady = Trace(
        "steady: 4 req/s for 2 h (Poisson), from 5 replicas",
        duration=2 * 3600,
        rate=lambda t: 4.0,
        service=text_service,
        start_replicas=5,
    )
    wave = Trace(
        "oscillating: 2.5 <-> 5.5 req/s, 4 min period, 2 h, from 5 replicas",
        duration=2 * 3600,
        rate=lambda t: 5.5 if (t // 120) % 2 else 2.5,
        service=text_service,
        start_replicas=5,
    )

    def images_service(rng: random.Random, t: float) -> tuple[float, int]:
        # Image-heavy from minute 10: requests carry 6-10 images instead of 1; the vision encoder adds 1.2 s each.
        n = rng.randint(6, 10) if 600 <= t < 2400 else 1
        return rng.uniform(2.0, 6.0) + 1.2 * n, n

    image = Trace(
        "image-heavy: 2.5 req/s throughout, 1 -> 6-10 images per request (10 min, 30 min, 30 min)",
        duration=70 * 60,
        rate=lambda t: 2.5,
        service=images_service,
        step_at=600,
        step_end=2400,
    )

    print("Autoscaler replay (1 s steps; pods serve 8 at once, need 180 s to start; target 4 waiting per replica)")
    print(f"seed {args.seed}\n")
    for trace in (step, steady, wave):
        print(f"## {trace.name}")
        print(table(trace, [replay(trace, s, args.seed) for s in anchors()]))
        print()
    # At 8 images a request takes ~13.6 s, so one replica (8 at once) serves ~0.6 req/s, ~4.7 images/s at full use.
    # The multimodal signal is told 4 images/s per replica (about 85 % of that).
    print(f"## {image.name}")
    mm = Ours("ours + images/s", PolicyTuning(target_mm_items_per_second=4.0))
    print(table(image, [replay(image, s, args.seed) for s in [Ours(), mm, *anchors()[2:]]]))
    print(f"\n(ran in {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
