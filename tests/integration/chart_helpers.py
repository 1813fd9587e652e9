"""Rendering and installing the Helm chart with the pinned Helm (``vlmctl dev-cluster build --helm``)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import Operator, apply

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vlm-operator"


def run_helm(
    helm: Path, *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm), *args]
    if kubeconfig is not None:
        cmd += ["--kubeconfig", str(kubeconfig)]
    # Helm's own cache/config/data directories go beside the pinned binary, not into $HOME
    home = helm.parent / "home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)  # only an explicit --kubeconfig reaches a cluster
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}")
    return res


def template(
    helm: Path,
    release: str = "vlm-operator",
    namespace: str = "vlm-system",
    values: dict[str, Any] | None = None,
    chart: Path = CHART,
    extra: Sequence[str] = (),
) -> str:
    args = ["template", release, str(chart), "--namespace", namespace, *extra]
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return run_helm(helm, *args).stdout


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def apply_docs(cluster: Cluster, items: list[dict[str, Any]]) -> None:
    apply(cluster, items, "--server-side")


WEBHOOK_CONFIGURATION = "vlm-operator.vlmops.io"


def ca_bundle(cluster: Cluster) -> str:
    res = cluster.kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, "-o", "json", check=False)
    if res.returncode != 0:
        return ""
    hooks = json.loads(res.stdout).get("webhooks") or [{}]
    return str(hooks[0].get("clientConfig", {}).get("caBundle") or "")


@contextmanager
def chart_operator(
    cluster: Cluster, log: Path, kubeconfig: Path, port: int, args: tuple[str, ...] = ()
) -> Iterator[Operator]:
    """The operator as a local process in the chart's mode: the chart made the webhook configuration (with
    ``webhook.url`` pointing at ``port`` on loopback) and the operator only patches its CA bundle."""
    before = ca_bundle(cluster)
    op = Operator(cluster, log, kubeconfig=kubeconfig, args=args, env={"VLM_OPERATOR_WEBHOOK_CONFIG": "chart"})
    op.port = port
    op.start()
    try:
        wait_until(
            lambda: (ca := ca_bundle(cluster)) and ca != before and op.proc is not None and op.proc.poll() is None,
            "the operator to patch the chart's webhook configuration with its CA",
            timeout=60,
        )
        yield op
    finally:
        op.stop()
