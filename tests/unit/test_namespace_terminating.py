"""A reconcile in a namespace that is being deleted, or of an object deleted while it ran, ends quietly (no
traceback, no retry); other refusals still raise."""

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


class _Kube:
    def __init__(self, body: dict[str, Any] | None) -> None:
        self.body = body

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert (kind, namespace, name) == ("VLMDeployment", "t-1", "s1")
        return self.body


def _not_found() -> ApiException:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = '{"kind":"Status","status":"Failure","reason":"NotFound","code":404}'
    return exc


@pytest.mark.parametrize("body", [None, {"metadata": {"deletionTimestamp": "2026-12-07T08:00:00Z"}}])
def test_an_object_deleted_during_its_reconcile_ends_it_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, body: dict[str, Any] | None
) -> None:
    monkeypatch.setattr(handlers, "_client", lambda: _Kube(body))
    monkeypatch.setattr(handlers.reconcile, "reconcile", _raising(_not_found()))
    logger = logging.getLogger("test")
    with caplog.at_level(logging.INFO, logger="test"):
        assert handlers._reconcile("t-1", "s1", logger, {}) is False  # type: ignore[arg-type]
    assert "t-1/s1 was deleted while it was reconciled" in caplog.text


def test_a_404_of_something_else_while_the_object_lives_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "_client", lambda: _Kube({"metadata": {"name": "s1"}}))
    monkeypatch.setattr(handlers.reconcile, "reconcile", _raising(_not_found()))
    with pytest.raises(ApiException):
        handlers._reconcile("t-1", "s1", logging.getLogger("test"), {})  # type: ignore[arg-type]
