"""kstatus (the real ``sigs.k8s.io/cli-utils`` library, compiled from the Go module proxy) reads a VLMDeployment the
way Flux, kpt and ``kubectl apply --prune`` do: InProgress while it rolls out, Current once Ready, Failed with the
Degraded message when its pods crash-loop.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hack import build_kstatus

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import CRASH_LOOP, Operator, apply, condition, sample, vlmd, wait_condition, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


@pytest.fixture(scope="module")
def kstatus_bin() -> Path:
    return build_kstatus.ensure(log=lambda m: print(m, flush=True))


def kstatus(binary: Path, obj: dict[str, Any]) -> dict[str, Any]:
    return build_kstatus.compute(obj, binary)


def test_rollout_reads_in_progress_then_current(
    cluster: Cluster, namespace: str, operator: Operator, kstatus_bin: Path
) -> None:
    # a slow model load: the pods run for a while before they are Ready
    doc = sample(
        "llava-1.5-7b-l4.yaml", namespace, **{"spec.podTemplate.annotations": {"sim.vlmops.io/ready-after": "8s"}}
    )
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    seen: list[tuple[str, str]] = []

    def rolling_out() -> tuple[dict[str, Any], dict[str, Any]] | None:
        obj = vlmd(cluster, namespace, name)
        res = kstatus(kstatus_bin, obj)
        seen.append((res["status"], res["message"]))
        written = obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
        return (res, obj) if written and condition(obj, "Progressing").get("status") == "True" else None

    during, seen_obj = wait_until(rolling_out, "the operator to report the rollout", timeout=60, interval=0.3)
    print("kstatus while rolling out:", during, "seen:", sorted(set(seen)))
    assert during["status"] == "InProgress", during
    progressing = condition(seen_obj, "Progressing")
    assert during["message"] == progressing["message"] and during["message"], (during, progressing)
    assert during["conditions"][0]["type"] == "Reconciling"
    assert during["conditions"][0]["reason"] == progressing["reason"]

    obj = wait_ready(cluster, namespace, name)
    done = kstatus(kstatus_bin, obj)
    print("kstatus once Ready:", done)
    assert done["status"] == "Current", (done, obj["status"]["conditions"])
    # the fetch path (kubeconfig, as a poller reads it) agrees with the stdin path
    fetched = subprocess.run(
        [str(kstatus_bin), "-kubeconfig", str(cluster.kubeconfig), "-namespace", namespace, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(fetched.stdout)["status"] == "Current"
    # a spec change the operator has not seen yet reads InProgress (generation ahead of observedGeneration)
    ahead = {**obj, "metadata": {**obj["metadata"], "generation": obj["metadata"]["generation"] + 1}}
    assert kstatus(kstatus_bin, ahead)["status"] == "InProgress"


def test_crash_loop_reads_failed_with_the_degraded_message(
    cluster: Cluster, namespace: str, operator: Operator, kstatus_bin: Path
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.podTemplate.annotations": CRASH_LOOP})
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    obj = wait_condition(cluster, namespace, name, "Degraded", "True", timeout=90)
    degraded = condition(obj, "Degraded")
    res = kstatus(kstatus_bin, obj)
    print("kstatus while crash-looping:", res, "Degraded:", degraded)
    assert degraded["reason"] == "PodsFailing" and degraded["message"], degraded
    assert res["status"] == "Failed", (res, obj["status"]["conditions"])
    assert res["message"] == degraded["message"]
    assert condition(obj, "Ready")["status"] == "False"
