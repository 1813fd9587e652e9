"""Reading vLLM's load signals: ``/metrics`` text by engine version, Prometheus instant queries, staleness.

The fixtures are ``/metrics`` bodies in the exact form vLLM serves them (vLLM exposes its metrics with
``prometheus_client``, so these were produced by ``prometheus_client.generate_latest`` from the metric names, help
strings and labels in vLLM's source at each release; vllm/v1/metrics/loggers.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from vlm_operator.autoscale.vllm_metrics import (
    KV_USAGE,
    KV_USAGE_OLD,
    EngineSample,
    MissingSample,
    freshen,
    kv_metric_names,
    parse_prometheus_query,
    parse_vllm_metrics,
    prometheus_query,
    scrape_failed,
)

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"

#: vLLM V1 at v0.11 with two data-parallel engines in one pod (``--data-parallel-size 2``): one series per engine.
V1_DP2 = f"""\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{MODEL}"}} 7.0
vllm:num_requests_running{{engine="1",model_name="{MODEL}"}} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{MODEL}"}} 3.0
vllm:num_requests_waiting{{engine="1",model_name="{MODEL}"}} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{MODEL}"}} 0.42
vllm:kv_cache_usage_perc{{engine="1",model_name="{MODEL}"}} 0.38
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",model_name="{MODEL}"}} 5000.0
vllm:prefix_cache_queries_total{{engine="1",model_name="{MODEL}"}} 5000.0
# HELP vllm:prefix_cache_queries_created Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_created gauge
vllm:prefix_cache_queries_created{{engine="0",model_name="{MODEL}"}} 1.7954308178695915e+09
vllm:prefix_cache_queries_created{{engine="1",model_name="{MODEL}"}} 1.795430817869663e+09
# HELP vllm:mm_cache_queries_total Multi-modal cache queries, in terms of number of queried items.
# TYPE vllm:mm_cache_queries_total counter
vllm:mm_cache_queries_total{{engine="0",model_name="{MODEL}"}} 120.0
vllm:mm_cache_queries_total{{engine="1",model_name="{MODEL}"}} 80.0
# HELP vllm:mm_cache_queries_created Multi-modal cache queries, in terms of number of queried items.
# TYPE vllm:mm_cache_queries_created gauge
vllm:mm_cache_queries_created{{engine="0",model_name="{MODEL}"}} 1.7954308178695776e+09
vllm:mm_cache_queries_created{{engine="1",model_name="{MODEL}"}} 1.7954308178696516e+09
# HELP vllm:mm_cache_hits_total Multi-modal cache hits, in terms of number of cached items.
# TYPE vllm:mm_cache_hits_total counter
vllm:mm_cache_hits_total{{engine="0",model_name="{MODEL}"}} 30.0
vllm:mm_cache_hits_total{{engine="1",model_name="{MODEL}"}} 20.0
# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase for request.
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{{engine="0",le="0.3",model_name="{MODEL}"}} 0.0
vllm:request_queue_time_seconds_bucket{{engine="0",le="+Inf",model_name="{MODEL}"}} 1.0
vllm:request_queue_time_seconds_count{{engine="0",model_name="{MODEL}"}} 1.0
vllm:request_queue_time_seconds_sum{{engine="0",model_name="{MODEL}"}} 0.4
vllm:request_queue_time_seconds_bucket{{engine="1",le="0.3",model_name="{MODEL}"}} 0.0
vllm:request_queue_time_seconds_bucket{{engine="1",le="+Inf",model_name="{MODEL}"}} 1.0
vllm:request_queue_time_seconds_count{{engine="1",model_name="{MODEL}"}} 1.0
vllm:request_queue_time_seconds_sum{{engine="1",model_name="{MODEL}"}} 0.4
"""

#: vLLM V0 at v0.6.3 (vllm/engine/metrics.py): ``model_name`` only, the old KV name, swapped and CPU-cache gauges.
V0_063 = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llava-hf/llava-1.5-7b-hf"} 4.0
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="llava-hf/llava-1.5-7b-hf"} 0.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llava-hf/llava-1.5-7b-hf"} 9.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="llava-hf/llava-1.5-7b-hf"} 0.875
# HELP vllm:cpu_cache_usage_perc CPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:cpu_cache_usage_perc gauge
vllm:cpu_cache_usage_perc{model_name="llava-hf/llava-1.5-7b-hf"} 0.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="llava-hf/llava-1.5-7b-hf"} 2.0
"""


#: v0.10's help text for the deprecated name (one string in vLLM, without a space before DEPRECATED).
V010_OLD_HELP = "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead."


def v010(old: float, new: float) -> str:
    """vLLM v0.10 (V1, ``engine`` label) emits both KV names. They carry the same value in vLLM; the test gives them
    different values only to see which one was read."""
    return f"""\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{MODEL}"}} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{MODEL}"}} 0.0
# HELP vllm:gpu_cache_usage_perc {V010_OLD_HELP}
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{{engine="0",model_name="{MODEL}"}} {old}
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{MODEL}"}} {new}
"""


