"""Control-plane faults mid-rollout: the API server and etcd are restarted, and an in-path proxy answers a share of
the operator's writes with 409, 429 (Retry-After) and 500. The operator must converge afterwards, with its request
rate during the fault bounded (no hot loop). The figures are measured and printed (``pytest -s``).

The test starts its own small dev cluster, so the restarts do not disturb the session cluster other tests share.
``VLM_FAULT_SECONDS`` sets how long the injected errors last (CI: 15 s; ``make soak``: 300 s).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cluster, wait_until
from tests.integration.fault_proxy import FaultProxy
from tests.integration.helpers import (
    Operator,
    apply,
    container_cmd,
    flag_value,
    install_crds_and_peering,
    sample,
    wait_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

FAULT_SECONDS = float(os.environ.get("VLM_FAULT_SECONDS", "15"))
SHARE = 0.5  # of the operator's writes answered with an injected error while the fault lasts
MAX_RATE = 40  # requests/s from one operator reconciling one object: far above its need, far below a hot loop
# kopf retries a handler that raised an unexpected error (a 500 or 409 from a write) after its default backoff of
# 60 s (kopf 1.45: kopf/_cogs/configs/configuration.py, `ExecutionSettings.default_backoff`), so a write refused at
# the very end of the fault converges up to a minute later: bounded, not a hot loop
CONVERGE_LIMIT = 120.0


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[tuple[Cluster, object]]:
    from vlm_operator.devcluster.cluster import DevCluster, NodePool

    workdir = Path(tempfile.mkdtemp(prefix="vlm-faults-"))
    dev = DevCluster(f"faults-{os.getpid()}", workdir / "cluster", log=lambda m: print(m, flush=True))
    try:
        st = dev.up([NodePool.parse("L4:2:4")])
        yield Cluster(st.kubeconfig, str(Path(st.bin_dir) / "kubectl"), local=True), dev
    finally:
        dev.down()
        shutil.rmtree(workdir, ignore_errors=True)


def test_operator_converges_through_restarts_and_injected_errors(
    own_cluster: tuple[Cluster, object], tmp_path: Path
) -> None:
    from vlm_operator.devcluster.cluster import DevCluster

    cluster, dev = own_cluster
    assert isinstance(dev, DevCluster)
    st = dev.load_state()
    assert st is not None
    install_crds_and_peering(cluster)
    ns = "faults"
    cluster.kubectl("create", "namespace", ns)
    pki = Path(st.workdir) / "pki"
    with FaultProxy(st.ports["apiserver"], pki / "ca.crt", pki / "admin.crt", pki / "admin.key") as proxy:
        kubeconfig = tmp_path / "proxy-kubeconfig.yaml"
        proxy.write_kubeconfig(kubeconfig)
        args = ["--no-webhook", "--standalone", "--namespace", ns]
        op = Operator(cluster, tmp_path / "operator.log", kubeconfig=kubeconfig, args=args)
        op.start()
        try:
            doc = sample("llava-1.5-7b-l4.yaml", ns)
            name = doc["metadata"]["name"]
            apply(cluster, doc)
            wait_ready(cluster, ns, name)
            t0 = time.monotonic()
            time.sleep(5)
            base_max, base_mean = proxy.rates(t0, time.monotonic())

            # mid-rollout: change the spec, then inject errors and restart etcd and the API server
            doc["spec"]["engine"]["maxNumSeqs"] = 5
            apply(cluster, doc)
            f0 = time.monotonic()
            proxy.set_faults(SHARE, {"POST", "PUT", "PATCH", "DELETE"})
            dev.restart("etcd", pause=2)
            dev.restart("kube-apiserver", pause=2)
            doc["spec"]["engine"]["maxNumSeqs"] = 6
            apply(cluster, doc)  # a change that arrives during the fault
            time.sleep(max(0.0, FAULT_SECONDS - (time.monotonic() - f0)))
            proxy.set_faults(0, set())
            f1 = time.monotonic()
            fault_max, fault_mean = proxy.rates(f0, f1)

            wait_until(
                lambda: flag_value(container_cmd(cluster, ns, name), "--max-num-seqs") == "6",
                "the operator to apply the change made during the fault",
                timeout=CONVERGE_LIMIT,
            )
            obj = wait_ready(cluster, ns, name, timeout=CONVERGE_LIMIT)
            converged = time.monotonic() - f1
            assert obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
            assert op.proc is not None and op.proc.poll() is None, op.output()[-3000:]
            print(
                f"\nFAULTS {f1 - f0:.0f}s ({SHARE:.0%} of writes -> {dict(proxy.injected)}, etcd + apiserver "
                f"restarted): operator requests/s before max {base_max} mean {base_mean:.1f}; during max "
                f"{fault_max} mean {fault_mean:.1f} (limit {MAX_RATE}); converged {converged:.1f}s after the fault "
                f"ended (limit {CONVERGE_LIMIT:.0f}s)"
            )
            assert sum(proxy.injected.values()) > 0, "no write reached the proxy during the fault"
            assert fault_max <= MAX_RATE, f"request rate {fault_max}/s during the fault: a hot loop"
        except BaseException:
            print(f"operator log (tail):\n{op.output()[-4000:]}")
            raise
        finally:
            op.stop()
