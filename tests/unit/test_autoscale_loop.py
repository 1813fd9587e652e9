"""The autoscaler loop (autoscale/loop.py) with a fake API server, fake scrapes and an injected clock: what it
reads, what it writes (only /scale), what it reports to the reconciler, and hours of simulated load in milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import urllib.request
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from vlm_operator import conditions
from vlm_operator import operator_metrics as op_metrics
from vlm_operator.autoscale import report as reports
from vlm_operator.autoscale.loop import Autoscaler, pod_ready, served_model_name
from vlm_operator.autoscale.policy import Decision, PolicyState, Reason, Signals
from vlm_operator.autoscale.vllm_metrics import EngineSample, MissingSample
from vlm_operator.render import objects

NS, NAME = "ml", "qwen"
MODEL = "llava-1.5-7b"


def vlmd_body(**scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "vlmops.io/v1alpha1",
        "kind": "VLMDeployment",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u-1", "resourceVersion": "1"},
        "spec": {
            "model": {"name": "llava-hf/llava-1.5-7b-hf", "servedModelName": [MODEL]},
            "engine": {"version": "0.11.0", "maxModelLen": 4096},
            "resources": {"gpu": {"product": "L4"}},
            "scaling": {
                "mode": "Internal",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 6,
                "pollIntervalSeconds": 5,
                **scaling,
            },
        },
    }


def pod(i: int, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{NAME}-{i}", "namespace": NS},
        "spec": {"containers": [{"command": ["vllm", "serve", "m", "--served-model-name", MODEL, "--port", "8000"]}]},
        "status": {
            "podIP": f"127.100.0.{i + 1}",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


class FakeKube:
    """The API server as the loop sees it. Every call is recorded; ``scale`` is the only write it offers."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.calls: list[tuple[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.conflict_next = False
        #: the namespace's ResourceQuotas, as ``kubectl get resourcequota -o json`` lists them
        self.quotas: list[dict[str, Any]] = []

    @property
    def replicas(self) -> int:
        return int(self.body["spec"]["scaling"]["replicas"])

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind))
        return json.loads(json.dumps(self.body))

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        if kind == "ResourceQuota":
            return json.loads(json.dumps(self.quotas))
        self.calls.append(("list", label_selector))
        assert label_selector == objects.selector_string(NAME)
        return [pod(i) for i in range(self.replicas)]

    def get_scale(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_scale", name))
        return {
            "metadata": {"resourceVersion": self.body["metadata"]["resourceVersion"]},
            "spec": {"replicas": self.replicas},
        }

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
    ) -> dict[str, Any]:
        self.calls.append(("scale", (replicas, resource_version, field_manager)))
        if self.conflict_next:
            self.conflict_next = False
            raise ApiException(status=409, reason="Conflict")
        self.body["spec"]["scaling"]["replicas"] = replicas
        self.body["metadata"]["resourceVersion"] = str(int(self.body["metadata"]["resourceVersion"]) + 1)
        return {}

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def writes(self) -> list[tuple[str, Any]]:
        return [c for c in self.calls if c[0] == "scale"]


def metrics_text(waiting: float, running: float, *, old: bool = False, kv: float = 0.1, model: str = MODEL) -> str:
    """A pod's /metrics: vLLM V1 (``engine`` label, ``kv_cache_usage_perc``) or V0 0.6.3 (old name, no engine)."""
    labels = f'model_name="{model}"' + ("" if old else ',engine="0"')
    kv_name = "vllm:gpu_cache_usage_perc" if old else "vllm:kv_cache_usage_perc"
    return "\n".join(
        [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{labels}}} {running}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{labels}}} {waiting}",
            f"# HELP {kv_name} KV-cache usage. 1 means 100 percent usage.",
            f"# TYPE {kv_name} gauge",
            f"{kv_name}{{{labels}}} {kv}",
            "",
        ]
    )


class Sim:
    """Load spread evenly over the pods; ``load`` is requests in flight in total, ``cap`` runs per pod."""

    def __init__(self, kube: FakeKube, load: float = 0.0, cap: int = 8, old: bool = False) -> None:
        self.kube, self.load, self.cap, self.old = kube, load, cap, old
        self.down: set[str] = set()
        self.urls: list[str] = []

    async def fetch(self, url: str, timeout: float) -> tuple[int, str]:
        self.urls.append(url)
        ip = url.split("//")[1].split(":")[0]
        if ip in self.down:
            raise ConnectionRefusedError(f"connect to {ip}:8000 refused")
        per_pod = self.load / max(1, self.kube.replicas)
        running = min(per_pod, self.cap)
        return 200, metrics_text(per_pod - running, running, old=self.old, kv=running / self.cap)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(body: dict[str, Any], load: float = 0.0, **kw: Any) -> tuple[Autoscaler, FakeKube, Sim, Clock]:
    kube = FakeKube(body)
    sim = Sim(kube, load, **kw)
    clock = Clock()
    scaler = Autoscaler(kube, NS, NAME, sim.fetch, clock=clock, wall=lambda: clock.t + 1.7e9)
    reports.clear(NS, NAME)
    return scaler, kube, sim, clock


