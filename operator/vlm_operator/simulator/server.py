"""A small vLLM-compatible OpenAI server for tests and the demo: chat completions with images, a queue, ``/metrics``.

It does no inference. It behaves like one vLLM engine from the outside:

* ``POST /v1/chat/completions`` takes OpenAI messages whose content may hold ``image_url`` parts with base64
  ``data:`` URLs. The image header is decoded (PNG, JPEG, GIF; stdlib only) for its width and height, and the image
  becomes a number of prompt tokens by a per-family formula (or a fixed count), as vLLM's processors do
  (``get_num_image_tokens`` in vllm/model_executor/models/<family>.py).
* At most ``max_num_seqs`` requests run at once; the rest wait in a FIFO queue, and a request that finds
  ``max_queue`` already waiting gets 503 (a real vLLM queues without bound; the bound keeps test load finite).
* A running request takes ``prompt_tokens / prefill_tokens_per_s`` to its first token, then
  ``output_tokens / decode_tokens_per_s``; every duration is multiplied by ``time_scale`` so tests run fast. Requests
  do not slow each other down (no batching model): concurrency is the only shared resource.
* ``GET /metrics`` serves vLLM's series under the names, types and labels of the configured engine version
  (vllm@f0fe4fe86:vllm/engine/metrics.py for V0 and vllm@HEAD:vllm/v1/metrics/loggers.py for
  V1), from a :class:`prometheus_client.CollectorRegistry` that belongs to this server alone.
* ``GET /health`` answers 200 with an empty body, ``GET /v1/models`` lists the served model, ``GET /version`` gives
  the engine version.

Metric names by version (all gauges/counters carry ``model_name``; ``engine="0"`` is added from v0.8.3, 15dac210f):

======================================  ==========  ==============================================================
series (as scraped)                      type        versions
======================================  ==========  ==============================================================
``vllm:num_requests_running``            gauge       all
``vllm:num_requests_waiting``            gauge       all
``vllm:num_requests_swapped``            gauge       V0 default (< 0.8.0)
``vllm:gpu_cache_usage_perc``            gauge       < 0.11.0 (deprecated from 0.9.2, hidden in 0.11, #18354)
``vllm:cpu_cache_usage_perc``            gauge       V0 default (< 0.8.0)
``vllm:kv_cache_usage_perc``             gauge       >= 0.9.2 (d1e34cc9a, #18354)
``vllm:num_preemptions_total``           counter     all
``vllm:prompt_tokens_total``             counter     all
``vllm:generation_tokens_total``         counter     all
``vllm:request_success_total``           counter     all, label ``finished_reason`` (``stop`` / ``length``)
``vllm:mm_cache_queries_total``/hits     counter     >= 0.11.0 (present at HEAD; the first release is approximate)
``vllm:time_to_first_token_seconds``     histogram   all
``vllm:e2e_request_latency_seconds``     histogram   all
``vllm:request_queue_time_seconds``      histogram   >= 0.6.4 (874f551b3, #4464)
======================================  ==========  ==============================================================

Counters are exported without ``_created`` series, as vLLM does (V0 calls ``disable_created_metrics()``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..estimator.tokens import TokenError, smart_resize
from ..media import image_size
from ..releases import DEFAULT_VLLM_VERSION, VllmVersion

#: vLLM's ``/metrics`` content type (prometheus_client's text format 0.0.4; what Prometheus 2.x expects).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Versions at which the exported series change (see the module docstring for the sources).
V1_DEFAULT = VllmVersion("0.8.0")
ENGINE_LABEL_SINCE = VllmVersion("0.8.3")
KV_RENAME = VllmVersion("0.9.2")
OLD_KV_HIDDEN = VllmVersion("0.11.0")
MM_CACHE_SINCE = VllmVersion("0.11.0")
QUEUE_TIME_SINCE = VllmVersion("0.6.4")

#: Histogram buckets. V0: vllm@f0fe4fe86:vllm/engine/metrics.py (v0.6.3); V1: vllm@HEAD:vllm/v1/metrics/loggers.py.
TTFT_BUCKETS_V0 = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TTFT_BUCKETS_V1 = (*TTFT_BUCKETS_V0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
LATENCY_BUCKETS_V0 = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
LATENCY_BUCKETS_V1 = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

#: Image-token formulas (vLLM's models/<family>.py). ``qwen2_vl``/``qwen3_vl`` use smart_resize with the hub limits.
#: Spelled as the estimator's ``ModelFacts.family``; the older ``qwen2-vl``/``qwen3-vl`` spellings are accepted.
FAMILIES = ("qwen2_vl", "qwen3_vl", "llava", "gemma3")


@dataclass(frozen=True)
class SimConfig:
    """How one simulated engine behaves."""

    model_name: str = "sim-model"
    engine_version: str = DEFAULT_VLLM_VERSION
    #: Requests that run at once (vLLM's ``--max-num-seqs``).
    max_num_seqs: int = 8
    #: Requests allowed to wait; one more gets 503.
    max_queue: int = 256
    max_model_len: int = 32768
    #: Prompt tokens (text and image) processed per second by one request's prefill.
    prefill_tokens_per_s: float = 5000.0
    #: Output tokens per second of one running request.
    decode_tokens_per_s: float = 50.0
    #: Output tokens a request produces when it does not ask for fewer (``finish_reason`` ``stop``).
    output_tokens: int = 32
    #: Multiplies every simulated duration: 0.01 runs 100 times faster than the rates say.
    time_scale: float = 1.0
    #: Fixed tokens per image; 0 uses ``model_family``'s formula.
    image_tokens: int = 0
    model_family: str = "qwen2_vl"
    #: KV cache size, for the usage gauge: blocks of ``block_size`` tokens.
    num_gpu_blocks: int = 4096
    block_size: int = 16

    def __post_init__(self) -> None:
        VllmVersion(self.engine_version)  # raises on a malformed version
        if self.max_num_seqs < 1 or self.max_queue < 0 or self.max_model_len < 1:
            raise ValueError("max_num_seqs must be >= 1, max_queue >= 0 and max_model_len >= 1")
        if self.prefill_tokens_per_s <= 0 or self.decode_tokens_per_s <= 0 or self.time_scale < 0:
            raise ValueError("token rates must be > 0 and time_scale >= 0")
        if self.image_tokens < 0 or self.output_tokens < 1 or self.num_gpu_blocks < 1 or self.block_size < 1:
            raise ValueError("image_tokens >= 0, output_tokens >= 1, num_gpu_blocks >= 1 and block_size >= 1")
        if self.image_tokens == 0 and self.model_family.replace("-", "_") not in FAMILIES:
            raise ValueError(f"model_family must be one of {', '.join(FAMILIES)} (or set image_tokens)")

    @property
    def version(self) -> VllmVersion:
        return VllmVersion(self.engine_version)

    def with_(self, **changes: Any) -> SimConfig:
        return replace(self, **changes)


# --------------------------------------------------------------------------------------------------------------------
# Images and tokens (pure)


class RequestError(Exception):
    """A request vLLM would refuse, with the HTTP status and OpenAI error type it would answer with."""

    def __init__(self, message: str, status: int = 400, type_: str = "BadRequestError") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type_


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:<mime>;base64,<payload>`` URL."""
    if not url.startswith("data:"):
        raise RequestError("the simulator accepts only base64 data: URLs for images (no network fetches)")
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise RequestError("image data URL must be base64-encoded")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"invalid base64 image data: {exc}") from exc


