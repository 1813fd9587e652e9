"""Fixtures of the integration tests: the operator subprocess, one per test module, with a fake Hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Cluster, wait_until
from tests.fakehub import FakeHub, safetensors_blob
from tests.integration.helpers import CRD_PATH, Operator, install_crds_and_peering
from vlm_operator.models import catalog


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


@pytest.fixture(scope="module")
def crd_installed(cluster: Cluster) -> Iterator[Cluster]:
    """The VLMDeployment CRD as generated (server-side apply), Established, with no operator running."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
    cluster.kubectl("wait", "--for=condition=Established", "crd/vlmdeployments.vlmops.io", "--timeout=60s")
    yield cluster
