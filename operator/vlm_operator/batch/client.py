"""The in-pod batch client: one shard of a VLMBatchJob against a ``vllm serve`` beside it.

``python -m vlm_operator.batch.client --input PATH_OR_URL --output-dir DIR --shard-count N --model NAME ...``

1. Read the input (a file, or an http(s) URL downloaded first), number its non-empty lines and keep this shard's
   (line ``i`` belongs to shard ``i % shard-count``); note each custom_id's first line, so a repeat is an error.
2. Resume: read ``results-<index>.jsonl`` and ``errors-<index>.jsonl`` (a torn last line is cut away first) and skip
   every line already in either.
3. Wait until the engine answers ``GET /health``, then send each remaining line that passes validation
   (:func:`vlm_operator.batch.lines.validate`) to ``POST /v1/chat/completions``, ``--concurrency`` at a time. Each
   answer is appended with flush + fsync to the results file; a line the validation or the engine refuses goes to
   the errors file with its reason. A 5xx, 429 or timeout is retried ``--retries`` times with exponential backoff;
   after that the line is an error when the engine is still healthy, and the shard stops (``EngineUnavailable``)
   when it is not. A refused connection waits for the engine to come back (up to ``--engine-wait-seconds``).
4. Write the summary (:mod:`vlm_operator.batch.summary`) to ``--summary-path`` and exit: 0 when every line of the
   shard is in results or errors; 2 input not found or unreadable, 3 engine unavailable, 4 output not writable,
   143 terminated (SIGTERM/SIGINT), 1 a usage error. ``GET /progress`` on ``--progress-port`` serves the same JSON
   while the shard runs.

No kopf and no Kubernetes client: this runs in the Job's pod, beside the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
from aiohttp import web

from vlm_operator.batch import lines as L
from vlm_operator.batch.summary import (
    ENGINE_UNAVAILABLE,
    INPUT_NOT_FOUND,
    INPUT_UNREADABLE,
    OUTPUT_UNWRITABLE,
    TERMINATED,
    Summary,
)

ENGINE_URL_ENV = "VLM_BATCH_ENGINE_URL"
PROGRESS_HOST_ENV = "VLM_BATCH_PROGRESS_HOST"
SHARD_INDEX_ENV = "JOB_COMPLETION_INDEX"
USAGE_ERROR = 1

#: one input line of this shard: (index, line number, byte offset, length)
Entry = tuple[int, int, int, int]


@dataclass(frozen=True)
class Config:
    input: str
    output_dir: Path
    shard_index: int
    shard_count: int
    model: str
    engine_url: str = "http://127.0.0.1:8000"
    limits: L.Limits = field(default_factory=L.Limits)
    #: catalog id of the model and ``--mm-processor-kwargs``, for counting image tokens (no count without a model id)
    model_id: str | None = None
    processor_kwargs: Mapping[str, Any] = field(default_factory=dict)
    summary_path: Path = Path("/dev/termination-log")
    progress_host: str = "0.0.0.0"
    #: 0 picks a free port (printed on stderr); -1 serves no progress endpoint
    progress_port: int = 8090
    concurrency: int = 4
    retries: int = 5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    request_timeout: float = 600.0
    engine_wait_seconds: float = 1800.0

    @property
    def results_path(self) -> Path:
        return self.output_dir / f"results-{self.shard_index}.jsonl"

    @property
    def errors_path(self) -> Path:
        return self.output_dir / f"errors-{self.shard_index}.jsonl"


class ShardStop(Exception):
    """Ends the shard before every line is written; ``reason`` is a summary reason (``EngineUnavailable`` ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def backoff_delay(attempt: int, base: float, cap: float, jitter: float = 0.0) -> float:
    """Seconds before retry ``attempt`` (1-based): ``base * 2**(attempt-1)``, at most ``cap``, plus up to ``jitter``
    of itself (so shards that failed together do not retry together)."""
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * (1.0 + jitter)


# ------------------------------------------------------------------------------------------------------------- input
@dataclass
class Plan:
    """Pass one over the input: this shard's lines (index, line number, offset, length) and every custom_id's first
    line."""

    path: Path
    lines_total: int = 0
    shard: list[Entry] = field(default_factory=list)
    first_seen: dict[str, int] = field(default_factory=dict)


def plan_input(path: Path, shard_index: int, shard_count: int) -> Plan:
    plan = Plan(path)
    for line in L.iter_lines(L.read_blocks(path)):
        plan.lines_total += 1
        cid = L.peek_custom_id(line.raw)
        if cid is not None:
            plan.first_seen.setdefault(cid, line.index)
        if L.shard_of(line.index, shard_count) == shard_index:
            plan.shard.append((line.index, line.lineno, line.offset, len(line.raw)))
    return plan


async def fetch_input(url: str, dest: Path, cfg: Config) -> None:
    """Download an http(s) input to ``dest``. 404/403/401/410 are InputNotFound (an expired presigned URL answers
    403); other failures are retried, then InputUnreadable."""
    last = ""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    for attempt in range(cfg.retries + 1):
        if attempt:
            await asyncio.sleep(backoff_delay(attempt, cfg.backoff_seconds, cfg.backoff_max_seconds))
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                if resp.status in (401, 403, 404, 410):
                    raise ShardStop(INPUT_NOT_FOUND, f"GET {_redact(url)} answered {resp.status} {resp.reason}")
                if resp.status != 200:
                    last = f"GET {_redact(url)} answered {resp.status} {resp.reason}"
                    if resp.status < 500 and resp.status != 429:
                        break
                    continue
                with dest.open("wb") as f:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        f.write(chunk)
                return
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = f"GET {_redact(url)}: {type(exc).__name__}: {exc}"
    raise ShardStop(INPUT_UNREADABLE, last)


def _redact(url: str) -> str:
    """A presigned URL's query holds its signature: never print it."""
    return url.split("?", 1)[0] + ("?..." if "?" in url else "")


async def open_input(cfg: Config, tmpdir: Callable[[], Path]) -> Path:
    """The input as a local file: a path as it is, a URL downloaded into ``tmpdir()`` (the pod's own disk)."""
    if cfg.input.startswith(("http://", "https://")):
        dest = tmpdir() / "input.jsonl"
        await fetch_input(cfg.input, dest, cfg)
        return dest
    path = Path(cfg.input)
    if not path.exists():
        raise ShardStop(INPUT_NOT_FOUND, f"{path} does not exist (check the volume and the path in spec.input)")
    if not path.is_file():
        raise ShardStop(INPUT_UNREADABLE, f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise ShardStop(INPUT_UNREADABLE, f"{path} is not readable by uid {os.getuid()}")
    return path


# ------------------------------------------------------------------------------------------------------------ engine
def _engine_message(status: int, text: str) -> str:
    """vLLM's error body (``{"object": "error", "message": ...}``, or ``{"error": {"message": ...}}`` in newer
    releases), else the raw text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or f"HTTP {status}"
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:500]
        if isinstance(data.get("message"), str):
            return str(data["message"])[:500]
    return text.strip()[:500]


class Shard:
    """One run of one shard."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.started = clock()
        self.summary = Summary(shard=cfg.shard_index)
        self.counter = L.ImageTokenCounter.for_model(cfg.model_id, cfg.processor_kwargs) if cfg.model_id else None
        self._stop = asyncio.Event()
        self._fatal: ShardStop | None = None
        self._results_fd = -1
        self._errors_fd = -1
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._phase = "input"

    # -- progress
    def progress(self) -> dict[str, Any]:
        self.summary.seconds = self.clock() - self.started
        data = self.summary.to_dict()
        return data

    async def _serve_progress(self) -> web.AppRunner | None:
        if self.cfg.progress_port < 0:
            return None

        async def handler(_request: web.Request) -> web.Response:
            return web.json_response(self.progress())

        app = web.Application()
        app.router.add_get("/progress", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.progress_host, self.cfg.progress_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:  # progress is best effort: the shard's work does not depend on it
            _log(f"cannot serve /progress on {self.cfg.progress_host}:{self.cfg.progress_port}: {exc}")
            await runner.cleanup()
            return None
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.cfg.progress_port
        _log(f"progress: http://{self.cfg.progress_host}:{port}/progress")
        return runner

    # -- output
    def _open_outputs(self) -> tuple[L.OutputScan, L.OutputScan]:
        try:
            self.cfg.output_dir.mkdir(parents=True, exist_ok=True)
            done = L.scan_output(self.cfg.results_path)
            failed = L.scan_output(self.cfg.errors_path)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._results_fd = os.open(self.cfg.results_path, flags, 0o644)
            self._errors_fd = os.open(self.cfg.errors_path, flags, 0o644)
        except OSError as exc:
            raise ShardStop(OUTPUT_UNWRITABLE, f"{self.cfg.output_dir}: {exc.strerror or exc}") from None
        for scan, path in ((done, self.cfg.results_path), (failed, self.cfg.errors_path)):
            if scan.truncated:
                _log(f"resume: cut a torn last line ({scan.truncated} bytes) from {path}")
            if scan.unreadable:
                _log(f"resume: {scan.unreadable} line(s) of {path} are not JSON; ignored")
        return done, failed

    def _append(self, fd: int, line: Mapping[str, Any]) -> None:
        try:
            L.append_line(fd, L.encode(line))
        except OSError as exc:
            raise ShardStop(OUTPUT_UNWRITABLE, f"{self.cfg.output_dir}: {exc.strerror or exc}") from None

    def _write_error(self, err: L.LineError) -> None:
        self._append(self._errors_fd, L.error_line(err.index, err.custom_id, err.code, err.message))
        self.summary.lines_failed += 1

    # -- engine
    async def _healthy(self) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(self.cfg.engine_url + "/health", timeout=aiohttp.ClientTimeout(total=10)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_for_engine(self) -> None:
        deadline = self.clock() + self.cfg.engine_wait_seconds
        first = True
        while not await self._healthy():
            if self.clock() >= deadline:
                raise ShardStop(
                    ENGINE_UNAVAILABLE,
                    f"{self.cfg.engine_url}/health did not answer 200 within {self.cfg.engine_wait_seconds:g}s; "
                    "see the engine container's log",
                )
            if first:
                _log(f"waiting for the engine at {self.cfg.engine_url}/health")
                first = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)
            if self._stop.is_set():
                raise ShardStop(TERMINATED, "stopped while waiting for the engine")

    async def _post(self, req: L.Request) -> dict[str, Any] | L.LineError:
        """Send one line until it is answered or refused. Raises :class:`ShardStop` when the engine is gone."""
        assert self._session is not None
        url = self.cfg.engine_url + req.url
        timeout = aiohttp.ClientTimeout(total=self.cfg.request_timeout, sock_connect=10)
        last = ""
        attempt = 0
        while True:
            try:
                async with self._session.post(url, json=req.body, timeout=timeout) as resp:
                    text = await resp.text()
                    status = resp.status
            except aiohttp.ClientConnectorError as exc:
                # no engine listening (a restart of the sidecar): wait for it, without spending a retry
                _log(f"line {req.lineno}: cannot connect to {url} ({exc}); waiting for the engine")
                await self.wait_for_engine()
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}".strip()
            if status == 200:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    rid = str(body.get("id") or L.line_id(req.index))
                    return L.result_line(req, body, rid)
                status, text = 0, f"an answer that is not a JSON object: {text[:200]!r}"
            if 400 <= status < 500 and status not in (408, 429):
                return L.LineError(
                    req.index,
                    req.lineno,
                    req.custom_id,
                    f"engine_{status}",
                    f"line {req.lineno}: the engine refused it ({status}): {_engine_message(status, text)}",
                )
            last = f"{status}: {_engine_message(status, text)}" if status else text
            attempt += 1
            if attempt > self.cfg.retries:
                break
            delay = backoff_delay(attempt, self.cfg.backoff_seconds, self.cfg.backoff_max_seconds, random.random())
            _log(f"line {req.lineno}: attempt {attempt} failed ({last}); retrying in {delay:.1f}s")
            await asyncio.sleep(delay)
        if await self._healthy():
            return L.LineError(
                req.index,
                req.lineno,
                req.custom_id,
                "engine_error",
                f"line {req.lineno}: failed {self.cfg.retries + 1} times while the engine stayed healthy "
                f"(last: {last}); the line itself may crash the engine's processor",
            )
        raise ShardStop(ENGINE_UNAVAILABLE, f"{self.cfg.engine_url} stopped answering (last: {last})")

    async def _send(self, req: L.Request, slots: asyncio.Semaphore) -> None:
        try:
            out = await self._post(req)
            if isinstance(out, L.LineError):
                self._write_error(out)
                return
            self._append(self._results_fd, out)
            p, c = L.usage_of(out["response"])
            self.summary.lines_done += 1
            self.summary.images += len(req.images)
            self.summary.prompt_tokens += p
            self.summary.completion_tokens += c
        except ShardStop as exc:
            self._halt(exc)
        finally:
            slots.release()

    # -- the loop
    def _halt(self, fatal: ShardStop | None = None) -> None:
        """Stop sending: set the stop flag and cancel what is in flight (a later run sends it again)."""
        if fatal is not None and self._fatal is None:
            self._fatal = fatal
        self._stop.set()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    def _resume_filter(self, f: Any, plan: Plan, done: L.OutputScan, failed: L.OutputScan) -> list[Entry]:
        """The shard's lines not yet in either output file; counts the images of those already answered."""
        # a custom_id another tool already answered (its lines carry other ids); our own lines match by line id, so a
        # repeated custom_id still gets its own error line
        done_cids = done.foreign_custom_ids | failed.foreign_custom_ids
        todo: list[Entry] = []
        for entry in plan.shard:
            lid = L.line_id(entry[0])
            if lid in failed.line_ids:
                continue
            if lid in done.line_ids:
                self.summary.images += L.count_images(_read(f, entry))
                continue
            if done_cids:  # an output line written under another id (by another tool) with this custom_id
                raw = _read(f, entry)
                cid = L.peek_custom_id(raw)
                if cid is not None and cid in done_cids:
                    self.summary.images += L.count_images(raw) if cid in done.custom_ids else 0
                    continue
            todo.append(entry)
        return todo

    async def _work(self, path: Path) -> None:
        plan = await asyncio.to_thread(plan_input, path, self.cfg.shard_index, self.cfg.shard_count)
        self.summary.lines_total = len(plan.shard)
        done, failed = self._open_outputs()
        self.summary.lines_done = done.lines
        self.summary.lines_failed = failed.lines
        self.summary.prompt_tokens = done.prompt_tokens
        self.summary.completion_tokens = done.completion_tokens
        with path.open("rb") as f:
            todo = self._resume_filter(f, plan, done, failed)
            _log(
                f"shard {self.cfg.shard_index} of {self.cfg.shard_count}: {len(plan.shard)} of {plan.lines_total} "
                f"lines; {done.lines} answered and {failed.lines} failed before; {len(todo)} to do"
            )
            if not todo:
                return
            slots = asyncio.Semaphore(self.cfg.concurrency)
            connector = aiohttp.TCPConnector(limit=self.cfg.concurrency + 2)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), connector=connector) as s:
                self._session = s
                await self.wait_for_engine()
                for entry in todo:
                    if self._stop.is_set():
                        break
                    line = L.InputLine(entry[0], entry[1], _read(f, entry), entry[2])
                    checked = L.validate(line, self.cfg.limits, self.counter, plan.first_seen)
                    if isinstance(checked, L.LineError):
                        self._write_error(checked)
                        continue
                    await slots.acquire()  # _halt cancels the tasks, whose release wakes this up
                    if self._stop.is_set():
                        slots.release()
                        break
                    task = asyncio.create_task(self._send(checked, slots))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
                self._session = None
        if self._fatal is not None:
            raise self._fatal

    async def run(self) -> Summary:
        loop = asyncio.get_running_loop()
        work = asyncio.create_task(self._run_inner())

        def on_signal(name: str) -> None:
            if self.summary.reason is None:
                self.summary.fail(TERMINATED, f"{name} before every line was written; a rerun resumes")
            if self._phase == "input":
                work.cancel()
            self._halt()

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, sig.name)
        runner = await self._serve_progress()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await work
        finally:
            for fd in (self._results_fd, self._errors_fd):
                if fd >= 0:
                    os.close(fd)
            if runner is not None:
                await runner.cleanup()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        self.summary.seconds = self.clock() - self.started
        return self.summary

    async def _run_inner(self) -> None:
        made: list[Path] = []

        def tmpdir() -> Path:
            made.append(Path(tempfile.mkdtemp(prefix="vlm-batch-")))
            return made[-1]

        try:
            path = await open_input(self.cfg, tmpdir)
            self._phase = "work"
            await self._work(path)
        except ShardStop as exc:
            if exc.reason != TERMINATED or self.summary.reason is None:
                self.summary.fail(exc.reason, exc.detail)
        finally:
            for d in made:
                shutil.rmtree(d, ignore_errors=True)


