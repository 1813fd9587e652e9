"""A reconcile in a namespace that is being deleted ends quietly (no traceback, no retry); other refusals still
raise."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from vlm_operator import handlers

TERMINATING = (
    '{"kind":"Status","status":"Failure","message":"deployments.apps \\"s1\\" is forbidden: unable to create new '
    'content in namespace t-1 because it is being terminated","reason":"Forbidden","code":403}'
)


def _raising(exc: ApiException) -> Any:
    def reconcile(*_: Any, **__: Any) -> None:
        raise exc

    return reconcile


def _refusal(status: int, body: str) -> ApiException:
    exc = ApiException(status=status, reason="Forbidden")
    exc.body = body
    return exc


def test_a_terminating_namespace_ends_the_reconcile_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(handlers, "_client", lambda: None)
    monkeypatch.setattr(handlers.reconcile, "reconcile", _raising(_refusal(403, TERMINATING)))
    logger = logging.getLogger("test")
    with caplog.at_level(logging.INFO, logger="test"):
        handlers._reconcile("t-1", "s1", logger, {})  # type: ignore[arg-type]
    assert "namespace t-1 is being deleted" in caplog.text


@pytest.mark.parametrize(
    ("status", "body"), [(403, '{"message":"pods is forbidden: User \\"x\\" cannot list"}'), (500, TERMINATING)]
)
def test_other_refusals_still_raise(monkeypatch: pytest.MonkeyPatch, status: int, body: str) -> None:
    monkeypatch.setattr(handlers, "_client", lambda: None)
    monkeypatch.setattr(handlers.reconcile, "reconcile", _raising(_refusal(status, body)))
    with pytest.raises(ApiException):
        handlers._reconcile("t-1", "s1", logging.getLogger("test"), {})  # type: ignore[arg-type]
