"""A VLMBatchJob's status as a pure function of what the handler observed: the Job, its pods (each shard's summary in
the client container's termination message), each running shard's live ``GET /progress``, and a clock.

Conditions (metav1.Condition shape, with ``observedGeneration``):

- ``Complete``: every shard finished (the Job's own ``Complete`` condition); the message counts results and errors.
- ``Failed``: the job cannot finish: a refused spec (the webhook's words), a missing input or output volume, a shard
  whose client reported ``InputNotFound``, or the Job failed (a shard used up ``backoffLimitPerIndex``; the message
  quotes the shard's reason, e.g. ``EngineUnavailable: …``).
- ``Progressing``: shards are running (False with reason ``Suspended`` while suspended or queued by Kueue).
- ``FitsGPU``: the fit check's verdict, as for a VLMDeployment.
- ``SpecApplied``: False (``JobImmutable``) when the spec was changed after the Job was created in a way a Job
  cannot take (anything but ``suspend`` and ``ttlSecondsAfterFinished``): the Job runs on with the spec it was made
  from, and the message says how to run the new one.
- ``Reconciling`` / ``Stalled``: kstatus's pair (sigs.k8s.io/cli-utils pkg/kstatus/status/generic.go) mirroring
  Progressing and Failed, so kstatus reads InProgress while it runs, Failed when it failed and Current when done.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlm_operator.conditions import CondStatus, _cond
from vlm_operator.render.batch import CLIENT_CONTAINER, ENGINE_CONTAINER
from vlm_operator.rollout import last_lines

#: Job pods carry their index in this annotation (and label), set by the Job controller (batch/v1
#: JobCompletionIndexAnnotation, k8s.io/api/batch/v1/types.go).
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

REASON_INPUT_NOT_FOUND = "InputNotFound"
REASON_OUTPUT_NOT_FOUND = "OutputNotFound"
#: The client's reasons that no retry can fix (another pod reads the same missing input).
TERMINAL_REASONS = (REASON_INPUT_NOT_FOUND,)
SUMMARY_KEYS = ("linesTotal", "linesDone", "linesFailed", "images", "promptTokens", "completionTokens")


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def shard_index(pod: Mapping[str, Any]) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or (meta.get("labels") or {}).get(INDEX_ANNOTATION)
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return None


def _client_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CLIENT_CONTAINER:
            return dict(cs)
    return {}


def parse_summary(text: str | None) -> dict[str, Any] | None:
    """A shard summary (the client's termination message), or None if it is not one."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return summary_from(data)


def summary_from(data: Any) -> dict[str, Any] | None:
    """A shard summary from parsed JSON (a termination message or a ``/progress`` body), or None."""
    if not isinstance(data, dict) or not isinstance(data.get("shard"), int):
        return None
    out: dict[str, Any] = {k: max(0, int(data.get(k) or 0)) for k in SUMMARY_KEYS}
    out["shard"] = data["shard"]
    out["seconds"] = float(data.get("seconds") or 0.0)
    reason = data.get("reason")
    out["reason"] = str(reason)[:1024] if isinstance(reason, str) and reason else None
    return out


def terminated_summary(pod: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
    """The client's summary and exit code once it has ended (``state.terminated``), else (None, None)."""
    term = (_client_status(pod).get("state") or {}).get("terminated")
    if not term:
        return None, None
    return parse_summary(term.get("message")), int(term.get("exitCode", 0) or 0)


_ENGINE_STUCK = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerError")


def engine_problem(pod: Mapping[str, Any]) -> str | None:
    """What is wrong with the pod's engine sidecar, in the kubelet's words: it crashed (exit code, restarts, the last
    lines of its log, which ``FallbackToLogsOnError`` puts in the termination message) or cannot start."""
    for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if cs.get("name") != ENGINE_CONTAINER:
            continue
        waiting = (cs.get("state") or {}).get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason") not in _ENGINE_STUCK and not last.get("exitCode"):
            return None
        what = last.get("reason") or waiting.get("reason") or "Error"
        msg = f"engine {what}"
        if "exitCode" in last:
            msg += f" (exit code {last['exitCode']}, {int(cs.get('restartCount') or 0)} restart(s))"
        elif waiting.get("message"):
            msg += f": {waiting['message']}"
        if (last.get("message") or "").strip():
            msg += f"; last log: {last_lines(str(last['message']))}"
        return msg
    return None


@dataclass(frozen=True)
class Shard:
    """The latest word on one shard: its newest pod with figures."""

    index: int
    phase: str
    figures: dict[str, Any] | None = None
    reason: str | None = None
    #: the newest pod's engine sidecar problem (a crash loop with its log tail), if any
    engine: str | None = None
    #: the running engine's load from its /metrics: (running, waiting, KV-cache usage or None)
    load: tuple[int, int, float | None] | None = None


def shards(
    pods: Sequence[Mapping[str, Any]],
    progress: Mapping[str, Mapping[str, Any]],
    count: int,
    engines: Mapping[str, tuple[int, int, float | None]] | None = None,
) -> dict[int, Shard]:
    """Per index, the newest pod's figures: its termination summary once it ended, its ``/progress`` while it runs
    (``progress`` maps a pod name to the parsed body), else an older pod's summary (a retry that has not reported
    yet). The client's figures are cumulative over retries (it counts what its output files already hold)."""
    by_index: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        i = shard_index(pod)
        if i is not None and 0 <= i < count:
            by_index.setdefault(i, []).append(pod)
    out: dict[int, Shard] = {}
    for i in range(count):
        candidates = sorted(
            by_index.get(i, []), key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or "")
        )
        phase, figures, reason, engine, load = "Pending", None, None, None, None
        for pod in candidates:  # oldest first: the newest with figures wins
            engine = engine_problem(pod)
            load = (engines or {}).get(str((pod.get("metadata") or {}).get("name")))
            name = str((pod.get("metadata") or {}).get("name"))
            summary, _ = terminated_summary(pod)
            live = progress.get(name)
            got = summary or (summary_from(dict(live)) if live is not None else None)
            phase = str((pod.get("status") or {}).get("phase") or "Pending")
            if got is not None:
                figures = got
                reason = got.get("reason")
        out[i] = Shard(i, phase, figures, reason, engine, load if phase == "Running" else None)
    return out


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


@dataclass(frozen=True)
class BatchObserved:
    generation: int
    shards: int
    job: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    progress: Mapping[str, Mapping[str, Any]]
    now: dt.datetime
    #: the refusal policy's verdict, a missing volume, or an unparseable spec: no Job is created
    refused: Refusal | None = None
    fit_verdict: str = "Unknown"
    fit_message: str = ""
    fit_summary: Mapping[str, Any] = field(default_factory=dict)
    gpu: str | None = None
    engine_version: str | None = None
    effective_args: tuple[str, ...] = ()
    previous: Mapping[str, Any] = field(default_factory=dict)
    suspended: bool = False
    #: the spec changed in a way the running Job cannot take (its pod template and completions are immutable)
    drift: str | None = None
    #: each running pod's engine load from its /metrics: pod name -> (running, waiting, KV-cache usage)
    engines: Mapping[str, tuple[int, int, float | None]] = field(default_factory=dict)


def job_condition(job: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return dict(c)
    return None


def terminal_reason(found: Mapping[int, Shard]) -> str | None:
    """A shard reason no retry can fix (the input does not exist), if any shard reported one."""
    for s in found.values():
        if s.reason and s.reason.split(":", 1)[0] in TERMINAL_REASONS:
            return f"shard {s.index}: {s.reason}"
    return None


def _fits(verdict: str) -> tuple[CondStatus, str]:
    if verdict in ("Fits", "Tight"):
        return "True", verdict
    if verdict == "DoesNotFit":
        return "False", "DoesNotFit"
    return "Unknown", "Unknown"


def compute(obs: BatchObserved, now: str) -> dict[str, Any]:
    """The whole ``status`` (camelCase, as stored)."""
    prev_conds = {c.get("type"): dict(c) for c in obs.previous.get("conditions") or [] if c.get("type")}
    gen = obs.generation
    found = shards(obs.pods, obs.progress, obs.shards, obs.engines)
    totals = dict.fromkeys(SUMMARY_KEYS, 0)
    all_reported = bool(found) and all(s.figures is not None for s in found.values())
    for s in found.values():
        for k in SUMMARY_KEYS:
            totals[k] += int((s.figures or {}).get(k, 0))
    # a shard that has not reported keeps what status showed for it (a retry pod starting up)
    prev_shards = {int(x.get("index", -1)): x for x in obs.previous.get("shardStatus") or []}
    shard_status = []
    for s in found.values():
        figures = s.figures or {}
        if s.figures is None and s.index in prev_shards:
            old = prev_shards[s.index]
            figures = {k: old.get(k, 0) for k in ("linesTotal", "linesDone", "linesFailed")}
            for k in ("linesTotal", "linesDone", "linesFailed"):
                totals[k] += int(figures.get(k, 0))
        entry: dict[str, Any] = {
            "index": s.index,
            "linesTotal": int(figures.get("linesTotal", 0)),
            "linesDone": int(figures.get("linesDone", 0)),
            "linesFailed": int(figures.get("linesFailed", 0)),
            "phase": s.phase,
        }
        if s.reason or s.engine:
            entry["reason"] = ", ".join(x for x in (s.reason, s.engine) if x)[:1024]
        if s.load is not None:
            entry["engineRequestsRunning"], entry["engineRequestsWaiting"] = s.load[0], s.load[1]
            if s.load[2] is not None:
                entry["kvCacheUsage"] = round(min(max(s.load[2], 0.0), 1.0), 4)
        shard_status.append(entry)

    job = obs.job
    job_status = (job or {}).get("status") or {}
    complete = job_condition(job, "Complete")
    job_failed = job_condition(job, "Failed")
    terminal = terminal_reason(found)
    finished_lines = totals["linesDone"] + totals["linesFailed"]

    out: dict[str, Any] = {"observedGeneration": gen, "shards": obs.shards}
    if job is not None:
        out["jobName"] = (job.get("metadata") or {}).get("name")
    elif obs.previous.get("jobName"):
        out["jobName"] = obs.previous["jobName"]
    out["shardsSucceeded"] = int(job_status.get("succeeded") or 0)
    out["shardsFailed"] = int(job_status.get("failed") or 0) if job_failed else _failed_indexes(job_status)
    out.update({k: v for k, v in totals.items()})
    started = _parse_time(job_status.get("startTime")) or _parse_time(obs.previous.get("startTime"))
    ended = _parse_time(job_status.get("completionTime"))
    if job_status.get("startTime"):
        out["startTime"] = job_status["startTime"]
    elif obs.previous.get("startTime"):
        out["startTime"] = obs.previous["startTime"]
    if complete is not None and job_status.get("completionTime"):
        out["completionTime"] = job_status["completionTime"]
    if started is not None and finished_lines:
        elapsed = max(((ended or obs.now) - started).total_seconds(), 1e-3)
        out["throughput"] = round(finished_lines / elapsed, 3)
        left = totals["linesTotal"] - finished_lines
        if all_reported and complete is None and job_failed is None and left > 0 and out["throughput"] > 0:
            out["estimatedSecondsLeft"] = int(left / out["throughput"] + 0.5)
    if all_reported and totals["linesTotal"]:
        pct = 100.0 * finished_lines / totals["linesTotal"]
        out["progress"] = f"{finished_lines}/{totals['linesTotal']} ({pct:.0f}%)"
    elif finished_lines:
        out["progress"] = f"{finished_lines}/?"
    out["shardStatus"] = shard_status
    if obs.gpu:
        out["gpu"] = obs.gpu
    if obs.engine_version:
        out["engineVersion"] = obs.engine_version
    if obs.effective_args:
        out["effectiveArgs"] = list(obs.effective_args)
    if obs.fit_summary:
        out["estimate"] = dict(obs.fit_summary)

    # conditions
    failed: tuple[str, str] | None = None
    if obs.refused is not None:
        failed = (obs.refused.reason, obs.refused.message)
    elif terminal is not None:
        failed = (
            REASON_INPUT_NOT_FOUND,
            f"{terminal}; the Job is suspended (fix the input, then change the spec or recreate the VLMBatchJob)",
        )
    elif job_failed is not None:
        reasons = "; ".join(
            f"shard {s.index}: " + ", ".join(x for x in (s.reason, s.engine) if x)
            for s in found.values()
            if s.reason or s.engine
        )
        msg = str(job_failed.get("message") or job_failed.get("reason") or "the Job failed")
        failed = (str(job_failed.get("reason") or "JobFailed"), msg + (f" ({reasons})" if reasons else ""))
    elif (
        (prev_conds.get("Failed") or {}).get("status") == "True"
        and (prev_conds.get("Failed") or {}).get("reason") == REASON_INPUT_NOT_FOUND
        and (prev_conds.get("Failed") or {}).get("observedGeneration") == gen
    ):
        old = prev_conds["Failed"]
        failed = (REASON_INPUT_NOT_FOUND, str(old.get("message", "")))  # sticky for this generation

    conds: list[dict[str, Any]] = []
    fit_status, fit_reason = _fits(obs.fit_verdict)
    conds.append(_cond("FitsGPU", fit_status, fit_reason, obs.fit_message[:4096], gen, now, prev_conds))
    if complete is not None:
        msg = (
            f"{totals['linesTotal']} lines: {totals['linesDone']} answered, {totals['linesFailed']} in the error files"
        )
        conds.append(_cond("Complete", "True", "AllShardsSucceeded", msg, gen, now, prev_conds))
        conds.append(_cond("Failed", "False", "Complete", "", gen, now, prev_conds))
        conds.append(_cond("Progressing", "False", "Complete", msg, gen, now, prev_conds))
    elif failed is not None:
        conds.append(_cond("Complete", "False", "Failed", failed[1][:4096], gen, now, prev_conds))
        conds.append(_cond("Failed", "True", failed[0], failed[1][:4096], gen, now, prev_conds))
        conds.append(_cond("Progressing", "False", failed[0], failed[1][:4096], gen, now, prev_conds))
    else:
        suspended = (
            obs.suspended or bool(job_condition(job, "Suspended")) or bool((job or {}).get("spec", {}).get("suspend"))
        )
        conds.append(_cond("Failed", "False", "NoFailure", "", gen, now, prev_conds))
        if suspended:
            msg = "the Job is suspended (spec.suspend, or a Kueue queue has not admitted it yet)"
            conds.append(_cond("Complete", "False", "Suspended", msg, gen, now, prev_conds))
            conds.append(_cond("Progressing", "False", "Suspended", msg, gen, now, prev_conds))
        else:
            running = int(job_status.get("active") or 0)
            msg = f"{running} of {obs.shards} shard(s) running; {out.get('progress', '0 lines finished')}"
            stuck = "; ".join(f"shard {s.index}: {s.engine}" for s in found.values() if s.engine)
            if stuck:
                msg += f"; {stuck}"
            reason = "Running" if job is not None else "Creating"
            conds.append(_cond("Complete", "False", reason, msg, gen, now, prev_conds))
            conds.append(_cond("Progressing", "True", reason, msg, gen, now, prev_conds))
    if obs.drift is not None:
        conds.append(_cond("SpecApplied", "False", "JobImmutable", obs.drift, gen, now, prev_conds))
    elif job is not None:
        conds.append(_cond("SpecApplied", "True", "JobMatchesSpec", "", gen, now, prev_conds))
    by_type = {c["type"]: c for c in conds}
    prog, fail = by_type["Progressing"], by_type["Failed"]
    conds.append(_cond("Reconciling", prog["status"], prog["reason"], prog["message"], gen, now, prev_conds))
    conds.append(_cond("Stalled", fail["status"], fail["reason"], fail["message"], gen, now, prev_conds))
    out["conditions"] = conds
    return out


def _failed_indexes(job_status: Mapping[str, Any]) -> int:
    """Indexes the Job marked failed (``status.failedIndexes``, e.g. ``"1,3-4"``)."""
    text = str(job_status.get("failedIndexes") or "")
    n = 0
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        try:
            n += int(hi or lo) - int(lo) + 1
        except ValueError:
            continue
    return n
