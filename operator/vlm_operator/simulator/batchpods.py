"""Dev cluster: run a VLMBatchJob shard's client container as a local process, as a kubelet would run it.

kwok runs no containers, so the pod watcher plays the kubelet for a batch pod (one with a ``client`` container
running ``vlm_operator.batch.client``): the engine sidecar is the simulator (or the real CPU engine) the watcher
already serves on ``<podIP>:8000``; once the pod is Ready (the sidecar's probe would have passed), the client's own
command runs here with

- ``python`` replaced by this interpreter, the container's literal env vars, ``JOB_COMPLETION_INDEX`` from the pod,
  ``VLM_BATCH_ENGINE_URL=http://<podIP>:8000`` and ``VLM_BATCH_PROGRESS_HOST=<podIP>`` (``GET /progress`` on the
  pod's IP, where the operator reads it);
- each volume mount mapped to a local directory: a PersistentVolumeClaim to ``<root>/pvc/<namespace>/<claim>/``
  (``subPath`` below it), a ConfigMap to its keys written as files (an ``optional`` one that does not exist is an
  empty directory, as the kubelet mounts it), ``/dev/termination-log`` to a file of the run.

When the process exits, the pod's phase becomes ``Succeeded`` (exit 0) or ``Failed``, and the client container's
``state.terminated`` carries the exit code and the summary file's content as ``message`` (at most 4096 bytes, as
the kubelet reads ``terminationMessagePath``). A pod deleted while its client runs gets the client stopped (SIGTERM,
then SIGKILL after the grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..kube import Kube

CLIENT_CONTAINER = "client"
CLIENT_MODULE = "vlm_operator.batch.client"
ENGINE_CONTAINER = "vllm"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
TERMINATION_LOG = "/dev/termination-log"
#: the kubelet keeps at most this much of a termination message (Pod API, terminationMessagePath)
MAX_MESSAGE = 4096
STOP_GRACE_S = 5.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def client_container(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The batch client container of ``pod``, or None when it is not a batch shard."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == CLIENT_CONTAINER and CLIENT_MODULE in [str(a) for a in c.get("command") or []]:
            return dict(c)
    return None


def engine_container(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The vLLM container: a native sidecar (init container named ``vllm``) in a batch pod, else the first one."""
    spec = pod.get("spec") or {}
    for c in spec.get("initContainers") or []:
        if c.get("name") == ENGINE_CONTAINER and c.get("restartPolicy") == "Always":
            return dict(c)
    containers = spec.get("containers") or []
    return dict(containers[0]) if containers else None


def map_path(arg: str, mounts: Sequence[tuple[str, Path]]) -> str:
    """``arg`` with a mount path prefix replaced by its local directory (longest mount path first)."""
    for mount, local in sorted(mounts, key=lambda m: -len(m[0])):
        if arg == mount:
            return str(local)
        if arg.startswith(mount.rstrip("/") + "/"):
            return str(local / arg[len(mount.rstrip("/")) + 1 :])
    return arg