def _smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The estimator's ``smart_resize`` (transformers' Qwen2-VL processor); a size it rejects is a 400, as in vLLM."""
    try:
        return smart_resize(height, width, factor, min_pixels, max_pixels)
    except TokenError as exc:
        raise RequestError(f"image {width}x{height}: {exc}") from exc


def image_tokens(width: int, height: int, family: str = "qwen2_vl", fixed: int = 0) -> int:
    """Prompt tokens for one image (vllm/model_executor/models/<family>.py).

    * ``qwen2_vl``: smart_resize(factor 28, 3,136 … 12,845,056 px, the hub config), then (H/28)(W/28);
      1920×1080 → 2,691.
    * ``qwen3_vl``: factor 32, 65,536 … 16,777,216 px, then (H/32)(W/32); 1920×1080 → 2,040.
    * ``llava`` (LLaVA-1.5): 576, size-independent. ``gemma3``: 256 (no pan&scan).
    """
    if fixed > 0:
        return fixed
    if width < 1 or height < 1:
        raise RequestError("image has no pixels")
    family = family.replace("-", "_")
    if family == "qwen2_vl":
        h, w = _smart_resize(height, width, 28, 3136, 12845056)
        return (h // 28) * (w // 28)
    if family == "qwen3_vl":
        h, w = _smart_resize(height, width, 32, 65536, 16777216)
        return (h // 32) * (w // 32)
    if family == "llava":
        return 576
    if family == "gemma3":
        return 256
    raise ValueError(f"unknown model family {family!r}")


def text_tokens(text: str) -> int:
    """A stand-in tokenizer: about four characters per token."""
    return math.ceil(len(text) / 4)


#: Chat-template tokens per message (role markers and separators).
TEMPLATE_TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class ParsedRequest:
    prompt_tokens: int
    image_tokens: int
    #: SHA-1 of each image's bytes, for the multimodal-cache counters.
    image_digests: tuple[str, ...]
    output_tokens: int
    finish_reason: str


def parse_chat_request(body: Any, cfg: SimConfig) -> ParsedRequest:
    """Validate an OpenAI chat-completions body and count its tokens. Raises :class:`RequestError`."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != cfg.model_name:
        raise RequestError(f"The model `{model}` does not exist.", status=404, type_="NotFoundError")
    if body.get("stream"):
        raise RequestError("the simulator does not stream; send stream: false")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    prompt = 0
    img_tokens = 0
    digests: list[str] = []
    for msg in messages:
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise RequestError("each message must be an object with a role")
        prompt += TEMPLATE_TOKENS_PER_MESSAGE
        content = msg.get("content")
        if content is None or isinstance(content, str):
            prompt += text_tokens(content or "")
            continue
        if not isinstance(content, list):
            raise RequestError("message content must be a string or a list of parts")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                prompt += text_tokens(str(part.get("text", "")))
            elif kind == "image_url":
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str):
                    raise RequestError("image_url part needs image_url.url")
                data = decode_data_url(url)
                try:
                    width, height = image_size(data)
                except ValueError as exc:
                    raise RequestError(f"cannot read image: {exc}") from exc
                img_tokens += image_tokens(width, height, cfg.model_family, cfg.image_tokens)
                digests.append(hashlib.sha1(data).hexdigest())
            else:
                raise RequestError(f"unsupported content part type {kind!r}")
    prompt += img_tokens
    if prompt > cfg.max_model_len:
        # vllm@HEAD:vllm/v1/engine/input_processor.py
        raise RequestError(
            f"The decoder prompt (length {prompt}) is longer than the maximum model length of {cfg.max_model_len}. "
            "Make sure that `max_model_len` is no smaller than the number of text tokens plus multimodal tokens. "
            "For image inputs, the number of image tokens depends on the number of images, and possibly their "
            "aspect ratios as well."
        )
    requested = body.get("max_completion_tokens", body.get("max_tokens"))
    if requested is not None and (not isinstance(requested, int) or isinstance(requested, bool) or requested < 1):
        raise RequestError("max_tokens must be a positive integer")
    room = cfg.max_model_len - prompt
    if requested is not None and requested <= cfg.output_tokens:
        out, reason = requested, "length"
    else:
        out, reason = cfg.output_tokens, "stop"
    if out >= room:
        out, reason = max(room, 1), "length"
    return ParsedRequest(prompt, img_tokens, tuple(digests), out, reason)


