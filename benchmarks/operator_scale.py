"""Operator scale benchmark: N VLMDeployments on N/2 simulated GPU nodes, next to a no-op kopf operator.

It starts its own dev cluster in a temporary directory (``--nodes`` nodes × 2 L4 GPUs: exactly one GPU per
VLMDeployment of one replica, so there is no spare GPU anywhere) and, in one run:

0. starts the no-op kopf operator (``benchmarks/noop_operator.py``) alone, creates the N objects, lets it handle
   them, and counts its writes; then deletes them;
1. starts vlm-operator (standalone, with its admission webhook) while the no-op keeps running, waits until it is at
   rest (the lists of its start-up done, as the no-op's long are), creates N objects again, and measures the time
   until all are Ready;
2. changes every object's spec at once (a rollout of all N on a cluster with no spare GPU) and measures the time
   until every one runs its new pod template; a VLMDeployment that has not finished by the phase's deadline while a
   pod of it waits for a GPU is a deadlock.

Around them run ``--unrelated`` (default 10,000) bare pods in other namespaces, bound through ``nodeName`` to
CPU-only kwok nodes the benchmark adds: an operator that streams every pod in the cluster pays for them here. Both
operators run with the same drift period (``--drift``); after the creates settle, one idle window of a little more
than that period counts the writes an idle resync makes. Our operator runs with its autoscaler off (the objects use
the default ``scaling.mode``), since the no-op does not scrape.

Writes come from the API server's own ``apiserver_request_total`` (verbs POST/PUT/PATCH/DELETE/APPLY) on the
operator's resources (vlmdeployments and their status, deployments, services, poddisruptionbudgets; not the
status subresources that the controllers write), less the benchmark's own creates and patches; the operator's
events are counted from the stored events whose reportingComponent is vlm-operator. CPU seconds
(utime + stime) and peak RSS (VmHWM) come from ``/proc`` of each operator process, and of each control-plane
component for the dev cluster's own figures (start-up time, RSS after start-up and at the peak).

The harness is built to hold at 1,000 objects on a loaded 2-core machine: objects are created, patched and deleted
through the API by a few threads (with retries on a busy API server or webhook), waits poll one LIST of
VLMDeployments (and one field-selected LIST of unscheduled pods) at an interval that grows with N, each phase has a
deadline that grows with N, progress lines go to stderr, and the cluster and both operators are stopped on any
failure, Ctrl-C or SIGTERM (the work directory with both operators' logs is kept and named when a run fails).

Run ``python benchmarks/operator_scale.py`` (100 on 50), ``--full`` (1,000 on 500; not in CI) or ``--smoke`` (100
on 50 with 1,000 unrelated pods and a 15 s drift period: what CI runs; it exits non-zero when an object is not
Ready, a rollout is unfinished or deadlocked, an idle resync writes, the writes per object on create exceed
``--max-writes-per-object``, or the operator logged a traceback). ``--json PATH`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from vlm_operator.devcluster.cluster import COMPONENT_ORDER, DevCluster, NodePool, free_port

ROOT = Path(__file__).resolve().parents[1]
MUTATING = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
#: the verbs of ``apiserver_request_total`` that only read (WATCH: one per watch request, however long it streams)
READING = {"GET", "LIST", "WATCH"}
OPERATOR_RESOURCES = {"vlmdeployments", "deployments", "services", "poddisruptionbudgets", "events"}
NAMESPACE = "bench"
GROUP, VERSION, PLURAL = "vlmops.io", "v1alpha1", "vlmdeployments"
#: the no-op's diff-base annotation (benchmarks/noop_operator.py): present once the no-op handled an object
NOOP_HANDLED = "noop.vlmops.io/last-handled"
#: API threads for bulk creates, patches and deletes: enough to keep the API server busy, few enough for 2 cores
THREADS = 6
BULK_NODES = 20
UNRELATED_NAMESPACES = 10
#: HTTP codes a bulk request retries (a busy API server, a webhook that timed out under the burst)
RETRY_STATUS = {0, 429, 500, 502, 503, 504}

_T0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"# [{time.monotonic() - _T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


class PhaseFailed(Exception):
    """A phase did not finish by its deadline (or an operator died); the message says where it stopped."""


# ---- /proc -----------------------------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mib(pid: int, key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of ``pid`` in MiB; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def proc_peak_rss_mib(pid: int) -> float:
    return proc_status_mib(pid, "VmHWM")


#: How long :func:`memdump` waits for the operator to write its dump
MEMDUMP_WAIT_S = 300.0


def memdump(proc: Proc, what: str) -> None:
    """With ``VLM_BENCH_MEMDUMP=<path>`` the operator runs with ``VLM_OPERATOR_MEMDUMP=<path>`` (tracemalloc on; see
    ``vlm_operator/memdiag.py``): ask it for a dump of its top allocation sites now, and wait until it is written (a
    snapshot of a million traced blocks with several frames each takes tens of seconds on a loaded machine; the
    operator stopped before it was written would lose it)."""
    path = os.environ.get("VLM_BENCH_MEMDUMP")
    if not path:
        return
    progress(f"memory dump ({what}): {path}")
    dump = Path(path)
    before = dump.stat().st_size if dump.exists() else 0
    os.kill(proc.pid, signal.SIGUSR1)
    t0 = time.monotonic()
    while time.monotonic() - t0 < MEMDUMP_WAIT_S:
        time.sleep(1)
        if dump.exists() and dump.stat().st_size > before:
            time.sleep(1)  # the report is one write; let it finish
            progress(f"memory dump ({what}) written after {time.monotonic() - t0:.0f}s")
            return
    progress(f"memory dump ({what}) not written after {MEMDUMP_WAIT_S:.0f}s")


def settle_cpu(pid: int, idle_cpu_s: float = 0.05, quiet_for_s: float = 3.0, cap_s: float = 120.0) -> float:
    """Wait until process ``pid`` uses less than ``idle_cpu_s`` of CPU per second for ``quiet_for_s`` in a row (at
    most ``cap_s``); returns the seconds waited."""
    t0 = last_loud = time.monotonic()
    cpu = proc_cpu_seconds(pid)
    while time.monotonic() - last_loud < quiet_for_s and time.monotonic() - t0 < cap_s:
        time.sleep(1.0)
        now_cpu = proc_cpu_seconds(pid)
        if now_cpu - cpu > idle_cpu_s:
            last_loud = time.monotonic()
        cpu = now_cpu
    return time.monotonic() - t0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- the API, raw JSON (the generated models cost seconds of CPU per LIST of thousands of objects) ----------------
def read_key(method: str, path: str) -> str | None:
    """``resource[/subresource] VERB`` as ``apiserver_request_total`` counts a GET of ``path`` (LIST for a
    collection), or None for a non-resource path (``/metrics``) or a request that does not only read."""
    if method != "GET":
        return None
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return None
    rest = parts[2:] if parts[0] == "api" else parts[3:]  # drop api/v1 or apis/<group>/<version>
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        rest = rest[2:]  # namespaced: drop namespaces/<ns> (a GET of one namespace keeps it)
    if not rest:
        return None
    if len(rest) == 1:
        return f"{rest[0]} LIST"
    return f"{rest[0]}" + (f"/{rest[2]}" if len(rest) > 2 else "") + " GET"


class Raw:
    def __init__(self, api: Any) -> None:
        self.api = api
        #: the benchmark's own reads, keyed as :func:`reads` keys the API server's counts (subtracted from them)
        self.own_reads: Counter[str] = Counter()
        self._lock = threading.Lock()

    def call(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 120,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        method, url, headers, payload, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        key = read_key(method, path)
        if key is not None:
            with self._lock:
                self.own_reads[key] += 1
        resp = self.api.call_api(method, url, header_params=headers, body=payload, _request_timeout=timeout)
        resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp)
        if path == "/metrics":
            return resp.data.decode()
        return json.loads(resp.data) if resp.data else None

    def items(self, path: str, **query: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call("GET", path, query.items())["items"]
        return items


VLMD_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"


def with_retries(what: str, fn: Callable[[], None], tries: int = 8, ok_status: Iterable[int] = ()) -> None:
    """``fn()``, again after a pause when the API server or the webhook is busy (or the connection dropped)."""
    from kubernetes.client.exceptions import ApiException

    delay = 0.5
    for attempt in range(tries):
        try:
            fn()
            return
        except ApiException as exc:
            if exc.status in ok_status:
                return
            if exc.status not in RETRY_STATUS or attempt == tries - 1:
                raise
            reason = f"HTTP {exc.status}"
        except OSError as exc:  # urllib3 errors and timeouts are OSErrors
            if attempt == tries - 1:
                raise
            reason = type(exc).__name__
        progress(f"{what}: {reason}, retrying in {delay:.1f}s")
        time.sleep(delay)
        delay = min(delay * 2, 15)


def bulk(what: str, keys: list[str], fn: Callable[[str], None], ok_status: Iterable[int] = ()) -> float:
    """``fn(key)`` for every key on a few threads, with retries; progress every ~10%; returns the seconds taken."""
    t, done, lock = time.monotonic(), 0, threading.Lock()
    step = max(1, len(keys) // 10)
    ok = tuple(ok_status)

    def one(key: str) -> None:
        nonlocal done
        with_retries(f"{what} {key}", lambda: fn(key), ok_status=ok)
        with lock:
            done += 1
            if done % step == 0 or done == len(keys):
                progress(f"{what}: {done}/{len(keys)} in {time.monotonic() - t:.0f}s")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, keys))
    return time.monotonic() - t


def request_counts(raw: Raw) -> Iterator[tuple[dict[str, str], int]]:
    """The API server's ``apiserver_request_total`` so far: (labels, count) per series."""
    for line in raw.call("GET", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            yield dict(re.findall(r'(\w+)="([^"]*)"', line)), int(float(line.rsplit(" ", 1)[1]))


def request_key(labels: Mapping[str, str]) -> str:
    """``resource[/subresource] VERB`` of one ``apiserver_request_total`` series."""
    sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
    return f"{labels.get('resource', '')}{sub} {labels.get('verb', '')}"


def mutations(raw: Raw) -> Counter[str]:
    """Mutating requests on the operator's resources so far, by ``resource[/subresource] VERB``."""
    out: Counter[str] = Counter()
    for labels, count in request_counts(raw):
        res = labels.get("resource", "")
        if labels.get("verb") not in MUTATING or res not in OPERATOR_RESOURCES:
            continue
        if res == "events":
            continue  # counted from the stored events instead (see our_events): controllers post core/v1 ones too
        if labels.get("subresource") == "status" and res != "vlmdeployments":
            continue  # Deployment and PDB status: the controllers' writes
        out[request_key(labels)] += count
    return out


def reads(raw: Raw) -> Counter[str]:
    """Non-mutating requests (GET, LIST, WATCH) on every resource so far, by ``resource[/subresource] VERB``, less
    the benchmark's own (:attr:`Raw.own_reads`): the operators' and the control plane's (the controllers read through
    informers, so between their start-up LISTs they add WATCH requests, seldom a GET or LIST)."""
    out: Counter[str] = Counter()
    for labels, count in request_counts(raw):
        if labels.get("verb") not in READING or not labels.get("resource"):
            continue
        out[request_key(labels)] += count
    with raw._lock:
        out.subtract(raw.own_reads)
    return out


def reads_delta(now: Counter[str], before: Counter[str]) -> dict[str, int]:
    """``now - before`` by key, zero keys dropped (a Counter subtraction would also drop negative noise silently)."""
    return {k: v for k in sorted(set(now) | set(before)) if (v := now.get(k, 0) - before.get(k, 0))}


def per_object_reads(delta: dict[str, int], n: int) -> float:
    """GETs and LISTs per object (WATCH requests are per stream, not per object)."""
    return sum(v for k, v in delta.items() if not k.endswith(" WATCH")) / max(n, 1)


def our_events(raw: Raw) -> int:
    """Events the API server stores with ``reportingComponent: vlm-operator`` (the operator's own; a field selector
    core/v1 events support, so the controllers' thousands of events stay on the server)."""
    path = f"/api/v1/namespaces/{NAMESPACE}/events"
    return len(raw.items(path, fieldSelector="reportingComponent=vlm-operator"))


def settle(raw: Raw, quiet_s: float, cap_s: float) -> None:
    """Wait until the operators' writes stop for ``quiet_s`` (at most ``cap_s``): the last status writes and events."""
    t, last, last_change = time.monotonic(), mutations(raw), time.monotonic()
    while time.monotonic() - last_change < quiet_s and time.monotonic() - t < cap_s:
        time.sleep(min(2.0, quiet_s / 2))
        now = mutations(raw)
        if now != last:
            last, last_change = now, time.monotonic()


def manifest(i: int, max_model_len: int = 4096) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "crds" / "samples" / "llava-1.5-7b-l4.yaml").read_text())
    doc["metadata"] = {"name": f"vlm-{i:04d}", "namespace": NAMESPACE}
    doc["spec"]["engine"]["maxModelLen"] = max_model_len
    doc["spec"]["resources"]["memory"] = "16Gi"
    return doc


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log_path = name, log
        self.log = log.open("ab")
        self.p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def check(self) -> None:
        if self.p.poll() is not None:
            raise PhaseFailed(f"{self.name} exited with {self.p.returncode}; see {self.log_path}")

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
        self.log.close()

    def tracebacks(self) -> int:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith("Traceback"))


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