def test_v1_sums_counts_over_engines_and_averages_kv_usage() -> None:
    r = parse_vllm_metrics("pod-a", V1_DP2, timestamp=100.0, version="0.11.0", model_name=MODEL)
    assert isinstance(r, EngineSample)
    assert (r.pod, r.timestamp) == ("pod-a", 100.0)
    assert r.waiting == 4.0  # 3 + 1
    assert r.running == 12.0  # 7 + 5
    assert r.kv_usage == pytest.approx(0.40)  # mean of 0.42 and 0.38, not their sum
    assert r.kv_metric == KV_USAGE
    assert r.mm_items_total == 200.0  # the queries counter, not the hits counter
    assert r.engines == 2


def test_old_engine_reads_the_old_kv_name() -> None:
    r = parse_vllm_metrics("pod-b", V0_063, timestamp=5.0, version="0.6.3")
    assert isinstance(r, EngineSample)
    assert (r.waiting, r.running) == (9.0, 4.0)
    assert r.kv_usage == 0.875
    assert r.kv_metric == KV_USAGE_OLD
    assert r.engines == 1  # no engine label before v0.8.3
    assert r.mm_items_total is None  # V0 has no multimodal cache counter


@pytest.mark.parametrize(
    ("version", "expected_metric", "expected_value"),
    [("0.10.1", KV_USAGE, 0.3), ("0.9.1", KV_USAGE_OLD, 0.7), (None, KV_USAGE, 0.3)],
)
def test_both_kv_names_present_the_version_picks(
    version: str | None, expected_metric: str, expected_value: float
) -> None:
    r = parse_vllm_metrics("p", v010(old=0.7, new=0.3), timestamp=0.0, version=version)
    assert isinstance(r, EngineSample)
    assert (r.kv_metric, r.kv_usage) == (expected_metric, expected_value)


def test_kv_name_preference_follows_the_rename_release() -> None:
    assert kv_metric_names("0.9.1") == (KV_USAGE_OLD, KV_USAGE)
    assert kv_metric_names("0.9.2") == (KV_USAGE, KV_USAGE_OLD)
    assert kv_metric_names("0.12.0") == (KV_USAGE, KV_USAGE_OLD)


def test_only_the_other_name_present_is_still_accepted() -> None:
    # engine.version says 0.6.3 but a custom image is a newer vLLM that only has the new name.
    newer = V1_DP2
    r = parse_vllm_metrics("p", newer, timestamp=0.0, version="0.6.3")
    assert isinstance(r, EngineSample)
    assert r.kv_metric == KV_USAGE


def test_model_name_filter_keeps_only_that_model() -> None:
    two_models = V0_063 + 'vllm:num_requests_waiting{model_name="other"} 50.0\n'
    # The extra line belongs to the waiting family already declared above it, as a second series.
    r = parse_vllm_metrics("p", two_models, timestamp=0.0, model_name="llava-hf/llava-1.5-7b-hf")
    assert isinstance(r, EngineSample)
    assert r.waiting == 9.0
    unfiltered = parse_vllm_metrics("p", two_models, timestamp=0.0)
    assert isinstance(unfiltered, EngineSample)
    assert unfiltered.waiting == 59.0


def test_model_name_mismatch_is_missing_and_names_what_was_seen() -> None:
    r = parse_vllm_metrics("p", V1_DP2, timestamp=0.0, model_name="qwen-vl")
    assert isinstance(r, MissingSample)
    assert r.reason == "MetricAbsent"
    assert "qwen-vl" in r.detail and MODEL in r.detail


def test_disable_log_stats_body_is_missing_not_idle() -> None:
    # With --disable-log-stats V1 serves /metrics without any vllm:* series; only the client's process metrics.
    body = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 1234.0