# --------------------------------------------------------------------------------------------------------------------
# Scheduling


class QueueFull(Exception):
    pass


class _Scheduler:
    """``max_running`` slots and a FIFO of at most ``max_waiting`` waiters."""

    def __init__(self, max_running: int, max_waiting: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self) -> None:
        if self.running < self.max_running and not self._waiting:
            self.running += 1
            return
        if len(self._waiting) >= self.max_waiting:
            raise QueueFull
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut in self._waiting:
                self._waiting.remove(fut)
            elif fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just before the cancel
            raise

    def release(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to the waiter; running stays the same
                return
        self.running -= 1


# --------------------------------------------------------------------------------------------------------------------
# Metrics


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def buckets(self) -> list[tuple[str, float]]:
        out = [(_le(b), float(c)) for b, c in zip(self.bounds, self.counts, strict=True)]
        out.append(("+Inf", float(self.count)))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class EngineStats:
    """What ``/metrics`` reports; updated by the request handlers."""

    cfg: SimConfig
    running: int = 0
    waiting: int = 0
    kv_blocks_used: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0})
    mm_queries: int = 0
    mm_hits: int = 0
    ttft: _Histogram = field(init=False)
    e2e: _Histogram = field(init=False)
    queue_time: _Histogram = field(init=False)

    def __post_init__(self) -> None:
        v1 = self.cfg.version >= V1_DEFAULT
        self.ttft = _Histogram(TTFT_BUCKETS_V1 if v1 else TTFT_BUCKETS_V0)
        self.e2e = _Histogram(LATENCY_BUCKETS_V1 if v1 else LATENCY_BUCKETS_V0)
        self.queue_time = _Histogram(LATENCY_BUCKETS_V1)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.kv_blocks_used / self.cfg.num_gpu_blocks)


