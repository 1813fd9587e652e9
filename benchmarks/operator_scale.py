"""Operator scale benchmark: N VLMDeployments on N/2 simulated GPU nodes, next to a no-op kopf operator.

It starts its own dev cluster in a temporary directory (``--nodes`` nodes × 2 L4 GPUs: exactly one GPU per
VLMDeployment of one replica, so there is no spare GPU anywhere) and, in one run:

0. starts the no-op kopf operator (``benchmarks/noop_operator.py``) alone, creates the N objects, lets it handle
   them, and counts its writes; then deletes them;
1. starts vlm-operator (standalone, with its admission webhook) while the no-op keeps running, creates N objects
   again, and measures the time until all are Ready;
2. changes every object's spec at once (a rollout of all N on a cluster with no spare GPU) and measures the time
   until every one runs its new pod template; a VLMDeployment that has not finished within ``--deadline`` seconds
   while a pod of it waits for a GPU is a deadlock.

Around them run ``--unrelated`` (default 10,000) bare pods in other namespaces, bound through ``nodeName`` to
CPU-only kwok nodes the benchmark adds: an operator that streams every pod in the cluster pays for them here. Both
operators run with the same drift period (``--drift``); after the creates settle, one idle window of a little more
than that period counts the writes an idle resync makes. Our operator runs with its autoscaler off (the objects use
the default ``scaling.mode``), since the no-op does not scrape.

Writes come from the API server's own ``apiserver_request_total`` (verbs POST/PUT/PATCH/DELETE/APPLY) on the
operator's resources (vlmdeployments and their status, deployments, services, poddisruptionbudgets; not the
status subresources that the controllers write), less the benchmark's own creates and patches; the operator's
events are counted from the stored events whose reportingComponent is vlm-operator. CPU seconds
(utime + stime) and peak RSS (VmHWM) come from ``/proc`` of each operator process.

Run ``python benchmarks/operator_scale.py`` (100 on 50) or ``--full`` (1,000 on 500).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from vlm_operator.devcluster.cluster import DevCluster, NodePool, free_port

ROOT = Path(__file__).resolve().parents[1]
MUTATING = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
OPERATOR_RESOURCES = {"vlmdeployments", "deployments", "services", "poddisruptionbudgets", "events"}
NAMESPACE = "bench"


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def mutations(dev: DevCluster, st: Any) -> Counter[str]:
    """Mutating requests on the operator's resources so far, by ``resource[/subresource] VERB``."""
    text = dev.kubectl(st, "get", "--raw", "/metrics").stdout
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        res = labels.get("resource", "")
        if labels.get("verb") not in MUTATING or res not in OPERATOR_RESOURCES:
            continue
        if res == "events":
            continue  # counted from the stored events instead (see our_events): controllers post core/v1 ones too
        if labels.get("subresource") == "status" and res != "vlmdeployments":
            continue  # Deployment and PDB status: the controllers' writes
        key = res + (f"/{labels['subresource']}" if labels.get("subresource") else "") + f" {labels['verb']}"
        out[key] += int(float(line.rsplit(" ", 1)[1]))
    return out


def our_events(api: Any) -> int:
    """Events the API server stores with ``reportingComponent: vlm-operator`` (the operator's own)."""
    from kubernetes import client

    evs = client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    return sum(1 for e in evs if e.reporting_component == "vlm-operator")


def manifest(i: int, max_model_len: int = 4096) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "crds" / "samples" / "llava-1.5-7b-l4.yaml").read_text())
    doc["metadata"] = {"name": f"vlm-{i:04d}", "namespace": NAMESPACE}
    doc["spec"]["engine"]["maxModelLen"] = max_model_len
    doc["spec"]["resources"]["memory"] = "16Gi"
    return doc


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
        self.log.close()


BULK_NODES = 20


def bulk_node(i: int) -> dict[str, Any]:
    """A CPU-only kwok node that holds the unrelated pods (tainted: nothing is scheduled onto it)."""
    name = f"bulk-{i}"
    res = {"cpu": "64", "memory": "256Gi", "pods": "1000"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
        },
        "spec": {"taints": [{"key": "bench/bulk", "value": "true", "effect": "NoSchedule"}]},
        "status": {"allocatable": res, "capacity": res},
    }


