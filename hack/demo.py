"""`make demo`: bring up the local control plane with simulated GPU pools and show what a user gets.

Later issues grow this into the full demo (operator, a sample VLMDeployment going Ready, a rejected spec, scaling).
"""

from __future__ import annotations

import subprocess
import sys

from vlm_operator.devcluster.cluster import DEFAULT_POOLS, DevCluster


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    dev = DevCluster("vlm-dev", log=log)
    st = dev.up(DEFAULT_POOLS)
    kubectl = [f"{st.bin_dir}/kubectl", "--kubeconfig", str(st.kubeconfig)]
    print("\n$ kubectl get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.memory,nvidia.com/gpu.count", flush=True)
    subprocess.run(
        [*kubectl, "get", "nodes", "-L", "nvidia.com/gpu.product,nvidia.com/gpu.memory,nvidia.com/gpu.count"],
        check=True,
    )
    print(
        "\nThe dev cluster keeps running. Use it with:\n"
        f"  export KUBECONFIG={st.kubeconfig}\n"
        f"  export PATH={st.bin_dir}:$PATH   # kubectl v1.36\n"
        "Stop it with: .venv/bin/vlmctl dev-cluster down"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
