"""Random-kill soak: the operator is SIGKILLed at random points while VLMDeployments are created, changed, scaled and
deleted, and restarted each time. After every restart the cluster must converge to the spec: each VLMDeployment
has exactly one Deployment (with the spec's --max-num-seqs and replicas), Service and PodDisruptionBudget, no child
is left without its owner, and deleted objects disappear (no stuck finalizer). The figures (kills, converge time
median and max) are printed.

CI runs a short version (``VLM_SOAK_OBJECTS`` 12, ``VLM_SOAK_KILLS`` 3); ``make soak`` runs 100 objects and 20 kills.
The operator runs ``--standalone`` here: a restarted replica with peering would first wait out its own dead
predecessor's keep-alive (``--peering-lifetime``), which tests/integration/test_failover.py measures separately.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import WEBHOOK, Operator, install_crds_and_peering, sample, wait_webhook
from vlm_operator.render import objects

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

OBJECTS = int(os.environ.get("VLM_SOAK_OBJECTS", "12"))
KILLS = int(os.environ.get("VLM_SOAK_KILLS", "3"))
SEED = int(os.environ.get("VLM_SOAK_SEED", str(int(time.time()))))
GROUP, VERSION, PLURAL = "vlmops.io", "v1alpha1", "vlmdeployments"


def retry(fn: Any, what: str, timeout: float = 60) -> Any:
    """Writes are refused while the webhook is down (failurePolicy Fail), and a loaded API server may answer 504: retry
    them, as a client would."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except ApiException as exc:
            if time.monotonic() > deadline or exc.status not in (500, 503, 504, 409, 429, 0):
                raise AssertionError(f"{what}: {exc.status} {exc.body}") from None
            time.sleep(0.3)


def flag(dep: dict[str, Any], name: str) -> str | None:
    cmd = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    return cmd[cmd.index(name) + 1] if name in cmd else None


def check(cluster: Cluster, ns: str, desired: dict[str, dict[str, int]]) -> list[str]:
    """What differs from the spec (empty when converged)."""
    apps = client.AppsV1Api(cluster.api_client)
    core = client.CoreV1Api(cluster.api_client)
    pol = client.PolicyV1Api(cluster.api_client)
    custom = client.CustomObjectsApi(cluster.api_client)
    sel = f"app.kubernetes.io/managed-by={objects.MANAGED_BY}"
    deps = cluster.api_client.sanitize_for_serialization(apps.list_namespaced_deployment(ns, label_selector=sel).items)
    svcs = [s.metadata.name for s in core.list_namespaced_service(ns, label_selector=sel).items]
    pdbs = [p.metadata.name for p in pol.list_namespaced_pod_disruption_budget(ns, label_selector=sel).items]
    vlmds = {
        o["metadata"]["name"]: o for o in custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    }
    diffs = []
    owners = [d["metadata"]["labels"].get(objects.LABEL_OWNER) for d in deps]
    for name in set(owners):
        if owners.count(name) > 1:
            diffs.append(f"duplicate Deployments for {name}")
    by_name = {d["metadata"]["name"]: d for d in deps}
    for name, want in desired.items():
        dep = by_name.get(name)
        if name not in vlmds:
            diffs.append(f"{name}: VLMDeployment missing")
        elif dep is None:
            diffs.append(f"{name}: no Deployment")
        elif flag(dep, "--max-num-seqs") != str(want["seqs"]) or dep["spec"]["replicas"] != want["replicas"]:
            diffs.append(f"{name}: Deployment not in step")
        if name not in svcs or name not in pdbs:
            diffs.append(f"{name}: Service or PDB missing")
    for name in set(by_name) | set(svcs) | set(pdbs) | set(vlmds):
        if name not in desired:
            diffs.append(f"{name}: left behind (orphan, or a deletion stuck on a finalizer)")
    return diffs


