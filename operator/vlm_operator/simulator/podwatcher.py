"""Serve a vLLM simulator on each simulated pod's own IP, and mark the pod Ready once it answers ``/health``.

The dev cluster gives simulated pods loopback IPs (``127.100.0.0/16``), so a process on this machine can listen on
``<podIP>:8000`` exactly where a client would dial a real vLLM pod. kwok cannot run HTTP probes, so the kwok stage
``vlm-pod-simulator-start`` (devcluster/stages.yaml) leaves pods annotated ``sim.vlmops.io/simulator: "true"``
Running but not Ready, and this watcher sets Ready (the ``Ready``/``ContainersReady`` conditions and each
container's ``ready``) itself once the simulator serves ``/health``, as a kubelet would after a readiness probe.

Simulator settings, from the pod (annotations win):

* the container's ``vllm serve`` arguments: ``--served-model-name`` (else the positional model), ``--max-num-seqs``,
  ``--max-model-len``; the engine version from an image tag ``…:v0.11.0``;
* ``sim.vlmops.io/<setting>`` annotations for any :class:`~.server.SimConfig` field, dashed:
  ``model-name``, ``engine-version``, ``max-num-seqs``, ``max-queue``, ``max-model-len``, ``prefill-tokens-per-s``,
  ``decode-tokens-per-s``, ``output-tokens``, ``time-scale``, ``image-tokens``, ``model-family``, ``num-gpu-blocks``,
  ``block-size``;
* ``sim.vlmops.io/startup-delay: "20s"``: the simulator starts listening only after that long (a model load; until
  then clients get connection refused, as with vLLM).

The watcher lists pods in every namespace every ``interval`` seconds (level-triggered: a missed change is picked up
on the next pass), starts a simulator for each annotated Running pod with an IP, and stops it when the pod is
deleted or starts terminating. It can keep a Prometheus file_sd targets file up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ..releases import VllmVersion
from .prometheus import Target, write_targets
from .server import SimConfig, SimulatorServer, config_from_mapping

if TYPE_CHECKING:
    from ..kube import Kube

ANNOTATION_PREFIX = "sim.vlmops.io/"
ANNOTATION = ANNOTATION_PREFIX + "simulator"
ANNOTATION_STARTUP_DELAY = ANNOTATION_PREFIX + "startup-delay"
#: vLLM's default port, and the one clients of the dev cluster dial.
SIM_PORT = 8000

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"{stamp} simulate-pods: {msg}", file=sys.stderr, flush=True)


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (``"500ms"``, ``"20s"``, ``"1m30s"``); a bare number is seconds."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration such as 20s or 1m30s")
    return total


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _served_model(args: Sequence[str]) -> str | None:
    name = _flag_value(args, "--served-model-name") or _flag_value(args, "--model")
    if name:
        return name
    for i, arg in enumerate(args):  # `vllm serve MODEL ...`
        if arg == "serve" and i + 1 < len(args) and not args[i + 1].startswith("-"):
            return args[i + 1]
    return None


def config_from_pod(pod: Mapping[str, Any], base: SimConfig | None = None) -> SimConfig:
    """The simulator settings for ``pod``: its ``vllm serve`` arguments, then its ``sim.vlmops.io/*`` annotations."""
    settings: dict[str, str] = {}
    containers = pod.get("spec", {}).get("containers") or []
    if containers:
        c = containers[0]
        args = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        found = {
            "model-name": _served_model(args),
            "max-num-seqs": _flag_value(args, "--max-num-seqs"),
            "max-model-len": _flag_value(args, "--max-model-len"),
        }
        settings.update({k: v for k, v in found.items() if v})
        tag = str(c.get("image", "")).rpartition(":")[2]
        with contextlib.suppress(ValueError):
            settings["engine-version"] = str(VllmVersion(tag.removeprefix("v")))
        if not re.fullmatch(r"\d+", settings.get("max-model-len", "0")):
            settings.pop("max-model-len", None)  # `32k` and friends: keep the default
    annotations = pod.get("metadata", {}).get("annotations") or {}
    for key, value in annotations.items():
        if key.startswith(ANNOTATION_PREFIX):
            settings[key[len(ANNOTATION_PREFIX) :]] = str(value)
    return config_from_mapping(settings, base)


def wants_simulator(pod: Mapping[str, Any]) -> bool:
    """Annotated, not terminating, Running and with an IP."""
    meta = pod.get("metadata", {})
    status = pod.get("status", {})
    return (
        (meta.get("annotations") or {}).get(ANNOTATION) == "true"
        and not meta.get("deletionTimestamp")
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
    )


def is_ready(pod: Mapping[str, Any]) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def ready_status_patch(pod: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The status merge patch a kubelet's passing readiness probe amounts to (conditions are sent whole)."""
    status = pod.get("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ("Ready", "ContainersReady")]
    conditions += [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
    ]
    containers = [{**cs, "ready": True, "started": True} for cs in status.get("containerStatuses") or []]
    return {"conditions": conditions, "containerStatuses": containers}


@dataclass
class _Sim:
    uid: str
    namespace: str
    name: str
    ip: str
    cfg: SimConfig
    server: SimulatorServer | None = None
    task: asyncio.Task[None] | None = None
    marked_ready: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodWatcher:
    """Keeps one simulator per annotated pod. ``await run(stop_event)``; everything stops when it returns."""

    def __init__(
        self,
        kube: Kube,
        *,
        port: int = SIM_PORT,
        interval: float = 0.5,
        targets_file: Path | None = None,
        log: Log = _stderr,
    ) -> None:
        self.kube = kube
        self.port = port
        self.interval = interval
        self.targets_file = targets_file
        self.log = log
        self.sims: dict[str, _Sim] = {}
        self._session: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        if self.targets_file is not None:
            write_targets(self.targets_file, [])
        try:
            while not stop.is_set():
                try:
                    await self.sync_once()
                except Exception as exc:  # an API hiccup must not end the watcher; the next pass retries
                    self.log(f"sync failed: {type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await self.close()

    async def close(self) -> None:
        for uid in list(self.sims):
            await self._stop(uid, "watcher stopping")
        self._write_targets()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sync_once(self) -> None:
        pods: list[dict[str, Any]] = await asyncio.to_thread(self.kube.list, "v1", "Pod", None)
        wanted = {p["metadata"]["uid"]: p for p in pods if wants_simulator(p)}
        for uid, sim in list(self.sims.items()):
            pod = wanted.get(uid)
            if pod is None:
                await self._stop(uid, "pod gone or terminating")
            elif pod["status"]["podIP"] != sim.ip:
                await self._stop(uid, f"pod IP changed to {pod['status']['podIP']}")
            elif sim.server is None and (sim.task is None or sim.task.done()):
                await self._stop(uid, "start failed; retrying")
        for uid, pod in wanted.items():
            if uid not in self.sims:
                self._start(pod)
        for uid, pod in wanted.items():
            running = self.sims.get(uid)
            if running is None or running.server is None or is_ready(pod):
                continue
            if await self._healthy(running):
                now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                meta = pod["metadata"]
                await asyncio.to_thread(
                    self.kube.patch_status, "v1", "Pod", meta["namespace"], meta["name"], ready_status_patch(pod, now)
                )
                if not running.marked_ready:
                    self.log(f"{running.key}: /health answered; marked Ready")
                running.marked_ready = True
        self._write_targets()

    def _start(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        annotations = meta.get("annotations") or {}
        try:
            cfg = config_from_pod(pod)
            delay = parse_duration(annotations.get(ANNOTATION_STARTUP_DELAY, "0"))
        except ValueError as exc:
            self.log(f"{key}: bad simulator settings, not serving: {exc}")
            return
        sim = _Sim(meta["uid"], meta["namespace"], meta["name"], pod["status"]["podIP"], cfg)
        sim.task = asyncio.create_task(self._launch(sim, delay))
        self.sims[sim.uid] = sim

    async def _launch(self, sim: _Sim, delay: float) -> None:
        if delay > 0:
            self.log(f"{sim.key}: loading for {delay:g}s before serving on {sim.ip}:{self.port}")
            await asyncio.sleep(delay)
        server = SimulatorServer(sim.cfg, host=sim.ip, port=self.port)
        try:
            await server.start()
        except OSError as exc:
            self.log(f"{sim.key}: cannot listen on {sim.ip}:{self.port}: {exc}")
            return
        sim.server = server
        self.log(
            f"{sim.key}: serving {sim.cfg.model_name!r} (vLLM {sim.cfg.engine_version}, max_num_seqs "
            f"{sim.cfg.max_num_seqs}) on {server.url}"
        )

    async def _stop(self, uid: str, why: str) -> None:
        sim = self.sims.pop(uid)
        if sim.task is not None and not sim.task.done():
            sim.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sim.task
        if sim.server is not None:
            await sim.server.stop()
            self.log(f"{sim.key}: stopped the simulator on {sim.ip}:{self.port} ({why})")

    async def _healthy(self, sim: _Sim) -> bool:
        assert self._session is not None and sim.server is not None
        try:
            async with self._session.get(sim.server.url + "/health") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def _write_targets(self) -> None:
        if self.targets_file is None:
            return
        targets = [
            Target(f"{s.ip}:{self.port}", {"namespace": s.namespace, "pod": s.name})
            for s in self.sims.values()
            if s.server is not None
        ]
        if write_targets(self.targets_file, targets):
            self.log(f"prometheus targets: {len(targets)} pod(s) in {self.targets_file}")
