"""A small TCP load balancer on loopback for tests: round robin over backends, skipping ones that refuse.

The dev cluster's Services have no endpoints (loopback pod IPs are refused in EndpointSlices), so two operator
replicas serving one webhook need something else in front of them; this plays the Service's part. TLS passes through
untouched (the replicas share one serving certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter


class LoopbackLB:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.served: Counter[int] = Counter()
        self.port = 0
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopback-lb", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> LoopbackLB:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("load balancer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    async def _connect(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
        for _ in range(len(self.backends)):
            port = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
            except (OSError, TimeoutError):
                continue
            return port, reader, writer
        raise ConnectionRefusedError("no backend accepts connections")

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            port, r, w = await self._connect()
        except OSError:
            client_w.close()
            return
        self.served[port] += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(client_r, w), pipe(r, client_w))
