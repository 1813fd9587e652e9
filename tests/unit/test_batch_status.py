"""batchstatus.compute: a VLMBatchJob's status from recorded Job, pod and /progress observations."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from vlm_operator import batchstatus as bs

NOW = dt.datetime(2026, 12, 7, 4, 0, 0, tzinfo=dt.UTC)


def _summary(shard: int, total: int, done: int, failed: int = 0, reason: str | None = None) -> str:
    return json.dumps(
        {"shard": shard, "linesTotal": total, "linesDone": done, "linesFailed": failed, "images": done,
         "promptTokens": 10 * done, "completionTokens": 2 * done, "seconds": 1.0, "reason": reason}
    )  # fmt: skip


def _pod(name: str, index: int, phase: str, created: str, message: str | None = None, code: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if message is not None:
        state = {"terminated": {"exitCode": code, "message": message}}
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "annotations": {bs.INDEX_ANNOTATION: str(index)},
        },
        "status": {"phase": phase, "podIP": "127.100.0.9", "containerStatuses": [{"name": "client", "state": state}]},
    }


def _job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "caps"}, "spec": {}, "status": {"startTime": "2026-12-07T03:59:00Z", **status}}


def _conds(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_running_sums_live_progress_and_summaries() -> None:
    pods = [
        _pod("caps-0-a", 0, "Succeeded", "2026-12-07T03:59:00Z", _summary(0, 100, 99, 1)),
        _pod("caps-1-a", 1, "Running", "2026-12-07T03:59:00Z"),
    ]
    progress = {"caps-1-a": json.loads(_summary(1, 100, 20))}
    engines = {"caps-1-a": (3, 1, 0.25), "caps-0-a": (9, 9, 0.9)}  # a finished pod's load is not shown
    obs = bs.BatchObserved(3, 2, _job(active=1, succeeded=1), pods, progress, NOW, fit_verdict="Fits", engines=engines)
    st = bs.compute(obs, "2026-12-07T04:00:00Z")
    s0, s1 = st["shardStatus"]
    assert "engineRequestsRunning" not in s0
    assert (s1["engineRequestsRunning"], s1["engineRequestsWaiting"], s1["kvCacheUsage"]) == (3, 1, 0.25)
    assert (st["linesTotal"], st["linesDone"], st["linesFailed"]) == (200, 119, 1)
    assert st["images"] == 119 and st["promptTokens"] == 1190 and st["completionTokens"] == 238
    assert st["progress"] == "120/200 (60%)"
    assert st["throughput"] == 2.0 and st["estimatedSecondsLeft"] == 40
    c = _conds(st)
    assert c["Progressing"] == ("True", "Running") and c["Reconciling"][0] == "True"
    assert c["Complete"][0] == "False" and c["Failed"][0] == "False" and c["FitsGPU"] == ("True", "Fits")
    assert all(x["observedGeneration"] == 3 for x in st["conditions"])


def test_retry_pod_resumes_and_newest_figures_win() -> None:
    pods = [
        _pod("caps-0-a", 0, "Failed", "2026-12-07T03:59:00Z", _summary(0, 100, 40, reason="Terminated: SIGTERM"), 143),
        _pod("caps-0-b", 0, "Succeeded", "2026-12-07T03:59:30Z", _summary(0, 100, 100)),
    ]
    job = _job(succeeded=1, completionTime="2026-12-07T04:00:00Z", conditions=[{"type": "Complete", "status": "True"}])
    st = bs.compute(bs.BatchObserved(1, 1, job, pods, {}, NOW), "t")
    assert st["linesDone"] == 100 and st["progress"] == "100/100 (100%)" and "estimatedSecondsLeft" not in st
    c = _conds(st)
    assert c["Complete"] == ("True", "AllShardsSucceeded") and c["Progressing"][0] == "False"
    assert c["Stalled"][0] == "False" and c["Reconciling"][0] == "False"


def test_input_not_found_fails_and_names_the_shard() -> None:
    reason = "InputNotFound: GET https://x/in.jsonl: 404"
    pods = [_pod("caps-0-a", 0, "Failed", "2026-12-07T03:59:00Z", _summary(0, 0, 0, reason=reason), 2)]
    st = bs.compute(bs.BatchObserved(1, 1, _job(active=0), pods, {}, NOW), "t")
    c = _conds(st)
    assert c["Failed"] == ("True", "InputNotFound") and c["Stalled"] == ("True", "InputNotFound")
    failed = next(x for x in st["conditions"] if x["type"] == "Failed")
    assert "shard 0: InputNotFound: GET https://x/in.jsonl: 404" in failed["message"]
    # sticky for the generation once the pod is gone
    again = bs.compute(bs.BatchObserved(1, 1, _job(), [], {}, NOW, previous=st), "t")
    assert _conds(again)["Failed"] == ("True", "InputNotFound")
    assert _conds(bs.compute(bs.BatchObserved(2, 1, _job(), [], {}, NOW, previous=st), "t"))["Failed"][0] == "False"


def test_job_failed_quotes_shard_reasons_and_refusals_win() -> None:
    pods = [_pod("caps-1-a", 1, "Failed", "2026-12-07T03:59:00Z", _summary(1, 50, 3, reason="EngineUnavailable: x"), 3)]
    job = _job(failedIndexes="1", conditions=[{"type": "Failed", "status": "True", "reason": "FailedIndexes"}])
    st = bs.compute(bs.BatchObserved(1, 2, job, pods, {}, NOW), "t")
    failed = next(x for x in st["conditions"] if x["type"] == "Failed")
    assert failed["reason"] == "FailedIndexes" and "shard 1: EngineUnavailable: x" in failed["message"]
    refused = bs.Refusal("DoesNotFit", "not run: spec does not fit the GPU")
    st = bs.compute(bs.BatchObserved(1, 2, None, [], {}, NOW, refused=refused, fit_verdict="DoesNotFit"), "t")
    assert _conds(st)["Failed"] == ("True", "DoesNotFit") and _conds(st)["FitsGPU"] == ("False", "DoesNotFit")


def test_suspended_is_not_progressing() -> None:
    st = bs.compute(bs.BatchObserved(1, 2, {"metadata": {"name": "caps"}, "spec": {"suspend": True}}, [], {}, NOW), "t")
    assert _conds(st)["Progressing"] == ("False", "Suspended") and _conds(st)["Failed"][0] == "False"


def test_garbage_termination_message_is_ignored() -> None:
    pods = [_pod("caps-0-a", 0, "Failed", "2026-12-07T03:59:00Z", "Traceback (most recent call last): ...", 1)]
    st = bs.compute(bs.BatchObserved(1, 1, _job(), pods, {}, NOW), "t")
    assert st["linesDone"] == 0 and "progress" not in st


def test_the_engine_sidecar_crash_is_quoted_with_its_log() -> None:
    pod = _pod("caps-0-a", 0, "Running", "2026-12-07T03:59:00Z")
    pod["status"]["initContainerStatuses"] = [
        {
            "name": "vllm",
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {
                "terminated": {"exitCode": 1, "reason": "Error", "message": "loading\nCUDA out of memory. Tried 2 GiB"}
            },
        }
    ]
    st = bs.compute(bs.BatchObserved(1, 1, _job(active=1), [pod], {}, NOW), "t")
    prog = next(c for c in st["conditions"] if c["type"] == "Progressing")
    assert (
        "shard 0: engine Error (exit code 1, 3 restart(s)); last log: loading | CUDA out of memory" in prog["message"]
    )
    job = _job(conditions=[{"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "x"}])
    failed = next(
        c for c in bs.compute(bs.BatchObserved(1, 1, job, [pod], {}, NOW), "t")["conditions"] if c["type"] == "Failed"
    )
    assert "CUDA out of memory" in failed["message"] and st["shardStatus"][0]["reason"].startswith("engine Error")


def test_a_spec_change_the_job_cannot_take_is_reported() -> None:
    st = bs.compute(bs.BatchObserved(2, 1, _job(active=1), [], {}, NOW, drift="the spec changed after Job caps"), "t")
    applied = next(c for c in st["conditions"] if c["type"] == "SpecApplied")
    assert (applied["status"], applied["reason"]) == ("False", "JobImmutable") and "caps" in applied["message"]
    st = bs.compute(bs.BatchObserved(2, 1, _job(active=1), [], {}, NOW), "t")
    assert next(c for c in st["conditions"] if c["type"] == "SpecApplied")["status"] == "True"
