"""The generated CRD on a real API server: it installs, every sample is accepted, every CEL rule refuses its bad case
with its message (naming the offending value where the rule has a ``messageExpression``), names at the Kubernetes
length limits are admitted or refused with the limit named, the scale subresource and printer columns work, and
`kubectl explain` shows the docstrings. The same cases (``tests/cel_cases.py``) run against the Python mirror in
``tests/unit/test_api_models.py`` and ``tests/unit/test_cel_messages.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cel_cases import BASE, CEL_CASES, NAME_CASES, NAMED_CASES
from tests.conftest import Cluster
from tests.integration.helpers import apply
from tests.manifests import SAMPLES, vlmd_manifest

pytestmark = [pytest.mark.integration, pytest.mark.portable]


def test_crd_is_established_without_warnings(crd_installed: Cluster) -> None:
    crd = crd_installed.get_json("crd", "vlmdeployments.vlmops.io")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert conditions.get("NamesAccepted") == "True"
    assert conditions.get("NonStructuralSchema") in (None, "False")


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_is_accepted(crd_installed: Cluster, namespace: str, sample: Path) -> None:
    res = crd_installed.kubectl("apply", "-n", namespace, "-f", str(sample), check=False)
    assert res.returncode == 0, res.stderr
    name = yaml.safe_load(sample.read_text())["metadata"]["name"]
    stored = crd_installed.get_json("vlmd", name, "-n", namespace)
    written = yaml.safe_load(sample.read_text())["spec"]
    # Nothing the sample wrote was pruned (open objects such as processorKwargs included).
    assert {k: stored["spec"][k] for k in written} == written
    assert stored["spec"]["scaling"]["replicas"] == 1  # server-side default behind /scale


def test_the_crd_carries_message_expressions(crd_installed: Cluster) -> None:
    crd = crd_installed.get_json("crd", "vlmdeployments.vlmops.io")
    assert "messageExpression" in yaml.safe_dump(crd)  # the API server kept them (a cost-refused CRD would not)


#: every CEL rule's bad case, then the cases whose message names the value
REFUSED = [*CEL_CASES, *NAMED_CASES]


@pytest.mark.parametrize(("case_id", "bad", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_cel_rule_refuses_bad_case(
    crd_installed: Cluster, namespace: str, case_id: str, bad: dict[str, Any], message: str
) -> None:
    res = apply(crd_installed, vlmd_manifest(case_id, bad), namespace=namespace, check=False)
    assert res.returncode != 0, f"{case_id} was accepted"
    assert message in res.stderr, res.stderr
    assert "sk-secret-123" not in res.stderr


@pytest.mark.parametrize(("name", "words"), NAME_CASES, ids=[f"{n[:12]}..{len(n)}" for n, _ in NAME_CASES])
def test_names_at_the_limits(crd_installed: Cluster, namespace: str, name: str, words: str | None) -> None:
    res = apply(crd_installed, vlmd_manifest(name, BASE), namespace=namespace, check=False)
    if words is None:
        assert res.returncode == 0, res.stderr
        assert crd_installed.get_json("vlmd", name, "-n", namespace)["metadata"]["name"] == name
        return
    assert res.returncode != 0, f"{name!r} was accepted"
    if len(name) > 253:
        return  # the API server's own name check answers first
    assert words in res.stderr, res.stderr
    if "63" in words:
        assert f": {len(name)} characters" in res.stderr, res.stderr


def test_schema_bounds_refuse_bad_values(crd_installed: Cluster, namespace: str) -> None:
    for spec in (
        {**BASE, "multimodal": {"videoPruningRate": 1.0}},
        {**BASE, "multimodal": {"limitPerPrompt": {"image": 4}}},
        {**BASE, "resources": {"memory": "64 GB"}},
        {**BASE, "fitCheck": "Bypass"},
    ):
        res = apply(crd_installed, vlmd_manifest("bad", spec), namespace=namespace, check=False)
        assert res.returncode != 0, f"accepted: {spec}"


def test_scale_subresource_and_printer_columns(crd_installed: Cluster, namespace: str) -> None:
    apply(crd_installed, vlmd_manifest("scaled", BASE), namespace=namespace)
    crd_installed.kubectl("scale", "-n", namespace, "vlmd/scaled", "--replicas=3")
    stored = crd_installed.get_json("vlmd", "scaled", "-n", namespace)
    assert stored["spec"]["scaling"]["replicas"] == 3
    scale = json.loads(
        crd_installed.kubectl(
            "get", "--raw", f"/apis/vlmops.io/v1alpha1/namespaces/{namespace}/vlmdeployments/scaled/scale"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3
    header = crd_installed.kubectl("get", "vlmd", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "MODEL", "GPU", "REPLICAS", "READY", "FITS", "AGE"]
    # The short name and the category both find it.
    assert "scaled" in crd_installed.kubectl("get", "vlmops", "-n", namespace).stdout


def test_status_keeps_typed_and_unknown_fields(crd_installed: Cluster, namespace: str) -> None:
    apply(crd_installed, vlmd_manifest("st", BASE), namespace=namespace)
    patch = {
        "status": {
            "readyReplicas": 1,
            "gpu": "1x NVIDIA-L4",
            "conditions": [{"type": "FitsGPU", "status": "True", "reason": "Fits", "message": ""}],
            "estimate": {"verdict": "Fits"},
            "kopf": {"progress": {}},
        }
    }
    crd_installed.kubectl(
        "patch", "-n", namespace, "vlmd/st", "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )
    stored = crd_installed.get_json("vlmd", "st", "-n", namespace)
    assert stored["status"]["kopf"] == {"progress": {}}
    line = crd_installed.kubectl("get", "vlmd", "st", "-n", namespace, "--no-headers").stdout
    assert "1x NVIDIA-L4" in line and "Fits" in line.split()


def test_kubectl_explain_prints_nested_docstrings(crd_installed: Cluster) -> None:
    out = crd_installed.kubectl("explain", "vlmd.spec.multimodal.limitPerPrompt").stdout
    assert "999" in out and "--limit-mm-per-prompt" in out
    out = crd_installed.kubectl("explain", "vlmd.spec.multimodal.limitPerPrompt.image.count").stdout
    assert "Most images in one prompt" in out
    out = crd_installed.kubectl("explain", "vlmd.spec.multimodal.legacy.imageFeatureSize").stdout
    assert "--image-feature-size" in out