def run(scaler: Autoscaler, clock: Clock, seconds: float) -> None:
    """Poll for ``seconds`` of simulated time, advancing the clock by each returned interval."""
    end = clock.t + seconds

    async def loop() -> None:
        while clock.t < end:
            clock.t += await scaler.poll_once()

    asyncio.run(loop())


def flaps(values: list[int]) -> int:
    changes = [b - a for a, b in itertools.pairwise(values) if b != a]
    return sum(1 for a, b in itertools.pairwise(changes) if a * b < 0)


# ---------------------------------------------------------------------------------------------------------------------


def test_step_scales_up_within_the_window_through_scale_only_and_reports() -> None:
    scaler, kube, sim, clock = make(vlmd_body(scaleUpWindowSeconds=5, targetQueueDepth=4), load=0)
    run(scaler, clock, 30)
    assert kube.writes() == []
    rep = reports.get(NS, NAME)
    assert rep is not None and rep.active.reason == "AtMin" and rep.metrics.status == "True"
    assert sim.urls[-1] == "http://127.100.0.1:8000/metrics"

    sim.load = 36  # capacity 8 is learned at once: need = 36 / (8 + 4) = 3
    step_at = clock.t
    run(scaler, clock, 5)
    assert reports.get(NS, NAME).active.reason == "Stabilizing"  # type: ignore[union-attr]
    run(scaler, clock, 5)
    writes = kube.writes()
    assert writes == [("scale", (3, "1", "vlm-operator-autoscaler"))]  # conditional on the version it read
    assert scaler.history[-1][1:] == ("ScaleUp", 1, 3)
    assert scaler.history[-1][0] - step_at <= 5 + 5  # the window, then the next poll
    assert kube.events[-1][:2] == ("Normal", "ScaleUp") and "1 → 3" in kube.events[-1][2]
    assert {c[0] for c in kube.calls} == {"get", "list", "get_scale", "scale"}


def test_a_gpu_quota_caps_the_scale_up_and_says_so() -> None:
    scaler, kube, sim, clock = make(vlmd_body(scaleUpWindowSeconds=5, targetQueueDepth=4), load=0)
    gpu = "requests.nvidia.com/gpu"
    kube.quotas = [{"metadata": {"name": "gpu-quota"}, "status": {"hard": {gpu: "2"}, "used": {gpu: "1"}}}]
    run(scaler, clock, 10)
    rep = reports.get(NS, NAME)
    assert rep is not None and rep.limited is not None and rep.limited.status == "False"
    sim.load = 36  # wants 3 (see above); the quota leaves room for one more 1-GPU pod
    run(scaler, clock, 10)
    assert kube.writes() == [("scale", (2, "1", "vlm-operator-autoscaler"))]
    rep = reports.get(NS, NAME)
    assert rep is not None and rep.limited is not None
    assert (rep.limited.status, rep.limited.reason) == ("True", "QuotaLimited")
    assert rep.limited.message.startswith("wants 3 replicas, namespace quota gpu-quota leaves room for 2 (1 of 2")
    kube.quotas[0]["status"]["used"][gpu] = "2"  # the new pod is counted
    run(scaler, clock, 60)
    assert len(kube.writes()) == 1 and kube.replicas == 2  # stays at the quota, no write loop
    assert reports.get(NS, NAME).limited.reason == "QuotaLimited"  # type: ignore[union-attr]
    kube.quotas = []  # the quota is raised (here: removed): it grows to what it wants
    run(scaler, clock, 60)
    assert kube.replicas == 3 and reports.get(NS, NAME).limited.status == "False"  # type: ignore[union-attr]


