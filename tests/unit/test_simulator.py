"""The vLLM simulator on 127.0.0.1 (random ports), its pod-watcher helpers, and the multimodal smoke check."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vlm_operator.simulator import podwatcher, prometheus
from vlm_operator.simulator.server import (
    RequestError,
    SimConfig,
    SimulatorServer,
    image_size,
    image_tokens,
    metric_names,
    parse_chat_request,
)
from vlm_operator.smoke import png_data_url, smoke_check, smoke_check_async, smoke_request, tiny_png

pytestmark = pytest.mark.timeout(60)

Families = dict[str, Any]


def run_with_server(cfg: SimConfig, body: Callable[[SimulatorServer], Awaitable[None]]) -> None:
    async def main() -> None:
        server = SimulatorServer(cfg, host="127.0.0.1", port=0)
        await server.start()
        try:
            await body(server)
        finally:
            await server.stop()

    asyncio.run(main())


async def scrape(session: aiohttp.ClientSession, server: SimulatorServer) -> Families:
    async with session.get(server.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: Families, family: str, sample: str | None = None, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample or family} {labels} in {family}")


def chat_body(text: str = "describe", png: bytes | None = None, **extra: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if png is not None:
        content.append({"type": "image_url", "image_url": {"url": png_data_url(png)}})
    return {"model": "sim-model", "messages": [{"role": "user", "content": content}], **extra}


FAST = SimConfig(time_scale=0.0)


# --------------------------------------------------------------------------------------------------------------------
# Images and tokens


def test_image_size_reads_png_gif_and_jpeg_headers() -> None:
    assert image_size(tiny_png(7, 5)) == (7, 5)
    assert image_size(b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 8) == (640, 480)
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 1080, 1920, 1) + b"\x01\x11\x00"
    assert image_size(b"\xff\xd8" + app0 + sof0 + b"\xff\xd9") == (1920, 1080)
    with pytest.raises(ValueError, match="unsupported"):
        image_size(b"BM" + b"\x00" * 30)  # BMP
    with pytest.raises(ValueError, match="truncated WebP"):
        image_size(b"RIFF....WEBPVP8 ")


def test_image_tokens_match_the_documented_family_formulas() -> None:
    # vLLM's qwen2_vl.py, qwen3_vl.py and llava.py: Qwen2-VL 1920×1080 → 2,691, 1024² → 1,369;
    # Qwen3-VL 1920×1080 → 2,040; LLaVA-1.5 576.
    assert image_tokens(1920, 1080, "qwen2_vl") == 2691 == image_tokens(1920, 1080, "qwen2-vl")
    assert image_tokens(1024, 1024, "qwen2_vl") == 1369
    assert image_tokens(1920, 1080, "qwen3_vl") == 2040
    assert image_tokens(2, 2, "qwen2_vl") == 4  # min_pixels 3,136 = 56×56 → 2×2 merged patches
    assert image_tokens(50, 5000, "llava") == 576
    assert image_tokens(1920, 1080, "gemma3") == 256
    assert image_tokens(1920, 1080, "qwen2_vl", fixed=100) == 100


def test_parse_chat_request_counts_text_and_image_tokens_and_refuses_bad_input() -> None:
    req = parse_chat_request(chat_body("abcdefgh", tiny_png(280, 280)), FAST)
    assert req.image_tokens == 100  # (280/28)²
    assert req.prompt_tokens == 4 + 2 + 100  # template + 8 chars / 4 + image
    assert (req.output_tokens, req.finish_reason) == (FAST.output_tokens, "stop")
    assert parse_chat_request(chat_body(max_tokens=3), FAST).finish_reason == "length"

    with pytest.raises(RequestError) as err:
        parse_chat_request({**chat_body(), "model": "other"}, FAST)
    assert err.value.status == 404
    remote = chat_body()
    remote["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": "http://example.com/x.png"}})
    with pytest.raises(RequestError, match="data: URLs"):
        parse_chat_request(remote, FAST)
    with pytest.raises(RequestError, match="longer than the maximum model length of 50"):
        parse_chat_request(chat_body(png=tiny_png(280, 280)), FAST.with_(max_model_len=50))


# --------------------------------------------------------------------------------------------------------------------
# The HTTP server


def test_health_models_version_and_chat_with_a_base64_png() -> None:
    cfg = SimConfig(model_name="Qwen/Qwen2.5-VL-7B-Instruct", engine_version="0.10.1", time_scale=0.0)

    async def body(server: SimulatorServer) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url + "/health") as r:
                assert r.status == 200 and await r.read() == b""
            async with s.get(server.url + "/v1/models") as r:
                models = await r.json()
            assert [m["id"] for m in models["data"]] == ["Qwen/Qwen2.5-VL-7B-Instruct"]
            async with s.get(server.url + "/version") as r:
                assert (await r.json())["version"] == "0.10.1"

            req = chat_body("What is this?", tiny_png(280, 280), max_tokens=5)
            req["model"] = cfg.model_name
            async with s.post(server.url + "/v1/chat/completions", json=req) as r:
                assert r.status == 200
                out = await r.json()
            assert out["object"] == "chat.completion"
            assert out["choices"][0]["message"]["role"] == "assistant"
            assert out["choices"][0]["finish_reason"] == "length"
            assert out["usage"] == {"prompt_tokens": 4 + 4 + 100, "completion_tokens": 5, "total_tokens": 113}

            async with s.post(server.url + "/v1/chat/completions", data=b"{nope") as r:
                assert r.status == 400 and (await r.json())["object"] == "error"

            fams = await scrape(s, server)
            assert value(fams, "vllm:prompt_tokens", "vllm:prompt_tokens_total") == 108
            assert value(fams, "vllm:generation_tokens", "vllm:generation_tokens_total") == 5
            assert value(fams, "vllm:request_success", "vllm:request_success_total", finished_reason="length") == 1
            assert value(fams, "vllm:e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds_count") == 1
            assert value(fams, "vllm:time_to_first_token_seconds", "vllm:time_to_first_token_seconds_count") == 1

    run_with_server(cfg, body)


def test_requests_beyond_max_num_seqs_wait_and_show_in_num_requests_waiting() -> None:
    # 2 slots, 6 requests of ~0.4 s each: 2 run, 4 wait; the load is bounded and drains by itself.
    cfg = SimConfig(max_num_seqs=2, output_tokens=20, decode_tokens_per_s=50.0, time_scale=1.0)

    async def body(server: SimulatorServer) -> None:
        async with aiohttp.ClientSession() as s:

            async def one() -> int:
                async with s.post(server.url + "/v1/chat/completions", json=chat_body(png=tiny_png())) as r:
                    await r.read()
                    return r.status

            tasks = [asyncio.create_task(one()) for _ in range(6)]
            seen: list[tuple[float, float, float]] = []
            for _ in range(40):
                fams = await scrape(s, server)
                waiting = value(fams, "vllm:num_requests_waiting", engine="0", model_name="sim-model")
                running = value(fams, "vllm:num_requests_running", engine="0", model_name="sim-model")
                seen.append((running, waiting, value(fams, "vllm:kv_cache_usage_perc")))
                if waiting == 4:
                    break
                await asyncio.sleep(0.02)
            assert (2, 4) in [(r, w) for r, w, _ in seen], seen
            assert max(kv for _, _, kv in seen) > 0
            assert await asyncio.gather(*tasks) == [200] * 6

            fams = await scrape(s, server)
            assert value(fams, "vllm:num_requests_waiting") == 0
            assert value(fams, "vllm:num_requests_running") == 0
            assert value(fams, "vllm:kv_cache_usage_perc") == 0
            assert value(fams, "vllm:request_success", "vllm:request_success_total", finished_reason="stop") == 6
            # the queued requests waited about one service time (0.4 s) or two
            assert value(fams, "vllm:request_queue_time_seconds", "vllm:request_queue_time_seconds_sum") > 0.5
            assert value(fams, "vllm:mm_cache_queries", "vllm:mm_cache_queries_total") == 6
            assert value(fams, "vllm:mm_cache_hits", "vllm:mm_cache_hits_total") == 5  # the same PNG six times

    run_with_server(cfg, body)


def test_requests_beyond_the_queue_bound_get_503() -> None:
    cfg = SimConfig(max_num_seqs=1, max_queue=1, output_tokens=10, decode_tokens_per_s=50.0)

    async def body(server: SimulatorServer) -> None:
        async with aiohttp.ClientSession() as s:

            async def one() -> int:
                async with s.post(server.url + "/v1/chat/completions", json=chat_body()) as r:
                    await r.read()
                    return r.status

            statuses = sorted(await asyncio.gather(*(one() for _ in range(4))))
            assert statuses == [200, 200, 503, 503]

    run_with_server(cfg, body)


def test_metric_names_types_and_labels_follow_the_engine_version() -> None:
    async def families(version: str) -> Families:
        server = SimulatorServer(FAST.with_(engine_version=version), port=0)
        await server.start()
        try:
            async with aiohttp.ClientSession() as s:
                return await scrape(s, server)
        finally:
            await server.stop()

    old = asyncio.run(families("0.6.3"))
    both = asyncio.run(families("0.10.1"))
    new = asyncio.run(families("0.11.0"))

    assert "vllm:gpu_cache_usage_perc" in old and "vllm:kv_cache_usage_perc" not in old
    assert "vllm:gpu_cache_usage_perc" in both and "vllm:kv_cache_usage_perc" in both
    assert "vllm:kv_cache_usage_perc" in new and "vllm:gpu_cache_usage_perc" not in new
    assert "vllm:num_requests_swapped" in old and "vllm:num_requests_swapped" not in new
    assert "vllm:mm_cache_queries" in new and "vllm:mm_cache_queries" not in old

    for fams in (old, new):
        assert fams["vllm:num_requests_running"].type == "gauge"
        assert fams["vllm:num_requests_waiting"].type == "gauge"
        for counter in ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success"):
            assert fams[counter].type == "counter"
            assert {s.name for s in fams[counter].samples} == {counter + "_total"}  # no _created series
        assert fams["vllm:e2e_request_latency_seconds"].type == "histogram"
        assert fams["vllm:time_to_first_token_seconds"].type == "histogram"
    # V0 (v0.6.3): model_name only. V1 from v0.8.3: model_name and engine.
    assert old["vllm:num_requests_waiting"].samples[0].labels == {"model_name": "sim-model"}
    assert new["vllm:num_requests_waiting"].samples[0].labels == {"model_name": "sim-model", "engine": "0"}
    assert set(new) == set(metric_names("0.11.0"))
    assert set(old) == set(metric_names("0.6.3"))


# --------------------------------------------------------------------------------------------------------------------
# The multimodal smoke check


def test_tiny_png_is_a_valid_png() -> None:
    import zlib

    png = tiny_png(3, 2, (0, 255, 0))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # walk the chunks and check each CRC; IDAT inflates to 2 rows of filter byte + 3 RGB pixels
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data)
        chunks[kind] = data
        pos += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    assert zlib.decompress(chunks[b"IDAT"]) == (b"\x00" + b"\x00\xff\x00" * 3) * 2
    url = smoke_request("m")["messages"][0]["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == tiny_png()


def test_smoke_check_against_the_simulator() -> None:
    async def body(server: SimulatorServer) -> None:
        ok = await smoke_check_async(server.url, "sim-model", timeout=10)
        assert ok.ok and ok.status == 200 and ok.error is None
        sync_ok = await asyncio.to_thread(smoke_check, server.url, "sim-model", 10)
        assert sync_ok.ok
        wrong = await smoke_check_async(server.url, "not-served", timeout=10)
        assert not wrong.ok and wrong.status == 404 and "does not exist" in (wrong.error or "")
        async with aiohttp.ClientSession() as s:
            fams = await scrape(s, server)
        assert value(fams, "vllm:mm_cache_queries", "vllm:mm_cache_queries_total") == 2  # the two good checks

    run_with_server(FAST, body)

    async def refused() -> None:
        # a server whose max_model_len is too small for the smoke image's tokens refuses it
        tight = SimulatorServer(FAST.with_(max_model_len=8), port=0)
        await tight.start()
        url = tight.url
        try:
            res = await smoke_check_async(url, "sim-model", timeout=10)
            assert not res.ok and res.status == 400 and "maximum model length" in (res.error or "")
        finally:
            await tight.stop()
        gone = await smoke_check_async(url, timeout=2)
        assert not gone.ok and gone.status is None
        gone_sync = await asyncio.to_thread(smoke_check, url, None, 2)
        assert not gone_sync.ok and gone_sync.status is None

    asyncio.run(refused())


# --------------------------------------------------------------------------------------------------------------------
# Pod-watcher and Prometheus helpers (pure)


def _pod(annotations: dict[str, str], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": "vllm",
                    "image": "vllm/vllm-openai:v0.6.3",
                    "command": ["vllm", "serve", "llava-hf/llava-1.5-7b-hf"],
                    "args": ["--max-num-seqs=12", "--max-model-len", "4096"],
                }
            ]
        },
        "status": status,
    }


def test_config_from_pod_reads_vllm_args_then_annotations() -> None:
    cfg = podwatcher.config_from_pod(_pod({}))
    assert (cfg.model_name, cfg.engine_version, cfg.max_num_seqs, cfg.max_model_len) == (
        "llava-hf/llava-1.5-7b-hf",
        "0.6.3",
        12,
        4096,
    )
    cfg = podwatcher.config_from_pod(
        _pod(
            {
                "sim.vlmops.io/simulator": "true",
                "sim.vlmops.io/max-num-seqs": "3",
                "sim.vlmops.io/engine-version": "0.11.0",
                "sim.vlmops.io/model-name": "m",
                "sim.vlmops.io/time-scale": "0.1",
                "sim.vlmops.io/model-family": "llava",
            }
        )
    )
    assert (cfg.model_name, cfg.engine_version, cfg.max_num_seqs, cfg.time_scale, cfg.model_family) == (
        "m",
        "0.11.0",
        3,
        0.1,
        "llava",
    )
    with pytest.raises(ValueError, match="max-num-seqs"):
        podwatcher.config_from_pod(_pod({"sim.vlmops.io/max-num-seqs": "many"}))


def test_pod_selection_readiness_patch_and_durations() -> None:
    running = {"phase": "Running", "podIP": "127.100.0.9"}
    assert podwatcher.wants_simulator(_pod({"sim.vlmops.io/simulator": "true"}, **running))
    assert not podwatcher.wants_simulator(_pod({}, **running))
    assert not podwatcher.wants_simulator(_pod({"sim.vlmops.io/simulator": "true"}, phase="Pending"))
    deleting = _pod({"sim.vlmops.io/simulator": "true"}, **running)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not podwatcher.wants_simulator(deleting)

    pod = _pod(
        {},
        conditions=[
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            {"type": "ContainersReady", "status": "False"},
        ],
        containerStatuses=[{"name": "vllm", "ready": False, "restartCount": 0}],
    )
    assert not podwatcher.is_ready(pod)
    patch = podwatcher.ready_status_patch(pod, "2026-01-01T00:00:00Z")
    assert {c["type"]: c["status"] for c in patch["conditions"]} == {
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
    }
    assert patch["containerStatuses"] == [{"name": "vllm", "ready": True, "started": True, "restartCount": 0}]
    assert podwatcher.is_ready({"status": patch})

    assert podwatcher.parse_duration("20s") == 20
    assert podwatcher.parse_duration("1m30s") == 90
    assert podwatcher.parse_duration("500ms") == 0.5
    assert podwatcher.parse_duration("2") == 2
    with pytest.raises(ValueError):
        podwatcher.parse_duration("soon")


def test_file_sd_targets_and_prometheus_config(tmp_path: Path) -> None:
    f = tmp_path / "targets.json"
    targets = [
        prometheus.Target("127.100.0.9:8000", {"pod": "b", "namespace": "ns"}),
        prometheus.Target("127.100.0.3:8000", {"pod": "a", "namespace": "ns"}),
    ]
    assert prometheus.write_targets(f, targets)
    assert not prometheus.write_targets(f, list(reversed(targets)))  # same set, same text: no rewrite
    assert json.loads(f.read_text()) == [
        {"targets": ["127.100.0.3:8000"], "labels": {"namespace": "ns", "pod": "a"}},
        {"targets": ["127.100.0.9:8000"], "labels": {"namespace": "ns", "pod": "b"}},
    ]
    cfg = prometheus.render_config(f, 2.0)
    job = cfg["scrape_configs"][0]
    assert cfg["global"]["scrape_interval"] == "2000ms"
    assert job["file_sd_configs"] == [{"files": [str(f)], "refresh_interval": "2000ms"}]
