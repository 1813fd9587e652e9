"""Argo CD's view of a VLMDeployment: the shipped health script (deploy/argocd/health.lua) run the way Argo CD runs a
``resource.customizations.health.vlmops.io_VLMDeployment`` script (hack/argocd-health: gopher-lua v1.1.2 with Argo CD's
sandbox), on objects recorded live from the dev cluster; and what Argo CD's sync does to ``spec.scaling.replicas``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack import build_argocd_health

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import (
    CRASH_LOOP,
    WEBHOOK,
    Operator,
    apply,
    condition,
    sample,
    vlmd,
    wait_condition,
    wait_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def argo() -> Path:
    return build_argocd_health.ensure(log=lambda m: print(m, flush=True))


def health(argo: Path, obj: dict[str, Any], script: Path = build_argocd_health.SCRIPT) -> dict[str, str]:
    (out,) = build_argocd_health.health([obj], argo, script)
    print(f"argo health: {out}")
    return out


# --- the sandbox is Argo CD's ------------------------------------------------------------------------------------


def test_the_harness_sandbox_is_argo_cds(argo: Path, tmp_path: Path) -> None:
    obj = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "x", "generation": 2}}
    probe = tmp_path / "probe.lua"
    # base, table, package and the safe os (time/date) are there; io and os.execute are not; integers are numbers
    probe.write_text(
        'local t = {} table.insert(t, "a")\n'
        'assert(type(os.time()) == "number" and os.execute == nil and io == nil and string == nil)\n'
        'assert(type(obj.metadata.generation) == "number" and obj.metadata.generation == 2)\n'
        'return {status = "Healthy", message = t[1] .. tostring(require("os") ~= nil)}\n'
    )
    assert health(argo, obj, probe) == {"status": "Healthy", "message": "atrue"}
    probe.write_text('local ok = pcall(require, "json")\nreturn {status = "Healthy", message = tostring(ok)}\n')
    assert health(argo, obj, probe)["message"] == "false"  # argo-cd v3.6.2 preloads no json module
    probe.write_text('return {status = "Fine"}\n')
    assert health(argo, obj, probe) == {"status": "Unknown", "message": "Lua returned an invalid health status"}
    probe.write_text("return 1\n")
    assert "expect table output" in health(argo, obj, probe)["error"]


def test_no_status_yet_reads_progressing(argo: Path) -> None:
    obj = sample("llava-1.5-7b-l4")
    obj["metadata"]["generation"] = 1
    assert health(argo, obj) == {"status": "Progressing", "message": "Waiting for the operator to report status"}


# --- recorded from the dev cluster ------------------------------------------------------------------------------


def test_rolling_out_then_ready_then_generation_ahead(
    cluster: Cluster, namespace: str, operator: Operator, argo: Path
) -> None:
    doc = sample(
        "llava-1.5-7b-l4.yaml", namespace, **{"spec.podTemplate.annotations": {"sim.vlmops.io/ready-after": "8s"}}
    )
    name = doc["metadata"]["name"]
    apply(cluster, doc)

    def rolling_out() -> dict[str, Any] | None:
        o = vlmd(cluster, namespace, name)
        written = o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"]
        return o if written and condition(o, "Progressing").get("status") == "True" else None

    during = wait_until(rolling_out, "the operator to report the rollout", timeout=60, interval=0.3)
    hs = health(argo, during)
    progressing = condition(during, "Progressing")
    assert hs == {"status": "Progressing", "message": f"{progressing['reason']}: {progressing['message']}"}

    obj = wait_ready(cluster, namespace, name)
    hs = health(argo, obj)
    assert hs["status"] == "Healthy" and "1/1 replicas ready" in hs["message"], hs

    # a spec change the operator has not observed yet (as Argo CD sees it right after a sync)
    ahead = {**obj, "metadata": {**obj["metadata"], "generation": obj["metadata"]["generation"] + 1}}
    hs = health(argo, ahead)
    assert hs["status"] == "Progressing" and "observe generation" in hs["message"], hs

    # scaled to zero through /scale: Ready, so Healthy
    cluster.kubectl("scale", "vlmd", name, "-n", namespace, "--replicas=0")
    zero = wait_until(
        lambda: (o := vlmd(cluster, namespace, name)) and condition(o, "Ready").get("reason") == "ScaledToZero" and o,
        "Ready/ScaledToZero",
        timeout=60,
    )
    assert health(argo, zero) == {"status": "Healthy", "message": "ScaledToZero: scaled to zero"}


def test_a_crash_loop_reads_degraded(cluster: Cluster, namespace: str, operator: Operator, argo: Path) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace, **{"spec.podTemplate.annotations": CRASH_LOOP})
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    obj = wait_condition(cluster, namespace, name, "Degraded", "True", timeout=90)
    degraded = condition(obj, "Degraded")
    assert health(argo, obj) == {"status": "Degraded", "message": f"{degraded['reason']}: {degraded['message']}"}
    assert degraded["reason"] in ("PodsFailing", "RolledBack")


def test_a_rollback_reads_degraded(cluster: Cluster, namespace: str, operator: Operator, argo: Path) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    wait_ready(cluster, namespace, name)
    doc["spec"]["podTemplate"] = {"annotations": CRASH_LOOP}
    apply(cluster, doc)
    obj = wait_condition(cluster, namespace, name, "Degraded", "True", reason="RolledBack", timeout=120)
    hs = health(argo, obj)
    assert hs["status"] == "Degraded" and hs["message"].startswith("RolledBack: "), hs


def test_a_spec_the_reconciler_refuses_reads_degraded(
    cluster: Cluster, namespace: str, operator: Operator, argo: Path
) -> None:
    # The webhook refuses this at admission; with the webhook out of the way (as after a failed-open or missing
    # webhook) the reconciler refuses it too, and says so in status.
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    doc = sample("does-not-fit-qwen2.5-vl-72b-l4.yaml", namespace, **{"spec.fitCheck": "Enforce"})
    name = doc["metadata"]["name"]
    apply(cluster, doc)
    obj = wait_condition(cluster, namespace, name, "Degraded", "True")
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "DoesNotFit", degraded
    hs = health(argo, obj)
    assert hs == {"status": "Degraded", "message": f"DoesNotFit: {degraded['message']}"}, hs
    assert not cluster.exists("deployment", name, namespace)


# --- what an Argo CD sync does to spec.scaling.replicas ------------------------------------------------------------


def replicas(cluster: Cluster, ns: str, name: str) -> int:
    return int(vlmd(cluster, ns, name)["spec"]["scaling"]["replicas"])


def test_scale_writes_survive_a_reapply_that_omits_replicas(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    doc = sample("llava-1.5-7b-l4.yaml", namespace)  # no spec.scaling.replicas, as ignoreDifferences advises
    name = doc["metadata"]["name"]
    # Argo CD's default sync: client-side `kubectl apply` (last-applied-configuration three-way merge)
    apply(cluster, doc)
    assert replicas(cluster, namespace, name) == 1  # the CRD's default
    cluster.kubectl("scale", "vlmd", name, "-n", namespace, "--replicas=3")  # what the autoscaler / an HPA does
    apply(cluster, doc)
    assert replicas(cluster, namespace, name) == 3
    # ServerSideApply=true: Argo CD applies as its own field manager, which never owned replicas
    apply(cluster, doc, "--server-side", "--field-manager=argocd-controller")
    assert replicas(cluster, namespace, name) == 3
    # a manifest that does carry replicas puts its own value back on every sync: hence ignoreDifferences plus
    # RespectIgnoreDifferences=true (Argo CD then syncs the live value of the ignored field)
    with_replicas = {**doc, "spec": {**doc["spec"], "scaling": {"replicas": 1}}}
    apply(cluster, with_replicas)
    assert replicas(cluster, namespace, name) == 1
    # Replace=true: `kubectl replace` swaps the whole spec, so an omitted replicas is the CRD default again
    cluster.kubectl("scale", "vlmd", name, "-n", namespace, "--replicas=3")
    # kubectl replace reads the live resourceVersion first (custom resources allow no unconditional update), so a
    # write by the operator in between is a 409 Conflict; Argo CD retries a failed sync, and so does this test
    wait_until(
        lambda: cluster.kubectl("replace", "-f", "-", input=yaml.safe_dump(doc), check=False).returncode == 0,
        "kubectl replace",
    )
    assert replicas(cluster, namespace, name) == 1


def test_the_argocd_cm_snippet_carries_the_script_verbatim() -> None:
    cm = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())
    key = "resource.customizations.health.vlmops.io_VLMDeployment"
    assert cm["data"][key] == build_argocd_health.SCRIPT.read_text()
    assert json.dumps(cm)  # plain data, nothing templated
