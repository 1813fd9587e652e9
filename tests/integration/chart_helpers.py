"""Rendering and installing the Helm chart with the pinned Helm (``vlmctl dev-cluster build --helm``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vlm-operator"


def run_helm(
    helm: Path, *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm), *args]
    if kubeconfig is not None:
        cmd += ["--kubeconfig", str(kubeconfig)]
    # Helm keeps its caches and repository config under $HOME; none of that is needed for a local chart
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
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
    cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(items))
