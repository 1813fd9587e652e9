"""Helpers of the integration tests that run the operator: the operator subprocess, samples, apply, conditions.

Test modules import these from here, never from each other; the ``operator`` fixture lives in ``conftest.py``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cluster
from tests.fakehub import FakeHub

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "crds" / "samples"
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


def install_crds_and_peering(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmdeployments.yaml"))
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "kopf-peering.yaml"))
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmplatformprofiles.yaml"))
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmbatchjobs.yaml"))
    for crd in (
        "vlmdeployments.vlmops.io",
        "clusterkopfpeerings.kopf.dev",
        "vlmplatformprofiles.vlmops.io",
        "vlmbatchjobs.vlmops.io",
    ):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "vlm-operator"}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(peering))


def sample(name: str, namespace: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text())
    doc["metadata"] = {"name": doc["metadata"]["name"], "namespace": namespace}
    for path, value in overrides.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return doc


def apply(cluster: Cluster, doc: dict[str, Any], *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", *extra, "-f", "-", input=yaml.safe_dump(doc), check=check)


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


def manifest(name: str, spec: dict[str, Any]) -> str:
    """A VLMDeployment named ``name`` with ``spec``, as YAML for ``kubectl apply -f -``."""
    return yaml.safe_dump(
        {"apiVersion": "vlmops.io/v1alpha1", "kind": "VLMDeployment", "metadata": {"name": name}, "spec": spec}
    )
