"""VLMBatchJob test helpers shared by the integration tier (simulated engine) and the engine tier (real engine):
the manifest builder, a bound PVC, the input file on the dev cluster's volume folder, and the output readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Cluster, wait_until

#: a 1x1 PNG as a data URL: a real image the client counts and the simulator accepts
PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


def line(i: int, images: int = 1, url: str = PNG) -> str:
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for _ in range(images)]
    content.append({"type": "text", "text": f"Describe image {i}."})
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    return json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})


def bound_pvc(cluster: Cluster, ns: str, claim: str) -> None:
    """A PVC bound to its own PV (the real PV controller binds them; kwok mounts nothing)."""
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-{claim}"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": f"/srv/{ns}/{claim}"},
            "claimRef": {"namespace": ns, "name": claim},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": ns},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": pv["metadata"]["name"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([pv, pvc]))
    wait_until(
        lambda: cluster.get_json("pvc", "-n", ns, claim).get("status", {}).get("phase") == "Bound",
        f"PVC {claim} bound",
        timeout=60,
    )


def batch_job(name: str, ns: str, parallelism: int, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "vlmops.io/v1alpha1",
        "kind": "VLMBatchJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "model": {"name": MODEL},
            "engine": {"version": "0.11.0", "maxModelLen": 8192},
            "resources": {"gpu": {"product": "L4"}},
            # 1280 visual tokens per image at most, no video: fits maxModelLen 8192 (the fit check runs)
            "multimodal": {
                "limitPerPrompt": {"image": {"count": 4}, "video": {"count": 0}},
                "processorKwargs": {"max_pixels": 1003520},
            },
            "podTemplate": {"annotations": {"sim.vlmops.io/simulator": "true", "sim.vlmops.io/time-scale": "0.01"}},
            "input": {"pvc": {"claimName": "data", "path": "in/lines.jsonl"}},
            "output": {"pvc": {"claimName": "data", "path": "out"}},
            "parallelism": parallelism,
            "sampling": {"temperature": 0, "maxTokens": 8},
            "backoffLimitPerIndex": 2,
            **spec,
        },
    }
    return doc


def get_bj(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.get_json("vlmbj", "-n", ns, name)
    return obj


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def wait_condition(cluster: Cluster, ns: str, name: str, type_: str, timeout: float) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        nonlocal seen
        seen = get_bj(cluster, ns, name)
        return cond(seen, type_).get("status") == "True"

    try:
        wait_until(check, f"{type_} on VLMBatchJob {ns}/{name}", timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{type_} not True; status: {json.dumps(seen.get('status'), indent=1)[:3000]}") from None
    return seen


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def outputs(out: Path, shards: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    results = [r for i in range(shards) for r in read_jsonl(out / f"results-{i}.jsonl")]
    errors = [r for i in range(shards) for r in read_jsonl(out / f"errors-{i}.jsonl")]
    return results, errors


def write_input(volumes: Path, ns: str, lines: list[str]) -> Path:
    data = volumes / "pvc" / ns / "data"
    (data / "in").mkdir(parents=True, exist_ok=True)
    (data / "in" / "lines.jsonl").write_text("\n".join(lines) + "\n")
    return data


def delete_batch_jobs(cluster: Cluster, ns: str, timeout: float = 120) -> None:
    """Delete every VLMBatchJob of ``ns`` and wait until they are gone, while the test's operator still runs: the
    operator's kopf finalizer stays on an object deleted after that operator stopped, and its namespace would stay
    Terminating (a later test that waits for a quiet cluster then times out)."""
    cluster.kubectl("delete", "vlmbj", "--all", "-n", ns, "--wait=false", check=False)
    wait_until(
        lambda: not cluster.get_json("vlmbj", "-n", ns).get("items"),
        f"the VLMBatchJobs of {ns} to be deleted",
        timeout=timeout,
    )
