"""Fixtures of the integration tests: the operator subprocess, one per test module, with a fake Hub; the CRD alone;
simulated pods (``watcher``; ``sims`` for the autoscaler, with Prometheus when it is installed); a GPU node of a
test's own (``gpu_pool``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import yaml

from tests.conftest import Cluster
from tests.fakehub import FakeHub, safetensors_blob
from tests.integration.helpers import CRD_PATH, Operator, free_port
from tests.integration.operator_helpers import running_operator
from tests.integration.simulated import SimWatcher
from tests.integration.workloads import POOL_KEY, PoolFactory
from vlm_operator.devcluster.cluster import LABEL_MANAGED, NodePool, node_manifests
from vlm_operator.models import catalog
from vlm_operator.simulator.prometheus import find_prometheus


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    hub = FakeHub().__enter__()
    qwen = next(e for e in catalog.raw_entries() if e["id"] == "Qwen/Qwen2.5-VL-7B-Instruct")
    hub.add(
        "acme/private-vlm",
        {
            "config.json": qwen["config"],
            "preprocessor_config.json": {"min_pixels": 3136, "max_pixels": 1003520},
            "model.safetensors": safetensors_blob({"model.embed_tokens.weight": ("BF16", [152064, 3584])}),
        },
    )
    try:
        with running_operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log", hub=hub) as op:
            yield op
    finally:
        hub.__exit__()


@pytest.fixture(scope="module")
def crd_installed(cluster: Cluster) -> Iterator[Cluster]:
    """The VLMDeployment CRD as generated (server-side apply), Established, with no operator running."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
    cluster.kubectl("wait", "--for=condition=Established", "crd/vlmdeployments.vlmops.io", "--timeout=60s")
    yield cluster


@pytest.fixture(scope="module")
def watcher(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimWatcher]:
    """``vlmctl simulate-pods`` for the module: a vLLM simulator on every pod annotated ``sim.vlmops.io/simulator``."""
    w = SimWatcher(cluster, tmp_path_factory.mktemp("simulate-pods") / "simulate-pods.log")
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def prometheus_port() -> int | None:
    return free_port() if find_prometheus() is not None else None


@pytest.fixture(scope="module")
def sims(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, prometheus_port: int | None
) -> Iterator[SimWatcher]:
    workdir = tmp_path_factory.mktemp("autoscale-sims")
    extra: list[str] = []
    if prometheus_port is not None:
        extra = ["--prometheus", "--prometheus-port", str(prometheus_port), "--prometheus-dir", str(workdir / "prom")]
        extra += ["--scrape-interval", "1"]
    w = SimWatcher(cluster, workdir / "simulate-pods.log", *extra)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def gpu_pool(cluster: Cluster) -> Iterator[PoolFactory]:
    """Make one A10G node with ``gpus`` GPUs that only this test's pods tolerate; returns its pool id."""
    made: list[str] = []

    def make(gpus: int) -> str:
        pool = f"r{uuid.uuid4().hex[:8]}"
        (doc,) = node_manifests(NodePool("A10G", 1, gpus))
        doc["metadata"]["name"] = f"gpu-{pool}"
        doc["metadata"]["labels"].update(
            {"kubernetes.io/hostname": f"gpu-{pool}", POOL_KEY: pool, LABEL_MANAGED: "true"}
        )
        doc["spec"]["taints"].append({"key": POOL_KEY, "value": pool, "effect": "NoSchedule"})
        cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(doc))
        made.append(doc["metadata"]["name"])
        cluster.kubectl("wait", "--for=condition=Ready", f"node/gpu-{pool}", "--timeout=60s")
        return pool

    yield make
    for name in made:
        cluster.kubectl("delete", "node", name, "--wait=false", check=False)
