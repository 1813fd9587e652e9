"""vlm_operator.coalesce: a burst of child events of one owner becomes one reconcile; owners stay independent."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from vlm_operator.coalesce import Coalescer


def test_a_burst_of_asks_runs_once_per_key_after_the_window() -> None:
    runs: list[Hashable] = []
    done = threading.Event()

    def run(key: Hashable) -> None:
        runs.append(key)
        if len(runs) == 2:
            done.set()

    c = Coalescer(run, window_s=0.2)
    try:
        t0 = time.monotonic()
        for _ in range(50):
            c.ask(("ns", "a"))
            c.ask(("ns", "b"))
        assert c.pending() == 2
        assert done.wait(5)
        assert time.monotonic() - t0 >= 0.2  # not before the window ends
        time.sleep(0.3)
        assert sorted(runs) == [("ns", "a"), ("ns", "b")]  # 100 asks, 2 runs
        # a later ask runs again
        c.ask(("ns", "a"))
        deadline = time.monotonic() + 5
        while len(runs) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs[-1] == ("ns", "a") and len(runs) == 3
    finally:
        c.stop()


def test_a_failing_run_does_not_stop_the_others() -> None:
    ran = threading.Event()

    def run(key: Hashable) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        ran.set()

    c = Coalescer(run, window_s=0.05)
    try:
        c.ask("bad")
        time.sleep(0.2)
        c.ask("good")
        assert ran.wait(5)
    finally:
        c.stop()