def test_steady_noisy_load_for_two_simulated_hours_gives_no_flaps() -> None:
    scaler, kube, sim, clock = make(
        vlmd_body(scaleUpWindowSeconds=30, scaleDownStabilizationSeconds=300, cooldownSeconds=120), load=20
    )
    rng = random.Random(7)
    seen: list[int] = []
    for _ in range(2 * 3600 // 5):
        sim.load = max(0.0, 20 + rng.gauss(0, 3))
        run(scaler, clock, 5)
        seen.append(kube.replicas)
    settled = seen[len(seen) // 10 :]
    assert flaps(seen) == 0
    assert len(set(settled)) == 1, sorted(set(settled))
    assert len(kube.writes()) <= 2


def test_load_stops_scale_down_after_the_window_one_step_per_cooldown_to_min() -> None:
    scaler, kube, sim, clock = make(
        vlmd_body(replicas=4, scaleDownStabilizationSeconds=60, cooldownSeconds=20), load=40
    )
    run(scaler, clock, 120)
    assert kube.replicas == 4
    sim.load = 0
    last_loaded_poll = clock.t - 5
    run(scaler, clock, 300)
    downs = [(t, before, after) for t, _, before, after in scaler.history if after < before]
    assert [(b, a) for _, b, a in downs] == [(4, 3), (3, 2), (2, 1)]
    assert downs[0][0] - last_loaded_poll >= 60
    assert all(t2 - t1 >= 20 for (t1, _, _), (t2, _, _) in itertools.pairwise(downs))
    assert reports.get(NS, NAME).active.reason == "AtMin"  # type: ignore[union-attr]


def test_missing_metrics_never_scale_down_and_report_which_pods() -> None:
    scaler, kube, sim, clock = make(vlmd_body(replicas=3, scaleDownStabilizationSeconds=30, cooldownSeconds=10))
    sim.down = {"127.100.0.2"}
    run(scaler, clock, 600)
    assert kube.writes() == []
    rep = reports.get(NS, NAME)
    assert rep is not None
    assert (rep.active.status, rep.active.reason) == ("False", "MissingMetrics")
    assert (rep.metrics.status, rep.metrics.reason) == ("False", "ScrapeFailed")
    assert "1 of 3 ready pods" in rep.metrics.message and f"{NAME}-1" in rep.metrics.message
    assert "refused" in rep.metrics.message
    sim.down = set()  # readings come back: the idle load shows, and it scales down
    run(scaler, clock, 60)
    assert kube.writes() and kube.replicas < 3


def test_wrong_model_name_reads_as_missing_not_idle() -> None:
    scaler, kube, _, clock = make(vlmd_body(replicas=2, scaleDownStabilizationSeconds=10, cooldownSeconds=5))

    async def other_model(url: str, timeout: float) -> tuple[int, str]:
        return 200, metrics_text(0, 0, model="another-model")

    scaler.fetch = other_model
    run(scaler, clock, 120)
    assert kube.writes() == []
    rep = reports.get(NS, NAME)
    assert rep is not None and rep.metrics.reason == "MetricAbsent" and MODEL in rep.metrics.message


def test_old_engine_kv_name_drives_the_ceiling() -> None:
    body = vlmd_body(targetQueueDepth=1000, maxKvCacheUsage=0.5, scaleUpWindowSeconds=5, maxReplicas=2)
    body["spec"]["engine"]["version"] = "0.6.3"
    scaler, kube, _, clock = make(body, load=8, old=True)  # 8 running of 8: KV usage 1.0 > 0.5
    run(scaler, clock, 15)
    assert kube.replicas == 2
    assert "KV usage 1.00 > ceiling 0.5" in kube.events[-1][2]
    assert scaler.last_decision is not None
    assert scaler.last_decision.signals.kv_usage == 0.5  # the load spread over 2 pods: 4 of 8 slots each

    assert scaler.last_decision.signals.kv_usage == 0.5  # the load spread over 2 pods: 4 of 8 slots each


def test_dry_run_never_writes_and_records_each_new_target_once() -> None:
    scaler, kube, _, clock = make(vlmd_body(dryRun=True, scaleUpWindowSeconds=5), load=60)
    run(scaler, clock, 120)
    assert kube.writes() == []
    rep = reports.get(NS, NAME)
    assert rep is not None and (rep.active.status, rep.active.reason) == ("False", "DryRun")
    assert "would ScaleUp" in rep.active.message
    dry = [e for e in kube.events if e[1] == "DryRun"]
    assert len(dry) == 1 and "would scale 1 → 3" in dry[0][2]


def test_a_concurrent_scale_wins_and_is_re_read() -> None:
    scaler, kube, _, clock = make(vlmd_body(scaleUpWindowSeconds=5), load=60)
    run(scaler, clock, 5)
    kube.conflict_next = True
    state_before = scaler.state
    clock.t += asyncio.run(scaler.poll_once())
    assert kube.replicas == 1 and scaler.state == state_before  # dropped, not half-applied
    run(scaler, clock, 5)
    assert kube.replicas > 1


def test_other_modes_are_left_alone() -> None:
    for mode in ("Manual", "External"):
        scaler, kube, _, clock = make(vlmd_body(mode=mode, replicas=9, maxReplicas=2), load=500)
        reports.put(NS, NAME, reports.source_failed("x", 0))
        run(scaler, clock, 60)
        assert kube.writes() == [] and reports.get(NS, NAME) is None
        assert {c[0] for c in kube.calls} == {"get"}


def test_a_failing_api_is_reported_and_the_loop_goes_on() -> None:
    scaler, kube, _, _ = make(vlmd_body())

    def broken(*_: Any, **__: Any) -> list[dict[str, Any]]:
        raise ApiException(status=500, reason="boom")

    kube.list = broken  # type: ignore[method-assign]
    interval = asyncio.run(scaler.poll_once())
    assert interval > 0
    rep = reports.get(NS, NAME)
    assert rep is not None and rep.active.status == "False" and "boom" in rep.active.message


def test_conditions_change_triggers_one_reconcile_messages_do_not() -> None:
    scaler, _kube, sim, clock = make(vlmd_body(scaleUpWindowSeconds=5), load=2)
    calls: list[float] = []

    async def on_change() -> None:
        calls.append(clock.t)

    scaler.on_change = on_change
    run(scaler, clock, 30)
    assert len(calls) == 1  # the first report
    assert reports.get(NS, NAME).active.reason == "Hold"  # type: ignore[union-attr]
    msg = reports.get(NS, NAME).active.message  # type: ignore[union-attr]
    sim.load = 3  # the message moves, the reason does not
    run(scaler, clock, 30)
    assert len(calls) == 1
    assert reports.get(NS, NAME).active.message != msg  # type: ignore[union-attr]


def test_prometheus_source_rebases_wall_clock_sample_times() -> None:
    body = vlmd_body(metrics={"type": "Prometheus", "prometheusURL": "http://prom:9090"}, replicas=2)
    scaler, _, _, clock = make(body)
    asked: list[str] = []

    async def prom(url: str, timeout: float) -> tuple[int, str]:
        asked.append(url)
        wall = clock.t + 1.7e9
        result = [
            {"metric": {"__name__": n, "namespace": NS, "pod": f"{NAME}-{i}", "model_name": MODEL}, "value": [wall, v]}
            for i in range(2)
            for n, v in (("vllm:num_requests_waiting", "3"), ("vllm:num_requests_running", "8"))
        ]
        return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})

    scaler.fetch = prom
    asyncio.run(scaler.poll_once())
    assert asked and asked[0].startswith("http://prom:9090/api/v1/query?query=")
    assert "qwen-0" in urllib.request.unquote(asked[0])
    rep = reports.get(NS, NAME)
    assert rep is not None and rep.metrics.reason == "AllPodsReporting", rep
    assert scaler.last_decision is not None and scaler.last_decision.signals.waiting == 6

    async def prom_down(url: str, timeout: float) -> tuple[int, str]:
        raise ConnectionRefusedError("prom:9090 refused")

    scaler.fetch = prom_down
    asyncio.run(scaler.poll_once())
    rep = reports.get(NS, NAME)
    assert rep is not None and rep.metrics.reason == "QueryFailed" and "refused" in rep.metrics.message