def _read(f: Any, entry: Entry) -> bytes:
    f.seek(entry[2])
    data: bytes = f.read(entry[3])
    return data


# -------------------------------------------------------------------------------------------------------------- CLI
def _log(msg: str) -> None:
    print(f"vlm-batch: {msg}", file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message}\n")


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _pos_int(text: str) -> int:
    value = _nonneg_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return data


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m vlm_operator.batch.client", description="Run one shard of a VLMBatchJob.")
    p.add_argument("--input", required=True, help="the batch file: a path or an http(s) URL")
    p.add_argument("--output-dir", required=True, type=Path, help="results-<index>.jsonl, errors-<index>.jsonl")
    p.add_argument("--shard-index", type=_nonneg_int, help=f"this shard (default ${SHARD_INDEX_ENV})")
    p.add_argument("--shard-count", type=_pos_int, required=True)
    p.add_argument("--model", required=True, help="the served model name")
    p.add_argument("--engine-url", default="http://127.0.0.1:8000", help=f"(${ENGINE_URL_ENV} overrides)")
    p.add_argument("--max-model-len", type=_pos_int, help="refuse lines whose images alone exceed it")
    p.add_argument("--image-limit", type=_nonneg_int, help="most images per line")
    p.add_argument("--video-limit", type=_nonneg_int, help="most videos per line")
    p.add_argument("--model-id", help="catalog id of the checkpoint, to count image tokens with the estimator")
    p.add_argument("--mm-processor-kwargs", type=_json_object, help="the engine's --mm-processor-kwargs (JSON)")
    p.add_argument("--temperature", type=float, help="default where a line's body has none")
    p.add_argument("--max-tokens", type=_pos_int, help="default where a line's body has none")
    p.add_argument("--summary-path", type=Path, default=Path("/dev/termination-log"))
    p.add_argument("--progress-port", type=int, default=8090, help="GET /progress (0: any free port, -1: none)")
    p.add_argument("--concurrency", type=_pos_int, default=4, help="requests in flight (default 4)")
    p.add_argument("--retries", type=_nonneg_int, default=5, help="retries of a 5xx/429/timeout (default 5)")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request (default 600)")
    p.add_argument(
        "--engine-wait-seconds", type=float, default=1800.0, help="how long to wait for /health (default 1800)"
    )
    return p


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Flags (and the environment) -> :class:`Config`; a bad value exits 1 with a line naming the flag."""
    parser = build_parser()
    a = parser.parse_args(list(argv))
    index = a.shard_index
    if index is None:
        raw = environ.get(SHARD_INDEX_ENV)
        try:
            index = int(raw) if raw is not None else None
        except ValueError:
            parser.error(f"${SHARD_INDEX_ENV} must be a whole number, got {raw!r}")
        if index is None:
            parser.error(f"give --shard-index or set ${SHARD_INDEX_ENV} (the Job's completion index)")
    if not 0 <= index < a.shard_count:
        parser.error(f"--shard-index {index} is outside 0..{a.shard_count - 1} (--shard-count {a.shard_count})")
    if a.request_timeout <= 0 or a.engine_wait_seconds < 0:
        parser.error("--request-timeout must be > 0 and --engine-wait-seconds >= 0")
    return Config(
        input=a.input,
        output_dir=a.output_dir,
        shard_index=index,
        shard_count=a.shard_count,
        model=a.model,
        engine_url=(environ.get(ENGINE_URL_ENV) or a.engine_url).rstrip("/"),
        limits=L.Limits(
            max_model_len=a.max_model_len,
            image_limit=a.image_limit,
            video_limit=a.video_limit,
            model=a.model,
            temperature=a.temperature,
            max_tokens=a.max_tokens,
        ),
        model_id=a.model_id,
        processor_kwargs=a.mm_processor_kwargs or {},
        summary_path=a.summary_path,
        progress_host=environ.get(PROGRESS_HOST_ENV) or "0.0.0.0",
        progress_port=a.progress_port,
        concurrency=a.concurrency,
        retries=a.retries,
        request_timeout=a.request_timeout,
        engine_wait_seconds=a.engine_wait_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    summary = asyncio.run(Shard(cfg).run())
    text = summary.to_json()
    problem = summary.write(cfg.summary_path)
    if problem:
        _log(problem)
    print(text, flush=True)
    return summary.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
