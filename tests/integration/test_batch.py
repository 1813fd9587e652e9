"""VLMBatchJob end to end on the local control plane: the operator (webhook and handler) creates the Indexed Job,
the real Job controller runs it, ``vlmctl simulate-pods`` plays the kubelet (the engine sidecar is the vLLM
simulator on the pod IP, the client container runs as a local process with its PVC mounted from a directory), and
the status comes from the pods' termination messages and live ``/progress``.

Claims checked: 200 lines with images over 2 shards all answered once, with the right status and the progress
column; a shard killed halfway (SIGKILL of its client) is retried by the Job and resumes with no line lost or written
twice; a malformed line lands in the error file with its reason while the rest finish; an input that does not exist
(a PVC, a ConfigMap) fails the job fast with a clear condition; a spec that does not fit is refused at admission
with the VLMDeployment's words. Loopback only.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack import build_argocd_health, build_kstatus

from tests.conftest import Cluster, wait_until
from tests.integration.batchjobs import (
    batch_job,
    bound_pvc,
    cond,
    delete_batch_jobs,
    get_bj,
    line,
    outputs,
    read_jsonl,
    wait_condition,
    write_input,
)
from tests.integration.helpers import Operator
from tests.integration.simulated import SimWatcher

pytestmark = [pytest.mark.integration, pytest.mark.local_only, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
BATCH_HEALTH = ROOT / "deploy" / "argocd" / "health-batch.lua"


@pytest.fixture(scope="module")
def readers() -> tuple[Path, Path]:
    """The kstatus and Argo CD health harnesses (built once from the Go module proxy, cached)."""
    log = lambda m: print(m, flush=True)  # noqa: E731
    return build_kstatus.ensure(log=log), build_argocd_health.ensure(log=log)


def health_of(readers: tuple[Path, Path], obj: dict[str, Any]) -> tuple[str, str]:
    """(kstatus status, Argo CD health status) of a live object."""
    ks = build_kstatus.compute(obj, readers[0])
    (argo,) = build_argocd_health.health([obj], readers[1], BATCH_HEALTH)
    return str(ks["status"]), argo["status"]


@pytest.fixture(autouse=True)
def _delete_batch_jobs(cluster: Cluster, namespace: str, operator: Operator) -> Iterator[None]:
    yield
    delete_batch_jobs(cluster, namespace)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-volumes")


@pytest.fixture(scope="module")
def watcher(
    cluster: Cluster, operator: Operator, volumes: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimWatcher]:
    # the operator fixture installs the CRDs, the VLMBatchJob's included (helpers.install_crds_and_peering)
    w = SimWatcher(cluster, tmp_path_factory.mktemp("batch-sims") / "simulate-pods.log", "--workdir", str(volumes))
    try:
        yield w
    finally:
        w.stop()


def test_200_lines_with_images_over_2_shards(
    cluster: Cluster, namespace: str, watcher: SimWatcher, volumes: Path, readers: tuple[Path, Path]
) -> None:
    bound_pvc(cluster, namespace, "data")
    data = write_input(volumes, namespace, [line(i) for i in range(200)])
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(batch_job("caps", namespace, 2)))
    job = wait_until(lambda: cluster.get_json("jobs", "-n", namespace).get("items"), "the Job", timeout=30)[0]

    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert job["spec"]["backoffLimitPerIndex"] == 2
    obj = wait_condition(cluster, namespace, "caps", "Complete", timeout=240)
    results, errors = outputs(data / "out", 2)
    ids = [r["custom_id"] for r in results]
    assert len(ids) == 200 and set(ids) == {f"req-{i}" for i in range(200)}, "every line answered exactly once"
    assert errors == []
    assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in results)
    st = obj["status"]
    assert (st["linesTotal"], st["linesDone"], st["linesFailed"], st["images"]) == (200, 200, 0, 200)
    assert st["promptTokens"] > 0 and st["completionTokens"] > 0 and st["throughput"] > 0
    assert st["progress"] == "200/200 (100%)"
    assert cond(obj, "Failed")["status"] == "False" and cond(obj, "Progressing")["status"] == "False"
    assert cond(obj, "Complete")["observedGeneration"] == obj["metadata"]["generation"]
    assert cond(obj, "Stalled")["status"] == "False" and cond(obj, "Reconciling")["status"] == "False"
    assert health_of(readers, obj) == ("Current", "Healthy")
    table = cluster.kubectl("get", "vlmbj", "-n", namespace).stdout
    assert "PROGRESS" in table and "200/200 (100%)" in table, table


def test_a_shard_killed_halfway_resumes_without_duplicates(
    cluster: Cluster, namespace: str, watcher: SimWatcher, volumes: Path, readers: tuple[Path, Path]
) -> None:
    bound_pvc(cluster, namespace, "data")
    data = write_input(volumes, namespace, [line(i) for i in range(160)])
    # slower engine and one request at a time, so the kill lands mid-shard
    slow = {"sim.vlmops.io/simulator": "true", "sim.vlmops.io/time-scale": "0.5", "sim.vlmops.io/output-tokens": "8"}
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(batch_job("resume", namespace, 2, podTemplate={"annotations": slow}, concurrency=1)),
    )
    results0 = data / "out" / "results-0.jsonl"
    wait_until(lambda: len(read_jsonl(results0)) >= 10, "shard 0 half way", timeout=180)

    def live_progress() -> dict[str, Any] | None:  # from both shards' GET /progress, before anything finished
        o = get_bj(cluster, namespace, "resume")
        st = o.get("status") or {}
        engine_read = any("engineRequestsRunning" in x for x in st.get("shardStatus") or [])  # the engine's /metrics
        # the time left appears once a poll has seen the throughput (a poll or two after the first lines)
        live = re.fullmatch(r"\d+/160 \(\d+%\)", st.get("progress") or "") and st.get("estimatedSecondsLeft")
        return o if engine_read and live else None

    running = wait_until(live_progress, "live progress in status", timeout=30)
    assert cond(running, "Progressing")["status"] == "True" and running["status"]["estimatedSecondsLeft"] > 0
    assert health_of(readers, running) == ("InProgress", "Progressing")
    pid_re = re.compile(rf"{namespace}/resume-0-\S+: started the batch client \(pid (\d+)\)")
    pids = pid_re.findall(watcher.output())
    assert pids, watcher.output()[-3000:]
    os.kill(int(pids[-1]), signal.SIGKILL)  # no summary, possibly a torn last line
    before = len(read_jsonl(results0))
    assert before < 80, "the kill must land before shard 0 finished"
    obj = wait_condition(cluster, namespace, "resume", "Complete", timeout=300)
    results, errors = outputs(data / "out", 2)
    ids = [r["custom_id"] for r in results]
    assert len(ids) == len(set(ids)) == 160 and errors == [], "no line lost, none written twice"
    pods = cluster.get_json("pods", "-n", namespace, "-l", "vlmops.io/batchjob=resume")["items"]
    shard0 = [p for p in pods if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "0"]
    assert len(shard0) >= 2, "the Job retried shard 0 in a new pod"
    killed = [p for p in shard0 if p["status"]["phase"] == "Failed"]
    assert killed and killed[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    st = obj["status"]
    assert (st["linesTotal"], st["linesDone"], st["linesFailed"]) == (160, 160, 0)


def test_a_malformed_line_goes_to_the_error_file_and_the_rest_finish(
    cluster: Cluster, namespace: str, watcher: SimWatcher, volumes: Path
) -> None:
    bound_pvc(cluster, namespace, "data")
    lines = [line(i) for i in range(20)]
    lines[7] = '{"custom_id": "req-7", "method": "POST", "url": "/v1/chat/completions", "body": {'  # not JSON
    lines[12] = line(12, images=3)  # over the image limit below
    data = write_input(volumes, namespace, lines)
    spec = {
        "multimodal": {
            "limitPerPrompt": {"image": {"count": 2}, "video": {"count": 0}},
            "processorKwargs": {"max_pixels": 1003520},
        }
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(batch_job("bad", namespace, 1, **spec)))
    obj = wait_condition(cluster, namespace, "bad", "Complete", timeout=180)
    results, errors = outputs(data / "out", 1)
    assert sorted(r["custom_id"] for r in results) == sorted(f"req-{i}" for i in range(20) if i not in (7, 12))
    assert len(errors) == 2
    by_line = {e["error"]["message"]: e for e in errors}
    assert any("line 8" in m or "line 7" in m for m in by_line), by_line  # names the line
    over = next(e for e in errors if e["custom_id"] == "req-12")
    assert "image" in over["error"]["message"]
    st = obj["status"]
    assert (st["linesTotal"], st["linesDone"], st["linesFailed"]) == (20, 18, 2)
    assert "2 in the error files" in cond(obj, "Complete")["message"]
    assert cond(obj, "SpecApplied")["status"] == "True"
    # an edit the Job cannot take is reported, not silently dropped
    cluster.kubectl("patch", "vlmbj", "-n", namespace, "bad", "--type=merge", "-p", '{"spec":{"parallelism":2}}')
    wait_until(
        lambda: cond(get_bj(cluster, namespace, "bad"), "SpecApplied").get("reason") == "JobImmutable",
        "SpecApplied=False",
        timeout=30,
    )


def test_missing_input_fails_fast(
    cluster: Cluster, namespace: str, watcher: SimWatcher, volumes: Path, readers: tuple[Path, Path]
) -> None:
    # a PVC that does not exist: the operator says so and creates no Job
    t0 = time.monotonic()
    doc = batch_job("nopvc", namespace, 1)
    doc["spec"]["input"] = {"pvc": {"claimName": "absent", "path": "in.jsonl"}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    obj = wait_condition(cluster, namespace, "nopvc", "Failed", timeout=30)
    failed = cond(obj, "Failed")
    assert failed["reason"] == "InputNotFound" and "'absent' does not exist" in failed["message"]
    assert cond(obj, "Stalled")["status"] == "True"
    assert health_of(readers, obj) == ("Failed", "Degraded")
    assert cluster.get_json("jobs", "-n", namespace)["items"] == []
    assert time.monotonic() - t0 < 30
    # a ConfigMap that does not exist: the client reports InputNotFound and the Job is suspended (no retries)
    bound_pvc(cluster, namespace, "data")
    doc = batch_job("nocm", namespace, 1, input={"configMap": {"name": "absent", "key": "in.jsonl"}})
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    obj = wait_condition(cluster, namespace, "nocm", "Failed", timeout=90)
    failed = cond(obj, "Failed")
    assert failed["reason"] == "InputNotFound" and "shard 0: InputNotFound" in failed["message"], failed
    wait_until(
        lambda: cluster.get_json("job", "-n", namespace, "nocm")["spec"].get("suspend") is True,
        "the Job suspended",
        timeout=30,
    )
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=nocm").stdout
    assert "InputNotFound" in events


def test_a_spec_that_does_not_fit_is_refused_with_the_deployment_words(
    cluster: Cluster, namespace: str, watcher: SimWatcher
) -> None:
    doc = batch_job("huge", namespace, 2)
    doc["spec"]["model"] = {"name": "Qwen/Qwen2.5-VL-72B-Instruct"}
    doc["spec"]["engine"] = {"version": "0.11.0", "maxModelLen": 32768}
    res = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert res.returncode != 0
    assert "spec does not fit the GPU (fitCheck: Enforce)" in res.stderr, res.stderr
    assert "validate-batch.vlm-operator.vlmops.io" in res.stderr


def test_the_argocd_cm_snippet_carries_the_batch_script_verbatim() -> None:
    cm = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["data"]["resource.customizations.health.vlmops.io_VLMBatchJob"] == BATCH_HEALTH.read_text()


def test_suspend_kueue_label_and_gpu_quota(
    cluster: Cluster, namespace: str, watcher: SimWatcher, volumes: Path
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpus", "namespace": namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": "1"}},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(quota))
    wait_until(lambda: cluster.get_json("resourcequota", "-n", namespace, "gpus").get("status"), "quota status")
    bound_pvc(cluster, namespace, "data")
    data = write_input(volumes, namespace, [line(i) for i in range(6)])
    doc = batch_job("held", namespace, 2, suspend=True)
    doc["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpu-batch"}
    res = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    # GPU quota counts parallelism x GPUs per pod, as for a VLMDeployment's replicas (a warning without a profile)
    assert "spec.parallelism: 2 shard(s) x 1 GPU(s) = 2 nvidia.com/gpu exceed what ResourceQuota gpus leaves" in (
        res.stderr
    ), res.stderr
    job = wait_until(lambda: cluster.get_json("jobs", "-n", namespace).get("items"), "the Job", timeout=30)[0]
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-batch"
    obj = wait_until(
        lambda: (o := get_bj(cluster, namespace, "held")) and cond(o, "Progressing").get("reason") == "Suspended" and o,
        "Suspended",
        timeout=30,
    )
    assert cond(obj, "Complete")["status"] == "False"
    assert cluster.get_json("pods", "-n", namespace)["items"] == []
    # resumed: under a Kueue queue label only Kueue resumes, so drop the label to let the operator do it; the
    # quota is raised first, or the API server's quota admission would hold the second shard back
    cluster.kubectl("patch", "resourcequota", "-n", namespace, "gpus", "--type=merge", "-p",
                    '{"spec":{"hard":{"requests.nvidia.com/gpu":"2"}}}')  # fmt: skip
    cluster.kubectl("label", "vlmbj", "-n", namespace, "held", "kueue.x-k8s.io/queue-name-")
    cluster.kubectl("patch", "vlmbj", "-n", namespace, "held", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    obj = wait_condition(cluster, namespace, "held", "Complete", timeout=120)
    assert obj["status"]["linesDone"] == 6
    results, _ = outputs(data / "out", 2)
    assert sorted(r["custom_id"] for r in results) == sorted(f"req-{i}" for i in range(6))
