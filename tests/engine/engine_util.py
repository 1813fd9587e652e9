"""Helpers of the real-engine tier: start the installed vLLM CPU engine on a tiny checkpoint, talk to it, stop it.

Everything is loopback, bounded and stopped by process-group id (the API server, engine core and worker processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_operator.devcluster import engine as engine_install
from vlm_operator.devcluster import tiny
from vlm_operator.simulator.engine import engine_env, termination_message
from vlm_operator.smoke import tiny_png

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
#: start-up budget of one engine: 60 s on 2 idle cores, 150-260 s measured on 2 cores shared with other work
START_TIMEOUT = float(os.environ.get("VLM_ENGINE_START_TIMEOUT", "600"))


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 120.0) -> tuple[int, str] | None:
    """``(status, text)``; ``None`` when nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def png(width: int, height: int) -> bytes:
    """A solid RGB PNG of the given size (token counts depend only on the size)."""
    return tiny_png(width, height, (200, 40, 40))


def image_chat(model: str, width: int, height: int, text: str = "Describe.", max_tokens: int = 2) -> dict[str, Any]:
    import base64

    url = "data:image/png;base64," + base64.b64encode(png(width, height)).decode()
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "return_token_ids": True,
    }


@dataclass
class Engine:
    family: str
    served: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    ready_s: float = 0.0

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return termination_message(self.log.read_bytes())

    def rss_bytes(self) -> int:
        """RSS of the engine's process group (API server, engine core, workers), from /proc."""
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                pgid = int(stat.rsplit(")", 1)[1].split()[2])
                if pgid != self.proc.pid:
                    continue
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except (OSError, ValueError, IndexError):
                continue
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass


def start_engine(family: str, served: str, flags: list[str], logdir: Path, host: str, port: int = 8000) -> Engine:
    """Start the engine on the tiny checkpoint of ``family`` (does not wait; see :func:`wait_ready`)."""
    py = str(engine_install.python_path())
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny.checkpoint_dir(family))]
    cmd += ["--served-model-name", served, "--load-format", "dummy", "--host", host, "--port", str(port), *flags]
    log = logdir / f"{family}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=engine_env({}, tmpdir=logdir / "tmp"), start_new_session=True
        )
    return Engine(family, served, f"http://{host}:{port}", proc, log, time.monotonic())


def wait_ready(engine: Engine, timeout: float = START_TIMEOUT) -> Engine:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.proc.poll() is not None:
            raise AssertionError(f"engine {engine.family} exited {engine.proc.returncode}:\n{engine.tail()}")
        res = http(engine.url + "/health", timeout=2)
        if res is not None and res[0] == 200:
            engine.ready_s = time.monotonic() - engine.started
            return engine
        time.sleep(1)
    engine.stop()
    raise AssertionError(f"engine {engine.family} not healthy after {timeout:.0f}s:\n{engine.tail()}")
