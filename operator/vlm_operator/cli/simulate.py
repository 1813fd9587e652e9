"""`vlmctl simulate-pods`: serve a vLLM simulator on each simulated pod's IP in the dev cluster.

Pods annotated ``sim.vlmops.io/simulator: "true"`` get a simulator on ``<podIP>:8000`` and turn Ready once it answers
``/health``; see :mod:`vlm_operator.simulator.podwatcher` for the settings. ``--prometheus`` also starts a real
Prometheus on loopback that scrapes those pods (file-based discovery). Runs until SIGINT or SIGTERM, then stops every
simulator and the Prometheus it started.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="the cluster's kubeconfig (default: the `vlmctl dev-cluster` cluster named vlm-dev)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port of each simulator on its pod IP (default 8000)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between pod listings (default 0.5)")
    parser.add_argument("--targets-file", type=Path, help="keep a Prometheus file_sd targets file here")
    parser.add_argument("--prometheus", action="store_true", help="also run a Prometheus that scrapes the pods")
    parser.add_argument("--prometheus-port", type=int, default=0, help="Prometheus port on 127.0.0.1 (default: free)")
    parser.add_argument("--prometheus-dir", type=Path, help="Prometheus config and storage (default: a temp dir)")
    parser.add_argument("--scrape-interval", type=float, default=2.0, help="Prometheus scrape interval, seconds")
    parser.add_argument(
        "--real-engine",
        action="store_true",
        help="serve every annotated pod with the real vLLM CPU engine on a tiny checkpoint (opt-in; see "
        "docs/real-engine.md); pods annotated sim.vlmops.io/engine=vllm-cpu get it without this flag",
    )
    parser.add_argument(
        "--max-engines", type=int, default=2, help="real engines at once (about 4.7 GB each); more wait (default 2)"
    )
    parser.add_argument("--engine-logs", type=Path, help="directory for the real engines' logs (default: a temp dir)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where VLMBatchJob volumes live: PVC <claim> of <namespace> is <workdir>/pvc/<namespace>/<claim>/ "
        "(default: the kubeconfig's directory, the dev cluster's workdir)",
    )
    parser.add_argument("--kv-cache-gib", type=int, default=1, help="VLLM_CPU_KVCACHE_SPACE of each real engine")


def _log(msg: str) -> None:
    print(f"simulate-pods: {msg}", file=sys.stderr, flush=True)


def _kubeconfig(args: argparse.Namespace) -> Path | None:
    if args.kubeconfig:
        return Path(args.kubeconfig)
    from vlm_operator.devcluster.cluster import DevCluster

    default = DevCluster("vlm-dev").kubeconfig
    return default if default.exists() else None


async def _main(args: argparse.Namespace, kubeconfig: Path) -> int:
    from vlm_operator.kube import Kube, new_api_client
    from vlm_operator.simulator.podwatcher import PodWatcher
    from vlm_operator.simulator.prometheus import Prometheus, PrometheusError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    prom: Prometheus | None = None
    targets_file: Path | None = args.targets_file
    tmp: tempfile.TemporaryDirectory[str] | None = None
    tmp_logs: tempfile.TemporaryDirectory[str] | None = None
    if args.prometheus:
        workdir = args.prometheus_dir
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="vlm-prometheus-")
            workdir = Path(tmp.name)
        prom = Prometheus(workdir, port=args.prometheus_port, scrape_interval=args.scrape_interval, log=_log)
        targets_file = targets_file or prom.targets_file
        try:
            await asyncio.to_thread(prom.start)
        except PrometheusError as exc:
            _log(str(exc))
            if tmp is not None:
                tmp.cleanup()
            return 1
        print(f"prometheus: {prom.url}", flush=True)
    try:
        kube = Kube(new_api_client(str(kubeconfig)))
        engine_logs = args.engine_logs
        if engine_logs is None:
            tmp_logs = tempfile.TemporaryDirectory(prefix="vlm-engine-logs-")
            engine_logs = Path(tmp_logs.name)
        watcher = PodWatcher(
            kube,
            port=args.port,
            interval=args.interval,
            targets_file=targets_file,
            log=_log,
            real_engine=args.real_engine,
            max_engines=args.max_engines,
            engine_logs=engine_logs,
            kv_cache_gib=args.kv_cache_gib,
            volumes_root=args.workdir or kubeconfig.parent,
        )
        _log(f"watching pods annotated sim.vlmops.io/simulator=true in {kubeconfig}")
        print("simulate-pods: watching", flush=True)
        await watcher.run(stop)
    finally:
        if tmp_logs is not None:
            tmp_logs.cleanup()
        if prom is not None:
            await asyncio.to_thread(prom.stop)
        if tmp is not None:
            tmp.cleanup()
    return 0


def run(args: argparse.Namespace) -> int:
    kubeconfig = _kubeconfig(args)
    if kubeconfig is None:
        _log("no kubeconfig: pass --kubeconfig, or start the dev cluster with `vlmctl dev-cluster up`")
        return 2
    return asyncio.run(_main(args, kubeconfig))
