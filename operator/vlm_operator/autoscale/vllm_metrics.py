"""vLLM's load signals, read from a pod's ``/metrics`` text or from a Prometheus instant query, per ready pod.

Everything here is pure: the caller fetches (an HTTP GET of ``http://<podIP>:<port>/metrics``, or of
``<prometheus>/api/v1/query``), stamps the result with the time it was taken, and hands the text or the decoded JSON
in. The result is one reading per pod: an :class:`EngineSample`, or a :class:`MissingSample` with the reason there is
none. The policy never scales down on a missing reading.

Facts used (vllm/v1/metrics/loggers.py at each release, vllm/engine/metrics.py for V0; each item names the commit,
PR or file):

* ``vllm:num_requests_waiting`` and ``vllm:num_requests_running`` are gauges under both engines (V0 and V1).
* KV-cache usage is a 0–1 gauge. It was ``vllm:gpu_cache_usage_perc`` until v0.9.2 added
  ``vllm:kv_cache_usage_perc`` (vllm d1e34cc9a, #18354); both were emitted through v0.10.x, the old one only with
  ``--show-hidden-metrics-for-version`` in v0.11, and none after v0.12 (9cf4edae6, #29330).
* Labels: V0 and V1 before v0.8.3 have ``model_name`` only; from 15dac210f (#13923, ≈v0.8.3) V1 adds ``engine``, one
  series per data-parallel engine in the pod. Counts are summed across engines; the KV usage is averaged (each engine
  has its own cache of the same size, so the mean is the pod's usage).
* ``vllm:mm_cache_queries`` is a counter ("Multi-modal cache queries, in terms of number of queried items",
  vllm/v1/metrics/loggers.py), scraped as ``vllm:mm_cache_queries_total`` because the Python client appends
  ``_total``. Every multimodal item of every request is looked up once, so its rate is multimodal items (images)
  per second. vLLM exports no encoder-cache usage gauge, so that is the only multimodal signal read here. The series
  exist (at 0) from start-up, so a zero rate says nothing about whether the model sees images.
* ``--disable-log-stats`` removes every ``vllm:*`` series in V1: such a pod reads as missing, not as idle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.parser import text_string_to_metric_families

from ..releases import VllmVersion

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_USAGE = "vllm:kv_cache_usage_perc"
KV_USAGE_OLD = "vllm:gpu_cache_usage_perc"
MM_ITEMS = "vllm:mm_cache_queries_total"
#: The release that introduced ``vllm:kv_cache_usage_perc`` (d1e34cc9a, #18354; first release after the merge).
KV_RENAME_VERSION = "0.9.2"
#: Every series name the autoscaler reads, for a Prometheus selector.
READ_METRICS = (WAITING, RUNNING, KV_USAGE, KV_USAGE_OLD, MM_ITEMS)

MissingReason = Literal["ScrapeFailed", "ParseError", "MetricAbsent", "Stale", "QueryFailed"]


@dataclass(frozen=True)
class EngineSample:
    """One pod's load at one instant, summed over its engines."""

    pod: str
    #: When the values were taken, on the same clock as the policy's ``now`` (seconds).
    timestamp: float
    #: ``vllm:num_requests_waiting``, summed over engines.
    waiting: float
    #: ``vllm:num_requests_running``, summed over engines.
    running: float
    #: KV-cache usage 0..1, averaged over engines; ``None`` when the pod exports neither name.
    kv_usage: float | None = None
    #: The series the KV usage came from (``vllm:kv_cache_usage_perc`` or ``vllm:gpu_cache_usage_perc``).
    kv_metric: str | None = None
    #: ``vllm:mm_cache_queries_total`` summed over engines (a counter: multimodal items seen since start-up).
    mm_items_total: float | None = None
    #: Number of ``engine`` label values seen (1 when the label is absent).
    engines: int = 1


@dataclass(frozen=True)
class MissingSample:
    """A ready pod without a usable reading, and why."""

    pod: str
    reason: MissingReason
    detail: str = ""


PodReading = EngineSample | MissingSample


def kv_metric_names(version: str | VllmVersion | None) -> tuple[str, str]:
    """The KV-usage gauge names in the order to try them for this engine version (preferred first).

    Both are accepted because v0.9.2–v0.10.x emit both and a custom image may not match ``engine.version``; the
    version only decides which one wins when both are present. ``None`` (unknown) prefers the current name.
    """
    if version is not None and VllmVersion(str(version)) < KV_RENAME_VERSION:
        return (KV_USAGE_OLD, KV_USAGE)
    return (KV_USAGE, KV_USAGE_OLD)


@dataclass(frozen=True)
class _Series:
    name: str
    labels: Mapping[str, str]
    value: float


