"""Many child events, one reconcile: the events of one VLMDeployment's pods and Deployment within a short window
become a single reconcile at the window's end.

Why: a pod that starts moves through four or five watch events (created, scheduled, running, ready) and its
Deployment through three more; each used to run a whole reconcile (four GETs, the fit check, the render, maybe a
status write of a state that lasted a few milliseconds). The reconcile is level-based, so the last one of a burst sees
everything the others would have; the window (default 0.5 s) is the most a status update is delayed by.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

_log = logging.getLogger(__name__)


class Coalescer:
    """``ask(key)`` runs ``run(key)`` once, ``window_s`` after the first ask that found no run pending for ``key``.

    Runs happen on a small thread pool (``workers``); a key whose run is under way can be asked again and runs once
    more after it (its new window starts at that ask)."""

    def __init__(
        self,
        run: Callable[[Hashable], None],
        window_s: float = 0.5,
        workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run, self.window_s, self.clock = run, window_s, clock
        self._due: dict[Hashable, float] = {}
        self._cv = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="coalesce")
        self._thread: threading.Thread | None = None
        self._stopped = False

    def ask(self, key: Hashable) -> None:
        with self._cv:
            if key in self._due:
                return  # already pending: this event is folded into that run
            self._due[key] = self.clock() + self.window_s
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="coalesce-timer", daemon=True)
                self._thread.start()
            self._cv.notify()

    def pending(self) -> int:
        with self._cv:
            return len(self._due)

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()
        self._pool.shutdown(wait=True)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopped:
                    now = self.clock()
                    due = [k for k, at in self._due.items() if at <= now]
                    if due:
                        for k in due:
                            del self._due[k]
                        break
                    wait = min(self._due.values()) - now if self._due else None
                    self._cv.wait(wait)
                if self._stopped:
                    return
            for key in due:
                self._pool.submit(self._run_one, key)

    def _run_one(self, key: Hashable) -> None:
        try:
            self.run(key)
        except Exception:  # one object's failure never stops the others; the drift resync retries it
            _log.exception(f"reconcile of {key} after child events failed")
