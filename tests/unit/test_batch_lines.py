"""The batch client's pure parts: line numbering, sharding, validation, output lines, the resume scan, the summary."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from vlm_operator.batch import lines as L
from vlm_operator.batch.client import backoff_delay, parse_config
from vlm_operator.batch.summary import MAX_BYTES, Summary
from vlm_operator.estimator import tokens
from vlm_operator.media import image_size
from vlm_operator.models import catalog
from vlm_operator.smoke import png_data_url, tiny_png

QWEN = "Qwen/Qwen2-VL-2B-Instruct"


def line(obj: Any, index: int = 0, lineno: int = 1) -> L.InputLine:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return L.InputLine(index, lineno, raw)


def request(cid: str = "a", content: Any = "hello", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": content}], **body},
    }


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


# --------------------------------------------------------------------------------------------------- reading, shards
def test_non_empty_lines_are_numbered_in_file_order_with_their_file_line_and_offset() -> None:
    data = b'{"a":1}\n\n   \n{"b":2}\r\n{"c":3}'
    got = list(L.iter_lines([data]))
    assert [(x.index, x.lineno) for x in got] == [(0, 1), (1, 4), (2, 5)]
    assert [data[x.offset : x.offset + len(x.raw)] for x in got] == [x.raw for x in got]
    assert got[2].raw == b'{"c":3}'  # a last line without a newline still counts


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_chunk_boundaries_do_not_change_the_lines(size: int) -> None:
    data = b"".join(json.dumps(request(f"id{i}", "x" * (i * 5))).encode() + b"\n" * (1 + i % 3) for i in range(20))
    whole = list(L.iter_lines([data]))
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert list(L.iter_lines(chunks)) == whole
    assert len(whole) == 20


def test_shards_are_disjoint_and_cover_every_line() -> None:
    for count in (1, 2, 3, 7):
        seen = [L.shard_of(i, count) for i in range(50)]
        assert sorted(seen.count(s) for s in range(count)) == sorted(len(range(s, 50, count)) for s in range(count))
        assert all(L.shard_of(i, count) == i % count for i in range(50))


# ------------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (b"{not json", "invalid_json", "not valid JSON"),
        (b"\xff\xfe{}", "invalid_json", "UTF-8"),
        (b"[1, 2]", "invalid_json", "expected a JSON object, got list"),
        (json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}).encode(), "missing_custom_id", ""),
        (json.dumps({**request(), "custom_id": 7}).encode(), "missing_custom_id", "got 7"),
        (json.dumps({**request(), "method": "GET"}).encode(), "invalid_method", "got GET"),
        (json.dumps({**request(), "url": "/v1/completions"}).encode(), "invalid_url", "got /v1/completions"),
        (json.dumps({**request(), "body": "hi"}).encode(), "invalid_body", "body must be a JSON object"),
        (json.dumps(request(stream=True)).encode(), "invalid_body", "stream"),
        (json.dumps({**request(), "body": {"messages": []}}).encode(), "invalid_body", "non-empty list"),
        (json.dumps(request(content=[{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}])).encode(),
         "invalid_image_url", "neither a data: URL nor http(s)"),
        (json.dumps(request(content=[image_part("data:image/png;base64,@@@")])).encode(),
         "invalid_image_url", "invalid base64"),
        (json.dumps(request(content=[image_part("data:image/png," + "abc")])).encode(),
         "invalid_image_url", "base64-encoded"),
        (json.dumps(request(content=[image_part("data:image/png;base64,"
                                                + base64.b64encode(tiny_png(4, 4)[:20]).decode())])).encode(),
         "invalid_image_url", "truncated PNG"),
        (json.dumps(request(content=[image_part("https:///nohost.png")])).encode(), "invalid_image_url", "no host"),
        (json.dumps(request(model="gpt-4o")).encode(), "model_mismatch", "serves 'served'"),
    ],
)  # fmt: skip
def test_a_bad_line_is_an_error_naming_the_line_and_the_reason(raw: bytes, code: str, words: str) -> None:
    got = L.validate(L.InputLine(3, 17, raw), L.Limits(model="served"))
    assert isinstance(got, L.LineError), got
    assert got.code == code
    assert got.message.startswith("line 17: ")
    assert words in got.message
    assert got.line_id == "vlmbatch-line-3"


def test_a_good_line_gets_the_defaults_only_where_the_body_has_none() -> None:
    limits = L.Limits(model="m", temperature=0.2, max_tokens=64)
    got = L.validate(line(request()), limits)
    assert isinstance(got, L.Request)
    assert got.body["temperature"] == 0.2 and got.body["max_tokens"] == 64 and got.body["model"] == "m"
    own = L.validate(line(request(temperature=1.0, max_completion_tokens=5)), limits)
    assert isinstance(own, L.Request)
    assert own.body["temperature"] == 1.0 and "max_tokens" not in own.body and own.body["max_completion_tokens"] == 5


def test_images_are_counted_and_sized_and_http_urls_pass_unsized() -> None:
    content = [
        {"type": "text", "text": "what is in these?"},
        image_part(png_data_url(tiny_png(640, 480))),
        image_part("https://example.com/cat.jpg?sig=1"),
        {"image_url": "https://example.com/shorthand.png"},  # vLLM's shorthand part
        {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
    ]
    counter = L.ImageTokenCounter.for_model(QWEN)
    assert counter is not None
    got = L.validate(line(request(content=content)), L.Limits(), counter)
    assert isinstance(got, L.Request)
    assert [(i.kind, i.width, i.height) for i in got.images] == [("data", 640, 480), ("http", 0, 0), ("http", 0, 0)]
    assert got.videos == 1 and got.unsized_images == 2 and got.text_chars == len("what is in these?")
    # the estimator's count: smart_resize gives 476 x 644 = 17 x 23 merged 28-px patches, + vision start/end
    assert got.image_tokens == tokens.image_tokens(catalog.lookup(QWEN), 640, 480).prompt == 17 * 23 + 2


def test_image_tokens_follow_the_processor_kwargs_the_engine_uses() -> None:
    png = png_data_url(tiny_png(2000, 2000))
    small = L.ImageTokenCounter.for_model(QWEN, {"max_pixels": 200_704})
    default = L.ImageTokenCounter.for_model(QWEN)
    assert small is not None and default is not None
    a = L.validate(line(request(content=[image_part(png)])), L.Limits(), small)
    b = L.validate(line(request(content=[image_part(png)])), L.Limits(), default)
    assert isinstance(a, L.Request) and isinstance(b, L.Request)
    assert a.image_tokens == 256 + 2  # 200,704 px = 16 x 16 merged patches of 28 px
    assert b.image_tokens > 4 * a.image_tokens


def test_more_images_or_videos_than_the_limit_is_an_error() -> None:
    img = image_part(png_data_url(tiny_png(8, 8)))
    got = L.validate(line(request(content=[img, img, img])), L.Limits(image_limit=2))
    assert isinstance(got, L.LineError) and got.code == "too_many_images" and "3 images" in got.message
    assert "limit of 2" in got.message and "limitPerPrompt.image" in got.message
    vid = {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}
    got = L.validate(line(request(content=[vid])), L.Limits(video_limit=0))
    assert isinstance(got, L.LineError) and got.code == "too_many_videos"
    ok = L.validate(line(request(content=[img, img])), L.Limits(image_limit=2))
    assert isinstance(ok, L.Request)


def test_images_longer_than_max_model_len_are_refused_before_the_engine() -> None:
    counter = L.ImageTokenCounter.for_model(QWEN)
    assert counter is not None
    big = image_part(png_data_url(tiny_png(1792, 1792)))  # 64 x 64 patches / 4 = 4,096 + 2 tokens each
    got = L.validate(line(request(content=[big, big])), L.Limits(max_model_len=8192), counter)
    assert isinstance(got, L.LineError) and got.code == "prompt_too_long"
    assert "8,196 prompt tokens" in got.message and "maxModelLen 8,192" in got.message
    one = L.validate(line(request(content=[big])), L.Limits(max_model_len=8192), counter)
    assert isinstance(one, L.Request)
    # without a counter (model unknown to the catalog) the client leaves the length to the engine
    assert L.ImageTokenCounter.for_model("someone/unknown-model") is None
    assert isinstance(L.validate(line(request(content=[big, big])), L.Limits(max_model_len=8192)), L.Request)


def test_an_image_the_family_processor_refuses_is_an_error() -> None:
    counter = L.ImageTokenCounter.for_model(QWEN)
    thin = image_part(png_data_url(tiny_png(2000, 5)))  # aspect ratio 400: smart_resize refuses it
    got = L.validate(line(request(content=[thin])), L.Limits(), counter)
    assert isinstance(got, L.LineError) and got.code == "invalid_image_url" and "aspect ratio" in got.message


def test_an_image_format_the_header_reader_does_not_know_goes_to_the_engine_unsized() -> None:
    bmp = "data:image/bmp;base64," + base64.b64encode(b"BM" + b"\0" * 60).decode()
    got = L.validate(line(request(content=[image_part(bmp)])), L.Limits(), L.ImageTokenCounter.for_model(QWEN))
    assert isinstance(got, L.Request) and got.unsized_images == 1


def test_a_repeated_custom_id_is_an_error_for_the_later_line_only() -> None:
    first_seen = {"a": 2}
    later = L.validate(line(request("a"), index=9, lineno=12), L.Limits(), first_seen=first_seen)
    assert isinstance(later, L.LineError) and later.code == "duplicate_custom_id"
    assert later.custom_id is None  # the first line owns the custom_id in the output
    assert "line 12" in later.message and "'a'" in later.message
    first = L.validate(line(request("a"), index=2, lineno=3), L.Limits(), first_seen=first_seen)
    assert isinstance(first, L.Request)


def test_media_reads_webp_sizes() -> None:
    lossy = (
        b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0"
        + b"\0\0\0"
        + b"\x9d\x01\x2a"
        + (300).to_bytes(2, "little")
        + (200).to_bytes(2, "little")
    )
    assert image_size(lossy) == (300, 200)
    bits = (640 - 1) | ((480 - 1) << 14)
    lossless = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f" + bits.to_bytes(4, "little")
    assert image_size(lossless) == (640, 480)
    ext = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0" + b"\0" * 4 + (1023).to_bytes(3, "little") + (767).to_bytes(3, "little")
    assert image_size(ext) == (1024, 768)


# ---------------------------------------------------------------------------------------------- output and resume
def test_output_lines_are_the_openai_batch_format() -> None:
    req = L.validate(line(request("x"), index=4), L.Limits())
    assert isinstance(req, L.Request)
    out = L.result_line(req, {"id": "chatcmpl-1", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}, "chatcmpl-1")
    assert out == {
        "id": "vlmbatch-line-4",
        "custom_id": "x",
        "response": {"status_code": 200, "request_id": "chatcmpl-1", "body": out["response"]["body"]},
        "error": None,
    }
    assert L.usage_of(out["response"]) == (5, 2)
    err = L.error_line(5, None, "invalid_json", "line 6: not valid JSON")
    assert err == {
        "id": "vlmbatch-line-5",
        "custom_id": None,
        "response": None,
        "error": {"code": "invalid_json", "message": "line 6: not valid JSON"},
    }
    assert L.encode(err).endswith(b"}\n") and L.encode(err).count(b"\n") == 1


def test_the_resume_scan_cuts_a_torn_last_line_and_collects_what_is_done(tmp_path: Path) -> None:
    path = tmp_path / "results-0.jsonl"
    assert L.scan_output(path).lines == 0  # no file yet
    good = [
        {"id": "vlmbatch-line-0", "custom_id": "a", "response": {"body": {"usage": {"prompt_tokens": 10,
                                                                                   "completion_tokens": 3}}}},
        {"id": "vlmbatch-line-2", "custom_id": None, "response": None, "error": {"code": "x", "message": "y"}},
    ]  # fmt: skip
    data = b"".join(L.encode(g) for g in good)
    path.write_bytes(data + b'{"id": "vlmbatch-line-4", "custom_id": "c", "resp')  # a kill mid-write
    scan = L.scan_output(path)
    assert scan.truncated == len(b'{"id": "vlmbatch-line-4", "custom_id": "c", "resp')
    assert path.read_bytes() == data
    assert scan.lines == 2 and scan.custom_ids == {"a"} and scan.line_ids == {"vlmbatch-line-0", "vlmbatch-line-2"}
    assert (scan.prompt_tokens, scan.completion_tokens) == (10, 3)
    assert L.scan_output(path).truncated == 0  # idempotent
    only_torn = tmp_path / "errors-0.jsonl"
    only_torn.write_bytes(b'{"id": "vlm')
    assert L.scan_output(only_torn).lines == 0 and only_torn.read_bytes() == b""


def test_count_images_counts_parts_without_checking_them() -> None:
    raw = json.dumps(request(content=[image_part("x"), {"type": "text", "text": "t"}, image_part("y")])).encode()
    assert L.count_images(raw) == 2
    assert L.count_images(b"{nope") == 0


# ------------------------------------------------------------------------------------------------------- summary
def test_the_summary_is_one_line_under_4096_bytes_and_round_trips() -> None:
    s = Summary(3, 10, 7, 2, 9, 1000, 200, 12.3456, None)
    text = s.to_json()
    assert json.loads(text) == {
        "shard": 3,
        "linesTotal": 10,
        "linesDone": 7,
        "linesFailed": 2,
        "images": 9,
        "promptTokens": 1000,
        "completionTokens": 200,
        "seconds": 12.346,
        "reason": None,
    }
    assert Summary.from_json(text).to_dict() == s.to_dict()
    s.fail("EngineUnavailable", "é" * 5000)
    long = s.to_json()
    assert MAX_BYTES - 8 <= len(long.encode()) <= MAX_BYTES and "\n" not in long
    assert json.loads(long)["reason"].startswith("EngineUnavailable: éé") and long.endswith('..."}')
    assert s.exit_code == 3
    s.fail("InputNotFound", '"\n\\' * 3000)  # escapes make the JSON longer than the text
    assert len(s.to_json().encode()) <= MAX_BYTES and json.loads(s.to_json())["reason"].startswith("InputNotFound")
    with pytest.raises(ValueError, match="not a batch shard summary"):
        Summary.from_json('{"hello": 1}')


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(a, 0.5, 4.0) for a in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff_delay(2, 0.5, 4.0, jitter=0.5) == 1.5


# ----------------------------------------------------------------------------------------------------- arguments
BASE = ["--input", "in.jsonl", "--output-dir", "out", "--shard-count", "3", "--model", "m"]


def test_the_shard_index_comes_from_the_job_and_the_engine_url_from_the_dev_cluster() -> None:
    cfg = parse_config(BASE, {"JOB_COMPLETION_INDEX": "2"})
    assert cfg.shard_index == 2 and cfg.engine_url == "http://127.0.0.1:8000" and cfg.progress_host == "0.0.0.0"
    cfg = parse_config(
        [*BASE, "--shard-index", "1", "--engine-url", "http://a:1/"],
        {"VLM_BATCH_ENGINE_URL": "http://127.100.0.5:8000", "VLM_BATCH_PROGRESS_HOST": "127.100.0.5"},
    )
    assert cfg.shard_index == 1 and cfg.engine_url == "http://127.100.0.5:8000" and cfg.progress_host == "127.100.0.5"
    cfg = parse_config([*BASE, "--shard-index", "0", "--temperature", "0", "--max-tokens", "16"], {})
    assert cfg.limits.temperature == 0.0 and cfg.limits.max_tokens == 16 and cfg.limits.model == "m"
    assert cfg.results_path == Path("out/results-0.jsonl") and cfg.errors_path == Path("out/errors-0.jsonl")


@pytest.mark.parametrize(
    ("extra", "env", "words"),
    [
        ([], {}, "JOB_COMPLETION_INDEX"),
        (["--shard-index", "3"], {}, "outside 0..2"),
        ([], {"JOB_COMPLETION_INDEX": "x"}, "whole number"),
        (["--shard-index", "0", "--concurrency", "0"], {}, "--concurrency"),
        (["--shard-index", "0", "--mm-processor-kwargs", "[1]"], {}, "JSON object"),
    ],
)
def test_bad_arguments_exit_1_naming_the_flag(
    extra: list[str], env: dict[str, str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config([*BASE, *extra], env)
    assert exc.value.code == 1
    assert words in capsys.readouterr().err


def test_the_in_pod_client_loads_no_cluster_client() -> None:
    """The client runs in the Job's pod beside the engine: no kopf, no Kubernetes client."""
    import subprocess
    import sys

    code = (
        "import sys, vlm_operator.batch.client, vlm_operator.batch.report, vlm_operator.cli.batch\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kopf', 'kubernetes'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