def metric_names(version: str | VllmVersion) -> list[str]:
    """The ``vllm:*`` family names (as in ``# TYPE`` lines) the simulator exports for ``version``."""
    v = VllmVersion(str(version))
    names = ["vllm:num_requests_running", "vllm:num_requests_waiting"]
    if v < V1_DEFAULT:
        names.append("vllm:num_requests_swapped")
    if v < OLD_KV_HIDDEN:
        names.append("vllm:gpu_cache_usage_perc")
    if v < V1_DEFAULT:
        names.append("vllm:cpu_cache_usage_perc")
    if v >= KV_RENAME:
        names.append("vllm:kv_cache_usage_perc")
    names += ["vllm:num_preemptions", "vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success"]
    if v >= MM_CACHE_SINCE:
        names += ["vllm:mm_cache_queries", "vllm:mm_cache_hits"]
    names += ["vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"]
    if v >= QUEUE_TIME_SINCE:
        names.append("vllm:request_queue_time_seconds")
    return names


class VllmCollector(Collector):
    """Builds the ``vllm:*`` families from :class:`EngineStats` on each scrape."""

    def __init__(self, stats: EngineStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        v = s.cfg.version
        names = set(metric_names(v))
        labelnames = ["model_name", "engine"] if v >= ENGINE_LABEL_SINCE else ["model_name"]
        labels = [s.cfg.model_name, "0"][: len(labelnames)]

        gauges: dict[str, tuple[str, float]] = {
            "vllm:num_requests_running": ("Number of requests in model execution batches.", s.running),
            "vllm:num_requests_waiting": ("Number of requests waiting to be processed.", s.waiting),
            "vllm:num_requests_swapped": ("Number of requests swapped to CPU.", 0.0),
            "vllm:gpu_cache_usage_perc": ("GPU KV-cache usage. 1 means 100 percent usage.", s.kv_usage),
            "vllm:cpu_cache_usage_perc": ("CPU KV-cache usage. 1 means 100 percent usage.", 0.0),
            "vllm:kv_cache_usage_perc": ("KV-cache usage. 1 means 100 percent usage.", s.kv_usage),
        }
        for name, (doc, value) in gauges.items():
            if name in names:
                g = GaugeMetricFamily(name, doc, labels=labelnames)
                g.add_metric(labels, float(value))
                yield g

        counters: dict[str, tuple[str, float]] = {
            "vllm:num_preemptions": ("Cumulative number of preemption from the engine.", 0.0),
            "vllm:prompt_tokens": ("Number of prefill tokens processed.", s.prompt_tokens),
            "vllm:generation_tokens": ("Number of generation tokens processed.", s.generation_tokens),
            "vllm:mm_cache_queries": ("Multi-modal cache queries, in terms of number of queried items.", s.mm_queries),
            "vllm:mm_cache_hits": ("Multi-modal cache hits, in terms of number of cached items.", s.mm_hits),
        }
        for name, (doc, value) in counters.items():
            if name in names:
                c = CounterMetricFamily(name, doc, labels=labelnames)
                c.add_metric(labels, float(value))
                yield c
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*labelnames, "finished_reason"],
        )
        for reason, count in sorted(s.success.items()):
            success.add_metric([*labels, reason], float(count))
        yield success

        hists: dict[str, tuple[str, _Histogram]] = {
            "vllm:time_to_first_token_seconds": ("Histogram of time to first token in seconds.", s.ttft),
            "vllm:e2e_request_latency_seconds": ("Histogram of e2e request latency in seconds.", s.e2e),
            "vllm:request_queue_time_seconds": ("Histogram of time spent in WAITING phase for request.", s.queue_time),
        }
        for name, (doc, hist) in hists.items():
            if name in names:
                h = HistogramMetricFamily(name, doc, labels=labelnames)
                h.add_metric(labels, hist.buckets(), hist.sum)
                yield h


# --------------------------------------------------------------------------------------------------------------------
# The server


def _error(status: int, message: str, type_: str) -> web.Response:
    body = {"object": "error", "message": message, "type": type_, "param": None, "code": status}
    return web.json_response(body, status=status)