"""
    r = parse_vllm_metrics("p", body, timestamp=0.0)
    assert r == MissingSample("p", "MetricAbsent", "vllm:num_requests_waiting")


def test_running_missing_is_missing() -> None:
    body = V0_063.replace("vllm:num_requests_running", "vllm:something_else")
    r = parse_vllm_metrics("p", body, timestamp=0.0)
    assert isinstance(r, MissingSample)
    assert r.detail == "vllm:num_requests_running"


def test_nan_gauge_is_missing() -> None:
    body = V0_063.replace(
        'vllm:num_requests_waiting{model_name="llava-hf/llava-1.5-7b-hf"} 9.0',
        'vllm:num_requests_waiting{model_name="llava-hf/llava-1.5-7b-hf"} NaN',
    )
    r = parse_vllm_metrics("p", body, timestamp=0.0)
    assert isinstance(r, MissingSample)
    assert r.reason == "MetricAbsent"


def test_kv_absent_still_gives_a_sample() -> None:
    body = "\n".join(line for line in V0_063.splitlines() if "gpu_cache_usage_perc" not in line) + "\n"
    r = parse_vllm_metrics("p", body, timestamp=0.0)
    assert isinstance(r, EngineSample)
    assert r.kv_usage is None and r.kv_metric is None


@pytest.mark.parametrize("body", ["<html>502 Bad Gateway</html>\n", 'vllm:num_requests_waiting{engine="0" 3\n'])
def test_garbage_is_a_parse_error(body: str) -> None:
    r = parse_vllm_metrics("p", body, timestamp=0.0)
    assert isinstance(r, MissingSample)
    assert r.reason == "ParseError"


def test_scrape_failed_and_staleness() -> None:
    assert scrape_failed("p", "connection refused").reason == "ScrapeFailed"
    sample = parse_vllm_metrics("p", V0_063, timestamp=100.0)
    assert freshen(sample, now=115.0, max_age=15.0) is sample
    stale = freshen(sample, now=115.5, max_age=15.0)
    assert isinstance(stale, MissingSample)
    assert stale.reason == "Stale"


def _vector(*series: tuple[str, str, dict[str, str], float | str], ts: float = 1_700_000_000.0) -> dict[str, Any]:
    result: list[dict[str, Any]] = []
    for name, pod, labels, value in series:
        metric: dict[str, str] = {"__name__": name, "pod": pod, "namespace": "ns", **labels}
        result.append({"metric": metric, "value": [ts, str(value)]})
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_prometheus_vector_groups_by_pod_and_engine() -> None:
    e0 = {"engine": "0", "model_name": MODEL}
    e1 = {"engine": "1", "model_name": MODEL}
    doc = _vector(
        ("vllm:num_requests_waiting", "a", e0, 2),
        ("vllm:num_requests_waiting", "a", e1, 3),
        ("vllm:num_requests_running", "a", e0, 8),
        ("vllm:num_requests_running", "a", e1, 8),
        ("vllm:kv_cache_usage_perc", "a", e0, 0.9),
        ("vllm:kv_cache_usage_perc", "a", e1, 0.7),
        ("vllm:num_requests_waiting", "b", e0, 0),
        ("vllm:num_requests_running", "b", e0, 1),
        ("vllm:mm_cache_queries_total", "b", e0, 17),
        ("vllm:num_requests_waiting", "not-ours", e0, 99),
    )
    a, b, c = parse_prometheus_query(doc, pods=["a", "b", "c"], version="0.11.0", model_name=MODEL)
    assert isinstance(a, EngineSample) and isinstance(b, EngineSample)
    assert (a.waiting, a.running, a.engines) == (5.0, 16.0, 2)
    assert a.kv_usage == pytest.approx(0.8)
    assert a.timestamp == 1_700_000_000.0
    assert (b.waiting, b.running, b.mm_items_total) == (0.0, 1.0, 17.0)
    assert isinstance(c, MissingSample) and c.reason == "MetricAbsent"


def test_prometheus_old_name_and_custom_pod_label() -> None:
    doc = _vector(
        ("vllm:num_requests_waiting", "x", {"model_name": "m"}, 1),
        ("vllm:num_requests_running", "x", {"model_name": "m"}, 2),
        ("vllm:gpu_cache_usage_perc", "x", {"model_name": "m"}, 0.5),
    )
    for item in doc["data"]["result"]:
        item["metric"]["kubernetes_pod_name"] = item["metric"].pop("pod")
    (x,) = parse_prometheus_query(doc, pods=["x"], version="0.6.3", pod_label="kubernetes_pod_name")
    assert isinstance(x, EngineSample)
    assert (x.kv_metric, x.kv_usage) == (KV_USAGE_OLD, 0.5)


def test_prometheus_error_and_wrong_shape_make_every_pod_missing() -> None:
    err = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    out = parse_prometheus_query(err, pods=["a", "b"])
    assert [(m.pod, m.reason) for m in out if isinstance(m, MissingSample)] == [
        ("a", "QueryFailed"),
        ("b", "QueryFailed"),
    ]
    assert isinstance(out[0], MissingSample) and "bad_data" in out[0].detail
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    assert all(
        isinstance(m, MissingSample) and m.reason == "QueryFailed" for m in parse_prometheus_query(matrix, pods=["a"])
    )


def test_prometheus_nan_value_is_missing() -> None:
    doc = _vector(("vllm:num_requests_waiting", "a", {}, "NaN"), ("vllm:num_requests_running", "a", {}, 1))
    (a,) = parse_prometheus_query(doc, pods=["a"])
    assert isinstance(a, MissingSample)


def test_prometheus_query_selects_every_name_for_the_pods() -> None:
    q = prometheus_query(namespace="ml", pods=["vlm-0", "vlm-1"])
    for name in ("vllm:num_requests_waiting", "vllm:num_requests_running", KV_USAGE, KV_USAGE_OLD):
        assert name in q
    assert 'namespace="ml"' in q and 'pod=~"vlm-0|vlm-1"' in q