def unrelated_pod(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"app-{i:05d}", "labels": {"app": f"app-{i % 37}"}},
        "spec": {
            "nodeName": f"bulk-{i % BULK_NODES}",
            # every taint, for ever: kwok does not heartbeat the bulk nodes (they carry no dev-cluster label), so the
            # node lifecycle controller marks them unreachable (NoExecute) after its grace period, and a pod with the
            # default 300 s toleration would be evicted in the middle of a long run
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
        },
    }


def create_unrelated_pods(raw: Raw, count: int) -> float:
    """``count`` bare pods (no owner, no operator label) in ten namespaces, bound to the bulk nodes."""
    t = time.monotonic()
    for j in range(UNRELATED_NAMESPACES):
        with_retries(
            f"namespace other-{j}",
            lambda j=j: raw.call("POST", "/api/v1/namespaces", body={"metadata": {"name": f"other-{j}"}}),
            ok_status=[409],
        )

    def one(key: str) -> None:
        i = int(key)
        raw.call("POST", f"/api/v1/namespaces/other-{i % UNRELATED_NAMESPACES}/pods", body=unrelated_pod(i))

    bulk("unrelated pods", [str(i) for i in range(count)], one, ok_status=[409])
    return time.monotonic() - t


def list_vlmds(raw: Raw) -> list[dict[str, Any]]:
    return raw.items(VLMD_PATH)


