"""The validating webhook answers while kopf's sync-handler executor is busy with reconciles.

kopf runs every sync handler on one executor (``settings.execution.executor``: 6 threads on 2 cores). In a rollout
of 1,000 VLMDeployments every thread held a reconcile, and admission requests queued behind them until the API
server gave up on the webhook. The validating handler now runs on threads of its own. These tests go through kopf's
own invocation (``kopf._core.actions.invocation.invoke``, what kopf's admission server calls) with that executor
saturated.
"""

from __future__ import annotations

import threading
from typing import Any

import kopf
import pytest

from tests.kopf_invoke import invoke_with_kopf_executor_busy
from vlm_operator import handlers
from vlm_operator.settings import Settings


def _validating_handler() -> Any:
    registry = handlers.register(Settings(webhook=True), kopf.OperatorRegistry())
    (h,) = [h for h in registry._webhooks.get_all_handlers() if h.id == handlers.VALIDATE_ID]
    return h.fn


def test_an_update_that_keeps_the_spec_is_admitted_while_kopf_threads_are_busy() -> None:
    fn = _validating_handler()
    body = {"metadata": {"name": "a", "namespace": "n"}, "spec": {"model": {"id": "x"}}}
    warnings: list[str] = []
    # a metadata-only change (kopf's finalizer, an annotation) is never refused, and needs no API call
    assert invoke_with_kopf_executor_busy(fn, {"body": body, "old": dict(body), "warnings": warnings}) is None
    assert warnings == []


def test_a_refusal_and_its_warnings_come_back_from_the_admission_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def refuse(body: Any, warnings: list[str], **_: Any) -> None:
        seen.append(threading.current_thread().name)
        warnings.append("does not fit")
        raise kopf.AdmissionError("refused: spec.resources.gpu", code=422)

    monkeypatch.setattr(handlers, "validate_vlmd", refuse)
    fn = _validating_handler()
    warnings: list[str] = []
    with pytest.raises(kopf.AdmissionError, match=r"spec\.resources\.gpu"):
        invoke_with_kopf_executor_busy(fn, {"body": {"spec": {}}, "warnings": warnings})
    assert warnings == ["does not fit"]
    assert seen and seen[0].startswith("admission")