def test_random_kills_converge(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    install_crds_and_peering(cluster)
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    custom = client.CustomObjectsApi(cluster.api_client)
    op = Operator(cluster, tmp_path / "operator.log", args=["--standalone", "--namespace", namespace])
    base = sample("llava-1.5-7b-l4.yaml", namespace)
    desired: dict[str, dict[str, int]] = {}
    serial = 0

    def create() -> None:
        nonlocal serial
        name = f"s{serial}"
        serial += 1
        doc = {**base, "metadata": {"name": name, "namespace": namespace}}
        doc["spec"] = {**base["spec"], "engine": {**base["spec"]["engine"], "maxNumSeqs": 4}}
        retry(lambda: custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc), f"create {name}")
        desired[name] = {"seqs": 4, "replicas": 1}

    def change(name: str) -> None:
        seqs = rng.randint(1, 64)
        body = {"spec": {"engine": {"maxNumSeqs": seqs}}}
        retry(lambda: custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body), "change")
        desired[name]["seqs"] = seqs

    def scale(name: str) -> None:
        n = rng.randint(0, 2)
        body = {"spec": {"replicas": n}}
        retry(
            lambda: custom.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, name, body), "scale"
        )
        desired[name]["replicas"] = n

    def delete(name: str) -> None:
        retry(lambda: custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name), "delete")
        del desired[name]

    def random_op() -> None:
        if len(desired) < OBJECTS and (not desired or rng.random() < 0.5):
            create()
            return
        name = rng.choice(sorted(desired))
        rng.choice([change, change, scale, delete])(name)

    converge: list[float] = []
    settle: list[float] = []  # from the last change after the restart to convergence
    op.start()
    try:
        wait_webhook(cluster)
        for _ in range(OBJECTS):
            create()
        for _kill in range(KILLS):
            for _ in range(rng.randint(1, 2 * OBJECTS)):  # a random number of operations before the kill
                random_op()
            op.kill()  # SIGKILL, at a random point of the stream of changes
            restart = threading.Timer(rng.uniform(0.2, 3.0), op.start)  # back after a random pause
            restart.start()
            for _ in range(rng.randint(0, 5)):
                random_op()  # some are sent while it is down: the webhook refuses, the client retries
            restart.join()
            restarted = time.monotonic()  # converge time counts from the restart
            for _ in range(rng.randint(0, OBJECTS)):
                random_op()
            changed = time.monotonic()  # the last change was accepted (the webhook answers again once there is one)
            wait_until(lambda: not check(cluster, namespace, desired), "convergence after a kill", timeout=180)
            converge.append(time.monotonic() - restarted)
            settle.append(time.monotonic() - changed)
        final = check(cluster, namespace, desired)
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    log = op.output()
    # kopf's own words for a handler retry and for framework-error throttling (kopf/_core/actions/execution.py,
    # kopf/_core/actions/throttlers.py): how often each happened and with which delays
    retries = re.findall(r"will try again in ([0-9.]+) seconds", log)
    throttles = re.findall(r"Throttling for ([0-9.]+) seconds", log)
    print(
        f"\nSOAK seed {SEED}: {OBJECTS} objects, {serial} created in all, {KILLS} SIGKILLs; converge after restart "
        f"median {statistics.median(converge):.1f}s max {max(converge):.1f}s; duplicates/orphans/stuck: {len(final)}"
        f"\nSOAK converge times (s): {' '.join(f'{c:.1f}' for c in converge)}; of which after the last change: "
        f"{' '.join(f'{c:.1f}' for c in settle)} (median {statistics.median(settle):.1f}s max {max(settle):.1f}s)"
        f"\nSOAK handler retries {len(retries)} "
        f"(delays {sorted({float(d) for d in retries})}), throttled {len(throttles)} "
        f"(delays {sorted({float(d) for d in throttles})})"
    )
    assert final == []
    tracebacks = [m.start() for m in re.finditer("Traceback", log)]
    assert not tracebacks, "\n---\n".join(log[max(0, i - 300) : i + 2500] for i in tracebacks)