def is_ready(o: dict[str, Any], not_hash: str | None = None) -> bool:
    st = o.get("status") or {}
    ok = st.get("observedGeneration") == o["metadata"].get("generation") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])
    )
    return ok and (not_hash is None or st.get("podTemplateHash") not in (None, not_hash))


def pending_for_gpus(raw: Raw) -> set[str]:
    """The VLMDeployments with a pod that waits for a node (Pending, unscheduled): one field-selected LIST."""
    pods = raw.items(f"/api/v1/namespaces/{NAMESPACE}/pods", fieldSelector="status.phase=Pending,spec.nodeName=")
    return {(p["metadata"].get("labels") or {}).get("vlmops.io/deployment", "?") for p in pods}


def wait_for(what: str, count: Callable[[], int], n: int, deadline_s: float, poll_s: float, procs: list[Proc]) -> float:
    """Poll ``count()`` until it reaches ``n``; a progress line when it moves (at most every 10 s) and every 30 s."""
    t = time.monotonic()
    last_k, last_line = -1, 0.0
    while True:
        k = count()
        now = time.monotonic()
        if k >= n:
            progress(f"{what}: {k}/{n} after {now - t:.0f}s")
            return now - t
        if (k != last_k and now - last_line >= 10) or now - last_line >= 30:
            progress(f"{what}: {k}/{n} after {now - t:.0f}s (load {loadavg()})")
            last_k, last_line = k, now
        if now - t > deadline_s:
            raise PhaseFailed(f"{what}: {k}/{n} after {deadline_s:.0f}s (the phase deadline)")
        for p in procs:
            p.check()
        time.sleep(poll_s)


