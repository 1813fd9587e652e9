"""The opt-in multimodal smoke check: one tiny image request to a new pod before it counts as Ready.

A vLLM pod whose ``/health`` answers can still fail every image request (a missing processor, a chat template
without image support, an encoder that does not fit). One chat completion with a 2×2 PNG catches that cheaply: the
image costs a handful of tokens on every family with size-dependent tokens, and ``max_tokens`` 1 keeps decode short.

:func:`smoke_request` is pure. :func:`smoke_check_async` (aiohttp) and :func:`smoke_check` (stdlib) send it to
``<base_url>/v1/chat/completions`` and say whether the answer is a well-formed completion. Neither raises on a
network or HTTP failure; the result carries the error.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Any

#: The question asked; short, so the text part is a few tokens.
SMOKE_PROMPT = "What color is this image? One word."


def tiny_png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid RGB PNG of one solid colour, built with zlib and struct only."""
    if width < 1 or height < 1:
        raise ValueError("width and height must be >= 1")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB)
    row = b"\x00" + bytes(rgb) * width  # filter type 0 (None), then the pixels
    idat = zlib.compress(row * height)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def smoke_request(model: str | None = None, max_tokens: int = 1) -> dict[str, Any]:
    """The chat-completions body: one user message with a text part and a tiny PNG."""
    body: dict[str, Any] = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": SMOKE_PROMPT},
                    {"type": "image_url", "image_url": {"url": png_data_url(tiny_png())}},
                ],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": False,
    }
    if model is not None:
        body["model"] = model
    return body


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    #: HTTP status, or ``None`` when no answer came.
    status: int | None
    error: str | None
    latency_s: float


def judge(status: int, payload: Any) -> str | None:
    """``None`` when ``payload`` is a successful chat completion, otherwise why not."""
    if status != 200:
        message = None
        if isinstance(payload, dict):  # vLLM: {"message": ...}, newer releases {"error": {"message": ...}}
            inner = payload.get("error")
            message = inner.get("message") if isinstance(inner, dict) else payload.get("message")
        return f"HTTP {status}" + (f": {message}" if message else "")
    if not isinstance(payload, dict):
        return "the answer is not a JSON object"
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "the answer has no choices"
    if not isinstance(choices[0].get("message"), dict):
        return "the first choice has no message"
    usage = payload.get("usage")
    if isinstance(usage, dict) and not usage.get("prompt_tokens"):
        return "the answer reports no prompt tokens"
    return None


def _chat_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/v1/chat/completions"


async def smoke_check_async(base_url: str, model: str | None = None, timeout: float = 30.0) -> SmokeResult:
    """Send the smoke request with aiohttp (never through an environment proxy)."""
    import aiohttp

    t0 = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(_chat_url(base_url), json=smoke_request(model)) as resp,
        ):
            text = await resp.text()
            status = resp.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return SmokeResult(False, None, f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
    return _result(status, text, t0)


def smoke_check(base_url: str, model: str | None = None, timeout: float = 30.0) -> SmokeResult:
    """Send the smoke request with urllib (never through an environment proxy)."""
    t0 = time.monotonic()
    req = urllib.request.Request(
        _chat_url(base_url),
        data=json.dumps(smoke_request(model)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, text = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return SmokeResult(False, None, f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
    return _result(status, text, t0)


def _result(status: int, text: str, t0: float) -> SmokeResult:
    try:
        payload: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        payload = None
        if status == 200:
            return SmokeResult(False, status, "the answer is not JSON", time.monotonic() - t0)
    err = judge(status, payload)
    return SmokeResult(err is None, status, err, time.monotonic() - t0)
