"""simulator/batchpods.py: how the dev cluster plays the kubelet for a VLMBatchJob shard (pure parts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_operator.simulator import batchpods as bp
from vlm_operator.simulator.podwatcher import config_from_pod


def _pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "caps-0-x", "namespace": "ns", "uid": "u", "annotations": {bp.INDEX_ANNOTATION: "0"}},
        "spec": {
            "initContainers": [
                {
                    "name": "vllm",
                    "restartPolicy": "Always",
                    "image": "vllm/vllm-openai:v0.11.0",
                    "command": ["vllm", "serve", "Qwen/Qwen2.5-VL-3B-Instruct", "--max-model-len", "8192"],
                }
            ],
            "containers": [
                {"name": "client", "image": "op:1", "command": ["python", "-m", "vlm_operator.batch.client"]}
            ],
        },
        "status": {"phase": "Running", "podIP": "127.100.0.7", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_engine_is_read_from_the_native_sidecar() -> None:
    pod = _pod()
    assert bp.client_container(pod) is not None
    cfg = config_from_pod(pod)
    assert cfg.model_name == "Qwen/Qwen2.5-VL-3B-Instruct" and cfg.max_model_len == 8192
    assert cfg.engine_version == "0.11.0"
    plain = {"spec": {"containers": [{"name": "vllm", "command": ["vllm", "serve", "m"]}]}}
    assert bp.client_container(plain) is None and bp.engine_container(plain) == plain["spec"]["containers"][0]


def test_mount_paths_map_longest_first(tmp_path: Path) -> None:
    mounts = [("/var/run/vlmops/input", tmp_path / "in"), ("/var/run/vlmops/input/deep", tmp_path / "deep")]
    assert bp.map_path("/var/run/vlmops/input/a/b.jsonl", mounts) == str(tmp_path / "in" / "a/b.jsonl")
    assert bp.map_path("/var/run/vlmops/input/deep/x", mounts) == str(tmp_path / "deep" / "x")
    assert bp.map_path("/var/run/vlmops/inputs", mounts) == "/var/run/vlmops/inputs"  # a sibling, not a child
    assert bp.map_path("https://a/b", mounts) == "https://a/b"


def test_finished_patch_is_what_a_kubelet_reports() -> None:
    ok = bp.finished_status_patch(_pod(), 0, '{"shard":0}', "t0", "t1")
    assert ok["phase"] == "Succeeded"
    term = ok["containerStatuses"][0]["state"]["terminated"]
    assert term == {
        "exitCode": 0,
        "reason": "Completed",
        "message": '{"shard":0}',
        "startedAt": "t0",
        "finishedAt": "t1",
    }
    assert ok["initContainerStatuses"][0]["name"] == "vllm"
    ready = {c["type"]: c["status"] for c in ok["conditions"]}
    assert ready["Ready"] == "False"
    killed = bp.finished_status_patch(_pod(), 137, "", "t0", "t1")
    assert (
        killed["phase"] == "Failed" and killed["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"
    )
