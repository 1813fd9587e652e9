"""A real Prometheus (the Debian package) scrapes a simulated vLLM pod by pod IP through file-based discovery.

Skipped when no Prometheus binary is installed (`bash hack/fetch-prometheus.sh`). Only loopback traffic; the load
is a fixed handful of requests that finish by themselves."""

from __future__ import annotations

import concurrent.futures
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import apply
from tests.integration.simulated import SimWatcher, ready_pod, running_pod, sim_deployment
from vlm_operator.simulator.prometheus import find_prometheus, free_port, instant_query
from vlm_operator.smoke import smoke_request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.local_only,
    pytest.mark.timeout(240),
    pytest.mark.skipif(find_prometheus() is None, reason="no prometheus binary: bash hack/fetch-prometheus.sh"),
]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def prom_watcher(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimWatcher, str]]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("prometheus")
    w = SimWatcher(
        cluster,
        workdir / "simulate-pods.log",
        "--prometheus",
        "--prometheus-port",
        str(port),
        "--prometheus-dir",
        str(workdir / "prom"),
        "--scrape-interval",
        "1",
    )
    try:
        assert f"prometheus: http://127.0.0.1:{port}" in w.output()
        yield w, f"http://127.0.0.1:{port}"
    finally:
        w.stop()
    assert not (workdir / "prom" / "prometheus.pid").exists()  # stopped by its PID with the watcher


def _chat(url: str, model: str) -> int:
    body = smoke_request(model, max_tokens=30)
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _OPENER.open(req, timeout=60) as resp:
        status: int = resp.status
        return status


def test_prometheus_scrapes_the_simulated_pod_and_sees_its_queue(
    cluster: Cluster, namespace: str, prom_watcher: tuple[SimWatcher, str]
) -> None:
    _watcher, prom = prom_watcher
    # one request at a time, 30 output tokens at 10 tokens/s: each request takes ~3 s
    apply(
        cluster,
        sim_deployment("scraped", {"sim.vlmops.io/max-num-seqs": "1", "sim.vlmops.io/decode-tokens-per-s": "10"}),
        namespace=namespace,
    )
    pod = running_pod(cluster, namespace, "scraped")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    ready_pod(cluster, namespace, "scraped", name)

    selector = f'vllm:num_requests_waiting{{namespace="{namespace}",pod="{name}"}}'

    def scraped() -> list[dict[str, Any]]:
        return instant_query(prom, selector)

    result = wait_until(scraped, "Prometheus to scrape the pod", timeout=60, interval=1.0)
    assert len(result) == 1
    labels = result[0]["metric"]
    assert labels["instance"] == f"{ip}:8000"
    assert labels["model_name"] == "Qwen/Qwen2.5-VL-7B-Instruct" and labels["engine"] == "0"
    assert float(result[0]["value"][1]) == 0

    # three concurrent requests on one slot: two wait for a few seconds, which a 1 s scrape sees
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(_chat, f"http://{ip}:8000", "Qwen/Qwen2.5-VL-7B-Instruct") for _ in range(3)]

        def saw_queue() -> bool:
            peak = instant_query(prom, f"max_over_time({selector}[1m])")
            return bool(peak) and float(peak[0]["value"][1]) >= 1

        wait_until(saw_queue, "Prometheus to see waiting requests", timeout=30, interval=1.0)
        assert [f.result(timeout=60) for f in futures] == [200, 200, 200]

    def counted() -> bool:
        total = instant_query(prom, f'sum(vllm:request_success_total{{namespace="{namespace}"}})')
        return bool(total) and float(total[0]["value"][1]) == 3

    wait_until(counted, "the success counter in Prometheus", timeout=30, interval=1.0)
