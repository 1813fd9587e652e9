"""Benchmark of the local control plane: time from `dev-cluster up` to Ready, idle RSS per component, cache size.

Prints a table. It starts its own cluster in a temporary directory and stops it at the end.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlm_operator.devcluster import build
from vlm_operator.devcluster.cluster import COMPONENT_ORDER, DevCluster, NodePool


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def du_mib(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    build.ensure_binaries()
    pools = [NodePool("L4", 2, 4), NodePool("H100-80GB", 1, 8)]
    times: list[float] = []
    rss: dict[str, list[float]] = {c: [] for c in COMPONENT_ORDER}
    for i in range(runs):
        parent = Path(tempfile.mkdtemp(prefix="vlm-bench-"))
        dev = DevCluster(f"bench-{i}", parent / "c")
        t0 = time.monotonic()
        st = dev.up(pools)
        times.append(time.monotonic() - t0)
        time.sleep(20)  # let start-up work settle, then read idle memory
        for comp in COMPONENT_ORDER:
            rss[comp].append(rss_mib(st.pids[comp]))
        dev.down()
        shutil.rmtree(parent, ignore_errors=True)

    def row(name: str, v: list[float], fmt: str = ".0f") -> None:
        print(f"{name:<44}{statistics.median(v):>10{fmt}}{min(v):>10{fmt}}{max(v):>10{fmt}}")

    print(f"{'metric':<44}{'median':>10}{'min':>10}{'max':>10}")
    row("dev-cluster up -> 3 GPU nodes Ready (s)", times, ".2f")
    for comp in COMPONENT_ORDER:
        row(f"idle RSS {comp} (MiB)", rss[comp])
    row("idle RSS control plane total (MiB)", [sum(rss[c][i] for c in COMPONENT_ORDER) for i in range(runs)])
    print(f"{'binary cache size (MiB)':<44}{du_mib(build.bin_dir()):>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
