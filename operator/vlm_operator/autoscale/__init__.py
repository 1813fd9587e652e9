"""The built-in autoscaler for ``scaling.mode: Internal``: reading vLLM's load signals and deciding replicas.

The package is split so that the decision can be tested without a cluster or a clock:

* :mod:`.vllm_metrics` turns what a source returns (a pod's ``/metrics`` text, or a Prometheus instant-query JSON
  document) into one :class:`~.vllm_metrics.EngineSample` per ready pod, or a
  :class:`~.vllm_metrics.MissingSample` saying why there is none. It knows vLLM's metric names by engine version
  (``vllm:gpu_cache_usage_perc`` became ``vllm:kv_cache_usage_perc``) and its ``model_name`` / ``engine`` labels.
* :mod:`.policy` is the pure ``desired_replicas(state, samples, spec, now)``: no I/O, no wall clock, no Kubernetes.
  Its state is an immutable value returned with each decision.
* :mod:`.report` turns a decision into the ``ScalingActive`` / ``MetricsAvailable`` conditions and keeps the latest
  one per object for the reconciler (the only status writer).

* :mod:`.loop` is the I/O around the policy: it reads the object, its pods' metrics and ``/scale``, decides, writes
  ``/scale`` and files the report (imported only by the operator, never by this package's ``__init__``). Its kopf
  daemon is registered in :mod:`vlm_operator.handlers`.

Nothing here imports ``kopf``; only :mod:`.loop` talks to the API server (through an injected client). The policy and
its formulas are described in ``docs/autoscaling.md``.
"""

from __future__ import annotations

from .policy import Decision, PolicyState, PolicyTuning, Reason, ScalingTargets, Signals, desired_replicas
from .vllm_metrics import (
    EngineSample,
    MissingSample,
    PodReading,
    kv_metric_names,
    parse_prometheus_query,
    parse_vllm_metrics,
    prometheus_query,
)

__all__ = [
    "Decision",
    "EngineSample",
    "MissingSample",
    "PodReading",
    "PolicyState",
    "PolicyTuning",
    "Reason",
    "ScalingTargets",
    "Signals",
    "desired_replicas",
    "kv_metric_names",
    "parse_prometheus_query",
    "parse_vllm_metrics",
    "prometheus_query",
]
