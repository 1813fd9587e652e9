"""Benchmark of the local control plane: time from `dev-cluster up` to Ready, idle RSS per component, cache size.

Prints a table. It starts its own cluster in a temporary directory and stops it at the end. ``--pool`` sets the
simulated GPU nodes (as ``vlmctl dev-cluster up --pool``), e.g. ``--pool L4:500:2`` for the 500 nodes of
``benchmarks/operator_scale.py --full``: ``python benchmarks/devcluster.py 1 --pool L4:500:2``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
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
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("runs", nargs="?", type=int, default=3, help="clusters to start one after another (default 3)")
    ap.add_argument("--pool", action="append", type=NodePool.parse, help="PRODUCT:NODES:PER_NODE (repeatable)")
    args = ap.parse_args()
    runs = args.runs
    build.ensure_binaries()
    pools = args.pool or [NodePool("L4", 2, 4), NodePool("H100-80GB", 1, 8)]
    gpu_nodes = sum(p.count for p in pools)
    times: list[float] = []
    rss: dict[str, list[float]] = {c: [] for c in COMPONENT_ORDER}
    for i in range(runs):
        parent = Path(tempfile.mkdtemp(prefix="vlm-bench-"))
        dev = DevCluster(f"bench-{i}", parent / "c")
        t0 = time.monotonic()
        st = dev.up(pools, timeout=max(180, 2 * gpu_nodes))
        times.append(time.monotonic() - t0)
        time.sleep(20)  # let start-up work settle, then read idle memory
        for comp in COMPONENT_ORDER:
            rss[comp].append(rss_mib(st.pids[comp]))
        dev.down()
        shutil.rmtree(parent, ignore_errors=True)

    def row(name: str, v: list[float], fmt: str = ".0f") -> None:
        print(f"{name:<44}{statistics.median(v):>10{fmt}}{min(v):>10{fmt}}{max(v):>10{fmt}}")

    print(f"{'metric':<44}{'median':>10}{'min':>10}{'max':>10}")
    row(f"dev-cluster up -> {gpu_nodes} GPU nodes Ready (s)", times, ".2f")
    for comp in COMPONENT_ORDER:
        row(f"idle RSS {comp} (MiB)", rss[comp])
    row("idle RSS control plane total (MiB)", [sum(rss[c][i] for c in COMPONENT_ORDER) for i in range(runs)])
    print(f"{'binary cache size (MiB)':<44}{du_mib(build.bin_dir()):>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
