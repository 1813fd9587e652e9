"""Shared fixtures: one real control plane per test session, a fresh namespace per test.

By default the session starts its own local dev cluster (real etcd, kube-apiserver, controller-manager, scheduler,
kwok GPU nodes) in a temporary directory and stops it at the end. With ``VLM_TEST_KUBECONFIG=path`` the fixtures use
that existing cluster instead; a stray ``KUBECONFIG`` is never used, so tests cannot touch a cluster by accident.
Tests that need the local cluster's extras (KWOK stages, loopback pod IPs) are marked ``local_only`` and are skipped
on an external cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Tests send traffic to loopback only: a Hub lookup that a test forgot to point at the fake Hub (tests/fakehub.py)
# fails on a closed loopback port instead of reaching huggingface.co.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")

EXTERNAL_ENV = "VLM_TEST_KUBECONFIG"
#: Pools of the session cluster: every product the samples ask for, so each sample lands on its own pool.
TEST_POOLS = ("L4:2:4", "L40S:1:4", "A100-80GB:1:8", "H100-80GB:1:8", "A100-80GB/3g.40gb:1:2")


@dataclass
class Cluster:
    """A real cluster the tests talk to."""

    kubeconfig: Path
    kubectl_bin: str
    local: bool
    _api_client: Any = field(default=None, repr=False)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    @property
    def api_client(self) -> Any:
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api_client


def wait_until(pred: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll ``pred`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _find_kubectl() -> str:
    from vlm_operator.devcluster import build

    local = build.bin_dir() / "kubectl"
    if local.exists():
        return str(local)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("no kubectl: run `vlmctl dev-cluster build` or put kubectl on PATH")
    return found


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        yield Cluster(Path(external), _find_kubectl(), local=False)
        return
    from vlm_operator.devcluster.cluster import DevCluster, NodePool

    workdir = Path(tempfile.mkdtemp(prefix="vlm-pytest-"))
    dev = DevCluster(f"pytest-{os.getpid()}", workdir / "cluster", log=lambda m: print(m, flush=True))
    try:
        st = dev.up([NodePool.parse(p) for p in TEST_POOLS])
        yield Cluster(st.kubeconfig, str(Path(st.bin_dir) / "kubectl"), local=True)
    finally:
        dev.down()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get(EXTERNAL_ENV):
        return
    skip = pytest.mark.skip(reason=f"local_only: needs the local dev cluster, not {EXTERNAL_ENV}")
    for item in items:
        if "local_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned Helm binary (``vlmctl dev-cluster build --helm``), built from the Go module proxy when absent."""
    from vlm_operator.devcluster import build

    return build.ensure_helm(log=lambda m: print(m, flush=True))
