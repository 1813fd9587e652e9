"""kopf's peering verdict mirrored for readiness and the paused warning (pure parts), and the health server."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from typing import Any

import aiohttp
import pytest

from vlm_operator import health, peering

NOW = dt.datetime(2026, 12, 7, 1, 0, 0, tzinfo=dt.UTC)
ME = "me@host/1"


def peer(priority: int, seconds_ago: float, lifetime: int = 15) -> dict[str, Any]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - dt.timedelta(seconds=seconds_ago)).isoformat(),
    }


def verdict(status: dict[str, Any] | None, priority: int = 10) -> str:
    body = None if status is None else {"status": status}
    return peering.evaluate(body, identity=ME, priority=priority, now=NOW).phase


def test_evaluate_mirrors_kopf() -> None:
    assert verdict(None) == "missing-object"
    assert verdict({}) == "active"
    assert verdict({ME: peer(10, 0)}) == "active"  # ourselves
    assert verdict({"b": peer(5, 1)}) == "active"  # lower priority peers never pause us
    assert verdict({"b": peer(20, 1)}) == "standby"
    assert verdict({"b": peer(20, 16)}) == "active"  # dead: lastseen + lifetime has passed
    assert verdict({"b": peer(20, 14)}) == "standby"
    assert verdict({"b": peer(10, 1)}) == "conflict"  # equal priorities pause both
    assert verdict({"b": peer(20, 1), "c": peer(10, 1)}) == "standby"
    assert verdict({"b": {"priority": 20}}) == "standby"  # no lastseen: kopf takes "now"
    assert verdict({"b": "garbage"}) == "active"


def test_states_ready_and_paused() -> None:
    assert peering.PeeringState("standby", "").ready and peering.PeeringState("standby", "").paused
    assert peering.PeeringState("active", "").ready and not peering.PeeringState("active", "").paused
    for phase in ("missing-object", "missing-crd", "conflict", "unknown"):
        st = peering.PeeringState(phase, "")  # type: ignore[arg-type]
        assert not st.ready and st.paused


def monitor(answers: list[tuple[bool, dict[str, Any] | None]], **kw: Any) -> peering.PeeringMonitor:
    def get(namespace: str | None) -> tuple[bool, dict[str, Any] | None]:
        return answers.pop(0)

    return peering.PeeringMonitor(get=get, name="vlm-operator", identity=ME, clock=lambda: NOW, **kw)


def test_monitor_warns_once_names_the_fix_and_logs_the_resume(caplog: pytest.LogCaptureFixture) -> None:
    m = monitor([(True, None)] * 3 + [(True, {"metadata": {"name": "vlm-operator"}})])
    with caplog.at_level(logging.INFO, logger="vlm_operator.peering"):
        for t in range(4):
            m.update(m.check(), float(t))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # the pause once (not per poll), then the resume
    assert "PAUSED" in warnings[0] and "ClusterKopfPeering 'vlm-operator' does not exist" in warnings[0]
    assert '"kind": "ClusterKopfPeering", "metadata": {"name": "vlm-operator"}' in warnings[0]
    assert "--standalone" in warnings[0]
    assert "resuming" in warnings[1]
    assert m.state.phase == "active" and [p for p, _ in m.transitions] == ["missing-object", "active"]


def test_monitor_missing_crd_and_namespaced_peering() -> None:
    m = monitor([(False, None)])
    st = m.check()
    assert st.phase == "missing-crd" and "crds/kopf-peering.yaml" in st.message
    m = monitor([(True, {}), (True, None)], namespaces=["a", "b"])
    st = m.check()  # the worst namespace decides
    assert st.phase == "missing-object"
    assert "KopfPeering 'vlm-operator' in namespace 'b'" in st.message and '"namespace": "b"' in st.message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_health_server_liveness_and_readiness() -> None:
    async def scenario() -> list[tuple[str, int, dict[str, Any]]]:
        m = monitor([])
        webhook = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        wport = webhook.sockets[0].getsockname()[1]
        port = free_port()
        h = health.Health(f"http://127.0.0.1:{port}/healthz", monitor=m, webhook=("127.0.0.1", wport))
        await h.start()
        seen: list[tuple[str, int, dict[str, Any]]] = []
        try:
            async with aiohttp.ClientSession() as session:

                async def probe(label: str, path: str) -> None:
                    async with session.get(f"http://127.0.0.1:{port}{path}") as rsp:
                        seen.append((label, rsp.status, await rsp.json()))

                m.update(peering.PeeringState("missing-object", "ClusterKopfPeering 'x' does not exist"), 0)
                await probe("missing/live", "/healthz")
                await probe("missing/ready", "/readyz")
                m.update(peering.PeeringState("standby", "standby: b acts"), 1)
                await probe("standby/ready", "/readyz")
                webhook.close()
                await webhook.wait_closed()
                await probe("no-webhook/ready", "/readyz")
        finally:
            await h.stop()
        return seen

    seen = {label: (status, body) for label, status, body in asyncio.run(scenario())}
    assert seen["missing/live"] == (200, {"alive": True, "peering": "missing-object"})
    status, body = seen["missing/ready"]
    assert status == 503 and body["ready"] is False and "does not exist" in body["reasons"][0]
    assert seen["standby/ready"][0] == 200 and seen["standby/ready"][1]["peering"] == "standby"
    status, body = seen["no-webhook/ready"]
    assert status == 503 and "webhook does not accept connections" in body["reasons"][0]


def test_health_rejects_a_bad_endpoint() -> None:
    with pytest.raises(ValueError, match="--liveness must look like"):
        asyncio.run(health.Health("https://0.0.0.0/healthz").start())


def test_the_monitor_polls_at_the_settings_interval_when_the_flag_is_not_given() -> None:
    """``--peering-check-interval`` left out is None in the parsed arguments; the monitor took that None and died on
    its first sleep, so /readyz and the drift resync's pause kept its first verdict for good."""
    import argparse

    from vlm_operator.cli import operator as cli_operator

    def monitor(*argv: str) -> Any:
        parser = argparse.ArgumentParser()
        cli_operator.add_arguments(parser)
        args = parser.parse_args(["run", *argv])
        settings = cli_operator.settings_from(args, {})
        return cli_operator.peering_monitor(args, settings, "me", get=lambda ns: (True, None))

    assert monitor().interval == 3.0
    assert monitor("--peering-check-interval", "1.5").interval == 1.5
    assert monitor("--standalone") is None
    m = monitor()
    asyncio.run(asyncio.wait_for(_two_checks(m), timeout=10))
    assert m.state.phase == "missing-object"


async def _two_checks(m: Any) -> None:
    m.interval = 0.01
    calls: list[object] = []
    get = m.get
    m.get = lambda ns: calls.append(ns) or get(ns)
    task = asyncio.create_task(m.run())
    while len(calls) < 2:  # the loop lives on after its first check
        await asyncio.sleep(0.01)
    task.cancel()