@dataclass
class _Run:
    uid: str
    namespace: str
    name: str
    proc: asyncio.subprocess.Process
    scratch: Path
    summary: Path
    started: str
    log: Path
    stopping: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class BatchRunner:
    """Runs the client of each Ready batch pod; the pod watcher calls :meth:`sync` on every pass."""

    def __init__(self, kube: Kube, root: Path, log: Callable[[str], None], port: int = 8000) -> None:
        self.kube = kube
        self.root = root
        self.log = log
        self.port = port
        self.runs: dict[str, _Run] = {}
        self.done: set[str] = set()

    def volumes_for(
        self, pod: Mapping[str, Any], container: Mapping[str, Any], scratch: Path
    ) -> list[tuple[str, Path]] | str:
        """(mount path, local dir) for each of the container's mounts, or why the pod cannot start."""
        ns = pod["metadata"]["namespace"]
        volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
        out: list[tuple[str, Path]] = []
        for m in container.get("volumeMounts") or []:
            vol = volumes.get(m.get("name")) or {}
            if "persistentVolumeClaim" in vol:
                local = self.root / "pvc" / ns / vol["persistentVolumeClaim"]["claimName"]
                if m.get("subPath"):
                    local = local / m["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            elif "configMap" in vol:
                ref = vol["configMap"]
                local = scratch / "volumes" / str(m.get("name"))
                local.mkdir(parents=True, exist_ok=True)
                cm = self.kube.get("v1", "ConfigMap", ns, ref["name"])
                if cm is None:
                    if not ref.get("optional"):
                        return f'configmap "{ref["name"]}" not found'
                else:
                    data = cm.get("data") or {}
                    items = ref.get("items") or [{"key": k, "path": k} for k in data]
                    for item in items:
                        if item["key"] in data:
                            target = local / item["path"]
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_text(data[item["key"]])
            elif "emptyDir" in vol:
                local = scratch / "volumes" / str(m.get("name"))
                local.mkdir(parents=True, exist_ok=True)
            else:
                continue
            out.append((str(m["mountPath"]), local))
        return out

    async def sync(self, pods: Sequence[Mapping[str, Any]], ready: Callable[[Mapping[str, Any]], bool]) -> None:
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        for uid, run in list(self.runs.items()):
            pod = by_uid.get(uid)
            if run.proc.returncode is not None:
                await self._finish(run, pod)
            elif pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
                await self._stop(run, "pod deleted")
        for uid in list(self.done):
            if uid not in by_uid:
                self.done.discard(uid)
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if uid in self.runs or uid in self.done:
                continue
            status = pod.get("status") or {}
            if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
                continue
            container = client_container(pod)
            if container is None or not ready(pod):
                continue
            await self._start(pod, container)

    async def _start(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        scratch = Path(tempfile.mkdtemp(prefix="vlm-batch-"))
        mounts = self.volumes_for(pod, container, scratch)
        if isinstance(mounts, str):
            shutil.rmtree(scratch, ignore_errors=True)
            self.log(f"{key}: batch client not started: {mounts}")
            return
        summary = scratch / "termination-log"
        summary.touch()
        mounts.append((container.get("terminationMessagePath") or TERMINATION_LOG, summary))
        argv = [map_path(str(a), mounts) for a in (container.get("command") or []) + (container.get("args") or [])]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        ip = str(pod["status"]["podIP"])
        env = dict(os.environ)
        for e in container.get("env") or []:
            if "value" in e:
                env[str(e["name"])] = str(e["value"])
        index = (meta.get("annotations") or {}).get(INDEX_ANNOTATION)
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = str(index)
        env["VLM_BATCH_ENGINE_URL"] = f"http://{ip}:{self.port}"
        env["VLM_BATCH_PROGRESS_HOST"] = ip
        log_path = scratch / "client.log"
        with log_path.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True
            )
        self.runs[meta["uid"]] = _Run(
            meta["uid"], meta["namespace"], meta["name"], proc, scratch, summary, _now(), log_path
        )
        self.log(f"{key}: started the batch client (pid {proc.pid}), shard {index}: {' '.join(argv[1:])}")

    async def _stop(self, run: _Run, why: str) -> None:
        if run.proc.returncode is None and not run.stopping:
            run.stopping = True
            self.log(f"{run.namespace}/{run.name}: stopping the batch client (pid {run.proc.pid}): {why}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(run.proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)
                await run.proc.wait()
        self.runs.pop(run.uid, None)
        self._cleanup(run)

    def _cleanup(self, run: _Run) -> None:
        tail = ""
        with contextlib.suppress(OSError):
            tail = run.log.read_text(errors="replace")[-1500:]
        if tail:
            self.log(f"{run.namespace}/{run.name}: batch client log (tail):\n{tail}")
        shutil.rmtree(run.scratch, ignore_errors=True)

    async def _finish(self, run: _Run, pod: Mapping[str, Any] | None) -> None:
        rc = run.proc.returncode
        assert rc is not None
        code = 128 - rc if rc < 0 else rc  # killed by signal N: the kubelet reports 128 + N
        message = run.summary.read_bytes()[:MAX_MESSAGE].decode("utf-8", errors="replace")
        self.runs.pop(run.uid, None)
        self.done.add(run.uid)
        self.log(f"{run.namespace}/{run.name}: batch client exited {code}; summary {message[:300]}")
        if pod is not None and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            patch = finished_status_patch(pod, code, message, run.started, _now())
            try:
                await asyncio.to_thread(self.kube.patch_status, "v1", "Pod", run.namespace, run.name, patch)
            except Exception as exc:  # the pod may be gone by now
                self.log(f"{run.namespace}/{run.name}: could not record the client's exit: {exc}")
        self._cleanup(run)

    async def close(self) -> None:
        for run in list(self.runs.values()):
            await self._stop(run, "watcher stopping")


def finished_status_patch(pod: Mapping[str, Any], code: int, message: str, started: str, now: str) -> dict[str, Any]:
    """What a kubelet reports once a pod's only main container has ended under ``restartPolicy: Never``: the pod's
    phase, the client's ``state.terminated`` (its termination message), the sidecar stopped after it."""
    status = pod.get("status") or {}
    reason = "Completed" if code == 0 else ("OOMKilled" if code == 137 else "Error")
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ("Ready", "ContainersReady")]
    why = "PodCompleted" if code == 0 else "PodFailed"
    conditions += [
        {"type": "Ready", "status": "False", "reason": why, "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "False", "reason": why, "lastTransitionTime": now},
    ]
    spec = pod.get("spec") or {}
    client: Mapping[str, Any] = next((c for c in spec.get("containers") or [] if c.get("name") == CLIENT_CONTAINER), {})
    containers = [
        {
            "name": CLIENT_CONTAINER,
            "image": client.get("image", ""),
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "message": message,
                    "startedAt": started,
                    "finishedAt": now,
                }
            },
        }
    ]
    engine = engine_container(pod) or {}
    inits = [
        {
            "name": engine.get("name", ENGINE_CONTAINER),
            "image": engine.get("image", ""),
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now}},
        }
    ]
    return {
        "phase": "Succeeded" if code == 0 else "Failed",
        "conditions": conditions,
        "containerStatuses": containers,
        "initContainerStatuses": inits,
    }
