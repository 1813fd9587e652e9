"""The batch client (``vlm_operator.batch.client``) against the real engine (vLLM CPU build, tiny Qwen2-VL): one
shard of 20 lines with images plus two lines it must refuse, and a shard SIGKILLed halfway and rerun.

Also checks the client's own count: for every answered line, the engine's ``usage.prompt_tokens`` minus the image
tokens the client counted with the estimator is the same number (the text and the chat template, identical on every
line), so the estimator's per-image count is the engine's for these 20 sizes.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.engine_util import Engine, png, start_engine, wait_ready
from vlm_operator.devcluster import tiny
from vlm_operator.estimator import tokens
from vlm_operator.models import catalog

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1200)]

FAMILY = "qwen2-vl"
SERVED = tiny.FAMILIES[FAMILY].source_model
KWARGS = {"max_pixels": 200704}
FLAGS = ["--max-model-len", "4096", "--max-num-seqs", "4", "--limit-mm-per-prompt", '{"image":2,"video":0}',
         "--mm-processor-kwargs", json.dumps(KWARGS)]  # fmt: skip
HOST, PORT = "127.0.0.1", 18451


@pytest.fixture(scope="module")
def engine(engine_ready: None, engine_logs: Path) -> Iterator[Engine]:
    eng = wait_ready(start_engine(FAMILY, SERVED, FLAGS, engine_logs, HOST, PORT))
    try:
        yield eng
    finally:
        eng.stop()


def size(i: int) -> tuple[int, int]:
    return 64 + 37 * i, 48 + 23 * (i % 7)


def batch_line(i: int, images: int = 1) -> str:
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png(*size(i))).decode()}}
        for _ in range(images)
    ]
    content.append({"type": "text", "text": "Caption."})
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4}
    return json.dumps({"custom_id": f"img-{i:03d}", "method": "POST", "url": "/v1/chat/completions", "body": body})


def client(inp: Path, out: Path, eng: Engine, summary: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "vlm_operator.batch.client", "--input", str(inp), "--output-dir", str(out),
        "--shard-index", "0", "--shard-count", "1", "--model", SERVED, "--engine-url", eng.url,
        "--summary-path", str(summary), "--progress-port", "-1", "--max-model-len", "4096", "--image-limit", "2",
        "--video-limit", "0", "--model-id", SERVED, "--mm-processor-kwargs", json.dumps(KWARGS), "--temperature", "0",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_twenty_image_lines_are_answered_and_bad_lines_refused(engine: Engine, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    lines = [batch_line(i) for i in range(20)]
    lines.insert(5, '{"custom_id": "cut", "method": "POST"')  # not JSON
    lines.insert(9, batch_line(99, images=3))  # over the image limit of 2
    inp.write_text("\n".join(lines) + "\n")
    proc = client(inp, out, engine, tmp_path / "summary")
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr.decode()[-2000:]

    results = read(out / "results-0.jsonl")
    errors = read(out / "errors-0.jsonl")
    assert sorted(r["custom_id"] for r in results) == [f"img-{i:03d}" for i in range(20)]
    assert {(e["custom_id"], e["error"]["code"]) for e in errors} == {
        (None, "invalid_json"),
        ("img-099", "too_many_images"),
    }
    facts = catalog.lookup(SERVED)
    rest = set()
    for r in results:
        assert r["response"]["status_code"] == 200
        body = r["response"]["body"]
        assert body["model"] == SERVED and body["choices"][0]["message"]["role"] == "assistant"
        i = int(r["custom_id"].removeprefix("img-"))
        rest.add(body["usage"]["prompt_tokens"] - tokens.image_tokens(facts, *size(i), KWARGS).prompt)
    assert len(rest) == 1, f"the engine's prompt tokens differ from the estimator's image count by {sorted(rest)}"

    summary = json.loads((tmp_path / "summary").read_text())
    assert summary == json.loads(stdout.decode().splitlines()[-1])
    assert (summary["linesTotal"], summary["linesDone"], summary["linesFailed"], summary["images"]) == (22, 20, 2, 20)
    assert summary["promptTokens"] == sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in results)
    assert summary["reason"] is None


def test_a_shard_killed_halfway_resumes_on_the_real_engine(engine: Engine, tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out"
    inp.write_text("\n".join(batch_line(i) for i in range(40)) + "\n")
    proc = client(inp, out, engine, tmp_path / "s1")
    results = out / "results-0.jsonl"
    deadline = time.monotonic() + 600
    while not (results.exists() and results.read_bytes().count(b"\n") >= 10):
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    before = len(read(results))
    assert 10 <= before < 40
    again = client(inp, out, engine, tmp_path / "s2")
    _, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr.decode()[-2000:]
    ids = [r["custom_id"] for r in read(results)]
    assert sorted(ids) == [f"img-{i:03d}" for i in range(40)], "every line once, none twice"
    assert f"{before} answered and 0 failed before" in stderr.decode()
