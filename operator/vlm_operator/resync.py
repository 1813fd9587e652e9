"""The drift resync: one operator-wide loop that reconciles every VLMDeployment once per drift interval.

Why not a kopf timer per object: kopf puts its finalizer on every object a timer runs on (kopf 1.45.2,
``kopf/on.py``, ``timer()`` builds its handler with ``requires_finalizer=True``), and that PATCH was the sixth write of
every create. One loop also costs one task instead of one task and one wake-up per object.

- The objects are known from the watch of VLMDeployments (the operator's ``on.event`` handler calls :meth:`add` and
  :meth:`discard`); an object whose reconcile finds it gone is dropped too.
- Each round takes a snapshot of the objects and spreads their resyncs evenly over the interval, so 1,000 objects are
  not all reconciled in the same second. Each resync runs in a thread (the reconcile is blocking), at most
  ``workers`` at once: an object whose reconcile hangs (an API call waiting for its timeout) holds one worker, not
  the others' resyncs, and is not started again while it runs. When every worker is busy, the round waits for one.
- While this replica is paused (kopf's peering: a peer with a higher priority acts, or the peering object is missing;
  :mod:`vlm_operator.peering` mirrors kopf's verdict), nothing is resynced; after the pause a new round starts.
- Cancelling :meth:`run` (on kopf's clean-up) ends it at once; a resync already running in its thread finishes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence

from kubernetes.client.exceptions import ApiException

_log = logging.getLogger(__name__)

#: ``resync(key)``: reconcile one object; returns False when the object no longer exists (it is then forgotten).
Resync = Callable[[Hashable], bool]


def spread(keys: Sequence[Hashable], start: float, interval_s: float) -> list[tuple[float, Hashable]]:
    """Pure: when each of ``keys`` is resynced in a round that starts at ``start``: evenly spaced over the interval,
    the first at ``start``."""
    if not keys:
        return []
    step = interval_s / len(keys)
    return [(start + i * step, key) for i, key in enumerate(keys)]


class ResyncLoop:
    """Resync every known key once per ``interval_s`` (see the module docstring)."""

    def __init__(
        self,
        resync: Resync,
        interval_s: float,
        paused: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        pause_poll_s: float = 1.0,
        workers: int = 2,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"the drift interval must be positive, not {interval_s}")
        self.resync, self.interval_s, self.paused, self.clock = resync, interval_s, paused, clock
        self.pause_poll_s, self.workers = pause_poll_s, workers
        self._running: set[Hashable] = set()
        self._keys: dict[Hashable, None] = {}
        self._lock = threading.Lock()  # kopf calls the event handler that feeds it from its worker threads
        #: how many resyncs ran (for tests and the operator's logs)
        self.count = 0

    def add(self, key: Hashable) -> None:
        with self._lock:
            self._keys[key] = None

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return sorted(self._keys, key=repr)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._keys

    async def _sleep_until(self, at: float) -> None:
        delay = at - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _wait_while_paused(self) -> bool:
        """Wait until this replica is not paused; True when it had to wait."""
        waited = False
        while self.paused():
            if not waited:
                _log.info("drift resync paused (kopf peering: another replica acts or the peering is not ready)")
            waited = True
            await asyncio.sleep(self.pause_poll_s)
        if waited:
            _log.info("drift resync resumed")
        return waited

    async def run(self, initial_delay_s: float | None = None) -> None:
        """Resync forever (until cancelled). The first round starts after ``initial_delay_s`` (default: one interval,
        since every object was just reconciled by kopf's create/resume handlers)."""
        slots = asyncio.Semaphore(self.workers)
        tasks: set[asyncio.Task[None]] = set()
        try:
            await asyncio.sleep(self.interval_s if initial_delay_s is None else initial_delay_s)
            while True:
                await self._wait_while_paused()
                start = self.clock()
                interrupted = False
                for at, key in spread(self.keys(), start, self.interval_s):
                    await self._sleep_until(at)
                    if self.paused():
                        interrupted = True  # the rest of this round waits for a fresh round after the pause
                        break
                    if key not in self or key in self._running:
                        continue  # deleted meanwhile, or its last resync still runs
                    await slots.acquire()
                    self._running.add(key)
                    task = asyncio.create_task(self._one(key, slots), name=f"drift resync of {key}")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if not interrupted:
                    await self._sleep_until(start + self.interval_s)
        finally:
            for task in list(tasks):
                task.cancel()  # a reconcile already in its thread finishes there; nothing waits for it

    def _counted(self, key: Hashable) -> bool:
        # Counted in the thread, when the resync starts: a task cancelled before its thread ran it resynced nothing.
        with self._lock:
            self.count += 1
        return self.resync(key)

    async def _one(self, key: Hashable, slots: asyncio.Semaphore) -> None:
        try:
            exists = await asyncio.to_thread(self._counted, key)
        except ApiException as exc:  # a conflict, a throttle, an API server that restarts: the next round retries
            _log.warning(f"drift resync of {key} failed: ({exc.status}) {exc.reason}; the next round retries it")
            return
        except Exception:  # one object's failure never stops the others; the next round retries it
            _log.exception(f"drift resync of {key} failed")
            return
        finally:
            self._running.discard(key)
            slots.release()
        if not exists:
            self.discard(key)
