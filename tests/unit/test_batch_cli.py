"""`vlmctl batch`: validates a batch file as the in-pod client does, counts images and prompt tokens with the
estimator, prints the KV headroom; exit codes as `vlmctl estimate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vlm_operator.batch import report as R
from vlm_operator.cli import main
from vlm_operator.estimator import tokens
from vlm_operator.models import catalog
from vlm_operator.smoke import png_data_url, tiny_png

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
ENGINE = ["--model", MODEL, "--gpu", "L40S", "--max-model-len", "8192", "--limit-mm-per-prompt",
          '{"image":2,"video":0}', "--mm-processor-kwargs", '{"max_pixels": 1003520}']  # fmt: skip


def line(cid: str, sizes: list[tuple[int, int]], text: str = "Describe.", urls: int = 0, **body: Any) -> str:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    content += [{"type": "image_url", "image_url": {"url": png_data_url(tiny_png(w, h))}} for w, h in sizes]
    content += [{"type": "image_url", "image_url": {"url": f"https://example.com/{i}.jpg"}} for i in range(urls)]
    req = {"messages": [{"role": "user", "content": content}], **body}
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": req})


def run_json(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    rc = main(["batch", str(path), *ENGINE, *extra, "--output", "json"])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out else {}


def test_a_clean_file_exits_0_with_per_line_counts_from_the_estimator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join([line("a", [(640, 480)], max_tokens=100), line("b", [(1920, 1080), (320, 320)])]) + "\n")
    rc, data = run_json(capsys, f, "--max-tokens", "50")
    assert rc == 0, data
    assert (data["lines"], data["valid"], data["refused"], data["images"]) == (2, 2, 0, 3)
    facts = catalog.lookup(MODEL)
    kw = {"max_pixels": 1003520}

    def img(w: int, h: int) -> int:
        return tokens.image_tokens(facts, w, h, kw).prompt

    a, b = data["per_line"]
    assert a["image_tokens"] == img(640, 480)
    assert b["image_tokens"] == img(1920, 1080) + img(320, 320)
    assert a["text_tokens"] == 3  # "Describe." = 9 characters at ~4 a token
    assert a["prompt_tokens"] == a["image_tokens"] + 3
    # the line's own max_tokens, else --max-tokens
    assert a["sequence_tokens"] == a["prompt_tokens"] + 100 and b["sequence_tokens"] == b["prompt_tokens"] + 50
    # the KV headroom is the estimator's KV cache (same flags as vlmctl estimate) over these sequences
    main(["estimate", *ENGINE, "--output", "json"])
    kv_tokens = json.loads(capsys.readouterr().out)["kv_cache_tokens"]
    kv = data["kv"]
    assert kv["kv_cache_tokens"] == kv_tokens
    assert kv["longest_sequence_tokens"] == b["sequence_tokens"]
    assert kv["sequences_of_longest"] == round(kv_tokens / b["sequence_tokens"], 2)
    assert data["engine_fits"] is True and data["max_model_len"] == 8192 and data["image_limit"] == 2


def test_lines_the_client_would_refuse_exit_2_and_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(
        "\n".join(
            [
                line("ok", [(64, 64)]),
                line("three", [(64, 64)] * 3),
                "{not json",
                line("ok", [(64, 64)]),  # repeats a custom_id
                line("urls", [], urls=2, text="x" * 24000),  # fine for sure, but may exceed: URL images at worst case
            ]
        )
        + "\n"
    )
    rc, data = run_json(capsys, f)
    assert rc == 2
    assert [(e["line"], e["code"]) for e in data["errors"]] == [
        (2, "too_many_images"),
        (3, "invalid_json"),
        (4, "duplicate_custom_id"),
    ]
    worst = tokens.max_image_tokens(catalog.lookup(MODEL), {"max_pixels": 1003520}).prompt
    assert data["worst_case_image_tokens"] == worst
    assert data["may_exceed"] == [{"line": 5, "custom_id": "urls", "prompt_tokens": 2 * worst + 6000}]
    assert data["images_by_url"] == 2


def test_images_past_max_model_len_are_refused_like_the_client_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(line("big", [(2000, 2000), (2000, 2000)]) + "\n")
    rc, data = run_json(capsys, f, "--max-model-len", "2048")
    assert rc == 2
    assert data["errors"][0]["code"] == "prompt_too_long" and "maxModelLen 2,048" in data["errors"][0]["message"]


def test_the_table_names_the_engine_the_refusals_and_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(line("a", [(64, 64)]) + "\n" + line("b", [(64, 64)] * 3) + "\n")
    rc = main(["batch", str(f), *ENGINE])
    out = capsys.readouterr().out
    assert rc == 2
    assert "2 lines, 1 valid, 1 refused" in out and "maxModelLen 8,192" in out
    assert "too_many_images" in out and "KV headroom" in out and "verdict: NOT OK" in out


def test_bad_input_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(tmp_path / "missing.jsonl"), *ENGINE]) == 1
    assert "no such file" in capsys.readouterr().err
    f = tmp_path / "in.jsonl"
    f.write_text(line("a", []) + "\n")
    assert main(["batch", str(f), "--model", "nobody/knows-this", "--offline"]) == 1
    assert "nobody/knows-this" in capsys.readouterr().err
    assert main(["batch", str(f), "--model", MODEL, "--max-model-len", "-5"]) == 1
    assert "--max-model-len" in capsys.readouterr().err
    assert main(["batch", "--model", MODEL]) == 1  # no FILE


def test_a_sequence_without_max_tokens_may_run_to_max_model_len() -> None:
    from vlm_operator.batch import lines as L

    raw = line("a", []).encode()
    rep = R.analyze([L.InputLine(0, 1, raw)], L.Limits(max_model_len=4096), None, 4096, 0)
    assert rep.lines[0].sequence == 4096
    rep = R.analyze([L.InputLine(0, 1, raw)], L.Limits(max_model_len=4096, max_tokens=10), None, 4096, 0)
    assert rep.lines[0].sequence == rep.lines[0].upper + 10
    seq = rep.lines[0].sequence
    roomy, tight = rep.kv_headroom(8192, 4), rep.kv_headroom(2 * seq, 4)
    assert (roomy["expected_concurrency"], roomy["kv_limited"]) == (4.0, False)  # max_num_seqs limits
    assert (tight["expected_concurrency"], tight["kv_limited"]) == (2.0, True)  # the KV cache limits


def test_the_documented_command_passes_on_the_example_file(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    assert "vlmctl batch docs/batch-example.jsonl" in readme
    args = ["batch", str(root / "docs" / "batch-example.jsonl"), "--model", MODEL, "--gpu", "L4", "--max-model-len",
            "8192", "--limit-mm-per-prompt", '{"image":2,"video":0}', "--mm-processor-kwargs", '{"max_pixels":1003520}',
            "--max-tokens", "128", "--output", "json"]  # fmt: skip
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["valid"], data["refused"], data["images"], data["images_by_url"]) == (4, 0, 4, 1)