def create_unrelated_pods(api: Any, count: int, namespaces: int = 10) -> float:
    """``count`` bare pods (no owner, no operator label) in ``namespaces`` namespaces, bound to the bulk nodes."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    core = client.CoreV1Api(api)
    t = time.monotonic()
    for j in range(namespaces):
        core.create_namespace({"metadata": {"name": f"other-{j}"}})

    def one(i: int) -> None:
        core.create_namespaced_pod(
            f"other-{i % namespaces}",
            {
                "metadata": {"name": f"app-{i:05d}", "labels": {"app": f"app-{i % 37}"}},
                "spec": {
                    "nodeName": f"bulk-{i % BULK_NODES}",
                    "tolerations": [{"key": "bench/bulk", "operator": "Exists"}],
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                },
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - t


def list_vlmds(api: Any) -> list[dict[str, Any]]:
    from kubernetes import client

    res: dict[str, Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "vlmops.io", "v1alpha1", NAMESPACE, "vlmdeployments"
    )
    items: list[dict[str, Any]] = res["items"]
    return items


def is_ready(o: dict[str, Any], not_hash: str | None = None) -> bool:
    st = o.get("status") or {}
    ok = st.get("observedGeneration") == o["metadata"].get("generation") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])
    )
    return ok and (not_hash is None or st.get("podTemplateHash") not in (None, not_hash))


def pending_for_gpus(api: Any) -> set[str]:
    from kubernetes import client

    owners = set()
    for p in client.CoreV1Api(api).list_namespaced_pod(NAMESPACE).items:
        if p.status.phase == "Pending" and not p.spec.node_name:
            owners.add((p.metadata.labels or {}).get("vlmops.io/deployment", "?"))
    return owners


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="1,000 VLMDeployments on 500 nodes")
    ap.add_argument("--count", type=int, help="VLMDeployments (default 100, or 1000 with --full)")
    ap.add_argument("--deadline", type=float, default=900, help="seconds a phase may take")
    ap.add_argument("--unrelated", type=int, default=10_000, help="bare pods in other namespaces (default 10,000)")
    ap.add_argument("--drift", type=float, default=30, help="both operators' drift resync period (s)")
    args = ap.parse_args()
    n = args.count or (1000 if args.full else 100)
    nodes = (n + 1) // 2

    from kubernetes import client, config

    work = Path(tempfile.mkdtemp(prefix="vlm-opscale-"))
    dev = DevCluster(f"opscale-{os.getpid()}", work / "cluster")
    procs: list[Proc] = []
    failed = False
    try:
        t = time.monotonic()
        st = dev.up([NodePool("L4", nodes, 2)], timeout=600)
        print(f"# dev cluster with {nodes} nodes x 2 L4 up in {time.monotonic() - t:.0f}s", file=sys.stderr)
        dev.kubectl(st, "apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmdeployments.yaml"))
        for _ in range(30):  # kubectl wait fails outright while the new CRD has no status yet
            est = ("--for=condition=Established", "crd/vlmdeployments.vlmops.io", "--timeout=60s")
            if dev.kubectl(st, "wait", *est, check=False, timeout=90).returncode == 0:
                break
            time.sleep(1)
        dev.kubectl(st, "create", "namespace", NAMESPACE)
        api = config.new_client_from_config(config_file=str(st.kubeconfig))
        dev.kubectl(st, "apply", "-f", "-", input=yaml.safe_dump_all([bulk_node(i) for i in range(BULK_NODES)]))
        if args.unrelated:
            took = create_unrelated_pods(api, args.unrelated)
            print(f"# {args.unrelated} unrelated pods created in {took:.0f}s", file=sys.stderr)
        crd = client.CustomObjectsApi(api)
        env = {
            **os.environ,
            "KUBECONFIG": str(st.kubeconfig),
            "PYTHONPATH": str(ROOT / "operator"),
            "VLM_OPERATOR_METRICS_PORT": "0",  # no metrics server: nothing to collide with on this machine
            "VLM_OPERATOR_DRIFT_SECONDS": str(args.drift),
        }
        loads: dict[str, str] = {}

        def load(phase: str) -> None:
            loads[phase] = " ".join(Path("/proc/loadavg").read_text().split()[:3])

        docs = yaml.safe_dump_all([manifest(i) for i in range(n)])

        # ---- phase 0: the no-op operator alone
        noop = Proc([sys.executable, str(ROOT / "benchmarks" / "noop_operator.py")], env, work / "noop.log")
        procs.append(noop)
        time.sleep(5)
        m0, c0 = mutations(dev, st), proc_cpu_seconds(noop.pid)
        dev.kubectl(st, "apply", "-f", "-", input=docs, timeout=args.deadline)
        time.sleep(20)
        noop_writes = sum((mutations(dev, st) - m0).values()) - n
        noop_cpu_create = proc_cpu_seconds(noop.pid) - c0
        dev.kubectl(st, "delete", "vlmd", "--all", "-n", NAMESPACE, "--wait=true", timeout=600)

        # ---- phase 1: vlm-operator, N objects to Ready
        op = Proc(
            [
                sys.executable,
                "-m",
                "vlm_operator",
                "operator",
                "run",
                "--standalone",
                "--webhook-port",
                str(free_port()),
            ],
            env,
            work / "operator.log",
        )
        procs.append(op)
        spy: subprocess.Popen[bytes] | None = None
        if os.environ.get("VLM_BENCH_PROFILE"):  # =out.txt: sample vlm-operator with py-spy (pip install py-spy)
            spy = subprocess.Popen(
                [
                    shutil.which("py-spy") or "py-spy",
                    "record",
                    "-r",
                    "40",
                    "-f",
                    "raw",
                    "--pid",
                    str(op.pid),
                    "-o",
                    os.environ["VLM_BENCH_PROFILE"],
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while dev.kubectl(
            st, "get", "validatingwebhookconfiguration", "vlm-operator.vlmops.io", check=False
        ).returncode:
            if time.monotonic() > deadline:
                raise SystemExit("vlm-operator did not register its webhook")
            time.sleep(1)
        m1, c1, cn1 = mutations(dev, st), proc_cpu_seconds(op.pid), proc_cpu_seconds(noop.pid)
        e1 = our_events(api)
        t1 = time.monotonic()
        dev.kubectl(st, "apply", "-f", "-", input=docs, timeout=args.deadline)
        while sum(is_ready(o) for o in list_vlmds(api)) < n:
            if time.monotonic() - t1 > args.deadline:
                raise SystemExit(f"not all {n} Ready after {args.deadline:.0f}s")
            time.sleep(1)
        ready_s = time.monotonic() - t1
        time.sleep(5)  # the last status writes and events
        load("create")
        create_writes = mutations(dev, st) - m1
        create_writes["vlmdeployments POST"] -= n  # the benchmark's own creates
        create_writes["events POST (vlm-operator's)"] = our_events(api) - e1
        # kopf's bookkeeping patches on the VLMDeployments come from both operators; the no-op's share is what it
        # wrote alone in phase 0
        create_writes["vlmdeployments PATCH"] -= noop_writes
        op_cpu_create, noop_cpu_a = proc_cpu_seconds(op.pid) - c1, proc_cpu_seconds(noop.pid) - cn1

        # ---- idle: nothing changes for a little more than one drift period; every object is resynced once
        mi, ci, cni, ei = mutations(dev, st), proc_cpu_seconds(op.pid), proc_cpu_seconds(noop.pid), our_events(api)
        time.sleep(args.drift + 10)
        idle_writes = sum((mutations(dev, st) - mi).values()) + our_events(api) - ei
        op_cpu_idle, noop_cpu_idle = proc_cpu_seconds(op.pid) - ci, proc_cpu_seconds(noop.pid) - cni
        load("idle")

        # ---- phase 2: every object's spec changes at once; no spare GPU anywhere
        hashes = {o["metadata"]["name"]: o["status"]["podTemplateHash"] for o in list_vlmds(api)}
        m2, c2, cn2 = mutations(dev, st), proc_cpu_seconds(op.pid), proc_cpu_seconds(noop.pid)
        e2 = our_events(api)
        t2 = time.monotonic()
        for name in hashes:
            crd.patch_namespaced_custom_object(
                "vlmops.io", "v1alpha1", NAMESPACE, "vlmdeployments", name, {"spec": {"engine": {"maxModelLen": 2048}}}
            )
        pending_since: dict[str, float] = {}
        longest_pending = 0.0
        while True:
            done = {o["metadata"]["name"] for o in list_vlmds(api) if is_ready(o, hashes[o["metadata"]["name"]])}
            now = time.monotonic()
            waiting = pending_for_gpus(api)
            for owner in waiting:
                pending_since.setdefault(owner, now)
            for owner in list(pending_since):
                if owner not in waiting:
                    longest_pending = max(longest_pending, now - pending_since.pop(owner))
            if len(done) == n or now - t2 > args.deadline:
                break
            time.sleep(1)
        rollout_s = time.monotonic() - t2
        longest_pending = max([longest_pending, *(time.monotonic() - s for s in pending_since.values())])
        deadlocks = sum(1 for name in hashes if name not in done and name in pending_since)
        unfinished = n - len(done)
        time.sleep(5)
        load("rollout")
        rollout_writes = mutations(dev, st) - m2
        rollout_writes["vlmdeployments PATCH"] -= n  # the benchmark's own spec changes
        rollout_writes["events POST (vlm-operator's)"] = our_events(api) - e2
        noop_rollout = min(n, rollout_writes["vlmdeployments PATCH"])  # kopf's last-handled patch, one per change
        rollout_writes["vlmdeployments PATCH"] -= noop_rollout
        op_cpu_rollout, noop_cpu_b = proc_cpu_seconds(op.pid) - c2, proc_cpu_seconds(noop.pid) - cn2
        op_rss, noop_rss = proc_peak_rss_mib(op.pid), proc_peak_rss_mib(noop.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
            spy.wait(60)

        # ---- the table
        w = 58

        def row(label: str, ours: str, noop_v: str) -> None:
            print(f"{label:<{w}}{ours:>16}{noop_v:>16}")

        print(
            f"\n{n} VLMDeployments (1 replica x 1 L4) on {nodes} simulated nodes x 2 L4: no spare GPU; "
            f"{args.unrelated} unrelated pods in 10 other namespaces\n"
        )
        row("metric", "vlm-operator", "no-op kopf")
        row("-" * (w - 2), "-" * 14, "-" * 14)
        row(f"create {n}: time until all Ready (s)", f"{ready_s:.1f}", "-")
        total = sum(create_writes.values())
        row(f"create {n}: mutating requests", str(total), str(noop_writes))
        row("create: mutating requests per object", f"{total / n:.2f}", f"{noop_writes / n:.2f}")
        events = create_writes["events POST (vlm-operator's)"]
        row("create: events per object", f"{events / n:.2f}", "0.00")
        row(f"create {n}: operator CPU (s)", f"{op_cpu_create:.1f}", f"{noop_cpu_a:.1f}")
        row("create: CPU ratio to the no-op", f"{op_cpu_create / max(noop_cpu_a, 0.01):.2f}x", "1.00x")
        row(f"idle {args.drift + 10:.0f} s (one resync each): writes", str(idle_writes), "-")
        row(f"idle {args.drift + 10:.0f} s: operator CPU (s)", f"{op_cpu_idle:.1f}", f"{noop_cpu_idle:.1f}")
        row(f"rollout of all {n} at once: time to complete (s)", f"{rollout_s:.1f}", "-")
        row(f"rollout of all {n}: unfinished / deadlocked", f"{unfinished} / {deadlocks}", "-")
        row(f"rollout of all {n}: longest wait of a pod for a GPU (s)", f"{longest_pending:.1f}", "-")
        row(f"rollout of all {n}: mutating requests", str(sum(rollout_writes.values())), f"~{noop_rollout}")
        row(f"rollout of all {n}: operator CPU (s)", f"{op_cpu_rollout:.1f}", f"{noop_cpu_b:.1f}")
        row("peak RSS over the run (MiB)", f"{op_rss:.0f}", f"{noop_rss:.0f}")
        print(f"\nload average (1/5/15 min) at the end of each phase: {loads}")
        print(f"\n(no-op kopf alone handling the {n} creates: {noop_cpu_create:.1f} s CPU, {noop_writes} writes)")
        print("\nvlm-operator's mutating requests by resource (create | rollout):")
        for key in sorted(set(create_writes) | set(rollout_writes)):
            print(f"  {key:<40}{create_writes.get(key, 0):>8}{rollout_writes.get(key, 0):>8}")
        return 0 if deadlocks == 0 and unfinished == 0 else 1
    except BaseException:
        failed = True
        raise
    finally:
        for p in reversed(procs):
            p.stop()
        dev.down()
        if failed:  # the operators' logs tell why
            print(f"# failed: the operators' logs are in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
