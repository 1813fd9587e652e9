"""`make demo`, last part: a VLMDeployment in ``scaling.mode: Internal`` scales up on a burst of image requests and
back down when it is over.

:func:`demo_autoscale` expects the dev cluster with the CRDs installed and the operator running (``hack/demo.py``
does both). It starts ``vlmctl simulate-pods`` (a vLLM simulator on each annotated pod's loopback IP, which marks the
pod Ready once it answers ``/health``), applies an Internal-mode sample with short windows, sends a bounded burst of
multimodal chat requests (tiny base64 PNGs) to the pods by pod IP, prints ``kubectl get vlmd`` whenever the replica
counts move, and stops the simulators at the end. It is bounded: about two minutes, three at most. Runs alone too:
``python -m hack.demo_autoscale [KUBECONFIG [NAMESPACE]]``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from vlm_operator.kube import Kube, new_api_client
from vlm_operator.render import objects
from vlm_operator.simulator.load import BurstLoad, ready_pod_urls

ROOT = Path(__file__).resolve().parents[1]
NAME = "llava-autoscale"
MODEL = "llava-1.5-7b"
#: The whole part never runs longer than this.
BUDGET_SECONDS = 180.0
BURST_SECONDS = 40.0


def internal_sample(namespace: str) -> dict[str, Any]:
    """LLaVA-1.5-7B on an L4 with the built-in autoscaler, short windows, and simulated pods.

    Each simulated engine runs 2 requests at once and spends 1.6 s on one (16 tokens at 10 tokens/s), so a dozen
    clients make a queue that one pod cannot hold.
    """
    doc: dict[str, Any] = yaml.safe_load((ROOT / "crds" / "samples" / "llava-1.5-7b-l4.yaml").read_text())
    doc["metadata"] = {"name": NAME, "namespace": namespace}
    doc["spec"]["scaling"] = {
        "mode": "Internal",
        "replicas": 1,
        "minReplicas": 1,
        "maxReplicas": 3,
        "targetQueueDepth": 2,
        "pollIntervalSeconds": 2,
        "scaleUpWindowSeconds": 4,
        "scaleUpMaxStep": 2,
        "scaleDownStabilizationSeconds": 20,
        "cooldownSeconds": 10,
    }
    doc["spec"]["podTemplate"] = {
        "annotations": {
            "sim.vlmops.io/simulator": "true",
            "sim.vlmops.io/max-num-seqs": "2",
            "sim.vlmops.io/decode-tokens-per-s": "10",
            "sim.vlmops.io/output-tokens": "16",
        }
    }
    return doc


def _kubectl_bin() -> str:
    from vlm_operator.devcluster import build

    local = build.bin_dir() / "kubectl"
    return str(local) if local.exists() else "kubectl"


def demo_autoscale(kubeconfig: str, namespace: str) -> None:
    kubectl = [_kubectl_bin(), "--kubeconfig", kubeconfig]

    def run(*args: str, show: bool = True, stdin: str | None = None) -> str:
        if show:
            print(f"$ kubectl {' '.join(args)}", flush=True)
        res = subprocess.run([*kubectl, *args], capture_output=True, text=True, input=stdin, timeout=150)
        if show:
            print(res.stdout + res.stderr, end="", flush=True)
        return res.stdout

    start = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix="vlm-demo-sims-"))
    with (logdir / "simulate-pods.log").open("ab") as out:
        sims = subprocess.Popen(
            [sys.executable, "-m", "vlm_operator", "simulate-pods", "--kubeconfig", kubeconfig, "--interval", "0.3"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(f"simulate-pods started (pid {sims.pid}), log: {logdir / 'simulate-pods.log'}", flush=True)
    kube = Kube(new_api_client(kubeconfig))
    try:
        run("create", "namespace", namespace, show=False)
        doc = internal_sample(namespace)
        print(f"$ kubectl apply -f - <<< {NAME}: scaling {doc['spec']['scaling']}", flush=True)
        run("apply", "-f", "-", stdin=yaml.safe_dump(doc))
        run("wait", "-n", namespace, "--for=condition=Ready", f"vlmd/{NAME}", "--timeout=90s")
        _wait_for(lambda: _condition(kube, namespace, "MetricsAvailable") == "True", 30)
        run("get", "vlmd", NAME, "-n", namespace)

        def targets() -> list[str]:
            return ready_pod_urls(kube.list("v1", "Pod", namespace, objects.selector_string(NAME)))

        print(f"\n--- a burst: 12 clients sending tiny PNG chat requests to the pods by IP for {BURST_SECONDS:.0f}s")
        burst = BurstLoad(targets, MODEL, clients=12, seconds=BURST_SECONDS).start()
        last: tuple[int, int, int] | None = None
        phase = "up"
        while time.monotonic() - start < BUDGET_SECONDS:
            obj = kube.get("vlmops.io/v1alpha1", "VLMDeployment", namespace, NAME) or {}
            st = obj.get("status", {})
            now = (
                int(obj.get("spec", {}).get("scaling", {}).get("replicas", 0)),
                st.get("replicas", 0),
                st.get("readyReplicas", 0),
            )
            if now != last:
                last = now
                run("get", "vlmd", NAME, "-n", namespace)
                active = next((c for c in st.get("conditions", []) if c["type"] == "ScalingActive"), None)
                if active:
                    print(f"  ScalingActive={active['status']} {active['reason']}: {active['message']}", flush=True)
            if phase == "up" and not burst.running:
                print(f"\n--- the burst is over ({burst.ok} requests answered); scaling down after a quiet window")
                phase = "down"
            if phase == "down" and now == (1, 1, 1):
                break
            time.sleep(1.0)
        burst.join()
        print("\n$ kubectl get events (the autoscaler's decisions)", flush=True)
        for line in run("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", show=False).splitlines():
            if "ScaleUp" in line or "ScaleDown" in line or line.startswith("LAST SEEN"):
                print(line, flush=True)
        print(f"\nautoscaling demo took {time.monotonic() - start:.0f}s", flush=True)
    finally:
        if sims.poll() is None:
            os.killpg(sims.pid, signal.SIGTERM)
            try:
                sims.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(sims.pid, signal.SIGKILL)
                sims.wait(10)


def _condition(kube: Kube, namespace: str, type_: str) -> str | None:
    obj = kube.get("vlmops.io/v1alpha1", "VLMDeployment", namespace, NAME) or {}
    return next((c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def _wait_for(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    from vlm_operator.devcluster.cluster import DevCluster

    kubeconfig = sys.argv[1] if len(sys.argv) > 1 else str(DevCluster("vlm-dev").kubeconfig)
    demo_autoscale(kubeconfig, sys.argv[2] if len(sys.argv) > 2 else "vlm-demo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
