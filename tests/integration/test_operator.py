"""The operator process against the real local control plane: reconcile, status, admission, restarts, deletion,
quiet resyncs and secret hygiene.

The operator runs as a real subprocess (``python -m vlm_operator operator run``) with its admission webhook
registered in the API server, exactly as a user runs it next to the dev cluster.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import (
    DRIFT_SECONDS,
    MUTATING,
    Operator,
    apply,
    condition,
    container_cmd,
    flag_value,
    sample,
    vlmd,
    wait_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


def test_sample_becomes_ready_on_the_right_pool(cluster: Cluster, namespace: str, operator: Operator) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    obj = wait_ready(cluster, namespace, name)
    st = obj["status"]
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "FitsGPU")["status"] == "True"
    assert condition(obj, "Progressing")["status"] == "False"
    assert st["readyReplicas"] == st["replicas"] == obj["spec"]["scaling"]["replicas"]
    assert st["selector"] and st["url"].startswith(f"http://{name}.{namespace}.svc:8000")
    assert st["effectiveArgs"] == container_cmd(cluster, namespace, name)
    pods = cluster.get_json("pods", "-n", namespace, "-l", st["selector"])["items"]
    assert pods
    for pod in pods:
        node = cluster.get_json("node", pod["spec"]["nodeName"])
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    # the printer columns are filled
    row = cluster.kubectl("get", "vlmd", name, "-n", namespace, "--no-headers").stdout.split()
    assert row[0] == name and "NVIDIA-L4" in " ".join(row) and row[-2] in ("Fits", "Tight"), row
    for kind in ("service", "poddisruptionbudget"):
        child = cluster.get_json(kind, name, "-n", namespace)
        assert child["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]


def test_spec_change_rolls_args_and_moves_observed_generation(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    doc = sample("qwen2.5-vl-7b-pixels.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    before = wait_ready(cluster, namespace, name)
    old_len = flag_value(container_cmd(cluster, namespace, name), "--max-model-len")
    new_len = 8192 if old_len != "8192" else 4096
    doc["spec"]["engine"]["maxModelLen"] = new_len
    apply(cluster, doc)
    wait_until(
        lambda: flag_value(container_cmd(cluster, namespace, name), "--max-model-len") == str(new_len),
        "the Deployment's args to follow maxModelLen",
    )
    after = wait_until(
        lambda: (
            (o := vlmd(cluster, namespace, name))["status"].get("observedGeneration", 0)
            > before["status"]["observedGeneration"]
            and o
        ),
        "observedGeneration to move",
    )
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"]
    wait_ready(cluster, namespace, name)


def test_a_spec_that_does_not_fit_is_refused_at_admission(cluster: Cluster, namespace: str, operator: Operator) -> None:
    doc = sample("does-not-fit-qwen2.5-vl-72b-l4.yaml", namespace)
    for extra in ((), ("--dry-run=server",)):
        res = apply(cluster, doc, *extra, check=False)
        assert res.returncode != 0
        assert "does not fit" in res.stderr and "GiB" in res.stderr, res.stderr
        assert "Fix:" in res.stderr or "fix:" in res.stderr, res.stderr
    assert cluster.kubectl("get", "vlmd", "-n", namespace, "-o", "name").stdout.strip() == ""
    # a server-side dry run of a good spec is admitted (the webhook declares no side effects)
    good = sample("llava-1.5-7b-l4.yaml", namespace)
    assert apply(cluster, good, "--dry-run=server").returncode == 0
    assert cluster.kubectl("get", "vlmd", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_fitcheck_warn_admits_with_a_warning_and_false_fitsgpu(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    doc = sample("does-not-fit-qwen2.5-vl-72b-l4.yaml", namespace)
    doc["spec"]["fitCheck"] = "Warn"
    res = apply(cluster, doc)
    assert "does not fit" in res.stderr.lower(), res.stderr  # kubectl prints admission warnings on stderr
    name = doc["metadata"]["name"]
    obj = wait_until(
        lambda: (o := vlmd(cluster, namespace, name)) and condition(o, "FitsGPU").get("status") == "False" and o,
        "FitsGPU=False",
    )
    assert condition(obj, "FitsGPU")["reason"] == "DoesNotFit"


def test_operator_restart_converges_without_duplicates(cluster: Cluster, namespace: str, operator: Operator) -> None:
    doc = sample("phi-3.5-vision-crops.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    operator.kill()
    doc["spec"]["engine"]["maxNumSeqs"] = 3
    apply_res = apply(cluster, doc, check=False)  # the webhook is down: failurePolicy Fail refuses the change
    operator.start()
    if apply_res.returncode != 0:
        wait_until(lambda: apply(cluster, doc, check=False).returncode == 0, "the webhook to come back", timeout=60)
    wait_until(
        lambda: flag_value(container_cmd(cluster, namespace, name), "--max-num-seqs") == "3",
        "the restarted operator to converge",
        timeout=90,
    )
    wait_ready(cluster, namespace, name)
    for kind in ("deployments", "services", "poddisruptionbudgets"):
        items = cluster.get_json(kind, "-n", namespace)["items"]
        assert [i["metadata"]["name"] for i in items] == [name], kind


def test_deletion_garbage_collects_children(cluster: Cluster, namespace: str, operator: Operator) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_until(
        lambda: cluster.exists("deployment", name, namespace),
        "the Deployment",
    )
    cluster.kubectl("delete", "vlmd", name, "-n", namespace)
    for kind in ("deployment", "service", "poddisruptionbudget"):
        wait_until(
            lambda k=kind: not cluster.exists(k, name, namespace),
            f"the {kind} to be garbage-collected",
            timeout=90,
        )


#: The finalizer kopf put on every VLMDeployment while the drift resync was a kopf timer (kopf's default
#: ``settings.persistence.finalizer``, kopf 1.45.2 kopf/_cogs/configs/configuration.py).
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def test_the_drift_resync_repairs_a_deleted_service_and_no_finalizer_is_added(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    obj = wait_ready(cluster, namespace, name)
    # the drift resync is one operator-wide loop, not a kopf timer: kopf has no reason to block the deletion
    assert KOPF_FINALIZER not in (obj["metadata"].get("finalizers") or [])
    uid = cluster.get_json("service", name, "-n", namespace)["metadata"]["uid"]
    cluster.kubectl("delete", "service", name, "-n", namespace)
    # no watch event tells the operator of a deleted Service: only the drift resync brings it back (within one
    # interval of DRIFT_SECONDS; the rest is slack for a loaded machine)
    wait_until(
        lambda: (
            (s := cluster.kubectl("get", "service", name, "-n", namespace, "-o", "json", check=False)).returncode == 0
            and json.loads(s.stdout)["metadata"]["uid"] != uid
        ),
        "the drift resync to bring the Service back",
        timeout=DRIFT_SECONDS * 2 + 10,
    )


def test_an_earlier_versions_finalizer_is_removed_and_deletion_does_not_hang(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    """Objects written while the drift resync was a kopf timer carry kopf's finalizer; kopf drops it on their first
    event now that no handler of theirs needs it, and deleting one never waits for it."""
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    doc["metadata"]["finalizers"] = [KOPF_FINALIZER, "example.com/keep"]
    apply(cluster, doc)
    wait_until(
        lambda: vlmd(cluster, namespace, name)["metadata"].get("finalizers") == ["example.com/keep"],
        "kopf to remove its own finalizer and keep the other one",
        timeout=60,
    )
    wait_ready(cluster, namespace, name)
    cluster.kubectl("patch", "vlmd", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    # one that is deleted while it still carries kopf's finalizer goes at once
    other = sample("llava-1.5-7b-l4.yaml", namespace)
    other["metadata"]["name"] = f"{name}-b"
    other["metadata"]["finalizers"] = [KOPF_FINALIZER]
    apply(cluster, other)
    cluster.kubectl("delete", "vlmd", f"{name}-b", "-n", namespace, "--wait=true", "--timeout=60s")
    cluster.kubectl("delete", "vlmd", name, "-n", namespace, "--wait=true", "--timeout=60s")


def _mutations(cluster: Cluster) -> int:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        # Pods are left out: kwok writes pod status for other tests' crash-looping pods; the operator never does.
        if labels.get("verb") in MUTATING and labels.get("resource") in (
            "vlmdeployments",
            "deployments",
            "replicasets",
            "services",
            "poddisruptionbudgets",
            "events",
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_idle_resync_makes_no_writes(cluster: Cluster, namespace: str, operator: Operator) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    # let earlier tests' namespaces finish terminating and every pending event settle (the namespace controller can
    # take 60-100 s per namespace here before it deletes a VLMDeployment, so several take a few minutes)
    wait_until(
        lambda: "Terminating" not in cluster.kubectl("get", "namespaces", "--no-headers").stdout,
        "earlier namespaces to finish terminating",
        timeout=360,
    )
    time.sleep(DRIFT_SECONDS * 2)
    stable = _mutations(cluster)
    time.sleep(DRIFT_SECONDS * 4)
    assert _mutations(cluster) - stable == 0
    assert f"Applied Deployment {namespace}/{name}" in operator.output()


def test_hf_token_never_leaks(cluster: Cluster, namespace: str, operator: Operator) -> None:
    token = "hf_vlmTESTtokenDoNotLeak0123456789"
    cluster.kubectl("create", "secret", "generic", "hf", "-n", namespace, f"--from-literal=token={token}")
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    doc["spec"]["model"]["hfTokenSecret"] = {"name": "hf", "key": "token"}
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    dep = cluster.get_json("deployment", name, "-n", namespace)
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    views = [
        json.dumps(dep),
        json.dumps(vlmd(cluster, namespace, name)),
        json.dumps(cluster.get_json("events", "-n", namespace)),
        json.dumps(cluster.get_json("pods", "-n", namespace)),
        operator.output(),
    ]
    for view in views:
        assert token not in view


def test_a_model_outside_the_catalog_is_sized_from_the_hub(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    doc = sample("qwen2.5-vl-7b-pixels.yaml", namespace, **{"spec.model.name": "acme/private-vlm"})
    apply(cluster, doc)
    name = doc["metadata"]["name"]
    wait_until(
        lambda: (
            vlmd(cluster, namespace, name).get("status", {}).get("estimate", {}).get("verdict") in ("Fits", "Tight")
        ),
        "the fit check to size the Hub model",
        timeout=60,
    )
    obj = vlmd(cluster, namespace, name)
    assert condition(obj, "FitsGPU")["status"] == "True"
    assert obj["status"]["estimate"]["tokensPerImage"] > 0
    # the operator read the config and the safetensors header from the (fake) Hub, with ranged GETs for the header
    assert operator.hub is not None
    paths = [(r.method, r.path) for r in operator.hub.requests]
    assert ("GET", "/acme/private-vlm/resolve/main/config.json") in paths
    assert any(r.range for r in operator.hub.requests if r.path.endswith("model.safetensors"))
    # a model the Hub does not have is admitted with FitsGPU Unknown and the Hub's reason
    doc2 = sample("qwen2.5-vl-7b-pixels.yaml", namespace, **{"spec.model.name": "acme/nothing-here"})
    doc2["metadata"]["name"] = "not-on-hub"
    out = apply(cluster, doc2)
    assert "FitsGPU will be Unknown" in out.stderr and "acme/nothing-here@main" in out.stderr
    wait_until(
        lambda: condition(vlmd(cluster, namespace, "not-on-hub"), "FitsGPU").get("status") == "Unknown",
        "FitsGPU Unknown for a model the Hub lacks",
        timeout=60,
    )
    assert "no such model" in condition(vlmd(cluster, namespace, "not-on-hub"), "FitsGPU")["message"]


def test_a_mig_slice_is_requested_sized_and_scheduled(cluster: Cluster, namespace: str, operator: Operator) -> None:
    """A replica on one 3g.40gb slice of an A100-80GB (mixed strategy): the pod asks for nvidia.com/mig-3g.40gb,
    lands on the node that offers it, and the fit check sizes the 39.25 GiB slice, not the 80 GB board."""
    doc = sample(
        "llava-1.5-7b-l4.yaml", namespace, **{"spec.resources.gpu": {"product": "A100-80GB", "migProfile": "3g.40gb"}}
    )
    doc["metadata"]["name"] = "llava-mig"
    apply(cluster, doc)
    obj = wait_ready(cluster, namespace, "llava-mig")
    assert obj["status"]["estimate"]["gpu"] == "A100-80GB MIG 3g.40gb"
    assert obj["status"]["estimate"]["gpuMemoryGiB"] == 39.25
    dep = cluster.get_json("deployment", "llava-mig", "-n", namespace)
    res = dep["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/mig-3g.40gb"] == "1" and "nvidia.com/gpu" not in res["limits"]
    pods = cluster.get_json("pods", "-n", namespace, "-l", obj["status"]["selector"])["items"]
    node = cluster.get_json("node", pods[0]["spec"]["nodeName"])
    assert node["status"]["allocatable"]["nvidia.com/mig-3g.40gb"] == "2"
    # a slice too small for the model is refused with a fix that stays on one slice (never tensor parallelism)
    small = sample(
        "qwen2.5-vl-7b-pixels.yaml",
        namespace,
        **{"spec.resources.gpu": {"product": "A100-80GB", "migProfile": "1g.10gb"}},
    )
    small["metadata"]["name"] = "qwen-small-slice"
    out = apply(cluster, small, check=False)
    assert out.returncode != 0 and "does not fit" in out.stderr and "A100-80GB MIG 1g.10gb" in out.stderr
    assert "tensorParallelSize" not in out.stderr.split("Fix:", 1)[-1]
