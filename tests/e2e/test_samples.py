"""Every sample in crds/samples/ through the real API server, webhook and operator: the fitting ones become Ready
on their GPU pool with the printer columns filled; the one that cannot fit is refused with the estimator's fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import Operator
from tests.manifests import SAMPLES
from vlm_operator import gpus

pytestmark = [pytest.mark.e2e, pytest.mark.local_only]


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample(path: Path, cluster: Cluster, namespace: str, operator: Operator) -> None:
    doc = yaml.safe_load(path.read_text())
    name = doc["metadata"]["name"]
    res = cluster.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    if path.stem.startswith("does-not-fit"):
        assert res.returncode != 0 and "does not fit" in res.stderr and "Fix:" in res.stderr, res.stderr
        return
    assert res.returncode == 0, res.stderr
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"vlmd/{name}", "--timeout=120s", timeout=130)
    obj = cluster.get_json("vlmd", name, "-n", namespace)
    product = gpus.lookup(doc["spec"]["resources"]["gpu"]["product"]).product
    pods = cluster.get_json("pods", "-n", namespace, "-l", obj["status"]["selector"])["items"]
    assert len(pods) == doc["spec"].get("scaling", {}).get("replicas", 1)
    for pod in pods:
        labels = cluster.get_json("node", pod["spec"]["nodeName"])["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == product
    row = cluster.kubectl("get", "vlmd", name, "-n", namespace, "--no-headers").stdout.split()
    assert row[0] == name and product in row and row[-2] in ("Fits", "Tight"), row
    wait_until(
        lambda: (
            cluster.get_json("vlmd", name, "-n", namespace)["status"]["observedGeneration"]
            == obj["metadata"]["generation"]
        ),
        "observedGeneration",
    )
