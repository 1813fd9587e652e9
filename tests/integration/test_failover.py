"""Two operator replicas with peering: distinct priorities, a tuned lifetime, one shared webhook certificate (from
one Secret) behind a loopback load balancer. The active replica is killed with SIGKILL; the standby takes over in
under 30 s (measured and printed). Then both are down: with failurePolicy Fail (the only policy the chart offers),
creates and updates are refused with "failed calling webhook" and deletes still go through.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import (
    WEBHOOK,
    Operator,
    apply,
    container_cmd,
    flag_value,
    free_port,
    install_crds_and_peering,
    sample,
    wait_ready,
)
from tests.integration.loopback_lb import LoopbackLB
from tests.integration.operator_helpers import probe
from vlm_operator import webhook_certs

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

LIFETIME = 10  # --peering-lifetime: the standby takes over at most this long after the active one's last keep-alive
TAKEOVER_LIMIT = 30.0


def shared_cert(cluster: Cluster, namespace: str, mount: Path) -> None:
    """One serving certificate in one Secret, 'mounted' (written out 0700/0600) where both replicas read it."""
    with tempfile.TemporaryDirectory() as made:
        webhook_certs.generate(Path(made), "127.0.0.1")
        cluster.kubectl(
            "create", "secret", "generic", "vlm-operator-webhook-cert", "-n", namespace,
            *(f"--from-file={f}={Path(made) / f}" for f in ("ca.crt", "tls.crt", "tls.key")),
        )  # fmt: skip
    secret = cluster.get_json("secret", "vlm-operator-webhook-cert", "-n", namespace)
    mount.mkdir(mode=0o700)
    for key, value in secret["data"].items():
        fd = os.open(mount / key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(value))


class Replica:
    def __init__(self, op: Operator, health: int, priority: int) -> None:
        self.op, self.health, self.priority = op, health, priority

    def phase(self) -> str:
        return str(probe(self.health, "/readyz")[1].get("peering", ""))


@pytest.fixture
def replicas(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[tuple[list[Replica], LoopbackLB]]:
    install_crds_and_peering(cluster)
    cluster.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    peering = f"p-{uuid.uuid4().hex[:8]}"
    obj = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": peering, "namespace": namespace}}
    apply(cluster, obj)
    mount = tmp_path / "webhook-cert"
    shared_cert(cluster, namespace, mount)
    ports = [free_port(), free_port()]
    out: list[Replica] = []
    with LoopbackLB(ports) as lb:
        try:
            for i, (port, priority) in enumerate(zip(ports, (100, 50), strict=True)):
                health = free_port()
                op = Operator(
                    cluster,
                    tmp_path / f"operator-{i}.log",
                    port=port,
                    args=[
                        "--namespace", namespace, "--peering", peering, "--peering-priority", str(priority),
                        "--peering-lifetime", str(LIFETIME), "--peering-check-interval", "0.5",
                        "--liveness", f"http://127.0.0.1:{health}/healthz",
                    ],
                    env={
                        "VLM_OPERATOR_WEBHOOK_CERT_DIR": str(mount),
                        "VLM_OPERATOR_WEBHOOK_URL": f"https://127.0.0.1:{lb.port}",
                    },
                )  # fmt: skip
                op.start()
                out.append(Replica(op, health, priority))
            yield out, lb
        finally:
            for r in out:
                r.op.stop()
            cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
            shutil.rmtree(mount, ignore_errors=True)


def test_standby_takes_over_after_sigkill_and_webhook_down_refuses_writes(
    cluster: Cluster, namespace: str, replicas: tuple[list[Replica], LoopbackLB]
) -> None:
    (active, standby), lb = replicas
    wait_until(lambda: active.phase() == "active" and standby.phase() == "standby", "active + standby", timeout=60)
    hook = cluster.get_json("validatingwebhookconfiguration", WEBHOOK)["webhooks"][0]["clientConfig"]
    assert hook["url"].startswith(f"https://127.0.0.1:{lb.port}/"), hook  # both register the load balancer

    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    wait_until(lambda: apply(cluster, doc, check=False).returncode == 0, "the webhook through the LB", timeout=60)
    wait_ready(cluster, namespace, name)
    # both replicas answer admission reviews with the shared certificate (the API server keeps one connection open,
    # so ask each replica directly, verifying it against the CA in the webhook configuration)
    for replica in (active, standby):
        review = admission_review(cluster, namespace, doc)
        answer = post_review(replica.op.port, hook, review)
        assert answer["response"]["uid"] == review["request"]["uid"] and answer["response"]["allowed"] is True
    doc["spec"]["engine"]["maxNumSeqs"] = 5
    apply(cluster, doc)
    wait_until(lambda: flag_value(container_cmd(cluster, namespace, name), "--max-num-seqs") == "5", "active acts")
    assert "Applied Deployment" in active.op.output() and "Applied Deployment" not in standby.op.output()

    # SIGKILL the active replica (no goodbye in the peering object), then change the spec
    assert active.op.proc is not None
    os.killpg(active.op.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    active.op.proc.wait(10)
    doc["spec"]["engine"]["maxNumSeqs"] = 7
    apply(cluster, doc)  # admitted by the standby through the load balancer
    wait_until(lambda: standby.phase() == "active", "the standby to take over", timeout=TAKEOVER_LIMIT + 30)
    took_over = time.monotonic() - killed
    wait_until(
        lambda: flag_value(container_cmd(cluster, namespace, name), "--max-num-seqs") == "7",
        "the new active replica to reconcile the change",
        timeout=TAKEOVER_LIMIT + 30,
    )
    converged = time.monotonic() - killed
    print(
        f"\nFAILOVER peering lifetime {LIFETIME}s: standby active {took_over:.1f}s after SIGKILL, "
        f"change reconciled {converged:.1f}s after SIGKILL (limit {TAKEOVER_LIMIT:.0f}s); "
        f"webhook calls per replica {dict(lb.served)}"
    )
    assert took_over < TAKEOVER_LIMIT and converged < TAKEOVER_LIMIT

    # both down: failurePolicy Fail refuses creates and updates of VLMDeployments; deletes are not intercepted
    standby.op.kill()
    doc["spec"]["engine"]["maxNumSeqs"] = 8
    res = apply(cluster, doc, check=False)
    assert res.returncode != 0 and "failed calling webhook" in res.stderr, res.stderr
    other = sample("phi-3.5-vision-crops.yaml", namespace)
    res = apply(cluster, other, check=False)
    assert res.returncode != 0 and "failed calling webhook" in res.stderr, res.stderr
    cluster.kubectl("delete", "vlmd", name, "-n", namespace, "--wait=false")  # DELETE is not intercepted
    gone_or_deleting = cluster.kubectl("get", "vlmd", name, "-n", namespace, "-o", "json", check=False)
    assert gone_or_deleting.returncode != 0 or json.loads(gone_or_deleting.stdout)["metadata"].get("deletionTimestamp")
    cluster.kubectl("create", "configmap", "unaffected", "-n", namespace)  # other kinds are not matched


def admission_review(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    obj = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "vlmops.io", "version": "v1alpha1", "kind": "VLMDeployment"},
            "resource": {"group": "vlmops.io", "version": "v1alpha1", "resource": "vlmdeployments"},
            "namespace": namespace,
            "name": doc["metadata"]["name"],
            "operation": "UPDATE",
            "userInfo": {"username": "test"},
            "object": obj,
            "oldObject": obj,
            "dryRun": False,
        },
    }


def post_review(port: int, hook: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
    ctx = ssl.create_default_context(cadata=base64.b64decode(hook["caBundle"]).decode())
    path = urllib.parse.urlsplit(hook["url"]).path
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, context=ctx, timeout=30) as rsp:
        answer: dict[str, Any] = json.loads(rsp.read())
        return answer
