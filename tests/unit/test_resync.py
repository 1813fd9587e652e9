"""The operator-wide drift resync (vlm_operator.resync): every known object once per interval, spread over it,
nothing while paused, gone objects dropped, a failing object never stops the others, and cancellation ends it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Hashable

import pytest

from vlm_operator.resync import ResyncLoop, spread


def test_spread_places_the_resyncs_evenly_over_the_interval() -> None:
    assert spread(["a", "b", "c", "d"], 100.0, 20.0) == [(100.0, "a"), (105.0, "b"), (110.0, "c"), (115.0, "d")]
    assert spread([], 0.0, 20.0) == []


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ResyncLoop(lambda key: True, interval_s=0)


def _run_for(loop: ResyncLoop, seconds: float, initial_delay_s: float = 0.0) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(loop.run(initial_delay_s=initial_delay_s))
        await asyncio.sleep(seconds)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_each_object_is_resynced_once_per_interval_and_not_all_at_once() -> None:
    seen: list[tuple[float, Hashable]] = []
    t0 = time.monotonic()

    def resync(key: Hashable) -> bool:
        seen.append((time.monotonic() - t0, key))
        return True

    loop = ResyncLoop(resync, interval_s=0.6)
    for key in [("ns", "c"), ("ns", "a"), ("ns", "b")]:
        loop.add(key)
    _run_for(loop, 1.45)  # two rounds (at 0 and 0.6 s) and most of a third (from 1.2 s: a, b)
    keys = [k for _, k in seen]
    assert keys[:6] == [("ns", "a"), ("ns", "b"), ("ns", "c")] * 2
    first_round = [t for t, _ in seen[:3]]
    gaps = [b - a for a, b in itertools.pairwise(first_round)]
    assert all(0.15 < g < 0.35 for g in gaps), gaps  # 0.2 s apart, not in the same instant
    assert 0.5 < seen[3][0] - seen[0][0] < 0.8  # the same object again one interval later
    assert loop.count == len(seen)


def test_nothing_is_resynced_while_paused_and_a_new_round_starts_after() -> None:
    seen: list[Hashable] = []
    paused = [True]
    loop = ResyncLoop(lambda k: seen.append(k) is None, interval_s=0.2, paused=lambda: paused[0], pause_poll_s=0.02)
    loop.add("x")

    async def scenario() -> None:
        task = asyncio.create_task(loop.run(initial_delay_s=0))
        await asyncio.sleep(0.5)
        assert seen == []  # paused: another replica acts
        paused[0] = False
        await asyncio.sleep(0.15)
        assert seen == ["x"]  # resumed: at once, in a fresh round
        paused[0] = True
        await asyncio.sleep(0.5)
        assert seen == ["x"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_gone_object_is_dropped_and_a_failing_one_does_not_stop_the_others() -> None:
    seen: list[Hashable] = []

    def resync(key: Hashable) -> bool:
        seen.append(key)
        if key == "broken":
            raise RuntimeError("the API server said no")
        return key != "gone"

    loop = ResyncLoop(resync, interval_s=0.3)
    for key in ("broken", "gone", "ok"):
        loop.add(key)
    _run_for(loop, 0.5)
    # each round's resyncs run on threads of their own, so their order within a round is the threads'
    assert sorted(map(str, seen[:3])) == ["broken", "gone", "ok"]
    assert sorted(map(str, seen[3:])) == ["broken", "ok"]  # "gone" was resynced once, then forgotten
    assert loop.keys() == ["broken", "ok"]


def test_an_object_deleted_during_a_round_is_skipped() -> None:
    seen: list[Hashable] = []
    loop = ResyncLoop(lambda k: seen.append(k) is None, interval_s=0.4)
    loop.add("a")
    loop.add("b")

    def drop_b(key: Hashable) -> bool:
        seen.append(key)
        loop.discard("b")  # the watch saw "b" deleted while "a" was resynced
        return True

    loop.resync = drop_b
    _run_for(loop, 0.3)
    assert seen == ["a"]


def test_the_first_round_waits_one_interval_by_default() -> None:
    seen: list[Hashable] = []
    loop = ResyncLoop(lambda k: seen.append(k) is None, interval_s=0.5)
    loop.add("a")

    async def scenario() -> None:
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.3)
        assert seen == []  # kopf's create/resume handlers just reconciled everything
        await asyncio.sleep(0.4)
        assert seen == ["a"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_an_object_whose_resync_hangs_holds_one_worker_not_the_others() -> None:
    import threading

    seen: list[Hashable] = []
    release = threading.Event()

    def resync(key: Hashable) -> bool:
        seen.append(key)
        if key == "a":
            release.wait(1.0)  # an API call waiting for its timeout (longer than the test runs the loop)
        return True

    loop = ResyncLoop(resync, interval_s=0.3, workers=2)
    for key in ("a", "b", "c"):
        loop.add(key)
    try:
        _run_for(loop, 0.75)
    finally:
        release.set()
    # "a" started once (it is not started again while it runs); "b" and "c" went on every round
    assert seen.count("a") == 1
    assert seen.count("b") >= 2 and seen.count("c") >= 2


def test_an_api_error_is_one_line_and_the_next_round_retries(caplog: pytest.LogCaptureFixture) -> None:
    from kubernetes.client.exceptions import ApiException

    calls: list[Hashable] = []

    def resync(key: Hashable) -> bool:
        calls.append(key)
        raise ApiException(status=409, reason="Conflict")

    loop = ResyncLoop(resync, interval_s=0.2)
    loop.add("a")
    with caplog.at_level("WARNING", logger="vlm_operator.resync"):
        _run_for(loop, 0.3)
    assert calls == ["a", "a"] and loop.keys() == ["a"]
    assert "(409) Conflict; the next round retries it" in caplog.text
    assert not any(r.exc_info for r in caplog.records)