def component_rss(st: Any, key: str) -> dict[str, float]:
    return {c: proc_status_mib(st.pids[c], key) for c in COMPONENT_ORDER}


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="1,000 VLMDeployments on 500 nodes")
    mode.add_argument(
        "--smoke",
        action="store_true",
        help="CI's smoke test: 100 on 50, 1,000 unrelated pods, 15 s drift; exits 1 when a check fails",
    )
    ap.add_argument("--count", type=int, help="VLMDeployments (default 100, or 1000 with --full)")
    ap.add_argument("--deadline", type=float, help="seconds a phase may take (default 300 + 1.5 s per object)")
    ap.add_argument("--unrelated", type=int, help="bare pods in other namespaces (default 10,000; 1,000 with --smoke)")
    ap.add_argument("--drift", type=float, help="both operators' drift resync period (s; default 30, 15 with --smoke)")
    ap.add_argument(
        "--max-writes-per-object",
        type=float,
        default=8.0,
        help="a run with more mutating requests per object on create fails (default 8; the goal is 5)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this file as JSON")
    args = ap.parse_args()
    n = args.count or (1000 if args.full else 100)
    unrelated = args.unrelated if args.unrelated is not None else (1000 if args.smoke else 10_000)
    drift = args.drift or (15.0 if args.smoke else 30.0)
    deadline = args.deadline or 300 + 1.5 * n
    poll = max(1.0, n / 250)  # one LIST of N objects every `poll` seconds: 4 s at 1,000
    nodes = (n + 1) // 2

    from kubernetes import config

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="vlm-opscale-"))
    dev = DevCluster(f"opscale-{os.getpid()}", work / "cluster")
    procs: list[Proc] = []
    res: dict[str, Any] = {"count": n, "nodes": nodes, "unrelated": unrelated, "drift_s": drift, "phase": "cluster"}
    failure: str | None = None
    cluster_pids: dict[str, int] = {}
    try:
        progress(f"starting a dev cluster with {nodes} nodes x 2 L4 in {work}")
        t = time.monotonic()
        st = dev.up([NodePool("L4", nodes, 2)], timeout=max(600, 2 * nodes))
        res["cluster_up_s"] = time.monotonic() - t
        cluster_pids.update(st.pids)
        res["cluster_rss_up_mib"] = component_rss(st, "VmRSS")
        progress(
            f"dev cluster up in {res['cluster_up_s']:.0f}s; control-plane RSS "
            f"{sum(res['cluster_rss_up_mib'].values()):.0f} MiB"
        )
        dev.kubectl(st, "apply", "--server-side", "-f", str(ROOT / "crds" / "vlmops.io_vlmdeployments.yaml"))
        for _ in range(30):  # kubectl wait fails outright while the new CRD has no status yet
            est = ("--for=condition=Established", "crd/vlmdeployments.vlmops.io", "--timeout=60s")
            if dev.kubectl(st, "wait", *est, check=False, timeout=90).returncode == 0:
                break
            time.sleep(1)
        dev.kubectl(st, "create", "namespace", NAMESPACE)
        raw = Raw(config.new_client_from_config(config_file=str(st.kubeconfig)))
        dev.kubectl(st, "apply", "-f", "-", input=yaml.safe_dump_all([bulk_node(i) for i in range(BULK_NODES)]))
        if unrelated:
            res["unrelated_create_s"] = create_unrelated_pods(raw, unrelated)
        res["cluster_rss_loaded_mib"] = component_rss(st, "VmRSS")
        env = {
            **os.environ,
            "KUBECONFIG": str(st.kubeconfig),
            "PYTHONPATH": str(ROOT / "operator"),
            "VLM_OPERATOR_METRICS_PORT": "0",  # no metrics server: nothing to collide with on this machine
            "VLM_OPERATOR_DRIFT_SECONDS": str(drift),
        }
        if os.environ.get("VLM_BENCH_MEMDUMP"):
            env["VLM_OPERATOR_MEMDUMP"] = os.environ["VLM_BENCH_MEMDUMP"]
        loads: dict[str, str] = {}
        names = [f"vlm-{i:04d}" for i in range(n)]
        docs = {name: manifest(i) for i, name in enumerate(names)}

        def create_all(what: str) -> float:
            return bulk(what, names, lambda name: raw.call("POST", VLMD_PATH, body=docs[name]), ok_status=[409])

        # ---- phase 0: the no-op operator alone
        res["phase"] = "no-op alone"
        noop = Proc(
            "the no-op operator",
            [sys.executable, str(ROOT / "benchmarks" / "noop_operator.py")],
            env,
            work / "noop.log",
        )
        procs.append(noop)
        time.sleep(5)
        m0, c0, r0 = mutations(raw), proc_cpu_seconds(noop.pid), reads(raw)
        create_all("create (no-op alone)")

        def noop_handled() -> int:
            return sum(NOOP_HANDLED in (o["metadata"].get("annotations") or {}) for o in list_vlmds(raw))

        wait_for("handled by the no-op", noop_handled, n, deadline, poll, procs)
        settle(raw, 5, 60)
        noop_writes = sum((mutations(raw) - m0).values()) - n
        noop_cpu_create = proc_cpu_seconds(noop.pid) - c0
        noop_reads = reads_delta(reads(raw), r0)  # the no-op's and the control plane's, for scale
        with_retries("delete all", lambda: raw.call("DELETE", VLMD_PATH))  # deletecollection
        wait_for("deleted", lambda: n - len(list_vlmds(raw)), n, deadline, poll, procs)

        # ---- phase 1: vlm-operator, N objects to Ready
        res["phase"] = "create"
        argv = [sys.executable, "-m", "vlm_operator", "operator", "run", "--standalone"]
        # VLM_BENCH_OPERATOR_<NAME>=<value>: <NAME>=<value> in our operator's environment only (e.g. MALLOC_ARENA_MAX)
        op_env = {
            **env,
            **{
                k.removeprefix("VLM_BENCH_OPERATOR_"): v
                for k, v in os.environ.items()
                if k.startswith("VLM_BENCH_OPERATOR_")
            },
        }
        op = Proc("vlm-operator", [*argv, "--webhook-port", str(free_port())], op_env, work / "operator.log")
        procs.append(op)
        spy: subprocess.Popen[bytes] | None = None
        if os.environ.get("VLM_BENCH_PROFILE"):  # =out.txt: sample vlm-operator with py-spy (pip install py-spy)
            spy_argv = ["record", "-r", "40", "-f", "raw", "--pid", str(op.pid), "-o", os.environ["VLM_BENCH_PROFILE"]]
            spy = subprocess.Popen(
                [shutil.which("py-spy") or "py-spy", *spy_argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        hook = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/vlm-operator.vlmops.io"

        def webhook_registered() -> int:
            try:
                raw.call("GET", hook)
                return 1
            except Exception:  # 404 until the operator registers it
                return 0

        wait_for("vlm-operator's webhook registered", webhook_registered, 1, 120, 1, procs)
        # Both operators start a phase at rest: the no-op has long listed what it watches; ours lists its watches
        # (every node and pod of the cluster for the rollouts' free-GPU count) in threads after its start-up.
        quiet_s = settle_cpu(op.pid)
        progress(f"vlm-operator at rest after {quiet_s:.0f}s (its start-up lists done)")
        res["operator_settle_s"] = round(quiet_s, 1)
        m1, c1, cn1 = mutations(raw), proc_cpu_seconds(op.pid), proc_cpu_seconds(noop.pid)
        e1, r1 = our_events(raw), reads(raw)
        t1 = time.monotonic()
        res["create_api_s"] = create_all("create (vlm-operator)")
        wait_for("Ready", lambda: sum(is_ready(o) for o in list_vlmds(raw)), n, deadline, poll, procs)
        res["ready_s"] = time.monotonic() - t1
        settle(raw, 5, 60)  # the last status writes and events
        loads["create"] = loadavg()
        res["op_rss_after_create_mib"] = proc_status_mib(op.pid, "VmRSS")
        memdump(op, "after create")
        create_writes = mutations(raw) - m1
        create_reads = reads_delta(reads(raw), r1)
        create_writes["vlmdeployments POST"] -= n  # the benchmark's own creates
        create_writes["events POST (vlm-operator's)"] = our_events(raw) - e1
        # kopf's bookkeeping patches on the VLMDeployments come from both operators; the no-op's share is what it
        # wrote alone in phase 0
        create_writes["vlmdeployments PATCH"] -= noop_writes
        op_cpu_create, noop_cpu_a = proc_cpu_seconds(op.pid) - c1, proc_cpu_seconds(noop.pid) - cn1
        res.update(
            create_writes=sum(create_writes.values()),
            create_writes_per_object=sum(create_writes.values()) / n,
            create_events=create_writes["events POST (vlm-operator's)"],
            noop_writes=noop_writes,
            op_cpu_create_s=op_cpu_create,
            noop_cpu_create_s=noop_cpu_a,
            noop_alone_cpu_create_s=noop_cpu_create,
            create_reads=create_reads,
            create_reads_per_object=per_object_reads(create_reads, n),
            noop_alone_reads=noop_reads,
            noop_alone_reads_per_object=per_object_reads(noop_reads, n),
        )

        # ---- idle: nothing changes for a little more than one drift period; every object is resynced once
        res["phase"] = "idle"
        progress(f"idle window of {drift + 10:.0f}s (one drift resync of every object)")
        mi, ci, cni, ei = mutations(raw), proc_cpu_seconds(op.pid), proc_cpu_seconds(noop.pid), our_events(raw)
        time.sleep(drift + 10)
        idle_writes = sum((mutations(raw) - mi).values()) + our_events(raw) - ei
        op_cpu_idle, noop_cpu_idle = proc_cpu_seconds(op.pid) - ci, proc_cpu_seconds(noop.pid) - cni
        loads["idle"] = loadavg()
        res.update(idle_writes=idle_writes, op_cpu_idle_s=op_cpu_idle, noop_cpu_idle_s=noop_cpu_idle)

        # ---- phase 2: every object's spec changes at once; no spare GPU anywhere
        res["phase"] = "rollout"
        hashes = {o["metadata"]["name"]: o["status"]["podTemplateHash"] for o in list_vlmds(raw)}
        m2, c2, cn2 = mutations(raw), proc_cpu_seconds(op.pid), proc_cpu_seconds(noop.pid)
        e2, r2 = our_events(raw), reads(raw)
        t2 = time.monotonic()
        change = {"spec": {"engine": {"maxModelLen": 2048}}}
        res["rollout_api_s"] = bulk(
            "spec change",
            list(hashes),
            lambda name: raw.call(
                "PATCH", f"{VLMD_PATH}/{name}", body=change, content_type="application/merge-patch+json"
            ),
        )
        pending_since: dict[str, float] = {}
        longest_pending = 0.0
        done: set[str] = set()

        def rolled_out() -> int:
            nonlocal longest_pending, done
            done = {o["metadata"]["name"] for o in list_vlmds(raw) if is_ready(o, hashes[o["metadata"]["name"]])}
            res["rollout_done"] = len(done)
            now = time.monotonic()
            waiting = pending_for_gpus(raw)
            for owner in waiting:
                pending_since.setdefault(owner, now)
            for owner in list(pending_since):
                if owner not in waiting:
                    longest_pending = max(longest_pending, now - pending_since.pop(owner))
            return len(done)

        try:
            wait_for("rolled out", rolled_out, n, deadline, poll, procs)
        except PhaseFailed as exc:  # reported in the table: unfinished and deadlocked objects
            progress(str(exc))
        rollout_s = time.monotonic() - t2
        longest_pending = max([longest_pending, *(time.monotonic() - s for s in pending_since.values())])
        deadlocks = sum(1 for name in hashes if name not in done and name in pending_since)
        unfinished = n - len(done)
        settle(raw, 5, 60)
        loads["rollout"] = loadavg()
        res["op_rss_after_rollout_mib"] = proc_status_mib(op.pid, "VmRSS")
        memdump(op, "after rollout")
        rollout_writes = mutations(raw) - m2
        rollout_reads = reads_delta(reads(raw), r2)
        rollout_writes["vlmdeployments PATCH"] -= n  # the benchmark's own spec changes
        rollout_writes["events POST (vlm-operator's)"] = our_events(raw) - e2
        noop_rollout = min(n, rollout_writes["vlmdeployments PATCH"])  # kopf's last-handled patch, one per change
        rollout_writes["vlmdeployments PATCH"] -= noop_rollout
        op_cpu_rollout, noop_cpu_b = proc_cpu_seconds(op.pid) - c2, proc_cpu_seconds(noop.pid) - cn2
        op_rss, noop_rss = proc_peak_rss_mib(op.pid), proc_peak_rss_mib(noop.pid)
        res.update(
            rollout_s=rollout_s,
            rollout_unfinished=unfinished,
            rollout_deadlocked=deadlocks,
            rollout_longest_pending_s=longest_pending,
            rollout_writes=sum(rollout_writes.values()),
            rollout_reads=rollout_reads,
            rollout_reads_per_object=per_object_reads(rollout_reads, n),
            op_cpu_rollout_s=op_cpu_rollout,
            noop_cpu_rollout_s=noop_cpu_b,
            op_peak_rss_mib=op_rss,
            noop_peak_rss_mib=noop_rss,
            cluster_rss_peak_mib=component_rss(st, "VmHWM"),
            operator_tracebacks=op.tracebacks(),
            loadavg=loads,
            phase="done",
        )
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
            spy.wait(60)

        # ---- the table
        w = 58

        def row(label: str, ours: str, noop_v: str) -> None:
            print(f"{label:<{w}}{ours:>16}{noop_v:>16}")

        print(
            f"\n{n} VLMDeployments (1 replica x 1 L4) on {nodes} simulated nodes x 2 L4: no spare GPU; "
            f"{unrelated} unrelated pods in {UNRELATED_NAMESPACES} other namespaces\n"
        )
        row("metric", "vlm-operator", "no-op kopf")
        row("-" * (w - 2), "-" * 14, "-" * 14)
        row(f"create {n}: time until all Ready (s)", f"{res['ready_s']:.1f}", "-")
        total = sum(create_writes.values())
        row(f"create {n}: mutating requests", str(total), str(noop_writes))
        row("create: mutating requests per object", f"{total / n:.2f}", f"{noop_writes / n:.2f}")
        events = create_writes["events POST (vlm-operator's)"]
        row("create: events per object", f"{events / n:.2f}", "0.00")
        row(
            "create: reads (GET+LIST) per object",
            f"{res['create_reads_per_object']:.2f}",
            f"{res['noop_alone_reads_per_object']:.2f}",
        )
        row(f"create {n}: operator CPU (s)", f"{op_cpu_create:.1f}", f"{noop_cpu_a:.1f}")
        row("create: CPU ratio to the no-op", f"{op_cpu_create / max(noop_cpu_a, 0.01):.2f}x", "1.00x")
        row(f"idle {drift + 10:.0f} s (one resync each): writes", str(idle_writes), "-")
        row(f"idle {drift + 10:.0f} s: operator CPU (s)", f"{op_cpu_idle:.1f}", f"{noop_cpu_idle:.1f}")
        row(f"rollout of all {n} at once: time to complete (s)", f"{rollout_s:.1f}", "-")
        row(f"rollout of all {n}: unfinished / deadlocked", f"{unfinished} / {deadlocks}", "-")
        row(f"rollout of all {n}: longest wait of a pod for a GPU (s)", f"{longest_pending:.1f}", "-")
        row(f"rollout of all {n}: mutating requests", str(sum(rollout_writes.values())), f"~{noop_rollout}")
        row("rollout: reads (GET+LIST) per object", f"{res['rollout_reads_per_object']:.2f}", "-")
        row(f"rollout of all {n}: operator CPU (s)", f"{op_cpu_rollout:.1f}", f"{noop_cpu_b:.1f}")
        row("rollout: CPU ratio to the no-op", f"{op_cpu_rollout / max(noop_cpu_b, 0.01):.2f}x", "1.00x")
        row("peak RSS over the run (MiB)", f"{op_rss:.0f}", f"{noop_rss:.0f}")
        row("RSS after the creates settled (MiB)", f"{res['op_rss_after_create_mib']:.0f}", "-")
        row("RSS after the rollout settled (MiB)", f"{res['op_rss_after_rollout_mib']:.0f}", "-")
        row("tracebacks in the operator's log", str(res["operator_tracebacks"]), "-")
        print(f"\nload average (1/5/15 min) at the end of each phase: {loads}")
        print(f"\n(no-op kopf alone handling the {n} creates: {noop_cpu_create:.1f} s CPU, {noop_writes} writes)")
        print("\nvlm-operator's mutating requests by resource (create | rollout):")
        for key in sorted(set(create_writes) | set(rollout_writes)):
            print(f"  {key:<40}{create_writes.get(key, 0):>8}{rollout_writes.get(key, 0):>8}")
        print(
            "\nnon-mutating requests by resource (create | rollout; the operators' and the control plane's, less the "
            "benchmark's own;\nthe no-op alone creating the same objects, for scale):"
        )
        for key in sorted(set(create_reads) | set(rollout_reads) | set(noop_reads)):
            print(
                f"  {key:<40}{create_reads.get(key, 0):>8}{rollout_reads.get(key, 0):>8}"
                f"   (no-op alone: {noop_reads.get(key, 0)})"
            )
        print_cluster(res)

        checks = {
            f"all {n} Ready": True,  # wait_for raised otherwise
            "rollout: 0 unfinished": unfinished == 0,
            "rollout: 0 deadlocked": deadlocks == 0,
            "idle resync: 0 writes": idle_writes == 0,
            f"create: <= {args.max_writes_per_object:g} writes per object": total / n <= args.max_writes_per_object,
            "operator log: 0 tracebacks": res["operator_tracebacks"] == 0,
        }
        res["checks"] = checks
        failed = [c for c, ok in checks.items() if not ok]
        print("\nchecks: " + ", ".join(f"{c}: {'ok' if ok else 'FAILED'}" for c, ok in checks.items()))
        if failed:
            failure = "failed checks: " + ", ".join(failed)
        return 1 if failed else 0
    except (PhaseFailed, KeyboardInterrupt) as exc:
        failure = f"stopped in phase {res['phase']!r}: {exc or type(exc).__name__}"
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    except BaseException as exc:
        failure = f"stopped in phase {res['phase']!r}: {type(exc).__name__}: {exc}"
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the teardown short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if failure:
            res["failure"] = failure
            for p in procs:
                res[f"tracebacks_{p.name}"] = p.tracebacks()
                res[f"peak_rss_mib_{p.name}"] = proc_peak_rss_mib(p.pid)
                res[f"cpu_s_{p.name}"] = proc_cpu_seconds(p.pid) if p.p.poll() is None else None
            if cluster_pids and "cluster_rss_peak_mib" not in res:
                res["cluster_rss_peak_mib"] = {c: proc_status_mib(pid, "VmHWM") for c, pid in cluster_pids.items()}
        for p in reversed(procs):
            p.stop()
        progress("stopping the dev cluster")
        dev.down()
        if args.json:
            args.json.write_text(json.dumps(res, indent=2, sort_keys=True, default=str))
        if failure:  # the operators' logs tell why
            print(f"\n{failure}", file=sys.stderr)
            if res["phase"] != "done":
                print(f"figures so far: {json.dumps(res, sort_keys=True, default=str)}", file=sys.stderr)
            print(f"# the operators' logs are in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_cluster(res: dict[str, Any]) -> None:
    """The dev cluster's own figures: start-up time and RSS per control-plane component."""
    up, loaded, peak = res["cluster_rss_up_mib"], res["cluster_rss_loaded_mib"], res["cluster_rss_peak_mib"]
    head = f"dev cluster with {res['nodes']} nodes x 2 L4 (+{BULK_NODES} CPU nodes)"
    print(f"\n{head}: up and Ready in {res['cluster_up_s']:.0f} s")
    if "unrelated_create_s" in res:
        print(f"{res['unrelated']} unrelated pods created in {res['unrelated_create_s']:.0f} s")
    print(f"{'control-plane RSS (MiB)':<28}{'after up':>12}{'+ pods':>12}{'peak':>12}")
    for comp in COMPONENT_ORDER:
        print(f"{comp:<28}{up[comp]:>12.0f}{loaded[comp]:>12.0f}{peak[comp]:>12.0f}")
    print(f"{'total':<28}{sum(up.values()):>12.0f}{sum(loaded.values()):>12.0f}{sum(peak.values()):>12.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
