"""The operator's work queue (vlm_operator/workqueue.py): one run per key at a time, bursts folded, retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

import pytest
from kubernetes.client.exceptions import ApiException

from vlm_operator.workqueue import WorkQueue


def _wait(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Recorder:
    def __init__(self, hold: threading.Event | None = None, fail: int = 0, again: float | None = None) -> None:
        self.runs: list[tuple[Hashable, float]] = []
        self.active: set[Hashable] = set()
        self.overlap = False
        self.hold, self.fail, self.again = hold, fail, again
        self.lock = threading.Lock()

    def __call__(self, key: Hashable) -> float | None:
        with self.lock:
            if key in self.active:
                self.overlap = True
            self.active.add(key)
            self.runs.append((key, time.monotonic()))
            n = len(self.runs)
        try:
            if self.hold is not None:
                self.hold.wait(5)
            if n <= self.fail:
                raise ApiException(status=500, reason="boom")
            return self.again if n == 1 else None
        finally:
            with self.lock:
                self.active.discard(key)


def test_a_burst_of_triggers_within_the_window_is_one_run() -> None:
    rec = Recorder()
    q = WorkQueue(rec, workers=2)
    try:
        t0 = time.monotonic()
        for _ in range(20):
            q.add("a", 0.2)
        _wait(lambda: q.runs == 1)
        time.sleep(0.3)
        assert [k for k, _ in rec.runs] == ["a"]
        assert rec.runs[0][1] - t0 >= 0.19  # at the window's end, not at the first trigger
    finally:
        q.stop()


def test_a_burst_that_goes_on_moves_its_run_to_its_end_up_to_the_settle_limit() -> None:
    rec = Recorder()
    q = WorkQueue(rec, workers=1)
    try:
        t0 = time.monotonic()
        for _ in range(6):  # events every 0.1 s for 0.5 s, each asking for 0.2 s of quiet
            q.add("a", 0.2, settle_max_s=5.0)
            time.sleep(0.1)
        _wait(lambda: q.runs == 1)
        assert rec.runs[0][1] - t0 >= 0.65  # 0.2 s after the last event, not 0.2 s after the first
        # a stream that never settles still runs by the limit
        t1 = time.monotonic()
        while q.runs == 1 and time.monotonic() - t1 < 3:
            q.add("a", 0.2, settle_max_s=0.6)
            time.sleep(0.05)
        assert q.runs == 2 and rec.runs[1][1] - t1 < 0.9
    finally:
        q.stop()


def test_an_immediate_trigger_moves_a_waiting_run_earlier() -> None:
    rec = Recorder()
    q = WorkQueue(rec, workers=1)
    try:
        t0 = time.monotonic()
        q.add("a", 5.0)
        q.add("a", 0.0)
        _wait(lambda: q.runs == 1)
        assert rec.runs[0][1] - t0 < 1.0
        assert q.pending() == 0  # the later entry was folded in, not left to run again
    finally:
        q.stop()


def test_a_trigger_during_a_run_runs_the_key_once_more_afterwards_never_at_the_same_time() -> None:
    hold = threading.Event()
    rec = Recorder(hold=hold)
    q = WorkQueue(rec, workers=4)
    try:
        q.add("a")
        _wait(lambda: "a" in rec.active)
        for _ in range(5):
            q.add("a")  # while it runs: four idle workers, yet no second run starts now
        time.sleep(0.1)
        assert len(rec.runs) == 1
        hold.set()
        _wait(lambda: q.runs == 2)
        time.sleep(0.1)
        assert len(rec.runs) == 2 and not rec.overlap
    finally:
        q.stop()


def test_keys_run_side_by_side_on_the_workers() -> None:
    hold = threading.Event()
    rec = Recorder(hold=hold)
    q = WorkQueue(rec, workers=3)
    try:
        for key in "abc":
            q.add(key)
        _wait(lambda: len(rec.active) == 3)
        hold.set()
        _wait(lambda: q.runs == 3)
    finally:
        q.stop()


def test_a_failed_run_is_retried_with_a_growing_delay(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(fail=2)
    q = WorkQueue(rec, workers=1, retry_base_s=0.1, retry_max_s=1.0)
    try:
        q.add("a")
        _wait(lambda: q.runs == 3)
        (_, t1), (_, t2), (_, t3) = rec.runs
        assert 0.09 <= t2 - t1 < 0.5  # 0.1 s after the first failure
        assert 0.19 <= t3 - t2 < 0.7  # 0.2 s after the second
        time.sleep(0.3)
        assert q.runs == 3  # the success ends the retries
        assert "HTTP 500" in caplog.text and "Traceback" not in caplog.text
    finally:
        q.stop()


def test_a_new_trigger_does_not_wait_for_a_retry_delay() -> None:
    rec = Recorder(fail=1)
    q = WorkQueue(rec, workers=1, retry_base_s=10.0, retry_max_s=10.0)
    try:
        q.add("a")
        _wait(lambda: q.runs == 1)
        q.add("a")  # a watch event: the object changed, so run now, not in 10 s
        _wait(lambda: q.runs == 2, timeout_s=2.0)
    finally:
        q.stop()


def test_a_run_can_ask_to_run_again_later() -> None:
    rec = Recorder(again=0.2)
    q = WorkQueue(rec, workers=1)
    try:
        q.add("a")
        _wait(lambda: q.runs == 2)
        (_, t1), (_, t2) = rec.runs
        assert t2 - t1 >= 0.19
    finally:
        q.stop()


def test_after_stop_nothing_runs() -> None:
    rec = Recorder()
    q = WorkQueue(rec, workers=1)
    q.add("a")
    _wait(lambda: q.runs == 1)
    q.stop()
    q.add("b")
    time.sleep(0.1)
    assert [k for k, _ in rec.runs] == ["a"]


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        WorkQueue(lambda key: None, workers=0)


def test_an_api_refusal_is_logged_in_the_api_servers_words(caplog: pytest.LogCaptureFixture) -> None:
    import json

    from vlm_operator.workqueue import api_message

    denied = ApiException(status=403, reason="Forbidden")
    denied.body = json.dumps(
        {
            "kind": "Status",
            "message": 'vlmdeployments.vlmops.io "m" is forbidden: User "sa" cannot patch resource '
            '"vlmdeployments/status" in API group "vlmops.io"',
        }
    )
    assert 'cannot patch resource "vlmdeployments/status"' in api_message(denied)
    raw = ApiException(status=500, reason="Internal")
    raw.body = b"not json"
    assert api_message(raw) == "not json"
    assert api_message(ApiException(status=503, reason="Unavailable")) == "no message"

    def refuse(key: Hashable) -> None:
        raise denied

    q = WorkQueue(refuse, workers=1, retry_base_s=10.0)
    try:
        q.add("a")
        _wait(lambda: q.runs == 1)
        assert 'cannot patch resource "vlmdeployments/status"' in caplog.text
    finally:
        q.stop()
