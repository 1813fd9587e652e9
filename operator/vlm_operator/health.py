"""Liveness and readiness for ``vlmctl operator run --liveness URL``.

kopf's own liveness endpoint answers 200 as long as the event loop runs, also while kopf is paused by its peering
(see :mod:`vlm_operator.peering`). A paused operator is alive (restarting it would not help) but not ready, so this
server answers two paths on the ``--liveness`` host and port:

* the liveness path (``/healthz`` in the chart): 200 while the event loop answers, with the peering phase in the body;
* ``/readyz``: 200 when this replica does its job: the peering is active or standby (or ``--standalone``) and, with
  the webhook on, the webhook port accepts connections. 503 otherwise, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from vlm_operator.peering import PeeringMonitor, PeeringState

READY_PATH = "/readyz"
log = logging.getLogger("vlm_operator.health")


@dataclass
class Health:
    endpoint: str
    monitor: PeeringMonitor | None = None
    webhook: tuple[str, int] | None = None  # (host to dial, port); None with --no-webhook
    _runner: aiohttp.web.AppRunner | None = field(default=None, repr=False)

    def peering(self) -> PeeringState:
        if self.monitor is None:
            return PeeringState("standalone", "standalone: no peering")
        return self.monitor.state

    async def webhook_listening(self) -> bool:
        if self.webhook is None:
            return True
        host, port = self.webhook
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        st = self.peering()
        webhook = await self.webhook_listening()
        body: dict[str, Any] = {"peering": st.phase, "message": st.message, "webhook": webhook}
        reasons = [] if st.ready else [st.message]
        if not webhook and self.webhook is not None:
            reasons.append(f"the webhook does not accept connections on {self.webhook[0]}:{self.webhook[1]} yet")
        body["ready"] = not reasons
        if reasons:
            body["reasons"] = reasons
        return not reasons, body

    async def start(self) -> None:
        parts = urllib.parse.urlsplit(self.endpoint)
        if parts.scheme != "http" or parts.port is None:
            raise ValueError(f"--liveness must look like http://0.0.0.0:8080/healthz, not {self.endpoint!r}")
        live_path = parts.path or "/healthz"

        async def live(_: aiohttp.web.Request) -> aiohttp.web.Response:
            return aiohttp.web.json_response({"alive": True, "peering": self.peering().phase})

        async def ready(_: aiohttp.web.Request) -> aiohttp.web.Response:
            ok, body = await self.readiness()
            return aiohttp.web.json_response(body, status=200 if ok else 503)

        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.get(live_path, live), aiohttp.web.get(READY_PATH, ready)])
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, parts.hostname or "127.0.0.1", parts.port).start()
        log.info("health: liveness at %s, readiness at %s", live_path, READY_PATH)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def install(*, health: Health | None, monitor: PeeringMonitor | None, lifetime: int | None) -> None:
    """Register kopf start-up/clean-up handlers that run the peering monitor and the health server in kopf's loop."""
    import kopf

    tasks: list[asyncio.Task[None]] = []

    @kopf.on.startup()
    async def vlm_peering_and_health_start(settings: kopf.OperatorSettings, **_: Any) -> None:
        if lifetime is not None:
            settings.peering.lifetime = lifetime
        if monitor is not None:
            tasks.append(asyncio.create_task(monitor.run(), name="vlm peering monitor"))
        if health is not None:
            await health.start()

    @kopf.on.cleanup()
    async def vlm_peering_and_health_stop(**_: Any) -> None:
        for t in tasks:
            t.cancel()
        if health is not None:
            await health.stop()
