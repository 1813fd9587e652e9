"""`vlmctl batch FILE --model M [engine flags]`: validate a VLMBatchJob input locally and estimate what it costs.

Takes the flags of ``vlmctl estimate`` (the engine the batch runs on: model, GPU, max_model_len, limits, processor
kwargs, release). Every line is checked as the in-pod client checks it (:func:`vlm_operator.batch.lines.validate`);
the images and prompt tokens of each line are counted with the estimator; the KV headroom is the estimator's KV
cache against the batch's sequences (:mod:`vlm_operator.batch.report`).

Exit codes as ``vlmctl estimate``: 0 every line passes and the engine fits, 2 some line would be refused or the
engine does not fit the GPU, 1 bad input (a flag, a file that cannot be read, a model nobody knows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vlm_operator.cli import estimate as est


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="FILE", help="the batch file: OpenAI batch JSONL (one request per line)")
    est.add_arguments(parser)
    parser.add_argument(
        "--max-tokens",
        type=est.positive_int,
        help="answer tokens where a line sets none (the VLMBatchJob's default); without it such a line may answer "
        "up to max_model_len",
    )
    parser.add_argument("--show", type=est.positive_int, default=20, help="refused/flagged lines listed (default 20)")


def run(args: argparse.Namespace) -> int:
    from vlm_operator.batch import lines as L
    from vlm_operator.batch import report as R
    from vlm_operator.estimator.core import check_architecture, estimate
    from vlm_operator.estimator.memory import InputError
    from vlm_operator.estimator.tokens import TokenError, max_image_tokens

    path = Path(args.input)
    try:
        req = est.build_request(args)
        served = check_architecture(req)
        result = estimate(req)
    except (est.BadInput, InputError, TokenError) as exc:
        print(f"vlmctl batch: {exc}", file=sys.stderr)
        return 1
    if not path.is_file():
        print(f"vlmctl batch: {path}: no such file", file=sys.stderr)
        return 1
    r = result.resolved
    facts = req.model
    counter = L.ImageTokenCounter(facts, r.processor_kwargs) if facts.vision is not None else None
    worst = max_image_tokens(facts, r.processor_kwargs).prompt if counter is not None else 0
    limits = L.Limits(
        max_model_len=r.max_model_len,
        image_limit=r.limits.get("image", 0),
        video_limit=r.limits.get("video", 0),
        max_tokens=args.max_tokens,
    )
    try:
        report = R.analyze(L.iter_lines(L.read_blocks(path)), limits, counter, r.max_model_len, worst)
    except OSError as exc:
        print(f"vlmctl batch: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    data: dict[str, Any] = {
        "file": str(path),
        "model": facts.model_id,
        "gpu": req.gpu.name,
        "gpu_assumed": est.assumed_gpu(args),
        "vllm_version": req.vllm_version,
        "processor_kwargs": r.processor_kwargs,
        **report.to_json(),
        "kv": report.kv_headroom(result.kv_cache_tokens, r.max_num_seqs),
        "engine_fits": result.fits,
        "engine_reasons": list(result.reasons),
        "warnings": [w for w in (served, *result.warnings) if w],
    }
    ok = result.fits and not report.errors
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        _print_table(data, args.show)
    return 0 if ok else 2


def _print_table(d: dict[str, Any], show: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    gpu = f"{d['gpu']} (assumed)" if d["gpu_assumed"] else d["gpu"]
    by_url = f" ({d['images_by_url']:,} by URL, not fetched)" if d["images_by_url"] else ""
    console.print(
        f"{d['file']}: {d['lines']:,} lines, {d['valid']:,} valid, {d['refused']:,} refused; "
        f"{d['images']:,} images{by_url}, {d['videos']:,} videos",
        markup=False,
    )
    kwargs = json.dumps(d["processor_kwargs"]) if d["processor_kwargs"] else "the checkpoint's defaults"
    console.print(
        f"engine: {d['model']} on {gpu}, vLLM {d['vllm_version']}: maxModelLen {d['max_model_len']:,}, "
        f"images per prompt {d['image_limit']}, videos {d['video_limit']}, processor kwargs {kwargs}",
        markup=False,
    )
    p = d["prompt_tokens"]
    t = Table(title="prompt tokens per line", caption="images by the estimator, text at ~4 characters a token")
    for col in ("min", "median", "p95", "max", "total"):
        t.add_column(col, justify="right")
    t.add_row(*(f"{p[c]:,}" for c in ("min", "median", "p95", "max", "total")))
    console.print(t)
    if d["images_by_url"]:
        console.print(
            f"  an image given by URL counts as the worst case, {d['worst_case_image_tokens']:,} tokens", markup=False
        )
    if d["errors"]:
        e = Table(title=f"refused: {len(d['errors'])} lines", caption="the client writes these to the errors file")
        e.add_column("line", justify="right")
        e.add_column("code")
        e.add_column("reason")
        for err in d["errors"][:show]:
            e.add_row(str(err["line"]), err["code"], err["message"].split(": ", 1)[-1])
        console.print(e)
        if len(d["errors"]) > show:
            console.print(f"  ... and {len(d['errors']) - show} more (--show N, or --output json)")
    if d["may_exceed"]:
        console.print(
            f"may exceed maxModelLen {d['max_model_len']:,} (text approximated, URL images at the worst case; the "
            f"engine decides): {len(d['may_exceed'])} lines",
            markup=False,
        )
        for m in d["may_exceed"][:show]:
            console.print(f"  line {m['line']} ({m['custom_id']}): ~{m['prompt_tokens']:,} tokens", markup=False)
    kv = d["kv"]
    if "longest_sequence_tokens" in kv:
        limit = "the KV cache" if kv["kv_limited"] else f"max_num_seqs {kv['max_num_seqs']}"
        console.print(
            f"KV headroom: {kv['kv_cache_tokens']:,} tokens of KV cache per engine hold "
            f"{kv['sequences_of_longest']:.2f} sequences of the longest line ({kv['longest_sequence_tokens']:,} "
            f"tokens) and {kv['sequences_of_median']:.2f} of the median ({kv['median_sequence_tokens']:,}); "
            f"expected concurrency {kv['expected_concurrency']:.2f} per engine, limited by {limit}",
            markup=False,
        )
    for w in d["warnings"]:
        console.print(f"  [yellow]warning[/yellow]: {w}")
    if not d["engine_fits"]:
        console.print("[red]the engine does not fit the GPU[/red] (see `vlmctl estimate` with the same flags):")
        for reason in d["engine_reasons"]:
            console.print(f"  - {reason}", markup=False)
    verdict = "[green]OK[/green]" if d["engine_fits"] and not d["errors"] else "[red]NOT OK[/red]"
    console.print(f"verdict: {verdict}")
