"""Helpers of the integration tests that run the operator: the operator subprocess, samples, apply, conditions.

Test modules import these from here, never from each other; the ``operator`` fixture lives in ``conftest.py``.
``sample`` is :func:`tests.manifests.sample` (the one VLMDeployment builder), here too for the tests that use it with
a cluster."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cluster, wait_until
from tests.fakehub import FakeHub
from tests.manifests import ROOT
from tests.manifests import sample as sample  # re-exported

CRD_PATH = ROOT / "crds" / "vlmops.io_vlmdeployments.yaml"
DRIFT_SECONDS = 3
MUTATING = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Operator:
    """The operator subprocess, authenticated by ``kubeconfig`` (the cluster admin's when None), with the Hub
    resolver pointed at ``hub`` when one is given. ``args`` are added to ``vlmctl operator run`` (``--no-webhook``,
    ``--namespace``); ``env`` is added to its environment; ``prelude`` is Python run in the operator process before the
    package is imported (e.g. to stand in for a newer operator release with another default)."""

    def __init__(
        self,
        cluster: Cluster,
        log: Path,
        hub: FakeHub | None = None,
        kubeconfig: Path | None = None,
        args: Sequence[str] = (),
        prelude: str = "",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.prelude = prelude
        self.cluster = cluster
        self.log = log
        self.hub = hub
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.port = port or free_port()
        self.args = list(args)  # extra `vlmctl operator run` arguments
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "VLM_OPERATOR_DRIFT_SECONDS": str(DRIFT_SECONDS),
            **self.extra_env,
        }
        env.pop("VLM_OPERATOR_WEBHOOK_SERVICE", None)  # the local API server dials the webhook by URL on loopback
        if self.hub is not None:  # the Hub resolver on, against a fake Hub on loopback (models outside the catalog)
            env |= {
                "VLM_OPERATOR_HUB": "1",
                "HF_ENDPOINT": self.hub.endpoint,
                "HF_HOME": str(self.log.parent / "hf-home"),
                "VLM_OPERATOR_HUB_CACHE": str(self.log.parent / "hub-cache"),
            }
        with self.log.open("ab") as out:
            run = ["operator", "run", "--webhook-port", str(self.port), *self.args]
            code = f"{self.prelude}\nfrom vlm_operator.cli import main; raise SystemExit(main({run!r}))"
            launcher = [sys.executable, "-c", code] if self.prelude else [sys.executable, "-m", "vlm_operator", *run]
            self.proc = subprocess.Popen(
                launcher,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


#: The ValidatingWebhookConfiguration the operator registers (``handlers.WEBHOOK_NAME``).
WEBHOOK = "vlm-operator.vlmops.io"


def webhook_registered(cluster: Cluster) -> bool:
    return cluster.exists("validatingwebhookconfiguration", WEBHOOK)


def wait_webhook(cluster: Cluster, op: Operator | None = None, timeout: float = 60) -> None:
    """Wait until the operator registered its webhook (and, with ``op``, is still running)."""
    wait_until(
        lambda: webhook_registered(cluster) and (op is None or (op.proc is not None and op.proc.poll() is None)),
        "the operator to register its webhook",
        timeout=timeout,
    )


def install_crds_and_peering(cluster: Cluster) -> None:
    files = ("vlmops.io_vlmdeployments", "kopf-peering", "vlmops.io_vlmplatformprofiles", "vlmops.io_vlmbatchjobs")
    cluster.kubectl("apply", "--server-side", *(a for f in files for a in ("-f", str(ROOT / "crds" / f"{f}.yaml"))))
    crds = (
        "vlmdeployments.vlmops.io",
        "clusterkopfpeerings.kopf.dev",
        "vlmplatformprofiles.vlmops.io",
        "vlmbatchjobs.vlmops.io",
    )
    cluster.kubectl("wait", "--for=condition=Established", *(f"crd/{c}" for c in crds), "--timeout=60s")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "vlm-operator"}}
    apply(cluster, peering)


def apply(
    cluster: Cluster,
    doc: dict[str, Any] | Sequence[dict[str, Any]],
    *extra: str,
    namespace: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``kubectl apply`` of one object or a list of them (in ``namespace`` when a manifest names none), with ``extra``
    arguments (``--server-side``, ``--dry-run=server``); with ``check`` a refusal fails the test with the API server's
    words. The one ``apply`` of the tests."""
    ns = ("-n", namespace) if namespace else ()
    text = yaml.safe_dump(doc) if isinstance(doc, dict) else yaml.safe_dump_all(list(doc))
    return cluster.kubectl("apply", *ns, *extra, "-f", "-", input=text, check=check)


def vlmd(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.get_json("vlmd", name, "-n", ns)
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def wait_ready(cluster: Cluster, ns: str, name: str, timeout: float = 120) -> dict[str, Any]:
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", f"vlmd/{name}", f"--timeout={int(timeout)}s", timeout=timeout + 10
    )
    return vlmd(cluster, ns, name)


def container_cmd(cluster: Cluster, ns: str, name: str) -> list[str]:
    dep = cluster.get_json("deployment", name, "-n", ns)
    cmd: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    return cmd


def flag_value(cmd: list[str], flag: str) -> str | None:
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


#: Pod annotations that make a simulated pod crash 1 s after it starts, again and again (a KWOK stage).
CRASH_LOOP = {"sim.vlmops.io/behavior": "crashloop", "sim.vlmops.io/crash-after": "1s"}


def wait_condition(
    cluster: Cluster, ns: str, name: str, type_: str, status: str, reason: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """The VLMDeployment once its ``type_`` condition has ``status`` (and ``reason``, when given)."""

    def check() -> dict[str, Any] | None:
        obj = vlmd(cluster, ns, name)
        c = condition(obj, type_)
        return obj if c and c["status"] == status and (reason is None or c["reason"] == reason) else None

    found: dict[str, Any] = wait_until(check, f"{type_}={status} ({reason})", timeout=timeout, interval=0.3)
    return found


def assert_too_wide_is_refused(cluster: Cluster, namespace: str) -> None:
    """The webhook reads the nodes: TP 8 of L4s, above the largest L4 node (4 GPUs), is refused with that figure."""
    too_wide = sample("llava-1.5-7b-l4.yaml", namespace, **{"metadata.name": "too-wide"})
    too_wide["spec"]["engine"]["tensorParallelSize"] = 8
    res = apply(cluster, too_wide, check=False)
    assert res.returncode != 0 and "largest NVIDIA-L4 node has 4" in res.stderr, res.stderr


def operator_events_after_a_rollout(
    cluster: Cluster, doc: dict[str, Any], timeout: float = 180
) -> list[dict[str, Any]]:
    """Change ``doc``'s maxModelLen so that the operator rolls its Deployment out, and return the events the operator
    wrote for the object. A routine create records no event (events are kept for what a person acts on), so a test
    that proves the operator's right to write events needs a rollout."""
    ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
    changed = copy.deepcopy(doc)
    changed["spec"]["engine"]["maxModelLen"] = 2048
    apply(cluster, changed)

    def ours() -> list[dict[str, Any]]:
        items = cluster.get_json("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
        return [e for e in items if e.get("reportingComponent") == "vlm-operator"]

    found: list[dict[str, Any]] = wait_until(ours, f"an operator event for the rollout of {ns}/{name}", timeout)
    return found
