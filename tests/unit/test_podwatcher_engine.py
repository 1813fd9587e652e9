"""The pod watcher's real-engine bookkeeping, with an engine that cannot start: this python has no vLLM, so
``python -m vllm.entrypoints.openai.api_server`` exits 1 at once with its reason. The kube API is an in-memory fake
(this is a unit test of the watcher's decisions; tests/engine runs the real engine on a real control plane)."""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from vlm_operator.devcluster import pins, tiny
from vlm_operator.simulator import podwatcher


class FakeKube:
    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = {p["metadata"]["uid"]: p for p in pods}
        self.events: list[tuple[str, str, str, str]] = []

    def list(self, api_version: str, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(p) for p in self.pods.values()]

    def patch_status(self, api_version: str, kind: str, ns: str, name: str, status: dict[str, Any]) -> None:
        pod = next(p for p in self.pods.values() if p["metadata"]["name"] == name)
        pod["status"].update(copy.deepcopy(status))

    def event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        assert (involved["apiVersion"], involved["kind"]) == ("v1", "Pod")  # Kube.event builds the reference from these
        self.events.append((involved["metadata"]["name"], type_, reason, message))


def pod(name: str, ip: str, image: str = f"vllm/vllm-openai:v{pins.VLLM_CPU}") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "annotations": {podwatcher.ANNOTATION: "true"},
        },
        "spec": {
            "containers": [
                {
                    "name": "vllm",
                    "image": image,
                    "command": ["vllm", "serve", "llava-hf/llava-1.5-7b-hf", "--max-model-len", "4096"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ]
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "vllm", "image": image, "restartCount": 0, "ready": False}],
        },
    }


@pytest.fixture
def tiny_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VLM_CACHE_DIR", str(tmp_path / "cache"))
    d = tiny.checkpoint_dir("llava-1.5")
    d.mkdir(parents=True)
    (d / ".complete").write_text("x\n")
    return tmp_path


def test_an_engine_that_exits_crash_loops_with_its_log_tail_and_a_second_engine_waits_for_a_slot(
    tiny_cache: Path,
) -> None:
    kube = FakeKube([pod("a", "127.0.0.1"), pod("b", "127.0.0.2")])
    w = podwatcher.PodWatcher(
        kube,  # type: ignore[arg-type]
        port=18999,
        real_engine=True,
        max_engines=1,
        engine_python=sys.executable,
        engine_logs=tiny_cache / "logs",
        log=lambda m: None,
    )

    scratch: list[Path] = []

    async def scenario() -> None:
        w._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        await w.sync_once()  # both planned; one slot: a starts, b waits
        running = [s for s in w.sims.values() if s.engine is not None]
        assert [s.name for s in running] == ["a"]
        assert running[0].scratch is not None and len(str(running[0].scratch)) + 37 <= 107  # zmq IPC paths fit
        scratch.append(running[0].scratch)
        assert ("b", "Normal", "EngineQueued") in [e[:3] for e in kube.events]
        await asyncio.wait_for(running[0].engine.proc.wait(), 60)  # type: ignore[union-attr]
        await w.sync_once()  # a's exit is reported like a kubelet would; its slot goes to b
        await w.close()

    asyncio.run(scenario())
    assert scratch and not any(p.exists() for p in scratch)  # each engine's private TMPDIR is removed
    a = kube.pods["uid-a"]["status"]
    (cs,) = a["containerStatuses"]
    assert cs["restartCount"] == 1 and cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    term = cs["lastState"]["terminated"]
    assert term["exitCode"] == 1 and "No module named 'vllm'" in term["message"]
    assert {c["type"]: c["status"] for c in a["conditions"]}["Ready"] == "False"
    reasons = [(e[0], e[2]) for e in kube.events]
    assert ("a", "EngineStarted") in reasons and ("a", "BackOff") in reasons and ("b", "EngineStarted") in reasons
    started = next(e[3] for e in kube.events if e[:3] == ("a", "Normal", "EngineStarted"))
    assert "--load-format dummy" in started and "--served-model-name llava-hf/llava-1.5-7b-hf" in started


def test_a_pod_of_another_release_is_refused_once_and_never_served(tiny_cache: Path) -> None:
    kube = FakeKube([pod("old", "127.0.0.3", image="vllm/vllm-openai:v0.11.0")])
    w = podwatcher.PodWatcher(kube, real_engine=True, engine_python=sys.executable, log=lambda m: None)  # type: ignore[arg-type]

    async def scenario() -> None:
        await w.sync_once()
        await w.sync_once()
        await w.close()

    asyncio.run(scenario())
    assert not w.sims
    assert [e[2] for e in kube.events] == ["EngineVersionMismatch"]
    assert kube.pods["uid-old"]["status"]["conditions"] == [{"type": "Ready", "status": "False"}]


def test_listens_tells_our_engines_socket_from_another_process_on_the_same_address() -> None:
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert podwatcher.listens(os.getpgid(0), "127.0.0.1", port)
        assert not podwatcher.listens(os.getpgid(0) + 100000, "127.0.0.1", port)  # someone else's group
    assert not podwatcher.listens(os.getpgid(0), "127.0.0.1", port)  # closed: nothing listens