def _aggregate(
    pod: str,
    series: Iterable[_Series],
    *,
    timestamp: float,
    version: str | VllmVersion | None,
    model_name: str | None,
) -> PodReading:
    """Fold one pod's series into a reading: filter by ``model_name``, sum counts over ``engine``, pick the KV name."""
    by_name: dict[str, list[_Series]] = {}
    seen_models: set[str] = set()
    for s in series:
        if s.name not in READ_METRICS:
            continue
        seen_models.add(s.labels.get("model_name", ""))
        if model_name is not None and s.labels.get("model_name") != model_name:
            continue
        by_name.setdefault(s.name, []).append(s)

    for required in (WAITING, RUNNING):
        if required not in by_name:
            detail = required
            if model_name is not None and seen_models:
                detail += f" for model_name={model_name!r} (series have {sorted(seen_models)})"
            return MissingSample(pod, "MetricAbsent", detail)
        bad = [s for s in by_name[required] if not math.isfinite(s.value)]
        if bad:
            return MissingSample(pod, "MetricAbsent", f"{required} is {bad[0].value}")

    engines = {s.labels.get("engine", "") for s in by_name[WAITING]}
    kv_usage: float | None = None
    kv_metric: str | None = None
    for name in kv_metric_names(version):
        values = [s.value for s in by_name.get(name, ()) if math.isfinite(s.value)]
        if values:
            kv_usage = min(1.0, max(0.0, sum(values) / len(values)))
            kv_metric = name
            break
    mm = [s.value for s in by_name.get(MM_ITEMS, ()) if math.isfinite(s.value)]
    return EngineSample(
        pod=pod,
        timestamp=timestamp,
        waiting=sum(s.value for s in by_name[WAITING]),
        running=sum(s.value for s in by_name[RUNNING]),
        kv_usage=kv_usage,
        kv_metric=kv_metric,
        mm_items_total=sum(mm) if mm else None,
        engines=max(1, len(engines)),
    )


def parse_vllm_metrics(
    pod: str,
    text: str,
    *,
    timestamp: float,
    version: str | VllmVersion | None = None,
    model_name: str | None = None,
) -> PodReading:
    """One pod's reading from the text of its ``/metrics`` (Prometheus text exposition format).

    ``timestamp`` is when the scrape was taken, on the policy's clock. ``version`` is ``spec.engine.version``: it
    decides which KV-usage name is preferred. ``model_name`` (the first ``--served-model-name``) keeps only series
    with that label value; ``None`` keeps all. Text the parser rejects reads as ``ParseError``.
    """
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as err:  # the parser raises ValueError (or a subclass) on malformed exposition text
        return MissingSample(pod, "ParseError", str(err)[:200])
    series = (_Series(s.name, s.labels, float(s.value)) for fam in families for s in fam.samples)
    return _aggregate(pod, series, timestamp=timestamp, version=version, model_name=model_name)


def scrape_failed(pod: str, error: str) -> MissingSample:
    """The reading for a pod whose ``/metrics`` could not be fetched (refused, timed out, non-200)."""
    return MissingSample(pod, "ScrapeFailed", error[:200])


def prometheus_query(*, namespace: str, pods: Sequence[str], pod_label: str = "pod") -> str:
    """The PromQL instant query that fetches every series the autoscaler reads for these pods in one request.

    ``pod_label`` is the label the scrape config puts the pod name in (``pod`` with the usual ``kubernetes_sd``
    relabelling). Pod names are DNS labels, so they need no regex escaping beyond the dots.
    """
    names = "|".join(READ_METRICS)
    pod_re = "|".join(p.replace(".", "\\\\.") for p in pods)
    return f'{{__name__=~"{names}",namespace="{namespace}",{pod_label}=~"{pod_re}"}}'


def parse_prometheus_query(
    response: Mapping[str, Any],
    *,
    pods: Sequence[str],
    version: str | VllmVersion | None = None,
    model_name: str | None = None,
    pod_label: str = "pod",
) -> list[PodReading]:
    """One reading per pod in ``pods`` from a decoded ``/api/v1/query`` response (``resultType: vector``).

    ``pods`` are the ready pods the caller expects; a pod with no series in the result reads as ``MetricAbsent``.
    The sample time is the query's evaluation time Prometheus returns with each value (instant queries do not say
    when the sample was scraped; a target whose scrapes fail gets staleness markers and drops out of the result,
    which reads as missing). An error response, or one that is not a vector, makes every pod ``QueryFailed``.
    """
    if response.get("status") != "success":
        why = f"{response.get('errorType', 'error')}: {response.get('error', 'no status success')}"
        return [MissingSample(p, "QueryFailed", why[:200]) for p in pods]
    data = response.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        return [MissingSample(p, "QueryFailed", "response is not an instant vector") for p in pods]

    per_pod: dict[str, list[_Series]] = {p: [] for p in pods}
    stamps: dict[str, float] = {}
    for item in data["result"]:
        metric = item.get("metric", {})
        pod = metric.get(pod_label)
        if pod not in per_pod:
            continue
        try:
            ts, raw = item["value"]
            value = float(raw)  # Prometheus sends values as strings, including "NaN" and "+Inf"
            ts = float(ts)
        except (KeyError, TypeError, ValueError):
            continue
        labels = {k: str(v) for k, v in metric.items() if k != "__name__"}
        per_pod[pod].append(_Series(str(metric.get("__name__", "")), labels, value))
        stamps[pod] = min(ts, stamps.get(pod, ts))

    out: list[PodReading] = []
    for pod in pods:
        if not per_pod[pod]:
            out.append(MissingSample(pod, "MetricAbsent", f"no series for {pod_label}={pod!r}"))
            continue
        out.append(_aggregate(pod, per_pod[pod], timestamp=stamps[pod], version=version, model_name=model_name))
    return out


def freshen(reading: PodReading, *, now: float, max_age: float) -> PodReading:
    """The reading, or ``Stale`` if it was taken more than ``max_age`` seconds before ``now``."""
    if isinstance(reading, EngineSample) and now - reading.timestamp > max_age:
        return MissingSample(
            reading.pod, "Stale", f"sample is {now - reading.timestamp:.0f}s old (limit {max_age:.0f}s)"
        )
    return reading
