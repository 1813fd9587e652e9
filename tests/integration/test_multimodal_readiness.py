"""``spec.readiness.multimodalProbe`` on the real local control plane, with a vLLM simulator on each pod's IP.

The operator runs as a subprocess (the ``operator`` fixture of tests/integration/conftest.py), and
``vlmctl simulate-pods`` plays the kubelet (it honours readiness gates: Ready only when ContainersReady and every
gate condition is True). One VLMDeployment's simulator answers image requests and turns Ready through the gate; the
other's rejects them (its image needs more tokens than its max model length), so its pod's containers are ready but
the pod is not, and the VLMDeployment's status says why. Only loopback traffic; every wait is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import Operator, apply, condition, sample, vlmd, wait_ready
from tests.integration.simulated import SimWatcher
from vlm_operator.api import MULTIMODAL_READY_CONDITION
from vlm_operator.render import objects

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.timeout(300)]


SIM = "sim.vlmops.io/"


@pytest.fixture(scope="module", autouse=True)
def fast_readiness() -> Iterator[None]:
    """The operator (started by the ``operator`` fixture, after this one) checks gated pods every second."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLM_OPERATOR_READINESS_SECONDS", "1")
        yield


def gated(namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    doc["metadata"]["name"] = name
    doc["spec"]["readiness"] = {"multimodalProbe": True}
    doc["spec"]["podTemplate"] = {"annotations": {SIM + "simulator": "true", **annotations}}
    return doc


def pods(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", ns, "-l", objects.selector_string(name))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def cond(pod: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == type_), {})


def test_a_pod_that_answers_an_image_request_turns_ready_through_the_gate(
    cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    apply(cluster, gated(namespace, "mm-good", {}))
    obj = wait_ready(cluster, namespace, "mm-good", timeout=150)
    (pod,) = pods(cluster, namespace, "mm-good")
    assert pod["spec"]["readinessGates"] == [{"conditionType": MULTIMODAL_READY_CONDITION}]
    gate = cond(pod, MULTIMODAL_READY_CONDITION)
    assert gate["status"] == "True" and gate["reason"] == "SmokeProbePassed", gate
    assert cond(pod, "Ready")["status"] == "True"
    assert condition(obj, "Degraded")["status"] == "False"
    assert "multimodal probe of pod" in operator.output()


def test_a_pod_that_rejects_image_requests_stays_not_ready_and_status_says_why(
    cluster: Cluster, namespace: str, operator: Operator, watcher: SimWatcher
) -> None:
    # the simulator rejects any prompt over max-model-len with vLLM's 400; the image alone is 4096 tokens here
    apply(cluster, gated(namespace, "mm-bad", {SIM + "image-tokens": "4096", SIM + "max-model-len": "1024"}))

    def failed() -> dict[str, Any] | None:
        found = pods(cluster, namespace, "mm-bad")
        return found[0] if found and cond(found[0], MULTIMODAL_READY_CONDITION).get("status") == "False" else None

    pod = wait_until(failed, "the gate condition False", timeout=150)
    gate = cond(pod, MULTIMODAL_READY_CONDITION)
    assert gate["reason"] == "SmokeProbeFailed" and "maximum model length" in gate["message"], gate
    # the containers serve /health, but the pod is not Ready (what a Service's endpoints follow)
    name = pod["metadata"]["name"]

    def settled() -> dict[str, Any] | None:
        p = next((p for p in pods(cluster, namespace, "mm-bad") if p["metadata"]["name"] == name), None)
        return p if p and cond(p, "ContainersReady").get("status") == "True" else None

    pod = wait_until(settled, "the containers ready", timeout=30)
    assert cond(pod, "Ready")["status"] == "False" and cond(pod, "Ready").get("reason") == "ReadinessGatesNotReady"

    def degraded() -> dict[str, Any] | None:
        obj = vlmd(cluster, namespace, "mm-bad")
        return obj if condition(obj, "Degraded").get("reason") == "SmokeProbeFailed" else None

    obj = wait_until(degraded, "Degraded SmokeProbeFailed", timeout=60)
    message = condition(obj, "Degraded")["message"]
    assert name in message and "maximum model length" in message, message
    assert condition(obj, "Ready")["status"] == "False"
    # a failing pod is probed again (with backoff): the probe time moves on
    first = gate["lastProbeTime"]
    wait_until(
        lambda: any(
            cond(p, MULTIMODAL_READY_CONDITION).get("lastProbeTime") != first
            for p in pods(cluster, namespace, "mm-bad")
        ),
        "a second probe",
        timeout=30,
    )
