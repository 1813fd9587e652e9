"""render/batch.py: the Indexed Job of a VLMBatchJob (engine as a native sidecar, the client per the contract)."""

from __future__ import annotations

import json
from typing import Any

from vlm_operator.api.batch import VLMBatchJob
from vlm_operator.render import args as render_args
from vlm_operator.render import batch as rb
from vlm_operator.render import objects


def _bj(**spec: Any) -> VLMBatchJob:
    body: dict[str, Any] = {
        "model": {"name": "Qwen/Qwen2.5-VL-3B-Instruct"},
        "engine": {"version": "0.11.0", "maxModelLen": 8192},
        "resources": {"gpu": {"product": "L4"}},
        "input": {"pvc": {"claimName": "data", "path": "in/caps.jsonl"}},
        "output": {"pvc": {"claimName": "results", "path": "run-1"}},
        "parallelism": 2,
        "sampling": {"temperature": 0.2, "maxTokens": 64},
    }
    body.update(spec)
    meta = {"name": "caps", "namespace": "ns", "uid": "u-1", "labels": {"kueue.x-k8s.io/queue-name": "gpu-q"}}
    return VLMBatchJob.model_validate({"metadata": meta, "spec": body})


def _render(bj: VLMBatchJob) -> dict[str, Any]:
    cmd = render_args.render_command(bj.spec.deployment_spec())
    return rb.job(bj, objects.RenderPlan(command=cmd.argv, env=cmd.env), rb.ClientSettings(image="op:1"))


def test_indexed_job_shape() -> None:
    job = _render(_bj(backoffLimitPerIndex=5, ttlSecondsAfterFinished=600, suspend=True))
    s = job["spec"]
    assert s["completionMode"] == "Indexed" and s["completions"] == s["parallelism"] == 2
    assert s["backoffLimitPerIndex"] == 5 and s["ttlSecondsAfterFinished"] == 600 and s["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-q"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "VLMBatchJob"
    pod = s["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    labels = s["template"]["metadata"]["labels"]
    assert labels[rb.LABEL_BATCH] == "caps" and objects.LABEL_OWNER not in labels  # never a VLMDeployment's pod


def test_engine_is_the_deployment_container_as_native_sidecar() -> None:
    bj = _bj()
    job = _render(bj)
    (engine,) = job["spec"]["template"]["spec"]["initContainers"]
    assert engine["restartPolicy"] == "Always" and engine["name"] == "vllm"
    # the same command a VLMDeployment with this engine would run, sampling defaults included (0.11.0 has the flag)
    cmd = engine["command"]
    assert cmd == list(render_args.render_command(bj.spec.deployment_spec()).argv)
    i = cmd.index("--override-generation-config")
    assert json.loads(cmd[i + 1]) == {"max_new_tokens": 64, "temperature": 0.2}
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "startupProbe" in engine and "lifecycle" not in engine


def test_client_command_is_the_contract() -> None:
    job = _render(_bj())
    (client,) = job["spec"]["template"]["spec"]["containers"]
    assert client["image"] == "op:1" and client["terminationMessagePath"] == "/dev/termination-log"
    assert client["command"] == [
        "python", "-m", "vlm_operator.batch.client",
        "--input", "/var/run/vlmops/input/in/caps.jsonl",
        "--output-dir", "/var/run/vlmops/output/run-1",
        "--shard-count", "2",
        "--model", "Qwen/Qwen2.5-VL-3B-Instruct",
        "--engine-url", "http://127.0.0.1:8000",
        "--max-model-len", "8192",
        "--image-limit", "999", "--video-limit", "999",
        "--model-id", "Qwen/Qwen2.5-VL-3B-Instruct",
        "--temperature", "0.2", "--max-tokens", "64",
        "--summary-path", "/dev/termination-log",
        "--progress-port", "8090",
        "--concurrency", "4",
    ]  # fmt: skip
    mounts = {m["mountPath"]: m for m in client["volumeMounts"]}
    assert mounts["/var/run/vlmops/input"]["readOnly"] is True and "/var/run/vlmops/output" in mounts


def test_configmap_input_is_optional_and_url_is_passed() -> None:
    job = _render(_bj(input={"configMap": {"name": "lines", "key": "in.jsonl"}}))
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert vols["batch-input"]["configMap"]["optional"] is True
    client = job["spec"]["template"]["spec"]["containers"][0]
    assert client["command"][client["command"].index("--input") + 1] == "/var/run/vlmops/input/input.jsonl"
    job = _render(_bj(input={"url": "https://s3.example/in.jsonl?X-Amz-Signature=abc"}))
    client = job["spec"]["template"]["spec"]["containers"][0]
    assert client["command"][client["command"].index("--input") + 1].startswith("https://s3.example/")
    assert "batch-input" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}


def test_old_release_without_the_flag_leaves_sampling_to_the_client() -> None:
    job = _render(_bj(engine={"version": "0.6.0", "maxModelLen": 4096}))
    engine = job["spec"]["template"]["spec"]["initContainers"][0]
    assert "--override-generation-config" not in engine["command"]
    client = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert client[client.index("--temperature") + 1] == "0.2" and client[client.index("--max-tokens") + 1] == "64"


def test_same_claim_for_input_and_output_is_mounted_once() -> None:
    job = _render(_bj(input={"pvc": {"claimName": "results", "path": "in.jsonl"}}))
    vols = [v for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"]["claimName"] for v in vols] == ["results"]


def test_the_batch_samples_render() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    samples = sorted((root / "crds" / "samples" / "batch").glob("*.yaml"))
    assert samples
    for path in samples:
        doc = yaml.safe_load(path.read_text())
        doc["metadata"] |= {"namespace": "ns", "uid": "u"}
        job = _render(VLMBatchJob.model_validate(doc))
        assert job["spec"]["completions"] == doc["spec"]["parallelism"], path


def test_the_job_records_the_spec_hash_less_what_may_change() -> None:
    a, b = _bj(), _bj(suspend=True, ttlSecondsAfterFinished=60)
    assert rb.spec_hash(a) == rb.spec_hash(b)
    assert rb.spec_hash(a) != rb.spec_hash(_bj(parallelism=3))
    assert _render(a)["metadata"]["annotations"][rb.ANN_BATCH_SPEC_HASH] == rb.spec_hash(a)


def test_the_client_counts_images_with_the_engines_processor_kwargs() -> None:
    bj = _bj(multimodal={"processorKwargs": {"max_pixels": 1003520}})
    job = _render(bj)
    engine = job["spec"]["template"]["spec"]["initContainers"][0]["command"]
    client = job["spec"]["template"]["spec"]["containers"][0]["command"]
    i, j = engine.index("--mm-processor-kwargs"), client.index("--mm-processor-kwargs")
    assert client[j + 1] == engine[i + 1] and json.loads(client[j + 1]) == {"max_pixels": 1003520}
