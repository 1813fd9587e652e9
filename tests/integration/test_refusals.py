"""One refusal policy, with and without the admission webhook, and upgrades that roll no pods (issue 13).

Against the real local control plane: the operator runs as a subprocess, once with ``--no-webhook`` (the reconciler
is then the only place a bad spec can be reported) and once with its webhook registered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import WEBHOOK, Operator, apply, condition, install_crds_and_peering, sample, vlmd
from tests.integration.operator_helpers import running_operator
from vlm_operator import admission
from vlm_operator.api import VLMDeploymentSpec

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

OLD_DEFAULT = "0.31.0"
QWEN = "qwen2.5-vl-7b-pixels.yaml"
#: Stands in for an operator release whose default engine version was OLD_DEFAULT.
OLD_OPERATOR = (
    "import vlm_operator.releases as r, vlm_operator.releases.version as v\n"
    f"v.DEFAULT_VLLM_VERSION = r.DEFAULT_VLLM_VERSION = {OLD_DEFAULT!r}"
)


@contextmanager
def operator_without_webhook(cluster: Cluster, log: Path, prelude: str = "") -> Iterator[Operator]:
    install_crds_and_peering(cluster)
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    op = Operator(cluster, log, args=("--no-webhook",), prelude=prelude)
    op.start()
    try:
        yield op
    finally:
        op.stop()


def unpinned(namespace: str, base: str = "llava-1.5-7b-l4.yaml", **overrides: Any) -> dict[str, Any]:
    doc = sample(base, namespace, **overrides)
    doc["spec"]["engine"].pop("version", None)
    return doc


def stalled(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        obj = vlmd(cluster, ns, name)
        found.update(obj)
        return condition(obj, "Stalled").get("status") == "True"

    wait_until(check, f"{name} to be Stalled", timeout=60)
    return found


def test_without_the_webhook_a_bad_spec_is_a_permanent_condition_with_the_webhooks_words(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    bogus = unpinned(namespace, **{"spec.engine.extraArgs": ["--bogus-flag"]})
    bogus["metadata"]["name"] = "bogus-flag"
    typo = unpinned(namespace, QWEN, **{"spec.multimodal.processorKwargs": {"max_pixel": 100000}})
    typo["metadata"]["name"] = "kwargs-typo"
    pixels = unpinned(
        namespace, QWEN, **{"spec.multimodal.processorKwargs": {"min_pixels": 4000000, "max_pixels": 100000}}
    )
    pixels["metadata"]["name"] = "min-above-max"
    with operator_without_webhook(cluster, tmp_path / "operator.log") as op:
        for doc in (bogus, typo, pixels):
            apply(cluster, doc)  # no webhook: the API server stores it
        for doc, field in (
            (bogus, "spec.engine.extraArgs"),
            (typo, "spec.multimodal.processorKwargs.max_pixel"),
            (pixels, "spec.multimodal.processorKwargs"),
        ):
            name = doc["metadata"]["name"]
            obj = stalled(cluster, namespace, name)
            webhook = admission.decide(VLMDeploymentSpec.model_validate(doc["spec"]), None)
            assert not webhook.allowed
            stalled_cond = condition(obj, "Stalled")
            assert stalled_cond["reason"] == "InvalidSpec"
            assert stalled_cond["message"] == f"not rolled out: {webhook.message}"  # exactly what the webhook says
            assert field in stalled_cond["message"]
            assert condition(obj, "Ready")["status"] == "False"
            deps = cluster.kubectl("get", "deployment", name, "-n", namespace, check=False)
            assert deps.returncode != 0  # nothing was rolled out
        # a permanent failure, not an endless retry: the reconciles return normally and kopf schedules no retry
        time.sleep(4)
        log = op.output()
        assert "RenderError" not in log and "TokenError" not in log and "Traceback" not in log
        assert "failed temporarily" not in log and "failed with an exception" not in log and "retrying in" not in log
        # kopf's API client retrying a request of its own (a watch that met a 429 "storage is (re)initializing" on a
        # freshly made cluster: "Request attempt 1 failed; will retry") is not a handler retry
        retries = [line for line in log.splitlines() if "will retry" in line.lower() and "Request attempt" not in line]
        assert not retries, retries


def test_with_the_webhook_the_same_specs_are_refused_at_admission(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    with running_operator(cluster, tmp_path / "operator.log"):
        bogus = unpinned(namespace, **{"spec.engine.extraArgs": ["--bogus-flag"]})
        out = apply(cluster, bogus, check=False)
        assert out.returncode != 0
        assert "spec.engine.extraArgs" in out.stderr and "--bogus-flag" in out.stderr
        pixels = unpinned(
            namespace, QWEN, **{"spec.multimodal.processorKwargs": {"min_pixels": 4000000, "max_pixels": 1}}
        )
        out = apply(cluster, pixels, check=False)
        assert out.returncode != 0
        assert "min_pixels <= max_pixels" in out.stderr  # a clean refusal, not "failed calling webhook"
        assert "failed calling webhook" not in out.stderr


def test_a_newer_operator_default_changes_no_pod_template(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    doc = unpinned(namespace)
    name = doc["metadata"]["name"]
    with operator_without_webhook(cluster, tmp_path / "old.log", prelude=OLD_OPERATOR):
        apply(cluster, doc)
        wait_until(
            lambda: vlmd(cluster, namespace, name).get("status", {}).get("engineVersion") == OLD_DEFAULT,
            "the old operator to record its default release",
            timeout=60,
        )
        wait_until(
            lambda: cluster.exists("deployment", name, namespace),
            "the Deployment",
            timeout=60,
        )
    before = cluster.get_json("deployment", name, "-n", namespace)
    image = before["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"vllm/vllm-openai:v{OLD_DEFAULT}"
    with operator_without_webhook(cluster, tmp_path / "new.log"):  # the current default differs
        # let it reconcile (startup resume) and run a drift resync or two
        wait_until(lambda: "new.log" and (tmp_path / "new.log").exists(), "the new operator's log", timeout=30)
        time.sleep(8)
        after = cluster.get_json("deployment", name, "-n", namespace)
        obj = vlmd(cluster, namespace, name)
    assert after["spec"]["template"] == before["spec"]["template"]  # 0 pod templates changed
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert obj["status"]["engineVersion"] == OLD_DEFAULT
