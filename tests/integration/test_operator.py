"""The operator process against the real local control plane: reconcile, status, admission, restarts, deletion,
quiet resyncs and secret hygiene.

The operator runs as a real subprocess (``python -m vlm_operator operator run``) with its admission webhook
registered in the API server, exactly as a user runs it next to the dev cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster, wait_until
from tests.fakehub import FakeHub, safetensors_blob
from vlm_operator.models import catalog

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "crds" / "samples"
DRIFT_SECONDS = 3
MUTATING = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Operator:
    """The operator subprocess, authenticated by ``kubeconfig`` (the cluster admin's when None), with the Hub
    resolver pointed at ``hub`` when one is given. ``args`` are added to ``vlmctl operator run`` (``--no-webhook``,
    ``--namespace``); ``env`` is added to its environment; ``prelude`` is Python run in the operator process before the
    package is imported (e.g. to stand in for a newer operator release with another default)."""

    def __init__(
        self,
        cluster: Cluster,
        log: Path,
        hub: FakeHub | None = None,
        kubeconfig: Path | None = None,
        args: Sequence[str] = (),
        prelude: str = "",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.prelude = prelude
        self.cluster = cluster
        self.log = log
        self.hub = hub
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.port = port or free_port()
        self.args = list(args)  # extra `vlmctl operator run` arguments
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "VLM_OPERATOR_DRIFT_SECONDS": str(DRIFT_SECONDS),
            **self.extra_env,
        }
        env.pop("VLM_OPERATOR_WEBHOOK_SERVICE", None)  # the local API server dials the webhook by URL on loopback
        if self.hub is not None:  # the Hub resolver on, against a fake Hub on loopback (models outside the catalog)
            env |= {
                "VLM_OPERATOR_HUB": "1",
                "HF_ENDPOINT": self.hub.endpoint,
                "HF_HOME": str(self.log.parent / "hf-home"),
                "VLM_OPERATOR_HUB_CACHE": str(self.log.parent / "hub-cache"),
            }
        with self.log.open("ab") as out:
            run = ["operator", "run", "--webhook-port", str(self.port), *self.args]
            code = f"{self.prelude}\nfrom vlm_operator.cli import main; raise SystemExit(main({run!r}))"
            launcher = [sys.executable, "-c", code] if self.prelude else [sys.executable, "-m", "vlm_operator", *run]
            self.proc = subprocess.Popen(
                launcher,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def install_crds_and_peering(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmdeployments.yaml"))
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "kopf-peering.yaml"))
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmplatformprofiles.yaml"))
    for crd in ("vlmdeployments.vlmops.io", "clusterkopfpeerings.kopf.dev", "vlmplatformprofiles.vlmops.io"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "vlm-operator"}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(peering))


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    install_crds_and_peering(cluster)
    hub = FakeHub().__enter__()
    qwen = next(e for e in catalog.raw_entries() if e["id"] == "Qwen/Qwen2.5-VL-7B-Instruct")
    hub.add(
        "acme/private-vlm",
        {
            "config.json": qwen["config"],
            "preprocessor_config.json": {"min_pixels": 3136, "max_pixels": 1003520},
            "model.safetensors": safetensors_blob({"model.embed_tokens.weight": ("BF16", [152064, 3584])}),
        },
    )
    op = Operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log", hub)
    op.start()
    try:
        wait_until(
            lambda: (
                cluster.kubectl(
                    "get", "validatingwebhookconfiguration", "vlm-operator.vlmops.io", check=False
                ).returncode
                == 0
            ),
            "the operator to register its webhook",
            timeout=60,
        )
        yield op
    finally:
        op.stop()
        hub.__exit__()
        cluster.kubectl("delete", "validatingwebhookconfiguration", "vlm-operator.vlmops.io", check=False)


def sample(name: str, namespace: str, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text())
    doc["metadata"] = {"name": doc["metadata"]["name"], "namespace": namespace}
    for path, value in overrides.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return doc


def apply(cluster: Cluster, doc: dict[str, Any], *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", *extra, "-f", "-", input=yaml.safe_dump(doc), check=check)


def vlmd(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.get_json("vlmd", name, "-n", ns)
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def wait_ready(cluster: Cluster, ns: str, name: str, timeout: float = 120) -> dict[str, Any]:
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", f"vlmd/{name}", f"--timeout={int(timeout)}s", timeout=timeout + 10
    )
    return vlmd(cluster, ns, name)


def container_cmd(cluster: Cluster, ns: str, name: str) -> list[str]:
    dep = cluster.get_json("deployment", name, "-n", ns)
    cmd: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    return cmd


def flag_value(cmd: list[str], flag: str) -> str | None:
    return cmd[cmd.index(flag) + 1] if flag in cmd else None


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
        lambda: cluster.kubectl("get", "deployment", name, "-n", namespace, check=False).returncode == 0,
        "the Deployment",
    )
    cluster.kubectl("delete", "vlmd", name, "-n", namespace)
    for kind in ("deployment", "service", "poddisruptionbudget"):
        wait_until(
            lambda k=kind: cluster.kubectl("get", k, name, "-n", namespace, check=False).returncode != 0,
            f"the {kind} to be garbage-collected",
            timeout=90,
        )


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
    # let earlier tests' namespaces finish terminating and every pending event settle
    wait_until(
        lambda: "Terminating" not in cluster.kubectl("get", "namespaces", "--no-headers").stdout,
        "earlier namespaces to finish terminating",
        timeout=120,
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
