"""`make demo`: the whole product on a laptop with no GPU and no Docker.

1. Bring up the local control plane with simulated GPU pools (built from source on first use).
2. Install the CRDs and start the operator (with its admission webhook) next to it.
3. Apply a sample VLMDeployment and watch it become Ready on its GPU pool.
4. Apply a spec that cannot fit and show the API server refusing it with the estimator's figures and a fix.
5. Scale on queue depth: a burst of multimodal requests to simulated vLLM pods, then quiet (when available).
6. Opt-in (``make demo ENGINE=1``): one sample on the real vLLM CPU engine, and its answer to an image request.

The cluster keeps running afterwards; the operator started here is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vlm_operator.devcluster.cluster import DEFAULT_POOLS, DevCluster, NodePool

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "vlm-demo"
POOLS = (*DEFAULT_POOLS, NodePool("L40S", 1, 4))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


class Demo:
    def __init__(self) -> None:
        # VLM_DEMO_CLUSTER: another name keeps the demo off a `vlm-dev` cluster already in use on this machine
        self.dev = DevCluster(os.environ.get("VLM_DEMO_CLUSTER", "vlm-dev"), log=log)
        self.st = self.dev.up(POOLS)
        self.kubeconfig = str(self.st.kubeconfig)
        self.operator: subprocess.Popen[bytes] | None = None

    def kubectl(self, *args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess[str]:
        if show:
            print(f"$ kubectl {' '.join(args)}", flush=True)
        res = subprocess.run(
            [f"{self.st.bin_dir}/kubectl", "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True
        )
        if show:
            print(res.stdout + res.stderr, end="", flush=True)
        if check and res.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed")
        return res

    def start_operator(self) -> None:
        logfile = Path(self.st.workdir) / "logs" / "operator.log"
        with logfile.open("ab") as out:
            self.operator = subprocess.Popen(
                [sys.executable, "-m", "vlm_operator", "operator", "run"],
                env={**os.environ, "KUBECONFIG": self.kubeconfig},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log(f"operator started (pid {self.operator.pid}), log: {logfile}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                self.kubectl(
                    "get", "validatingwebhookconfiguration", "vlm-operator.vlmops.io", check=False, show=False
                ).returncode
                == 0
            ):
                return
            time.sleep(1)
        raise SystemExit(f"the operator did not register its webhook; see {logfile}")

    def stop_operator(self) -> None:
        if self.operator and self.operator.poll() is None:
            os.killpg(self.operator.pid, signal.SIGTERM)
            self.operator.wait(30)
        self.kubectl("delete", "validatingwebhookconfiguration", "vlm-operator.vlmops.io", check=False, show=False)

    def run(self) -> None:
        banner("simulated GPU nodes")
        self.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product,nvidia.com/gpu.memory,nvidia.com/gpu.count")

        banner("install the CRDs and start the operator")
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmdeployments.yaml"))
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "kopf-peering.yaml"))
        self.kubectl("wait", "--for=condition=Established", "crd/vlmdeployments.vlmops.io", "--timeout=60s")
        subprocess.run(
            [f"{self.st.bin_dir}/kubectl", "--kubeconfig", self.kubeconfig, "apply", "-f", "-"],
            input='{"apiVersion":"kopf.dev/v1","kind":"ClusterKopfPeering","metadata":{"name":"vlm-operator"}}',
            text=True,
            check=True,
            capture_output=True,
        )
        self.start_operator()
        self.kubectl("create", "namespace", NAMESPACE, check=False)

        banner("a VLMDeployment: Qwen2.5-VL-7B on an L40S, min/max_pixels set")
        sample = ROOT / "crds" / "samples" / "qwen2.5-vl-7b-pixels.yaml"
        self.kubectl("apply", "-n", NAMESPACE, "-f", str(sample))
        self.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "vlmd/qwen2-5-vl-7b", "--timeout=120s")
        self.kubectl("get", "vlmd", "-n", NAMESPACE)
        self.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")
        self.kubectl(
            "get",
            "vlmd",
            "qwen2-5-vl-7b",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.estimate.message}{'\\n'}{.status.effectiveArgs}{'\\n'}",
        )

        banner("a spec that cannot fit: Qwen2.5-VL-72B on one L4")
        bad = ROOT / "crds" / "samples" / "does-not-fit-qwen2.5-vl-72b-l4.yaml"
        self.kubectl("apply", "-n", NAMESPACE, "-f", str(bad), check=False)

        try:
            from hack.demo_autoscale import demo_autoscale
        except ImportError:
            demo_autoscale = None
        if demo_autoscale is not None:
            banner("scaling on queue depth: a burst of image requests, then quiet")
            demo_autoscale(self.kubeconfig, NAMESPACE)

        if os.environ.get("VLM_DEMO_ENGINE") == "1":
            from hack.demo_engine import demo_real_engine

            banner("the real vLLM CPU engine: one sample, one image request")
            demo_real_engine(self.kubeconfig, NAMESPACE, f"{self.st.bin_dir}/kubectl")

        print(
            "\nThe dev cluster keeps running. Use it with:\n"
            f"  export KUBECONFIG={self.kubeconfig}\n"
            f"  export PATH={self.st.bin_dir}:$PATH   # kubectl v1.36\n"
            "  .venv/bin/vlmctl operator run           # the operator, in the foreground\n"
            f"Stop it with: .venv/bin/vlmctl dev-cluster down"
            f"{'' if self.dev.name == 'vlm-dev' else ' --name ' + self.dev.name}",
            flush=True,
        )


def main() -> int:
    demo = Demo()
    try:
        demo.run()
    finally:
        demo.stop_operator()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
