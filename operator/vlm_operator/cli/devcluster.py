"""`vlmctl dev-cluster`: a local control plane with simulated GPU nodes, no Docker and no GPUs needed."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "env", "build"])
    parser.add_argument("--name", default="vlm-dev", help="cluster name; each name has its own work directory")
    parser.add_argument("--workdir", type=Path, help="work directory (default ~/.cache/vlm-operator/clusters/NAME)")
    parser.add_argument(
        "--pool",
        action="append",
        default=None,
        metavar="PRODUCT:NODES:GPUS",
        help="a pool of simulated GPU nodes, PRODUCT[/MIG]:NODES:PER_NODE, repeatable for a mix (default: L4:2:4 and "
        "H100-80GB:1:8; A100-80GB/3g.40gb:1:2 is one node with two 3g.40gb MIG slices)",
    )
    parser.add_argument("--gpu-nodes", type=int, help="number of nodes of --gpu-product (instead of --pool)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node with --gpu-nodes (default 8)")
    parser.add_argument("--gpu-product", default="H100-80GB", help="GFD product name or alias with --gpu-nodes")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    parser.add_argument("--output", choices=["text", "json"], default="text", help="status output format")
    parser.add_argument("--force", action="store_true", help="build: rebuild every binary")
    parser.add_argument(
        "--helm", action="store_true", help="build: also build the pinned Helm (for the chart tests) into the cache"
    )


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from vlm_operator import gpus
    from vlm_operator.devcluster import build
    from vlm_operator.devcluster.cluster import DEFAULT_POOLS, ClusterError, DevCluster, NodePool

    try:
        if args.action == "build":
            print(build.ensure_binaries(log=_log, force=args.force))
            if args.helm:
                print(build.ensure_helm(log=_log, force=args.force))
            return 0
        cluster = DevCluster(args.name, args.workdir, log=_log)
        if args.action == "up":
            if args.gpu_nodes is not None:
                pools = [NodePool.parse(f"{args.gpu_product}:{args.gpu_nodes}:{args.gpus_per_node}")]
            elif args.pool:
                pools = [NodePool.parse(p) for p in args.pool]
            else:
                pools = list(DEFAULT_POOLS)
            st = cluster.up(pools, timeout=args.timeout)
            print(f"export KUBECONFIG={shlex.quote(str(st.kubeconfig))}")
            return 0
        if args.action == "down":
            stopped = cluster.down()
            _log(f"stopped {len(stopped)} process(es) of dev cluster {args.name!r}")
            return 0
        if args.action == "env":
            env = cluster.env()
            for k, v in env.items():
                print(f"export {k}={shlex.quote(v)}")
            # the cluster's own kubectl (same version as the API server) first, whatever kubectl is installed
            print(f'export PATH={shlex.quote(env["VLM_DEV_CLUSTER_BIN"])}:"$PATH"')
            return 0
        status = cluster.status()
        if args.output == "json":
            print(json.dumps(status, indent=2, sort_keys=True))
        else:
            print(f"cluster {status['name']}: {'running' if status['running'] else 'not running'}")
            for key in ("server", "kubeconfig", "workdir"):
                if key in status:
                    print(f"  {key}: {status[key]}")
            for comp, info in status.get("components", {}).items():
                print(f"  {comp:<24} pid {info['pid']}  {'alive' if info['alive'] else 'DEAD'}")
            for node in status.get("nodes", []):
                print(f"  node {node['name']:<28} {node['product']:<24} gpus={node['gpus']} ready={node['ready']}")
        return 0 if status["running"] else 3
    except (ClusterError, build.BuildError, gpus.UnknownGPUError, ValueError) as exc:
        _log(f"error: {exc}")
        return 1