class SimulatorServer:
    """One simulated vLLM engine behind an aiohttp site. ``await start()``, ``await stop()``."""

    #: Images remembered for the multimodal-cache hit counter.
    MM_CACHE_ITEMS = 1024

    def __init__(self, cfg: SimConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.cfg = cfg
        self.host = host
        self.port = port
        self.stats = EngineStats(cfg)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(VllmCollector(self.stats))
        self._sched = _Scheduler(cfg.max_num_seqs, cfg.max_queue)
        self._mm_seen: OrderedDict[str, None] = OrderedDict()
        self._runner: web.AppRunner | None = None
        self.created = int(time.time())

    # -- lifecycle

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ping", self._health)
        app.router.add_get("/version", self._version)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        """Listen on ``host:port``; ``port`` 0 picks a free port, readable from :attr:`port` afterwards."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- handlers

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": self.cfg.engine_version})

    async def _models(self, _request: web.Request) -> web.Response:
        model = {
            "id": self.cfg.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "vllm",
            "root": self.cfg.model_name,
            "parent": None,
            "max_model_len": self.cfg.max_model_len,
        }
        return web.json_response({"object": "list", "data": [model]})

    async def _metrics(self, _request: web.Request) -> web.Response:
        self._sync_gauges()
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": METRICS_CONTENT_TYPE})

    def _sync_gauges(self) -> None:
        self.stats.running = self._sched.running
        self.stats.waiting = self._sched.waiting

    def _count_images(self, digests: Sequence[str]) -> None:
        for d in digests:
            self.stats.mm_queries += 1
            if d in self._mm_seen:
                self.stats.mm_hits += 1
                self._mm_seen.move_to_end(d)
            else:
                self._mm_seen[d] = None
                if len(self._mm_seen) > self.MM_CACHE_ITEMS:
                    self._mm_seen.popitem(last=False)

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON", "BadRequestError")
        try:
            req = parse_chat_request(body, self.cfg)
        except RequestError as exc:
            return _error(exc.status, exc.message, exc.type)
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        try:
            await self._sched.acquire()
        except QueueFull:
            return _error(503, f"server overloaded: {self._sched.waiting} requests waiting", "ServiceUnavailableError")
        self._sync_gauges()
        blocks = math.ceil((req.prompt_tokens + req.output_tokens) / self.cfg.block_size)
        self.stats.kv_blocks_used += blocks
        try:
            started = loop.time()
            self.stats.queue_time.observe(started - arrival)
            self._count_images(req.image_digests)
            await asyncio.sleep(req.prompt_tokens / self.cfg.prefill_tokens_per_s * self.cfg.time_scale)
            self.stats.prompt_tokens += req.prompt_tokens
            self.stats.ttft.observe(loop.time() - arrival)
            await asyncio.sleep(req.output_tokens / self.cfg.decode_tokens_per_s * self.cfg.time_scale)
            self.stats.generation_tokens += req.output_tokens
            self.stats.e2e.observe(loop.time() - arrival)
            self.stats.success[req.finish_reason] = self.stats.success.get(req.finish_reason, 0) + 1
        finally:
            self.stats.kv_blocks_used -= blocks
            self._sched.release()
            self._sync_gauges()
        return web.json_response(self._completion(req))

    def _completion(self, req: ParsedRequest) -> dict[str, Any]:
        words = ("sim " * req.output_tokens).strip()
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.cfg.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": words},
                    "logprobs": None,
                    "finish_reason": req.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": req.prompt_tokens,
                "completion_tokens": req.output_tokens,
                "total_tokens": req.prompt_tokens + req.output_tokens,
            },
        }


def config_from_mapping(values: Mapping[str, str], base: SimConfig | None = None) -> SimConfig:
    """A :class:`SimConfig` from string settings keyed by field name with dashes (``max-num-seqs``)."""
    cfg = base or SimConfig()
    kinds: dict[str, type] = {
        "model-name": str,
        "engine-version": str,
        "max-num-seqs": int,
        "max-queue": int,
        "max-model-len": int,
        "prefill-tokens-per-s": float,
        "decode-tokens-per-s": float,
        "output-tokens": int,
        "time-scale": float,
        "image-tokens": int,
        "model-family": str,
        "num-gpu-blocks": int,
        "block-size": int,
    }
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        kind = kinds.get(key)
        if kind is None:
            continue
        try:
            changes[key.replace("-", "_")] = kind(raw.strip())
        except ValueError as exc:
            raise ValueError(f"{key}: {raw!r} is not a valid {kind.__name__}") from exc
    return cfg.with_(**changes) if changes else cfg
