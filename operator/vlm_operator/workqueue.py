"""One queue of reconciles for the whole operator: many triggers of one object, one reconcile at a time.

Every trigger (a VLMDeployment created, changed or listed at start-up; its pods' and Deployment's events; the
autoscaler) calls :meth:`WorkQueue.add` with the object's key and how long the trigger may wait. The queue:

- holds a key at most once: a trigger that finds its key waiting is folded into that run (moved earlier if it asks
  for an earlier time). Child events ask for a short window (half a second by default), so a pod that moves through
  four or five states in that time costs one reconcile, not five;
- runs a key on one worker at a time: a trigger that arrives while its key runs marks it to run once more afterwards,
  so no change is missed and no two reconciles of one object overlap;
- retries a key whose run raised, after a delay that doubles from ``retry_base_s`` up to ``retry_max_s`` and is reset
  by the next success; a newer trigger does not wait for that delay;
- runs a key again after the delay its run returns (a fit check waiting for the Hub).

The idea is client-go's work queue (k8s.io/client-go, util/workqueue: the "dirty" and "processing" sets, and the
per-item exponential failure rate limiter); this is its small threaded form for blocking reconciles.

Before it, kopf called a blocking create/update handler for each VLMDeployment event in turn: each event held one of
kopf's six executor threads for a whole reconcile, the object's later events queued behind it as decoded bodies, and
every status write the reconcile made came back as one more event to process.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Hashable

from kubernetes.client.exceptions import ApiException

_log = logging.getLogger(__name__)

#: ``run(key)``: reconcile one key; returns None, or seconds after which the key is to run again.
Run = Callable[[Hashable], "float | None"]


def api_message(exc: ApiException) -> str:
    """The API server's own words for a refusal (the ``message`` of its Status body, which names the verb, the
    resource and the user for a 403), else the raw body, shortened."""
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or body or "no message")[:500]


class WorkQueue:
    """See the module docstring. Worker threads start with the first :meth:`add` and end with :meth:`stop`."""

    def __init__(
        self,
        run: Run,
        workers: int = 6,
        retry_base_s: float = 1.0,
        retry_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "reconcile",
    ) -> None:
        if workers < 1:
            raise ValueError(f"a work queue needs at least one worker, not {workers}")
        self.run, self.workers, self.clock, self.name = run, workers, clock, name
        self.retry_base_s, self.retry_max_s = retry_base_s, retry_max_s
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self._due: dict[Hashable, float] = {}  # waiting keys and when they are due
        self._processing: set[Hashable] = set()
        self._again: dict[Hashable, float] = {}  # keys asked for while they ran, and when they are due
        self._since: dict[Hashable, float] = {}  # waiting keys: when their wait began
        self._failures: dict[Hashable, int] = {}
        self._threads: list[threading.Thread] = []
        self._stopped = False
        #: runs finished (succeeded or raised), for tests and the operator's metrics
        self.runs = 0

    def add(self, key: Hashable, delay_s: float = 0.0, settle_max_s: float | None = None) -> None:
        """Run ``key`` at most ``delay_s`` from now (sooner when it is already due sooner).

        ``settle_max_s``: a trigger that wants the burst it belongs to to settle first (child events): it also moves a
        waiting run later, to ``delay_s`` after itself, but never past ``settle_max_s`` after the trigger that started
        the wait. So a pod that moves through its states within a second costs one run at the end, not one per
        window, and a steady stream of events still gets a run every ``settle_max_s``."""
        with self._cv:
            if self._stopped:
                return
            now = self.clock()
            due = now + max(0.0, delay_s)
            if key in self._processing:
                self._again[key] = min(self._again.get(key, due), due)
                return
            current = self._due.get(key)
            if current is None:
                self._since[key] = now
            elif settle_max_s is not None and due > current:
                due = min(due, self._since.get(key, now) + settle_max_s)
                if due > current:
                    self._move(key, due)
                return
            self._push(key, due)
            if not self._threads:
                self._start()

    def _move(self, key: Hashable, due: float) -> None:
        """Make a waiting ``key`` due at ``due`` (later or sooner); its old heap entry is skipped when it comes up."""
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._cv.notify()

    def _push(self, key: Hashable, due: float) -> None:
        current = self._due.get(key)
        if current is not None and current <= due:
            return  # already due as soon or sooner: this trigger is folded into that run
        self._move(key, due)

    def _start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def pending(self) -> int:
        """Keys waiting or running."""
        with self._cv:
            return len(self._due) + len(self._processing)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking keys; wait (up to ``timeout_s``) for the runs under way to finish."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> Hashable | None:
        """The next due key (marked as processing), or None once stopped. Waits for one."""
        with self._cv:
            while not self._stopped:
                now = self.clock()
                while self._heap:
                    due, _, key = self._heap[0]
                    if self._due.get(key) != due:
                        heapq.heappop(self._heap)  # superseded by an earlier entry of the same key
                        continue
                    break
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._since.pop(key, None)
                    self._processing.add(key)
                    return key
                self._cv.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _work(self) -> None:
        while (key := self._next()) is not None:
            again: float | None
            try:
                again = self.run(key)
                with self._cv:
                    self._failures.pop(key, None)
            except Exception as exc:  # one object's failure never stops the others
                with self._cv:
                    n = self._failures[key] = self._failures.get(key, 0) + 1
                again = min(self.retry_max_s, self.retry_base_s * 2 ** (n - 1))
                if isinstance(exc, ApiException):  # the API server's answer says it all; no traceback
                    _log.warning(
                        f"reconcile of {key} failed (HTTP {exc.status} {exc.reason}: {api_message(exc)}); "
                        f"retrying in {again:g} s"
                    )
                else:
                    _log.exception(f"reconcile of {key} failed; retrying in {again:g} s")
            with self._cv:
                self.runs += 1
                self._processing.discard(key)
                due = self._again.pop(key, None)
                if again is not None:
                    at = self.clock() + again
                    due = at if due is None else min(due, at)
                if due is not None and not self._stopped:
                    self._since[key] = self.clock()
                    self._push(key, due)
