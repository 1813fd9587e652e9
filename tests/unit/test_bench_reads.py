"""benchmarks/operator_scale.py counts the operators' reads from the API server's apiserver_request_total, less the
benchmark's own GETs and LISTs (keyed the same way)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("operator_scale", ROOT / "benchmarks" / "operator_scale.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("operator_scale", mod)
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


def test_read_key_names_resource_and_verb_as_the_api_server_counts_them() -> None:
    assert bench.read_key("GET", "/api/v1/namespaces/bench/pods") == "pods LIST"
    assert bench.read_key("GET", "/apis/vlmops.io/v1alpha1/namespaces/bench/vlmdeployments") == "vlmdeployments LIST"
    assert bench.read_key("GET", "/apis/apps/v1/namespaces/bench/deployments/d") == "deployments GET"
    assert bench.read_key("GET", "/apis/apps/v1/namespaces/b/deployments/d/scale") == "deployments/scale GET"
    assert bench.read_key("GET", "/api/v1/namespaces/bench") == "namespaces GET"
    assert bench.read_key("GET", "/api/v1/nodes") == "nodes LIST"
    wh = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/x"
    assert bench.read_key("GET", wh) == "validatingwebhookconfigurations GET"
    assert bench.read_key("GET", "/metrics") is None
    assert bench.read_key("POST", "/api/v1/namespaces/bench/pods") is None


METRICS = """# HELP apiserver_request_total x
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 12
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="LIST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",group="",resource="resourcequotas",scope="cluster",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",group="apps",resource="deployments",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_total{code="201",component="apiserver",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"} 9
apiserver_request_total{code="200",component="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 40
"""  # noqa: E501


class FakeRaw(bench.Raw):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        self.own_reads = Counter()
        import threading

        self._lock = threading.Lock()

    def call(self, method: str, path: str, *a: Any, **k: Any) -> Any:
        assert (method, path) == ("GET", "/metrics")
        return METRICS


def test_reads_sums_the_read_verbs_by_resource_less_the_benchmarks_own() -> None:
    raw = FakeRaw()
    raw.own_reads["pods LIST"] = 10  # the harness's pending-pod polls
    got = bench.reads(raw)
    assert got == Counter({"pods LIST": 5, "resourcequotas WATCH": 2, "deployments GET": 7})
    delta = bench.reads_delta(got, Counter({"pods LIST": 5, "deployments GET": 3}))
    assert delta == {"deployments GET": 4, "resourcequotas WATCH": 2}
    assert bench.per_object_reads(delta, 2) == 2.0  # WATCH requests are per stream, not per object
