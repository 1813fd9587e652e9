"""Secrets stay put and names at the Kubernetes limits work, with the operator running against the local cluster.

* An HF token (the operator's own, used against a gated model on a fake Hub, and one in a Secret for the pods), and an
  API key in a Secret, never appear in container args, annotations, events, status, any object in the namespace, the
  webhook configuration, the operator's metrics or its DEBUG log, including after a refused spec.
* A 63-character name (the Service-name and label-value limit) goes Ready end to end; 64 is refused at admission
  with the limit named (tests/integration/test_crd_cel.py covers the CEL side for every limit).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import Cluster
from tests.fakehub import FakeHub, safetensors_blob
from tests.integration.helpers import (
    WEBHOOK,
    Operator,
    apply,
    free_port,
    install_crds_and_peering,
    sample,
    vlmd,
    wait_ready,
    wait_webhook,
)
from vlm_operator.models import catalog

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

OPERATOR_TOKEN = "hf_OPERATORtokenMustNotLeak0123456789"
POD_TOKEN = "hf_PODtokenMustNotLeak9876543210"
API_KEY = "sk-APIkeyMustNotLeak-5555"
SECRETS = (OPERATOR_TOKEN, POD_TOKEN, API_KEY)


@pytest.fixture(scope="module")
def hub_operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Operator, int]]:
    install_crds_and_peering(cluster)
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    qwen = next(e for e in catalog.raw_entries() if e["id"] == "Qwen/Qwen2.5-VL-7B-Instruct")
    metrics = free_port()
    with FakeHub() as hub:
        hub.add(
            "acme/gated-vlm",
            {
                "config.json": qwen["config"],
                "preprocessor_config.json": {"min_pixels": 3136, "max_pixels": 1003520},
                "model.safetensors": safetensors_blob({"model.embed_tokens.weight": ("BF16", [152064, 3584])}),
            },
            token=OPERATOR_TOKEN,
        )
        op = Operator(
            cluster,
            tmp_path_factory.mktemp("secrets") / "operator.log",
            hub,
            args=["--verbose", "--metrics-port", str(metrics)],
            env={"HF_TOKEN": OPERATOR_TOKEN},
        )
        op.start()
        try:
            wait_webhook(cluster)
            yield op, metrics
        finally:
            op.stop()
            cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")


def test_tokens_and_keys_never_leak(cluster: Cluster, namespace: str, hub_operator: tuple[Operator, int]) -> None:
    op, metrics = hub_operator
    cluster.kubectl("create", "secret", "generic", "hf", "-n", namespace, f"--from-literal=token={POD_TOKEN}")
    cluster.kubectl("create", "secret", "generic", "api", "-n", namespace, f"--from-literal=key={API_KEY}")
    doc = sample("qwen2.5-vl-7b-pixels.yaml", namespace, **{"spec.model.name": "acme/gated-vlm"})
    doc["spec"]["model"]["hfTokenSecret"] = {"name": "hf", "key": "token"}
    doc["spec"]["engine"]["apiKeySecret"] = {"name": "api", "key": "key"}
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    # the operator used its token: the gated model was sized from the fake Hub
    obj = vlmd(cluster, namespace, name)
    assert obj["status"]["estimate"]["verdict"] in ("Fits", "Tight"), obj["status"]
    assert op.hub is not None
    assert any(r.authorization == f"Bearer {OPERATOR_TOKEN}" for r in op.hub.requests)
    # refused specs that carry a secret: the refusal does not echo it
    for bad in (
        {"extraArgs": [f"--api-key={API_KEY}"]},
        {"env": [{"name": "HF_TOKEN", "value": POD_TOKEN}]},
        {"env": [{"name": "MY_API_KEY", "value": API_KEY}]},
    ):
        refused = sample("qwen2.5-vl-7b-pixels.yaml", namespace)
        refused["metadata"]["name"] = "refused"
        refused["spec"]["engine"].update(bad)
        res = apply(cluster, refused, check=False)
        assert res.returncode != 0, bad
        for secret in SECRETS:
            assert secret not in res.stderr + res.stdout, (bad, res.stderr)

    dep = cluster.get_json("deployment", name, "-n", namespace)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "api", "key": "key"}
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as rsp:
        metrics_text = rsp.read().decode()
    views = {
        "args": json.dumps([container.get("command"), container.get("args")]),
        "namespace objects": cluster.kubectl(
            "get",
            "vlmd,deployments,replicasets,pods,services,poddisruptionbudgets,configmaps",
            "-n",
            namespace,
            "-o",
            "json",
        ).stdout,
        "events": cluster.kubectl("get", "events", "-A", "-o", "json").stdout,
        "status": json.dumps(obj["status"]),
        "annotations": json.dumps([dep["metadata"].get("annotations"), obj["metadata"].get("annotations")]),
        "webhook": cluster.kubectl("get", "validatingwebhookconfiguration", WEBHOOK, "-o", "json").stdout,
        "metrics": metrics_text,
        "operator log": op.output(),
    }
    assert "DEBUG" in views["operator log"] or "debug" in views["operator log"].lower()  # --verbose was on
    for where, text in views.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret[:6]}... appears in {where}"


def test_a_63_character_name_works_end_to_end_and_64_is_refused(
    cluster: Cluster, namespace: str, hub_operator: tuple[Operator, int]
) -> None:
    name = "n" + "-63chars" * 7 + "x" * 6  # 63
    assert len(name) == 63
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    doc["metadata"]["name"] = name
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    for kind in ("deployment", "service", "poddisruptionbudget"):
        assert cluster.get_json(kind, name, "-n", namespace)["metadata"]["name"] == name
    pods = cluster.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}")["items"]
    assert pods and all(len(p["metadata"]["name"]) <= 63 for p in pods)
    doc["metadata"]["name"] = name + "z"
    res = apply(cluster, doc, check=False)
    assert res.returncode != 0
    assert "metadata.name must be at most 63 characters" in res.stderr and ": 64 characters" in res.stderr
