"""`vlmctl dev-cluster` end to end, as a user runs it: up, a second up, status, env, recovery after a crash, down.

It starts its own cluster (not the session one) because it kills and restarts components.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.local_only]


def vlmctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "vlm_operator", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"vlmctl {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def pid_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_dev_cluster_lifecycle() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vlm-pytest-e2e-")) / "c"
    base = ["--name", "e2e", "--workdir", str(workdir)]
    try:
        up = vlmctl("dev-cluster", "up", *base, "--pool", "L4:1:2", "--pool", "A100-80GB:1:8")
        assert f"KUBECONFIG={workdir / 'kubeconfig.yaml'}" in up.stdout

        status: dict[str, Any] = json.loads(vlmctl("dev-cluster", "status", *base, "--output", "json").stdout)
        assert status["running"] is True
        products = sorted((n["product"], n["gpus"], n["ready"]) for n in status["nodes"])
        assert products == [("NVIDIA-A100-SXM4-80GB", "8", True), ("NVIDIA-L4", "2", True)]
        pids = {c: i["pid"] for c, i in status["components"].items()}
        assert len(pids) == 5 and all(pid_running(p) for p in pids.values())

        # a second up is idempotent: same processes
        vlmctl("dev-cluster", "up", *base, "--pool", "L4:1:2", "--pool", "A100-80GB:1:8")
        again = json.loads(vlmctl("dev-cluster", "status", *base, "--output", "json").stdout)
        assert {c: i["pid"] for c, i in again["components"].items()} == pids

        env = vlmctl("dev-cluster", "env", *base).stdout
        assert f"export KUBECONFIG={workdir / 'kubeconfig.yaml'}" in env
        # after eval, `kubectl` is the cluster's own (v1.36), even with another kubectl earlier on PATH
        decoy = workdir / "decoy"
        decoy.mkdir()
        (decoy / "kubectl").write_text("#!/bin/sh\necho decoy\n")
        (decoy / "kubectl").chmod(0o755)
        shell = subprocess.run(
            ["bash", "-c", 'eval "$1"; command -v kubectl; kubectl version --client', "_", env],
            env={**os.environ, "PATH": f"{decoy}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        bin_dir = next(ln.split("=", 1)[1] for ln in env.splitlines() if ln.startswith("export VLM_DEV_CLUSTER_BIN="))
        assert shell.stdout.splitlines()[0] == str(Path(bin_dir) / "kubectl"), shell.stdout
        assert "v1.36" in shell.stdout

        # a crash: the API server dies; status says so, and up cleans the stale state and starts afresh
        os.kill(pids["kube-apiserver"], signal.SIGKILL)
        time.sleep(0.5)
        assert vlmctl("dev-cluster", "status", *base, check=False).returncode == 3
        vlmctl("dev-cluster", "up", *base, "--pool", "L4:1:2")
        assert not any(pid_running(p) for p in pids.values()), "stale processes survived the restart"
        fresh = json.loads(vlmctl("dev-cluster", "status", *base, "--output", "json").stdout)
        assert fresh["running"] is True
        new_pids = [i["pid"] for i in fresh["components"].values()]
        assert all(pid_running(p) for p in new_pids)

        # down stops every process it started and removes the work directory
        vlmctl("dev-cluster", "down", *base)
        assert not any(pid_running(p) for p in new_pids)
        assert not workdir.exists()
    finally:
        vlmctl("dev-cluster", "down", *base, check=False)
        shutil.rmtree(workdir.parent, ignore_errors=True)
