"""The pure scaling policy, driven through synthetic load traces on an injected clock.

A small harness plays the operator's loop: every poll it builds one reading per ready pod from a load model (the
requests in the system spread evenly over the ready pods, each pod running up to ``CAPACITY`` of them and queueing
the rest), calls ``desired_replicas`` and applies the decision to ``spec.scaling.replicas``. New pods become ready
``start_delay`` seconds after the scale-up that created them, as a VLM pod does after loading its weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import pytest

from vlm_operator.api.scaling import ScalingSpec
from vlm_operator.autoscale.policy import Decision, PolicyState, PolicyTuning, Reason, desired_replicas
from vlm_operator.autoscale.vllm_metrics import EngineSample, MissingSample, PodReading, parse_vllm_metrics

CAPACITY = 8.0
POLL = 5


def make_spec(**kw: Any) -> ScalingSpec:
    base: dict[str, Any] = {"mode": "Internal", "min_replicas": 1, "max_replicas": 10, "replicas": 1}
    base.update(kw)
    return ScalingSpec(**base)


def pod_samples(n: int, load: float, t: float, *, kv: float | None = None, prefix: str = "p") -> list[EngineSample]:
    """``n`` ready pods sharing ``load`` requests: each runs up to CAPACITY and queues the rest."""
    per = load / n if n else 0.0
    return [
        EngineSample(f"{prefix}{i}", t, waiting=max(0.0, per - CAPACITY), running=min(CAPACITY, per), kv_usage=kv)
        for i in range(n)
    ]


def flaps(replicas: list[int]) -> int:
    """Direction reversals of the replica count: up then down, or down then up."""
    moves = [b - a for a, b in itertools.pairwise(replicas) if b != a]
    return sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))


@dataclass
class Loop:
    """The operator's autoscaling loop, minus the I/O."""

    spec: ScalingSpec
    start_delay: float = 120.0
    tuning: PolicyTuning | None = None
    state: PolicyState = field(default_factory=PolicyState)
    ready: int = -1
    starting: list[float] = field(default_factory=list)  # times at which starting pods become ready
    log: list[tuple[float, Decision]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ready < 0:
            self.ready = self.spec.replicas

    @property
    def replicas(self) -> int:
        return self.spec.replicas

    def step(self, t: float, readings: Callable[[int, float], list[PodReading]]) -> Decision:
        self.ready += sum(1 for r in self.starting if r <= t)
        self.starting = [r for r in self.starting if r > t]
        d = desired_replicas(self.state, readings(self.ready, t), self.spec, t, tuning=self.tuning)
        self.state = d.state
        if d.replicas > self.replicas:
            self.starting += [t + self.start_delay] * (d.replicas - self.replicas)
        elif d.replicas < self.replicas:
            drop = self.replicas - d.replicas
            unready = min(drop, len(self.starting))  # a ReplicaSet deletes not-ready pods first
            self.starting = self.starting[unready:]
            self.ready -= drop - unready
        self.spec = self.spec.model_copy(update={"replicas": d.replicas})
        self.log.append((t, d))
        return d

    def run(self, t0: float, t1: float, load: Callable[[float], float], **kw: Any) -> None:
        t = t0
        while t < t1:
            self.step(t, lambda n, now: list[PodReading](pod_samples(n, load(now), now, **kw)))
            t += POLL

    def history(self) -> list[int]:
        return [d.replicas for _, d in self.log]

    def changes(self) -> list[tuple[float, int, Reason]]:
        out = []
        prev = None
        for t, d in self.log:
            if prev is not None and d.replicas != prev:
                out.append((t, d.replicas, d.reason))
            prev = d.replicas
        return out


def test_step_scales_up_to_the_need_while_pods_start_by_at_most_the_step() -> None:
    loop = Loop(make_spec(replicas=2, scale_up_window_seconds=30, scale_up_max_step=2))
    loop.run(0, 300, lambda t: 12.0)  # light: 6 running per pod, nothing waiting
    assert loop.history()[-1] == 2
    loop.run(300, 330, lambda t: 80.0)  # the step: 40 per pod, 32 waiting each
    assert loop.replicas == 2, "no scale-up inside the 30 s window"
    assert loop.log[-1][1].reason == Reason.STABILIZING
    d = loop.step(330, lambda n, t: list[PodReading](pod_samples(n, 80.0, t)))
    assert (d.replicas, d.reason) == (4, Reason.SCALE_UP)  # need = 80/(8+4) = 6.7, limited to +2
    assert "need 6.67" in d.message
    loop.run(335, 900, lambda t: 80.0)  # new pods load for 120 s
    # The pods started at 330 count as capacity coming: the rest of the need is added while they load, a step per
    # decision (each after its own 30 s window), not a start-up time later.
    ups = loop.changes()
    assert [(t, r) for t, r, _ in ups] == [(330, 4), (365, 6), (400, 7)]
    assert all(t < 330 + 120 for t, _, _ in ups), "all of it while the first new pods were still starting"
    assert loop.replicas == 7 == math.ceil(80 / 12), "and no further: the need is 6.67"
    assert {d.reason for t, d in loop.log if t >= 405} == {Reason.HOLD}


def test_load_stops_scale_down_after_the_window_one_step_per_cooldown_to_min() -> None:
    # 72 requests is what 6 pods hold at the target (8 running + 4 waiting each).
    loop = Loop(make_spec(replicas=6, min_replicas=2, scale_down_stabilization_seconds=300, cooldown_seconds=120))
    loop.run(0, 600, lambda t: 72.0)
    assert loop.history() == [6] * len(loop.log), "load at the target holds"
    loop.run(600, 3000, lambda t: 0.0)  # load stops
    downs = loop.changes()
    assert [r for _, r, _ in downs] == [5, 4, 3, 2]
    assert all(reason == Reason.SCALE_DOWN for _, _, reason in downs)
    assert downs[0][0] >= 600 + 300 - POLL, "not before the stabilization window has passed"
    gaps = [b - a for (a, _, _), (b, _, _) in itertools.pairwise(downs)]
    assert all(g >= 120 for g in gaps), gaps
    assert loop.log[-1][1].reason == Reason.AT_MIN


def test_ramp_only_goes_up_and_never_by_more_than_the_step() -> None:
    loop = Loop(make_spec(replicas=1, max_replicas=20, scale_up_max_step=3), start_delay=60)
    loop.run(0, 3600, lambda t: 2.0 + t / 12.0)  # 2 -> 302 requests over an hour
    h = loop.history()
    assert all(b >= a for a, b in itertools.pairwise(h)), "a ramp never scales down"
    assert max(b - a for a, b in itertools.pairwise(h)) <= 3
    assert h[-1] == 20  # 302 / 12 = 25 -> capped at max
    assert flaps(h) == 0


def test_spike_shorter_than_the_window_does_nothing() -> None:
    loop = Loop(make_spec(replicas=2, scale_up_window_seconds=30))
    loop.run(0, 3600, lambda t: 200.0 if 1000 <= t < 1020 else 16.0)
    assert set(loop.history()) == {2}
    assert any(d.reason == Reason.STABILIZING for _, d in loop.log)


@pytest.mark.parametrize("period", [20, 60, 240])
def test_oscillating_load_gives_no_flaps(period: int) -> None:
    # Load swings between 30 and 66 requests (2.5 to 5.5 replicas' worth) with the given period, for two hours.
    loop = Loop(make_spec(replicas=3, max_replicas=10))
    loop.run(0, 7200, lambda t: 30.0 if (t // (period / 2)) % 2 == 0 else 66.0)
    assert flaps(loop.history()) == 0, loop.changes()


def test_steady_noisy_load_gives_no_flaps_and_settles() -> None:
    # Deterministic noise of +-15 % around 48 requests (4 replicas at target).
    noise = [((i * 7919) % 31 - 15) / 100.0 for i in range(2000)]
    loop = Loop(make_spec(replicas=4))
    loop.run(0, 4 * 3600, lambda t: 48.0 * (1 + noise[int(t // POLL) % len(noise)]))
    assert flaps(loop.history()) == 0
    assert len(loop.changes()) <= 1


def test_missing_metrics_never_scale_down_and_say_so() -> None:
    loop = Loop(make_spec(replicas=4))
    loop.run(0, 600, lambda t: 48.0)

    def one_missing(n: int, t: float) -> list[PodReading]:
        return [*pod_samples(n - 1, 0.0, t), MissingSample("p3", "ScrapeFailed", "connection refused")]

    for t in range(600, 3000, POLL):
        loop.step(t, one_missing)
    assert set(loop.history()) == {4}
    last = loop.log[-1][1]
    assert last.reason == Reason.MISSING_METRICS
    assert "p3: ScrapeFailed" in last.message
    # Readings come back: the low load may scale down, but only after a whole window of complete readings.
    loop.run(3000, 4000, lambda t: 0.0)
    first_down = loop.changes()[0]
    assert first_down[0] >= 3000 + 300 - POLL


def test_all_readings_missing_holds() -> None:
    loop = Loop(make_spec(replicas=3))
    for t in range(0, 1200, POLL):
        loop.step(t, lambda n, t: [MissingSample(f"p{i}", "ParseError") for i in range(n)])
    assert set(loop.history()) == {3}
    assert {d.reason for _, d in loop.log} == {Reason.MISSING_METRICS}


def test_stale_samples_count_as_missing() -> None:
    spec = make_spec(replicas=3, poll_interval_seconds=5)
    st = PolicyState()
    # Samples taken at t=0, evaluated 16 s later: older than 3 polls (15 s).
    d = desired_replicas(st, pod_samples(3, 0.0, 0.0), spec, 16.0)
    assert d.reason == Reason.MISSING_METRICS
    assert "Stale" in d.message
    d = desired_replicas(st, pod_samples(3, 0.0, 0.0), spec, 15.0)
    assert d.reason != Reason.MISSING_METRICS


def test_missing_pod_does_not_block_a_scale_up() -> None:
    loop = Loop(make_spec(replicas=2, scale_up_window_seconds=10))

    def hot(n: int, t: float) -> list[PodReading]:
        return [*pod_samples(n - 1, 100.0, t), MissingSample("px", "ScrapeFailed")]

    for t in range(0, 60, POLL):
        loop.step(t, hot)
    assert loop.changes()[0] == (10, 4, Reason.SCALE_UP)


def test_old_metric_name_on_old_engine_drives_the_kv_ceiling() -> None:
    old = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llava-hf/llava-1.5-7b-hf"} 6.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llava-hf/llava-1.5-7b-hf"} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="llava-hf/llava-1.5-7b-hf"} 0.95
"""
    spec = make_spec(replicas=2, max_kv_cache_usage=0.8, scale_up_window_seconds=10)

    def read(n: int, t: float) -> list[PodReading]:
        return [parse_vllm_metrics(f"p{i}", old, timestamp=t, version="0.6.3") for i in range(n)]

    loop = Loop(spec)
    for t in range(0, 20, POLL):
        loop.step(t, read)
    (d,) = [d for _, d in loop.log if d.reason == Reason.SCALE_UP]
    # Queue alone asks for 12/12 = 1 replica; the KV gauge, read under its old name, asks for 2 x 0.95/0.8 = 2.4.
    assert (d.replicas, d.reason) == (3, Reason.SCALE_UP)
    assert d.signals.kv_usage == 0.95
    assert "KV usage 0.95" in d.message


def test_dry_run_records_without_acting() -> None:
    loop = Loop(make_spec(replicas=2, dry_run=True, scale_up_window_seconds=10))
    loop.run(0, 600, lambda t: 100.0)
    assert set(loop.history()) == {2}
    dry = [d for _, d in loop.log if d.reason == Reason.DRY_RUN]
    assert dry, "the decision is still recorded"
    assert all(d.recommended == 4 and d.replicas == 2 for d in dry)
    assert "would ScaleUp" in dry[0].message
    assert loop.state.last_scale_time is None


def test_pods_that_never_start_stop_counting_as_capacity_after_the_grace() -> None:
    loop = Loop(
        make_spec(replicas=2, max_replicas=20, scale_up_window_seconds=10),
        start_delay=10_000,  # the new pods never come up in this test
        tuning=PolicyTuning(startup_grace_seconds=600),
    )
    loop.run(0, 30, lambda t: 50.0)  # need 50/12 = 4.2: 2 -> 4 -> 5, each after a 10 s window
    assert [(t, r) for t, r, _ in loop.changes()] == [(10, 4), (25, 5)]
    loop.run(30, 600, lambda t: 100.0)  # need 8.3: more than 5, but not more than twice the 5 (3 of them coming)
    assert loop.replicas == 5
    assert loop.log[-1][1].reason == Reason.PODS_STARTING
    assert "3 of 5 pods starting, counted as capacity coming" in loop.log[-1][1].message
    # Stuck past the grace (600 s after the last scale-up): no longer counted as coming, the ordinary rules apply.
    loop.run(600, 700, lambda t: 100.0)
    assert [(t, r) for t, r, _ in loop.changes()][2:] == [(635, 7), (650, 9)]


def test_a_need_beyond_twice_the_coming_capacity_adds_pods_while_they_start() -> None:
    loop = Loop(make_spec(replicas=2, max_replicas=20), start_delay=180)
    loop.run(0, 100, lambda t: 24.0)  # 2 pods at the target: 8 running + 4 waiting each
    assert loop.replicas == 2
    # The queue grows on the ready pods by 2 requests a second: 34 at 105 s, 74 at 125 s, ...
    loop.run(100, 280, lambda t: 24.0 + 2.0 * (t - 100))
    ups = loop.changes()
    # The first write comes at the first poll over the target (need 34/12 = 2.8 -> 3). More follow while the first
    # new pods load, each once the need passes twice the count: 3 -> 5 (need > 6), -> 7 (> 10), -> 9 (> 14), ...
    assert ups[0] == (105, 3, Reason.SCALE_UP)
    assert [(t, r) for t, r, _ in ups][:4] == [(105, 3), (125, 5), (150, 7), (175, 9)]
    assert all(t < 105 + 180 for t, _, _ in ups), "all while the first new pods are starting"
    for (_, prev), (t, d) in itertools.pairwise(loop.log):
        if d.reason == Reason.SCALE_UP and t > 105:
            assert d.signals.need_queue > 2 * prev.replicas, d.message


def test_queue_growth_while_pods_start_scales_up_once_and_down_once() -> None:
    # A fluid model of one shared queue: each ready replica serves 1 req/s (8 at once, 8 s each). Arrivals go from 2 to
    # 3.5 req/s for half an hour and back; the 2 replicas are then full and the queue grows on them while new pods
    # load (180 s).
    loop = Loop(make_spec(replicas=2, max_replicas=20), start_delay=180)
    backlog = 16.0

    def read(n: int, t: float) -> list[PodReading]:
        return list[PodReading](pod_samples(n, backlog, t))

    over_at: list[float] = []
    for t in range(0, 4800, POLL):
        arrivals = 3.5 if 600 <= t < 2400 else 2.0
        served = min(backlog, CAPACITY * loop.ready) / 8.0
        backlog = max(0.0, backlog + POLL * (arrivals - served))
        if backlog > 12.0 * loop.ready:
            over_at.append(t)
        loop.step(t, read)
    ups = [(t, r) for t, r, why in loop.changes() if why == Reason.SCALE_UP]
    downs = [(t, r) for t, r, why in loop.changes() if why == Reason.SCALE_DOWN]
    assert ups[0][0] == over_at[0], "the first write at the first poll that sees the queue over target"
    assert sum(1 for t, _ in ups if t < ups[0][0] + 180) >= 2, "more added while the first new pods load"
    assert max(t for t, _ in ups) < min(t for t, _ in downs), "all the way up, then down: no flap"
    assert flaps(loop.history()) == 1
    assert max(over_at) < 1200, "the queue is back at target long before the load ends"
    assert loop.replicas == 3  # 2 req/s after the step: 16 running / (8 x 0.8) = 2.5


def test_a_count_raised_on_a_burst_is_not_scaled_down_before_its_pods_have_served_a_window() -> None:
    # The benchmark's early-minute case: a burst on one pod raises the count while the new pods load (180 s). The
    # scale-down window counts only once every pod is ready, so the count does not come down just as a step arrives
    # 300 s after the burst (before, it went 4 -> 3 at 430 s and back up at 500 s: three flaps instead of one).
    loop = Loop(make_spec(replicas=1, max_replicas=10), start_delay=180)

    def load(t: float) -> float:
        if 100 <= t < 130:
            return 40.0  # the burst: need 40 / 12 = 3.3
        if 500 <= t < 1500:
            return 40.0  # the step, 400 s after the burst
        return 10.0  # 1.25 pods' worth of slots at 80 %: keeps 2

    loop.run(0, 3600, load)
    ups = [(t, r) for t, r, why in loop.changes() if why == Reason.SCALE_UP]
    downs = [(t, r) for t, r, why in loop.changes() if why == Reason.SCALE_DOWN]
    assert ups == [(100, 3), (105, 4)]
    ready_at = 105 + 180
    assert min(t for t, _ in downs) >= 1500 + 300 - POLL, "no scale-down between the burst and the step"
    assert flaps(loop.history()) == 1
    assert loop.replicas == 2
    # While the pods load, the low load is judged on nothing yet: the window starts when they are all ready.
    waiting = [d for t, d in loop.log if ready_at <= t < 500 and d.reason == Reason.STABILIZING]
    assert waiting and all("of 300s of readings so far" in d.message for d in waiting)


def test_a_step_after_the_ready_pods_held_the_load_alone_is_not_held_back_by_starting_pods() -> None:
    # A burst adds a pod; the load falls back and the two ready pods hold it alone while that pod loads. A step then
    # is new load, not the queue growth the starting pod explains: it is answered at the first poll that sees it,
    # not after the starting pod is ready (before: PodsStarting until the need passed twice the count, here never).
    loop = Loop(make_spec(replicas=2, max_replicas=10), start_delay=180)

    def load(t: float) -> float:
        if 100 <= t < 105:
            return 36.0  # need 36 / 12 = 3: 2 -> 3
        if t >= 200:
            return 60.0  # need 5: more than the 3, less than twice it
        return 12.0  # 12 / (8 x 0.8) = 1.9 replicas: the 2 ready pods hold it

    loop.run(0, 260, load)
    assert [(t, r) for t, r, _ in loop.changes()] == [(100, 3), (200, 5)]
    assert loop.replicas == 5 == math.ceil(60 / 12), "and no further"
    # Without the low load in between, the pod started by the burst still holds a need under twice the count back.
    busy = Loop(make_spec(replicas=2, max_replicas=10), start_delay=180)
    busy.run(0, 260, lambda t: 36.0 if 100 <= t < 200 else (60.0 if t >= 200 else 12.0))
    assert [(t, r) for t, r, _ in busy.changes()] == [(100, 3)]
    assert busy.log[-1][1].reason == Reason.PODS_STARTING


def test_a_backlog_beside_a_pod_with_free_slots_adds_one_replica_at_a_time() -> None:
    # The poll a second pod becomes ready: the first still holds the queue that grew while it was alone, the new one
    # is empty (a Service sends it only new requests). The need, 37 / 12 = 3.1, overstates the shortage: one replica
    # is added, not 2 -> 4 (which the load, 1 pod's worth, brought back down later: a flap), and the ramp stops there.
    tuning = PolicyTuning(capacity_per_replica=8.0)
    spec = make_spec(replicas=2)
    readings = [EngineSample("p0", 0.0, waiting=29.0, running=8.0), EngineSample("p1", 0.0, waiting=0.0, running=0.0)]
    d = desired_replicas(PolicyState(), readings, spec, 0.0, tuning=tuning)
    assert (d.replicas, d.reason) == (3, Reason.SCALE_UP)
    assert "p1 has free slots, one replica at a time" in d.message
    later = [EngineSample("p0", 5.0, waiting=29.0, running=8.0), EngineSample("p1", 5.0, waiting=0.0, running=1.0)]
    d = desired_replicas(d.state, later, make_spec(replicas=3), 5.0, tuning=tuning)
    assert (d.replicas, d.reason) == (3, Reason.PODS_STARTING)
    # With both pods busy the same total is a shortage, and the step of 2 applies.
    busy = [EngineSample("p0", 0.0, waiting=25.0, running=8.0), EngineSample("p1", 0.0, waiting=4.0, running=8.0)]
    assert desired_replicas(PolicyState(), busy, spec, 0.0, tuning=tuning).replicas == 4


def test_all_pods_starting_holds() -> None:
    d = desired_replicas(PolicyState(), [], make_spec(replicas=2), 0.0)
    assert (d.replicas, d.reason) == (2, Reason.PODS_STARTING)


def test_max_and_min_bounds() -> None:
    loop = Loop(make_spec(replicas=3, max_replicas=3, scale_up_window_seconds=5))
    loop.run(0, 120, lambda t: 500.0)
    assert set(loop.history()) == {3}
    assert loop.log[-1][1].reason == Reason.AT_MAX
    # A count outside the bounds (the bounds were edited) is corrected at once, without a window.
    d = desired_replicas(PolicyState(), pod_samples(1, 0.0, 0.0), make_spec(replicas=1, min_replicas=3), 0.0)
    assert (d.replicas, d.reason) == (3, Reason.SCALE_UP)
    d = desired_replicas(PolicyState(), pod_samples(9, 0.0, 0.0), make_spec(replicas=9, max_replicas=5), 0.0)
    assert (d.replicas, d.reason) == (5, Reason.SCALE_DOWN)


def test_scale_to_zero_and_stay() -> None:
    loop = Loop(make_spec(replicas=1, min_replicas=0))
    loop.run(0, 400, lambda t: 0.0)
    assert loop.replicas == 0
    assert [(r, why) for _, r, why in loop.changes()] == [(0, Reason.SCALE_DOWN)]
    loop.step(1000, lambda n, t: [])
    assert loop.log[-1][1].reason == Reason.AT_MIN
    assert "external trigger" in loop.log[-1][1].message


def test_tolerance_band_is_below_the_count_only() -> None:
    spec = make_spec(replicas=4)
    # Upwards there is no band: 4 pods with 52.8 requests need 52.8 / 12 = 4.4 replicas, so 5.
    d = desired_replicas(PolicyState(), pod_samples(4, 52.8, 0.0), spec, 0.0)
    assert (d.replicas, d.reason) == (5, Reason.SCALE_UP)
    d = desired_replicas(PolicyState(), pod_samples(4, 48.0, 0.0), spec, 0.0)
    assert (d.replicas, d.reason) == (4, Reason.HOLD)
    # Downwards a need within 10 % below the count holds (the HPA's tolerance): 10 pods, floor 57.6 / 6.4 = 9.0.
    tuning = PolicyTuning(capacity_per_replica=8.0)
    ten = make_spec(replicas=10)
    assert (
        desired_replicas(PolicyState(), pod_samples(10, 57.6, 0.0), ten, 0.0, tuning=tuning).signals.recommendation
        == 10
    )
    assert (
        desired_replicas(PolicyState(), pod_samples(10, 56.9, 0.0), ten, 0.0, tuning=tuning).signals.recommendation == 9
    )


def test_capacity_is_learned_from_the_busiest_pod() -> None:
    spec = make_spec(replicas=4, scale_down_stabilization_seconds=60, cooldown_seconds=60)
    loop = Loop(spec)
    loop.run(0, 100, lambda t: 200.0 if t < 20 else 16.0)  # a burst shows each pod runs 8 at once
    assert loop.state.peak_running == 8.0
    # 16 requests on 4 pods is 4 running each. At capacity 8 and target 4 the queue rule asks for 16/12 = 1.3
    # replicas, but the scale-down floor keeps slot use <= 80 %: 16 / (8 x 0.8) = 2.5, so 3.
    sig = loop.log[-1][1].signals
    assert sig.need_queue == pytest.approx(16 / 12)
    assert sig.need_keep == pytest.approx(2.5)
    assert sig.recommendation == 3


def test_scale_down_floor_never_pushes_up() -> None:
    # Capacity not yet learned (peak 2 per pod): the floor would say 8 / (2 x 0.8) = 5 > 4, but it only bounds
    # scale-downs; with no queue the policy holds.
    d = desired_replicas(PolicyState(), pod_samples(4, 8.0, 0.0), make_spec(replicas=4), 0.0)
    assert d.signals.need_keep == pytest.approx(5.0)
    assert (d.replicas, d.reason) == (4, Reason.HOLD)


def test_multimodal_signal_scales_before_the_queue_builds() -> None:
    spec = make_spec(replicas=2, scale_up_window_seconds=10)
    tuning = PolicyTuning(target_mm_items_per_second=5.0)

    def images(rate: float) -> Callable[[int, float], list[PodReading]]:
        def read(n: int, t: float) -> list[PodReading]:
            # 16 requests in flight (no queue); each pod's items counter grows at rate/n per second.
            return [EngineSample(f"p{i}", t, waiting=0.0, running=8.0, mm_items_total=t * rate / n) for i in range(n)]

        return read

    with_mm = Loop(spec, tuning=tuning)
    without = Loop(spec)
    for t in range(0, 30, POLL):
        with_mm.step(t, images(30.0))
        without.step(t, images(30.0))
    assert with_mm.replicas == 4  # 30 items/s / 5 per replica = 6, step-limited to +2
    assert with_mm.log[-1][1].signals.mm_items_per_second == pytest.approx(30.0)
    assert "multimodal 30.0 items/s" in with_mm.log[-1][1].message
    assert without.replicas == 2


def test_mm_counter_reset_is_not_a_negative_rate() -> None:
    spec = make_spec(replicas=1)
    tuning = PolicyTuning(target_mm_items_per_second=5.0)
    st = desired_replicas(
        PolicyState(), [EngineSample("p", 0.0, 0, 1, mm_items_total=1000.0)], spec, 0.0, tuning=tuning
    )
    d = desired_replicas(st.state, [EngineSample("p", 5.0, 0, 1, mm_items_total=10.0)], spec, 5.0, tuning=tuning)
    assert d.signals.mm_items_per_second == pytest.approx(2.0)


def test_pure_and_immutable() -> None:
    spec = make_spec(replicas=2)
    st = PolicyState()
    samples = pod_samples(2, 100.0, 0.0)
    a = desired_replicas(st, samples, spec, 0.0)
    b = desired_replicas(st, samples, spec, 0.0)
    assert a == b
    assert st == PolicyState(), "the input state is untouched"
    with pytest.raises(FrozenInstanceError):
        a.state.peak_running = 1.0  # type: ignore[misc]