# --- pieces --------------------------------------------------------------------------------------------------------


def test_pod_ready_and_served_model_name() -> None:
    assert pod_ready(pod(0)) and not pod_ready(pod(0, ready=False))
    terminating = pod(0)
    terminating["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert not pod_ready(terminating)
    assert served_model_name(pod(0)) == MODEL
    plain = {"spec": {"containers": [{"command": ["vllm", "serve", "org/model", "--port", "8000"]}]}}
    assert served_model_name(plain) == "org/model"
    eq = {"spec": {"containers": [{"args": ["--model=org/m", "--served-model-name=a"]}]}}
    assert served_model_name(eq) == "a"
    assert served_model_name({"spec": {}}) is None


def decision(reason: Reason, signals: Signals, message: str = "m") -> Decision:
    return Decision(2, 2, reason, message, PolicyState(), signals)


def test_report_maps_decisions_to_two_conditions() -> None:
    ok = reports.report(decision(Reason.HOLD, Signals(ready=2, fresh=2)))
    assert (ok.active.status, ok.active.reason) == ("True", "Hold")
    assert (ok.metrics.status, ok.metrics.reason, ok.metrics.message) == (
        "True",
        "AllPodsReporting",
        "2 of 2 ready pods report",
    )
    missing = (MissingSample("p-1", "Stale", "sample is 30s old"),)
    bad = reports.report(decision(Reason.MISSING_METRICS, Signals(ready=2, fresh=1, missing=missing)))
    assert (bad.active.status, bad.metrics.status, bad.metrics.reason) == ("False", "False", "Stale")
    assert "p-1: Stale (sample is 30s old)" in bad.metrics.message
    none = reports.report(decision(Reason.PODS_STARTING, Signals()))
    assert (none.active.status, none.metrics.status, none.metrics.reason) == ("True", "Unknown", "NoReadyPods")
    long = reports.report(decision(Reason.HOLD, Signals(ready=1, fresh=1), message="x" * 5000))
    assert len(long.active.message) == reports.MESSAGE_LIMIT
    assert ok.key() != bad.key()
    assert EngineSample  # the sample type the signals are built from


def _obs(scaling: Any, prev: tuple[dict[str, Any], ...] = ()) -> conditions.Observed:
    return conditions.Observed(
        generation=1,
        desired_replicas=1,
        fit=conditions.FitResult("Fits", "fits"),
        deployment_status={"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1},
        deployment_generation=1,
        previous_conditions=prev,
        scaling=scaling,
    )


def test_status_shows_the_scaling_conditions_only_in_internal_mode() -> None:
    types = lambda st: [c["type"] for c in st["conditions"]]  # noqa: E731
    assert "ScalingActive" not in types(conditions.compute_status(_obs(None), "t1"))
    rep = reports.report(decision(Reason.SCALE_UP, Signals(ready=1, fresh=1), "1 → 3"))
    st = conditions.compute_status(_obs(tuple((c.type, c.status, c.reason, c.message) for c in rep.conditions)), "t1")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["ScalingActive"]["reason"] == "ScaleUp" and conds["ScalingActive"]["message"] == "1 → 3"
    assert conds["MetricsAvailable"]["status"] == "True" and conds["MetricsAvailable"]["lastTransitionTime"] == "t1"
    # before the autoscaler's first poll (an operator restart), status keeps what it showed
    kept = conditions.compute_status(_obs((), prev=tuple(st["conditions"])), "t2")
    assert {c["type"]: c for c in kept["conditions"]}["ScalingActive"] == conds["ScalingActive"]
    assert "ScalingActive" not in types(conditions.compute_status(_obs((), prev=()), "t2"))


# --- operator metrics ---------------------------------------------------------------------------------------------


def _exposition() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    text = generate_latest(op_metrics.REGISTRY).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_operator_metrics_record_and_forget() -> None:
    ns, name = "m-ns", "m-obj"
    key = (("name", name), ("namespace", ns))
    op_metrics.observe_object(ns, name, desired=3, status={"replicas": 2, "readyReplicas": 1}, verdict="Tight")
    op_metrics.observe_decision(ns, name, reason="ScaleUp", recommended=3, waiting=7, running=16, missing=0)
    op_metrics.observe_scale_write(ns, name, before=1, after=3)
    with pytest.raises(RuntimeError), op_metrics.reconcile_timer(ns, name):
        raise RuntimeError("boom")
    m = _exposition()
    assert m[("vlm_operator_desired_replicas", key)] == 3
    assert m[("vlm_operator_current_replicas", key)] == 2
    assert m[("vlm_operator_ready_replicas", key)] == 1
    assert m[("vlm_operator_fit_verdict", tuple(sorted((*key, ("verdict", "Tight")))))] == 1
    assert m[("vlm_operator_fit_verdict", tuple(sorted((*key, ("verdict", "Fits")))))] == 0
    assert m[("vlm_operator_scaling_decisions_total", tuple(sorted((*key, ("reason", "ScaleUp")))))] == 1
    assert m[("vlm_operator_scale_writes_total", tuple(sorted((*key, ("direction", "up")))))] == 1
    assert m[("vlm_operator_autoscaler_queue_waiting", key)] == 7
    assert m[("vlm_operator_reconcile_errors_total", tuple(sorted((*key, ("type", "RuntimeError")))))] == 1
    assert m[("vlm_operator_reconcile_duration_seconds_count", ())] >= 1
    op_metrics.forget(ns, name)
    assert not [k for k in _exposition() if ("name", name) in k[1]]


def test_metrics_server_off_on_port_zero_and_survives_a_busy_port() -> None:
    import socket

    assert op_metrics.serve(0) is False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert op_metrics.serve(s.getsockname()[1]) is False  # logged, not raised
