"""Running the operator subprocess for a test module, with the cluster's own kubeconfig or another identity's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Cluster, wait_until
from tests.integration.helpers import Operator, install_crds_and_peering

WEBHOOK = "vlm-operator.vlmops.io"


@contextmanager
def running_operator(
    cluster: Cluster, log: Path, kubeconfig: Path | None = None, args: tuple[str, ...] = ()
) -> Iterator[Operator]:
    """Start the operator, wait until it registered its webhook, and stop it (and drop the webhook) afterwards."""
    install_crds_and_peering(cluster)
    # a webhook left by an earlier operator points at a dead port; kopf re-patches it, but start clean
    cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
    op = Operator(cluster, log, kubeconfig=kubeconfig, args=args)
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
