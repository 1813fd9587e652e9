"""A bounded burst of multimodal chat requests to the ready pods of a VLMDeployment, by pod IP (tests and the demo).

``clients`` closed-loop clients each send one chat completion with a tiny base64 PNG at a time, round robin over the
pods that are ready at that moment (the list is refreshed every half second, so new pods take load as soon as they
are Ready, as they would behind a Service), until ``seconds`` have passed; requests in flight then finish and the
load ends by itself. Only the addresses given are dialled, never through a proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..conditions import pod_serving
from ..smoke import smoke_request

#: Returns the base URLs (``http://<podIP>:8000``) to send to now.
Targets = Callable[[], list[str]]


def ready_pod_urls(pods: list[dict[str, Any]], port: int = 8000) -> list[str]:
    """Base URLs of the pods that are ready, have an IP and are not terminating."""
    out = []
    for p in pods:
        if pod_serving(p):
            out.append(f"http://{p['status']['podIP']}:{port}")
    return sorted(out)


@dataclass
class BurstLoad:
    targets: Targets
    model: str
    clients: int
    seconds: float
    max_tokens: int = 16
    #: Upper bound of one request; the load ends at most this long after ``seconds``.
    request_timeout: float = 20.0
    ok: int = 0
    failed: int = 0
    started: float = 0.0
    #: When the clients stop sending (requests in flight then still finish).
    deadline: float = 0.0
    ended: float = 0.0
    _urls: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> BurstLoad:
        """Start in a background thread (its own event loop); returns at once."""
        self.started = time.monotonic()
        self.deadline = self.started + self.seconds
        self._urls = self.targets()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(self.seconds + self.request_timeout + 10)
            if self._thread.is_alive():
                raise RuntimeError("the load did not stop")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def _main(self) -> None:
        body = smoke_request(self.model, max_tokens=self.max_tokens)
        rr = itertools.count()

        async def refresher() -> None:
            while time.monotonic() < self.deadline:
                with contextlib.suppress(Exception):  # a failed listing keeps the previous targets
                    self._urls = await asyncio.to_thread(self.targets)
                await asyncio.sleep(0.5)

        async def client(session: aiohttp.ClientSession) -> None:
            while time.monotonic() < self.deadline:
                urls = self._urls
                if not urls:
                    await asyncio.sleep(0.1)
                    continue
                url = urls[next(rr) % len(urls)]
                try:
                    async with session.post(url + "/v1/chat/completions", json=body) as resp:
                        await resp.read()
                        if resp.status == 200:
                            self.ok += 1
                            continue
                except (aiohttp.ClientError, TimeoutError, OSError):
                    pass
                self.failed += 1
                await asyncio.sleep(0.1)

        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(refresher(), *(client(session) for _ in range(self.clients)))
        self.ended = time.monotonic()
