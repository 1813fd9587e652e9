"""The built-in autoscaler against the real local control plane, with a vLLM simulator on each pod's loopback IP.

The operator runs as a subprocess (the ``operator`` fixture of test_operator), ``vlmctl simulate-pods`` serves a
simulator on every pod annotated ``sim.vlmops.io/simulator: "true"`` and marks it Ready once it answers ``/health``,
and the load is a bounded set of closed-loop clients sending tiny multimodal chat requests to the ready pods by pod IP.
Every load stops by itself; only loopback traffic. Short windows in the specs keep each test under a minute or two.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import (
    Operator,
    apply,
    condition,
    free_port,
    sample,
    vlmd,
    wait_condition,
    wait_ready,
)
from tests.integration.simulated import SimWatcher
from tests.integration.workloads import SIM, SLOW_SIM, Timeline, internal, load
from vlm_operator.kube import Kube
from vlm_operator.render import objects

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.timeout(300)]


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module", autouse=True)
def metrics_port() -> Iterator[int]:
    """The operator (started by the ``operator`` fixture, after this one) serves its metrics on a free port."""
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLM_OPERATOR_METRICS_PORT", str(port))
        yield port


@pytest.fixture
def kube(cluster: Cluster) -> Kube:
    return Kube(cluster.api_client)


def events(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("events", "-n", ns)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "VLMDeployment"]


def operator_metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with _OPENER.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def replicas_managers(cluster: Cluster, ns: str, name: str) -> list[str]:
    """The field managers that own spec.scaling.replicas (kubectl hides managedFields unless asked)."""
    obj = cluster.get_json("vlmd", name, "-n", ns, "--show-managed-fields")
    return [
        m["manager"]
        for m in obj["metadata"]["managedFields"]
        if "f:replicas" in m.get("fieldsV1", {}).get("f:spec", {}).get("f:scaling", {})
    ]


def test_load_step_scales_up_fast_then_down_slowly_one_step_at_a_time_to_min(
    cluster: Cluster, namespace: str, operator: Operator, sims: SimWatcher, kube: Kube, metrics_port: int
) -> None:
    poll, down_window, cooldown = 1, 8, 4
    doc = internal(
        namespace,
        annotations=SLOW_SIM,
        replicas=1,
        minReplicas=1,
        maxReplicas=3,
        targetQueueDepth=2,
        scaleUpWindowSeconds=1,
        scaleUpMaxStep=2,
        scaleDownStabilizationSeconds=down_window,
        cooldownSeconds=cooldown,
    )
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    wait_condition(cluster, namespace, name, "MetricsAvailable", "True", "AllPodsReporting")
    obj = wait_condition(cluster, namespace, name, "ScalingActive", "True", "AtMin")
    assert "0 waiting + 0 running on 1 pods" in condition(obj, "ScalingActive")["message"]

    timeline = Timeline(kube, namespace, name)
    try:
        # --- load step: 12 clients against 1 pod that runs 2 at a time ---------------------------------------------
        burst = load(kube, namespace, name, clients=12, seconds=30)
        t0 = burst.started
        reacted = wait_until(
            lambda: timeline.first(lambda r, c: c.get("ScalingActive", ("", ""))[1] != "AtMin", since=t0),
            "the first decision on the load",
            timeout=20,
            interval=0.1,
        )
        # one poll interval, plus the reconcile that writes the condition and this test's 0.2 s sampling
        assert reacted - t0 <= poll + 1.5, f"first decision {reacted - t0:.1f}s after the step"
        up = wait_until(lambda: timeline.first(lambda r, c: r > 1, since=t0), "a scale-up", timeout=20, interval=0.1)
        assert up - t0 <= 1 + 2 * poll + 1.5, f"scale-up {up - t0:.1f}s after the step (window 1s, poll {poll}s)"

        # the new pods are created, and become Ready once their simulators answer; need = 12 / (2 running + 2
        # waiting) = 3 replicas, which the step of 2 reaches at once
        wait_until(
            lambda: (
                (o := cluster.get_json("vlmd", name, "-n", namespace))["status"].get("readyReplicas") == 3
                and o["spec"]["scaling"]["replicas"] == 3
            ),
            "3 ready replicas",
            timeout=40,
        )
        ups = [r for _, r in timeline.replicas()]
        assert ups == sorted(ups) and ups[-1] == 3, ups
        pods = cluster.get_json("pods", "-n", namespace, "-l", objects.selector_string(name))["items"]
        assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 3

        # --- steady load on 3 pods: no change of replicas until it stops ------------------------------------------
        steady_from = time.monotonic()
        burst.join()
        assert burst.ended - steady_from >= 5, "the steady phase was too short to mean anything"
        assert burst.ok > 50, (burst.ok, burst.failed)
        steady = [r for t, r in timeline.replicas() if steady_from <= t <= burst.ended]
        assert steady == [], f"replicas changed under steady load: {timeline.replicas()}"

        # --- load stops: down after the stabilization window, one replica per cooldown, to minReplicas -------------
        wait_until(lambda: timeline.replicas()[-1][1] == 1, "the scale-down to minReplicas", timeout=60)
        time.sleep(2 * poll + 1)
        seq = timeline.replicas()
        downs = [(t, r) for t, r in seq if t > burst.ended]
        assert [r for _, r in downs] == [2, 1], seq
        # the load is at full strength until its deadline, so 3 was recommended within one poll of it
        assert downs[0][0] - burst.deadline >= down_window - poll - 0.3, (seq, burst.deadline)
        assert downs[1][0] - downs[0][0] >= cooldown - 0.5, seq
        assert [r for _, r in seq] == [1, 3, 2, 1], seq  # one step up, then down one at a time: no flap
    finally:
        timeline.stop()

    obj = wait_condition(cluster, namespace, name, "ScalingActive", "True", "AtMin")
    wait_until(
        lambda: cluster.get_json("vlmd", name, "-n", namespace)["status"].get("replicas") == 1, "1 pod left", timeout=60
    )
    reasons = [e["reason"] for e in events(cluster, namespace, name)]
    assert "ScaleUp" in reasons and reasons.count("ScaleDown") >= 1, reasons

    # written through /scale by the autoscaler's field manager, and counted in the operator's metrics
    managers = replicas_managers(cluster, namespace, name)
    assert "vlm-operator-autoscaler" in managers, managers
    m = operator_metrics(metrics_port)
    key = (("name", name), ("namespace", namespace))
    assert m[("vlm_operator_scaling_decisions_total", tuple(sorted((*key, ("reason", "ScaleUp")))))] >= 1
    assert m[("vlm_operator_scaling_decisions_total", tuple(sorted((*key, ("reason", "ScaleDown")))))] == 2
    assert m[("vlm_operator_scale_writes_total", tuple(sorted((*key, ("direction", "down")))))] == 2
    assert m[("vlm_operator_desired_replicas", key)] == 1
    assert m[("vlm_operator_fit_verdict", tuple(sorted((*key, ("verdict", "Fits")))))] == 1
    assert m[("vlm_operator_reconcile_duration_seconds_count", ())] > 0


def test_missing_metrics_never_scale_down_and_the_condition_says_why(
    cluster: Cluster, namespace: str, operator: Operator, sims: SimWatcher, kube: Kube
) -> None:
    # The simulators serve another model name: every pod's vLLM series lack model_name="llava-1.5-7b".
    annotations = {**SLOW_SIM, SIM + "model-name": "not-the-served-model"}
    doc = internal(
        namespace,
        annotations=annotations,
        replicas=2,
        minReplicas=1,
        maxReplicas=3,
        scaleDownStabilizationSeconds=2,
        cooldownSeconds=1,
    )
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    wait_condition(cluster, namespace, name, "MetricsAvailable", "False", "MetricAbsent")

    def both_pods_read() -> dict[str, Any] | None:
        # the condition may first be set while the second pod still starts ("1 of 1 ready pods ...")
        obj = vlmd(cluster, namespace, name)
        c = condition(obj, "MetricsAvailable")
        return obj if c and c["reason"] == "MetricAbsent" and "2 of 2 ready pods" in c["message"] else None

    obj = wait_until(both_pods_read, "MetricsAvailable to name both ready pods", timeout=60, interval=0.3)
    msg = condition(obj, "MetricsAvailable")["message"]
    assert "2 of 2 ready pods without a usable reading" in msg and "llava-1.5-7b" in msg, msg
    assert condition(obj, "ScalingActive")["status"] == "False"
    assert condition(obj, "ScalingActive")["reason"] == "MissingMetrics"

    # idle pods, a short window: with readings this would be down to 1 within ~4 s; without them it never is
    timeline = Timeline(kube, namespace, name)
    try:
        time.sleep(8)
    finally:
        timeline.stop()
    assert {r for _, r in timeline.replicas()} == {2}
    assert condition(timeline.latest(), "ScalingActive")["reason"] == "MissingMetrics"
    reasons = [e["reason"] for e in events(cluster, namespace, name)]
    assert "MissingMetrics" in reasons and "ScaleDown" not in reasons, reasons  # the condition's transition event


def test_old_engine_version_scales_on_the_old_kv_metric_name(
    cluster: Cluster, namespace: str, operator: Operator, sims: SimWatcher, kube: Kube
) -> None:
    # vLLM 0.6.3: V0 engine, `vllm:gpu_cache_usage_perc`, no `engine` label. The queue target is out of reach, so only
    # the KV-usage ceiling can ask for a second replica: 2 running requests of ~600 tokens fill 76 % of 100 blocks.
    annotations = {**SLOW_SIM, SIM + "image-tokens": "576", SIM + "num-gpu-blocks": "100"}
    doc = internal(
        namespace,
        annotations=annotations,
        replicas=1,
        minReplicas=1,
        maxReplicas=2,
        targetQueueDepth=1000,
        maxKvCacheUsage=0.5,
        scaleUpWindowSeconds=1,
    )
    doc["spec"]["engine"]["version"] = "0.6.3"
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    wait_condition(cluster, namespace, name, "MetricsAvailable", "True")
    pod = cluster.get_json("pods", "-n", namespace, "-l", objects.selector_string(name))["items"][0]
    assert pod["spec"]["containers"][0]["image"].endswith(":v0.6.3")
    with _OPENER.open(f"http://{pod['status']['podIP']}:8000/metrics", timeout=5) as resp:
        names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
    assert "vllm:gpu_cache_usage_perc" in names and "vllm:kv_cache_usage_perc" not in names

    timeline = Timeline(kube, namespace, name)
    try:
        burst = load(kube, namespace, name, clients=4, seconds=12)
        wait_until(lambda: timeline.first(lambda r, c: r == 2), "a scale-up on KV usage", timeout=20, interval=0.2)
        burst.join()
    finally:
        timeline.stop()
    up = next(e for e in events(cluster, namespace, name) if e["reason"] == "ScaleUp")
    assert "KV usage" in up["message"] and "> ceiling 0.5" in up["message"], up["message"]


def test_external_mode_follows_kubectl_scale_and_never_writes_replicas(
    cluster: Cluster, namespace: str, operator: Operator, sims: SimWatcher, kube: Kube
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    # maxReplicas 2: the Internal policy would pull 3 back to 2 at once; in External mode 3 stands
    doc["spec"]["scaling"] = {"mode": "External", "replicas": 1, "minReplicas": 1, "maxReplicas": 2}
    doc["spec"]["podTemplate"] = {"annotations": SLOW_SIM}
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)

    # the same /scale path an HPA or KEDA writes
    cluster.kubectl("scale", f"vlmd/{name}", "-n", namespace, "--replicas=3")
    wait_until(
        lambda: cluster.get_json("deployment", name, "-n", namespace)["spec"]["replicas"] == 3,
        "the Deployment to follow /scale",
    )
    obj = wait_ready(cluster, namespace, name, timeout=60)
    assert obj["status"]["replicas"] == obj["status"]["readyReplicas"] == 3
    raw = cluster.kubectl(
        "get", "--raw", f"/apis/vlmops.io/v1alpha1/namespaces/{namespace}/vlmdeployments/{name}/scale"
    )
    scale = json.loads(raw.stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == objects.selector_string(name)

    timeline = Timeline(kube, namespace, name)
    try:
        time.sleep(7)  # two drift resyncs of the operator, and what would be several autoscaler polls
    finally:
        timeline.stop()
    assert {r for _, r in timeline.replicas()} == {3}
    obj = cluster.get_json("vlmd", name, "-n", namespace)
    assert not condition(obj, "ScalingActive") and not condition(obj, "MetricsAvailable")
    owners = replicas_managers(cluster, namespace, name)
    assert owners and not any(m.startswith("vlm-operator") for m in owners), owners

    cluster.kubectl("scale", f"vlmd/{name}", "-n", namespace, "--replicas=1")
    wait_until(
        lambda: cluster.get_json("deployment", name, "-n", namespace)["spec"]["replicas"] == 1,
        "the Deployment to follow /scale down",
    )
    obj = wait_until(
        lambda: (o := cluster.get_json("vlmd", name, "-n", namespace))["status"].get("replicas") == 1 and o,
        "one replica left",
        timeout=60,
    )
    assert obj["spec"]["scaling"]["replicas"] == 1


def test_dry_run_records_the_decision_without_acting_until_turned_off(
    cluster: Cluster, namespace: str, operator: Operator, sims: SimWatcher
) -> None:
    # 3 replicas above maxReplicas 2: the policy corrects that at once, unless it is a dry run
    doc = internal(namespace, annotations=SLOW_SIM, replicas=3, minReplicas=1, maxReplicas=2, dryRun=True)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    obj = wait_condition(cluster, namespace, name, "ScalingActive", "False", "DryRun")
    assert "would ScaleDown" in condition(obj, "ScalingActive")["message"]
    wait_ready(cluster, namespace, name)
    time.sleep(3)
    assert cluster.get_json("vlmd", name, "-n", namespace)["spec"]["scaling"]["replicas"] == 3
    # the autoscaler's event (the condition's transition is recorded as well, under the same reason)
    dry = [e for e in events(cluster, namespace, name) if e["reason"] == "DryRun" and "would scale" in e["message"]]
    assert dry and "would scale 3 → 2" in dry[0]["message"], dry

    patch = '{"spec":{"scaling":{"dryRun":false}}}'
    cluster.kubectl("patch", "vlmd", name, "-n", namespace, "--type=merge", "-p", patch)
    wait_until(
        lambda: cluster.get_json("vlmd", name, "-n", namespace)["spec"]["scaling"]["replicas"] == 2,
        "the correction once dryRun is off",
        timeout=30,
    )


def test_prometheus_source_scales_up(
    cluster: Cluster,
    namespace: str,
    operator: Operator,
    sims: SimWatcher,
    kube: Kube,
    prometheus_port: int | None,
) -> None:
    if prometheus_port is None:
        pytest.skip("no prometheus binary: bash hack/fetch-prometheus.sh")
    doc = internal(
        namespace,
        annotations=SLOW_SIM,
        replicas=1,
        minReplicas=1,
        maxReplicas=2,
        targetQueueDepth=2,
        scaleUpWindowSeconds=1,
        metrics={"type": "Prometheus", "prometheusURL": f"http://127.0.0.1:{prometheus_port}"},
    )
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    # Prometheus scrapes every second through file-based discovery of the pod IPs
    wait_condition(cluster, namespace, name, "MetricsAvailable", "True", "AllPodsReporting")
    timeline = Timeline(kube, namespace, name)
    try:
        burst = load(kube, namespace, name, clients=10, seconds=12)
        wait_until(lambda: timeline.first(lambda r, c: r == 2), "a scale-up read from Prometheus", timeout=20)
        burst.join()
    finally:
        timeline.stop()
    up = next(e for e in events(cluster, namespace, name) if e["reason"] == "ScaleUp")
    assert "waiting" in up["message"], up["message"]
