"""The batch client's work loop against the vLLM simulator on 127.0.0.1 (random ports): sharding, a SIGKILL halfway
and a resume without duplicates, error lines, retries of 503s, /progress, an input URL, and the exits with a reason.

The client runs as a subprocess where a test kills or signals it, and in-process otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from vlm_operator.batch import lines as L
from vlm_operator.batch.client import Config, Shard
from vlm_operator.simulator.server import SimConfig, SimulatorServer
from vlm_operator.smoke import png_data_url, tiny_png

pytestmark = pytest.mark.timeout(120)

MODEL = "sim-model"


class BackgroundSimulator:
    """A simulator on its own event loop in a thread, so a subprocess client can reach it while the test waits."""

    def __init__(self, cfg: SimConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = SimulatorServer(cfg, host="127.0.0.1", port=0)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sim() -> Iterator[BackgroundSimulator]:
    # 32 output tokens at 50 tokens/s, scaled by 0.08: about 50 ms a request
    s = BackgroundSimulator(SimConfig(model_name=MODEL, time_scale=0.08, max_num_seqs=8))
    try:
        yield s
    finally:
        s.close()


def batch_line(cid: str, image: tuple[int, int] | None = (64, 48), **body: Any) -> str:
    content: list[dict[str, Any]] = [{"type": "text", "text": f"caption {cid}"}]
    if image is not None:
        content.append({"type": "image_url", "image_url": {"url": png_data_url(tiny_png(*image))}})
    req = {"messages": [{"role": "user", "content": content}], **body}
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": req})


def write_input(path: Path, n: int, malformed_at: int | None = None) -> list[str]:
    """``n`` non-empty lines (one blank line in between); the one at ``malformed_at`` is not JSON. Returns the
    custom_ids of the good lines."""
    ids, out = [], []
    for i in range(n):
        if i == malformed_at:
            out.append('{"custom_id": "broken", "method": "POST"')  # cut short
            continue
        cid = f"img-{i:03d}"
        ids.append(cid)
        out.append(batch_line(cid, image=(32 + i, 24 + i % 7)))
        if i == 10:
            out.append("")
    path.write_text("\n".join(out) + "\n")
    return ids


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def client_cmd(
    inp: Path | str, out: Path, shard: int, count: int, engine: str, summary: Path, *extra: str
) -> list[str]:
    return [
        sys.executable, "-m", "vlm_operator.batch.client",
        "--input", str(inp), "--output-dir", str(out), "--shard-index", str(shard), "--shard-count", str(count),
        "--model", MODEL, "--engine-url", engine, "--summary-path", str(summary), "--progress-port", "-1",
        "--max-model-len", "32768", "--image-limit", "2", "--concurrency", "4", *extra,
    ]  # fmt: skip


def run_client(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(client_cmd(*args), capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --------------------------------------------------------------------------------------------------------------------
def test_two_shards_with_a_sigkill_halfway_write_every_line_once(sim: BackgroundSimulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    ids = write_input(inp, 200, malformed_at=57)  # 199 good lines with images, 1 cut-short line (file line 57)

    proc = subprocess.Popen(
        client_cmd(inp, out, 0, 2, sim.url, tmp_path / "s0-first"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while count_lines(out / "results-0.jsonl") < 30:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "shard 0 wrote fewer than 30 lines in 60 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    before = count_lines(out / "results-0.jsonl")
    assert 30 <= before < 100, f"the kill came too late to test a resume ({before} lines)"
    assert not (tmp_path / "s0-first").exists()  # a SIGKILL writes no summary
    with (out / "results-0.jsonl").open("ab") as f:  # and as if the kill had cut a write short
        f.write(b'{"id":"vlmbatch-line-198","custom_id":"img-198","response":{"status_')

    again = run_client(inp, out, 0, 2, sim.url, tmp_path / "s0")
    assert again.returncode == 0, again.stderr
    assert "cut a torn last line" in again.stderr
    one = run_client(inp, out, 1, 2, sim.url, tmp_path / "s1")
    assert one.returncode == 0, one.stderr

    results = read_jsonl(out / "results-0.jsonl") + read_jsonl(out / "results-1.jsonl")
    errors = read_jsonl(out / "errors-0.jsonl") + read_jsonl(out / "errors-1.jsonl")
    got = [r["custom_id"] for r in results]
    assert sorted(got) == sorted(ids), "every good line answered exactly once"
    assert len(set(got)) == len(got) == 199
    for r in results:  # each in its own shard, in the OpenAI batch output format, with the engine's answer
        index = int(r["id"].removeprefix("vlmbatch-line-"))
        assert r["custom_id"] == f"img-{index:03d}" or index > 57
        assert r["response"]["status_code"] == 200 and r["error"] is None
        assert r["response"]["body"]["usage"]["prompt_tokens"] > 0
    assert len(errors) == 1
    err = errors[0]
    assert err["custom_id"] is None and err["response"] is None and err["id"] == "vlmbatch-line-57"
    assert err["error"]["code"] == "invalid_json"
    assert err["error"]["message"].startswith("line 59: not valid JSON")  # file line 59: a blank line came before
    assert err in read_jsonl(out / "errors-1.jsonl")  # index 57 is odd: shard 1

    s0, s1 = (json.loads((tmp_path / n).read_text()) for n in ("s0", "s1"))
    assert s0 == json.loads(again.stdout.splitlines()[-1])
    assert (s0["linesTotal"], s0["linesDone"], s0["linesFailed"], s0["reason"]) == (100, 100, 0, None)
    assert (s1["linesTotal"], s1["linesDone"], s1["linesFailed"], s1["reason"]) == (100, 99, 1, None)
    assert s0["images"] == 100 and s1["images"] == 99  # earlier runs' lines included
    usage = [r["response"]["body"]["usage"] for r in read_jsonl(out / "results-0.jsonl")]
    assert s0["promptTokens"] == sum(u["prompt_tokens"] for u in usage)
    assert s0["completionTokens"] == sum(u["completion_tokens"] for u in usage) == 100 * 32

    # a third run of a finished shard sends nothing and writes nothing
    served = sim.server.stats.success["stop"]
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    done = run_client(inp, out, 0, 2, sim.url, tmp_path / "s0-again")
    assert done.returncode == 0 and sim.server.stats.success["stop"] == served
    assert {p.name: p.stat().st_size for p in out.iterdir()} == sizes


def test_bad_lines_become_error_lines_and_the_rest_finish(sim: BackgroundSimulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    bmp = "data:image/bmp;base64,Qk0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    lines = [
        batch_line("ok-1"),
        batch_line("ok-1"),  # a repeated custom_id
        batch_line("three-images", image=None).replace(
            '"text", "text": "caption three-images"}',
            '"text", "text": "x"}' + ', {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}' * 3,
        ),
        json.dumps({"custom_id": "wrong-url", "method": "POST", "url": "/v1/embeddings", "body": {}}),
        json.dumps({"custom_id": "bmp", "url": "/v1/chat/completions", "body": {"messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": bmp}}]}]}}),
        batch_line("ok-2", max_tokens=4),
    ]  # fmt: skip
    inp.write_text("\n".join(lines) + "\n")
    res = run_client(inp, out, 0, 1, sim.url, tmp_path / "s", "--temperature", "0", "--max-tokens", "8")
    assert res.returncode == 0, res.stderr
    results = {r["custom_id"]: r for r in read_jsonl(out / "results-0.jsonl")}
    assert set(results) == {"ok-1", "ok-2"}
    # the defaults reached the engine where the line had none (the simulator stops at max_tokens)
    assert results["ok-1"]["response"]["body"]["usage"]["completion_tokens"] == 8
    assert results["ok-2"]["response"]["body"]["usage"]["completion_tokens"] == 4
    errors = {e["id"]: e for e in read_jsonl(out / "errors-0.jsonl")}
    assert {k: (e["custom_id"], e["error"]["code"]) for k, e in errors.items()} == {
        "vlmbatch-line-1": (None, "duplicate_custom_id"),
        "vlmbatch-line-2": ("three-images", "too_many_images"),
        "vlmbatch-line-3": ("wrong-url", "invalid_url"),
        "vlmbatch-line-4": ("bmp", "engine_400"),  # passed our checks (a format we do not size); the engine refused
    }
    assert "line 5: the engine refused it (400): cannot read image" in errors["vlmbatch-line-4"]["error"]["message"]
    assert json.loads((tmp_path / "s").read_text())["linesFailed"] == 4


def test_an_input_that_does_not_exist_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    res = run_client(tmp_path / "nope.jsonl", tmp_path / "out", 0, 1, "http://127.0.0.1:9", tmp_path / "s")
    assert res.returncode == 2
    summary = json.loads((tmp_path / "s").read_text())
    assert summary["reason"].startswith("InputNotFound: ") and "nope.jsonl does not exist" in summary["reason"]
    assert summary["linesTotal"] == 0 and summary["shard"] == 0


def test_an_engine_that_never_answers_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    write_input(inp, 3)
    engine = f"http://127.0.0.1:{free_port()}"
    res = run_client(inp, tmp_path / "out", 0, 1, engine, tmp_path / "s", "--engine-wait-seconds", "1")
    assert res.returncode == 3, res.stderr
    summary = json.loads((tmp_path / "s").read_text())
    assert summary["reason"].startswith("EngineUnavailable: ") and "/health did not answer 200" in summary["reason"]
    assert summary["linesTotal"] == 3 and summary["linesDone"] == 0


def test_sigterm_stops_the_shard_with_a_summary_and_a_rerun_finishes(sim: BackgroundSimulator, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    ids = write_input(inp, 120)
    proc = subprocess.Popen(
        client_cmd(inp, out, 0, 1, sim.url, tmp_path / "s1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while count_lines(out / "results-0.jsonl") < 10:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143
    first = json.loads((tmp_path / "s1").read_text())
    assert first["reason"].startswith("Terminated: SIGTERM") and 10 <= first["linesDone"] < 120
    assert first["linesDone"] == count_lines(out / "results-0.jsonl")
    res = run_client(inp, out, 0, 1, sim.url, tmp_path / "s2")
    assert res.returncode == 0, res.stderr
    got = [r["custom_id"] for r in read_jsonl(out / "results-0.jsonl")]
    assert sorted(got) == sorted(ids)


# ------------------------------------------------------------------------------------------------ in-process runs
def config(inp: Path | str, out: Path, engine: str, **changes: Any) -> Config:
    cfg = Config(
        input=str(inp),
        output_dir=out,
        shard_index=0,
        shard_count=1,
        model=MODEL,
        engine_url=engine,
        limits=L.Limits(model=MODEL, image_limit=4),
        summary_path=out.parent / "summary",
        progress_host="127.0.0.1",
        progress_port=-1,
        backoff_seconds=0.01,
        backoff_max_seconds=0.05,
    )
    return replace(cfg, **changes)


def test_503s_from_a_full_engine_queue_are_retried_until_answered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = tmp_path / "in.jsonl"
    ids = write_input(inp, 30)

    async def main() -> Any:
        # one request at a time and no queue: three of every four concurrent requests get 503 at first
        server = SimulatorServer(SimConfig(model_name=MODEL, time_scale=0.01, max_num_seqs=1, max_queue=0), port=0)
        await server.start()
        try:
            cfg = config(inp, tmp_path / "out", server.url, concurrency=4, retries=50)
            return await Shard(cfg).run()
        finally:
            await server.stop()

    summary = asyncio.run(main())
    assert summary.reason is None and summary.lines_done == 30 and summary.lines_failed == 0
    assert "failed (503: server overloaded" in capsys.readouterr().err  # the engine did refuse some, at first
    assert sorted(r["custom_id"] for r in read_jsonl(tmp_path / "out" / "results-0.jsonl")) == sorted(ids)


def test_progress_is_served_while_the_shard_runs(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    write_input(inp, 40)
    port = free_port()
    seen: list[dict[str, Any]] = []

    async def main() -> Any:
        server = SimulatorServer(SimConfig(model_name=MODEL, time_scale=0.1), port=0)
        await server.start()
        try:
            cfg = config(inp, tmp_path / "out", server.url, concurrency=2, progress_port=port)
            task = asyncio.create_task(Shard(cfg).run())
            async with aiohttp.ClientSession() as session:
                while not task.done():
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/progress") as resp:
                            seen.append(await resp.json())
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.05)
            return await task
        finally:
            await server.stop()

    summary = asyncio.run(main())
    assert summary.lines_done == 40
    live = [p for p in seen if 0 < p["linesDone"] < 40]
    assert live, f"no /progress answer while lines were in flight: {seen[-3:]}"
    assert all(p["linesTotal"] == 40 and p["reason"] is None and p["shard"] == 0 for p in live)
    assert [p["linesDone"] for p in live] == sorted(p["linesDone"] for p in live)  # never goes back
    assert live[-1]["images"] == live[-1]["linesDone"]


def test_the_input_can_be_an_http_url_and_a_missing_one_says_so(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    ids = write_input(inp, 12)

    async def main() -> tuple[Any, Any]:
        app = web.Application()

        async def serve(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(inp)

        app.router.add_get("/bucket/in.jsonl", serve)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        server = SimulatorServer(SimConfig(model_name=MODEL, time_scale=0.0), port=0)
        await server.start()
        try:
            ok = await Shard(
                config(f"http://127.0.0.1:{port}/bucket/in.jsonl?X-Sig=s3cr3t", tmp_path / "a", server.url)
            ).run()
            url = f"http://127.0.0.1:{port}/bucket/gone.jsonl?X-Sig=s3cr3t"
            gone = await Shard(config(url, tmp_path / "b", server.url)).run()
            return ok, gone
        finally:
            await server.stop()
            await runner.cleanup()

    ok, gone = asyncio.run(main())
    assert ok.reason is None and ok.lines_done == 12
    assert sorted(r["custom_id"] for r in read_jsonl(tmp_path / "a" / "results-0.jsonl")) == sorted(ids)
    assert gone.exit_code == 2 and gone.reason.startswith("InputNotFound: GET http://127.0.0.1:")
    assert "answered 404" in gone.reason and "s3cr3t" not in gone.reason  # a presigned URL's signature stays secret
    assert not [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("vlm-batch-*")]  # the download was removed


def test_an_engine_that_dies_mid_shard_stops_it_and_a_rerun_resumes(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    ids = write_input(inp, 60)

    async def main() -> tuple[Any, Any]:
        server = SimulatorServer(SimConfig(model_name=MODEL, time_scale=0.05), port=0)
        await server.start()
        cfg = config(inp, out, server.url, concurrency=2, engine_wait_seconds=0.5)
        task = asyncio.create_task(Shard(cfg).run())
        while count_lines(out / "results-0.jsonl") < 10:
            await asyncio.sleep(0.01)
        await server.stop()  # the engine goes away with requests in flight
        first = await task
        again = SimulatorServer(SimConfig(model_name=MODEL, time_scale=0.0), port=server.port)
        await again.start()
        try:
            second = await Shard(cfg).run()
        finally:
            await again.stop()
        return first, second

    first, second = asyncio.run(main())
    assert first.exit_code == 3 and first.reason.startswith("EngineUnavailable: ")
    assert 10 <= first.lines_done < 60
    assert second.reason is None and second.lines_done == 60 and second.lines_failed == 0
    got = [r["custom_id"] for r in read_jsonl(out / "results-0.jsonl")]
    assert sorted(got) == sorted(ids) and len(set(got)) == 60


def test_resume_skips_custom_ids_another_tool_answered_but_not_a_repeat_of_ours(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    inp.write_text("\n".join([batch_line("a"), batch_line("a"), batch_line("b"), batch_line("c")]) + "\n")
    out.mkdir()
    # an earlier run of ours answered line 0 ("a") and was killed before it wrote line 1's error; run_batch (ids
    # vllm-<uuid>) answered "b"
    ours = {"id": "vlmbatch-line-0", "custom_id": "a", "response": {"status_code": 200, "body": {}}, "error": None}
    theirs = {"id": "vllm-1f2e", "custom_id": "b", "response": {"status_code": 200, "body": {}}, "error": None}
    (out / "results-0.jsonl").write_text(json.dumps(ours) + "\n" + json.dumps(theirs) + "\n")

    async def main() -> Any:
        server = SimulatorServer(SimConfig(model_name=MODEL, time_scale=0.0), port=0)
        await server.start()
        try:
            return await Shard(config(inp, out, server.url)).run()
        finally:
            await server.stop()

    summary = asyncio.run(main())
    assert summary.reason is None
    results = read_jsonl(out / "results-0.jsonl")
    assert [r["custom_id"] for r in results] == ["a", "b", "c"]  # "c" is the only line sent
    errors = read_jsonl(out / "errors-0.jsonl")
    assert [(e["id"], e["error"]["code"]) for e in errors] == [("vlmbatch-line-1", "duplicate_custom_id")]
    assert (summary.lines_total, summary.lines_done, summary.lines_failed) == (4, 3, 1)


def test_an_output_dir_that_cannot_be_written_stops_the_shard_with_the_reason(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    write_input(inp, 2)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    summary = asyncio.run(Shard(config(inp, blocker / "out", "http://127.0.0.1:9")).run())
    assert summary.exit_code == 4
    assert summary.reason is not None and summary.reason.startswith(f"OutputUnwritable: {blocker / 'out'}")
    assert summary.lines_total == 2
