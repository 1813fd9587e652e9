"""Running the operator subprocess for a test module, with the cluster's own kubeconfig or another identity's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.conftest import Cluster, wait_until
from tests.integration.test_operator import DRIFT_SECONDS, ROOT, Operator

WEBHOOK = "vlm-operator.vlmops.io"


def install_crds_and_peering(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmdeployments.yaml"))
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "kopf-peering.yaml"))
    for crd in ("vlmdeployments.vlmops.io", "clusterkopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "vlm-operator"}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(peering))


class OperatorAs(Operator):
    """The operator subprocess, authenticated by ``kubeconfig`` (the cluster admin's when None)."""

    def __init__(self, cluster: Cluster, log: Path, kubeconfig: Path | None = None) -> None:
        super().__init__(cluster, log)
        self.kubeconfig = kubeconfig or cluster.kubeconfig

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "VLM_OPERATOR_DRIFT_SECONDS": str(DRIFT_SECONDS)}
        env.pop("VLM_OPERATOR_WEBHOOK_SERVICE", None)  # the local API server dials the webhook by URL on loopback
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vlm_operator", "operator", "run", "--webhook-port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@contextmanager
def running_operator(cluster: Cluster, log: Path, kubeconfig: Path | None = None) -> Iterator[OperatorAs]:
    """Start the operator, wait until it registered its webhook, and stop it (and drop the webhook) afterwards."""
    install_crds_and_peering(cluster)
    # a webhook left by an earlier operator points at a dead port; kopf re-patches it, but start clean
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    op = OperatorAs(cluster, log, kubeconfig)
    op.start()
    try:
        wait_until(
            lambda: (
                cluster.kubectl("get", "validatingwebhookconfiguration", WEBHOOK, check=False).returncode == 0
                and op.proc is not None
                and op.proc.poll() is None
            ),
            "the operator to register its webhook",
            timeout=60,
        )
        yield op
    finally:
        op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
