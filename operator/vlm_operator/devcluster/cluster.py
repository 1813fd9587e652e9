"""Start, inspect and stop the local control plane.

Processes: etcd, kube-apiserver (authorization ``Node,RBAC``), kube-controller-manager, kube-scheduler and kwok,
all on 127.0.0.1 with ports picked at start. Flags follow kwokctl's binary runtime adapted to loopback
(docs/architecture.md, "Local cluster"). Every process runs in its own session; its PID and the binary it ran are
recorded in ``state.json`` so that ``down`` (and an ``up`` after a crash) signals exactly those processes and
nothing else.

Networking: simulated pods get IPs from a loopback pool so a test can serve a pod's ``/metrics`` on the pod's own
address. Each running cluster claims its own /16 of 127.0.0.0/8 (``127.100.0.0/16`` first, see ``claim_pod_cidr``), so
clusters side by side on one machine (parallel test workers, the portable tier's second cluster) never hand out the
same pod IP and never bind each other's simulators. Services get cluster IPs from a non-routed benchmarking range
that nothing ever dials: there is no kube-proxy, and Kubernetes refuses loopback addresses in EndpointSlices, so
Services here have no endpoints. Clients on the local cluster reach pods by pod IP.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vlm_operator import gpus
from vlm_operator.conditions import condition_true
from vlm_operator.devcluster import build, pki

#: Simulated pod IPs (kwok --cidr). Loopback, so a simulator can bind to a pod's IP on this machine. The first
#: cluster on a machine gets this range; further clusters running at the same time get 127.101.0.0/16, 127.102...
POD_CIDR = "127.100.0.0/16"
#: Second octets of the loopback /16 ranges a cluster may claim (``claim_pod_cidr``).
POD_RANGE_OCTETS = range(100, 255)
#: Service cluster IPs: RFC 2544's benchmarking range. Allocated by the API server but never dialled.
SERVICE_CIDR = "198.18.0.0/16"
SERVICE_IP = "198.18.0.1"
#: kwokctl's default heartbeat factor 5 (lease 200 s, monitor 25 s / 3m20s) keeps background writes low on 2 cores.
NODE_LEASE_SECONDS = 200
LABEL_POOL = "vlmops.io/dev-pool"
LABEL_MANAGED = "vlmops.io/dev-cluster"

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


#: Environment variable: the GOGC of the cluster's Go components (unset: Go's default, 100). On the 2-core test
#: machine the suite's clusters are a large part of its CPU; with 400 the 100-object smoke benchmark's API server used
#: a third less CPU (49 -> 33 s) and peaked at 1.4 GiB instead of 0.6.
GOGC_ENV = "VLM_DEVCLUSTER_GOGC"


class ClusterError(RuntimeError):
    """The dev cluster could not start or answer; the message says which component and where its log is."""


@dataclass(frozen=True)
class NodePool:
    """``count`` simulated nodes, each with ``gpus_per_node`` boards of one product, or with that many MIG slices of
    one profile (``mig``: the GPU operator's mixed strategy, ``nvidia.com/mig-<profile>``)."""

    product: str
    count: int
    gpus_per_node: int
    mig: str | None = None

    @classmethod
    def parse(cls, text: str) -> NodePool:
        """``PRODUCT[/MIG]:NODES:PER_NODE``, e.g. ``L4:2:4``, ``NVIDIA-H100-80GB-HBM3:1:8``, or
        ``A100-80GB/3g.40gb:1:2`` (one node offering two 3g.40gb slices)."""
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"--pool {text!r}: expected PRODUCT[/MIG]:NODES:PER_NODE, for example L4:2:4")
        product, _, mig = parts[0].partition("/")
        p = gpus.lookup(product)
        if mig:
            try:
                p.mig(mig)
            except gpus.UnknownGPUError as exc:
                raise ValueError(f"--pool {text!r}: {exc}") from None
        try:
            count, per = int(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"--pool {text!r}: NODES and PER_NODE must be integers, for example L4:2:4") from None
        if count < 1 or per < 1:
            raise ValueError(f"--pool {text!r}: NODES and PER_NODE must be at least 1")
        return cls(product, count, per, mig or None)

    @property
    def gpu(self) -> gpus.GPUProduct:
        return gpus.lookup(self.product)

    @property
    def slug(self) -> str:
        base = self.gpu.short_name.lower().replace(".", "-")
        return f"{base}-mig-{self.mig.replace('.', '-')}" if self.mig else base


DEFAULT_POOLS = (NodePool("L4", 2, 4), NodePool("H100-80GB", 1, 8))


def default_workdir(name: str) -> Path:
    return build.cache_root() / "clusters" / name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class State:
    """What ``state.json`` records about a running cluster."""

    name: str
    workdir: str
    bin_dir: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    pools: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    args: dict[str, list[str]] = field(default_factory=dict)  # each component's command line, for restart()
    pod_cidr: str = POD_CIDR  # this cluster's claimed loopback range (claim_pod_cidr)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.workdir) / "kubeconfig.yaml"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"


#: Start order; ``down`` stops in reverse.
COMPONENT_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def _pid_alive(pid: int, binary: str) -> bool:
    """True if ``pid`` runs and is still our ``binary`` (guards against PID reuse).

    ``/proc/PID/exe`` is read rather than ``cmdline``: a Go process's cmdline reads back empty now and then.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return False
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return os.path.basename(exe.removesuffix(" (deleted)")) == binary


def _wait_exit(pid: int, binary: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # reap it if it is our child (a pytest fixture starts them from this process)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _pid_alive(pid, binary):
            return True
        time.sleep(0.1)
    return False


def _stop_pid(pid: int, binary: str, grace: float = 10.0) -> None:
    if not _pid_alive(pid, binary):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if _wait_exit(pid, binary, grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _wait_exit(pid, binary, 5.0)


def pod_ranges_dir() -> Path:
    """Machine-wide record of which loopback pod range each running dev cluster holds (one file per range)."""
    return build.cache_root() / "pod-ranges"


def _claim_alive(claim: dict[str, Any]) -> bool:
    """A claim holds while its cluster's work directory exists and either the process that claimed it (during
    ``up``) or the cluster's kwok (afterwards) still runs; ``down`` removes the directory, a crash kills kwok."""
    workdir = Path(str(claim.get("workdir", "")))
    if not claim.get("workdir") or not workdir.is_dir():
        return False
    owner = claim.get("owner")
    if isinstance(owner, int) and owner > 0 and _pid_running(owner):
        return True
    try:
        st = json.loads((workdir / "state.json").read_text())
        kwok = int(st["pids"]["kwok"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _pid_alive(kwok, "kwok")


def _pid_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def running_kwok_cidrs() -> set[str]:
    """The ``--cidr`` of every kwok running on this machine, claimed or not (a cluster started by an older checkout
    records no claim but still hands out its range)."""
    found: set[str] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0].decode(errors="replace")) == "kwok":
            found.update(a.decode(errors="replace").removeprefix("--cidr=") for a in args if a.startswith(b"--cidr="))
    return found


def claim_pod_cidr(workdir: Path) -> str:
    """Claim the first loopback /16 that no other running dev cluster on this machine holds, for ``workdir``.

    Claims are files under ``pod_ranges_dir()``, taken under an exclusive ``flock``; a claim whose cluster is gone
    (work directory removed, or neither its claimant nor its kwok running) is taken over. A range some running kwok
    already serves is skipped even without a claim."""
    root = pod_ranges_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        served = running_kwok_cidrs()
        for octet in POD_RANGE_OCTETS:
            path = root / f"127.{octet}.0.0_16.json"
            try:
                claim = json.loads(path.read_text())
            except (OSError, ValueError):
                claim = None
            mine = isinstance(claim, dict) and claim.get("workdir") == str(workdir)
            if isinstance(claim, dict) and not mine and _claim_alive(claim):
                continue
            if not mine and f"127.{octet}.0.0/16" in served:
                continue
            path.write_text(json.dumps({"workdir": str(workdir), "owner": os.getpid()}))
            return f"127.{octet}.0.0/16"
    raise ClusterError(
        f"every loopback pod range 127.{POD_RANGE_OCTETS[0]}-{POD_RANGE_OCTETS[-1]}.0.0/16 is held by a running dev "
        f"cluster (claims in {root}); stop some with `vlmctl dev-cluster down`"
    )


def release_pod_cidr(workdir: Path) -> None:
    """Drop the claims ``workdir`` holds (``down``)."""
    root = pod_ranges_dir()
    if not root.is_dir():
        return
    with (root / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in root.glob("127.*.json"):
            try:
                claim = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(claim, dict) and claim.get("workdir") == str(workdir):
                path.unlink(missing_ok=True)


class DevCluster:
    """One local control plane, identified by its work directory."""

    def __init__(self, name: str = "vlm-dev", workdir: Path | None = None, log: Log = _quiet) -> None:
        self.name = name
        self.workdir = (workdir or default_workdir(name)).resolve()
        self.log = log

    # -- state -------------------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    def load_state(self) -> State | None:
        try:
            return State(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, st: State) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(st), indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def alive_components(self, st: State) -> dict[str, bool]:
        return {c: c in st.pids and _pid_alive(st.pids[c], c) for c in COMPONENT_ORDER}

    def is_healthy(self, st: State | None = None) -> bool:
        st = st or self.load_state()
        if st is None or not all(self.alive_components(st).values()):
            return False
        try:
            return self._get(f"{st.server}/readyz", self._ssl(st)) == 200
        except OSError:
            return False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def up(self, pools: Sequence[NodePool] = DEFAULT_POOLS, timeout: float = 180.0) -> State:
        """Start the cluster (or return the running one) and make sure the requested GPU nodes are Ready."""
        st = self.load_state()
        if st is not None and self.is_healthy(st):
            self.log(f"dev cluster {self.name!r} is already running ({st.server})")
        else:
            if st is not None or self.workdir.exists():
                self.log(f"cleaning stale state of dev cluster {self.name!r} in {self.workdir}")
                self.down()
            bins = build.ensure_binaries(log=self.log)
            st = self._start_with_fresh_ports(bins, timeout)
        self._ensure_nodes(st, pools, timeout)
        st.pools = [asdict(p) for p in pools]
        self._save(st)
        return st

    #: How many times a start-up that lost one of its ports to another process is tried again with new ports.
    PORT_RETRIES = 2

    def _start_with_fresh_ports(self, bins: Path, timeout: float) -> State:
        """:meth:`_start`, again with new ports when a component could not listen on the port it was given: the ports
        are picked free (:func:`free_port`) but only bound by the component a few seconds later, and another cluster
        starting beside this one (parallel test workers, a benchmark) can take one meanwhile."""
        for attempt in range(self.PORT_RETRIES + 1):
            try:
                return self._start(bins, timeout)
            except ClusterError as exc:
                if "address already in use" not in str(exc) or attempt == self.PORT_RETRIES:
                    raise
                self.log(f"a port of dev cluster {self.name!r} was taken meanwhile; starting again with new ports")
                self.down()
        raise AssertionError("unreachable")

    def down(self) -> list[str]:
        """Stop every process this cluster started (by recorded PID) and remove its work directory."""
        stopped: list[str] = []
        st = self.load_state()
        if st is not None:
            for comp in reversed(COMPONENT_ORDER):
                pid = st.pids.get(comp)
                if pid is not None and _pid_alive(pid, comp):
                    self.log(f"stopping {comp} (pid {pid})")
                    _stop_pid(pid, comp)
                    stopped.append(comp)
        else:
            # A crash before state.json was written still leaves pid files behind.
            for pidfile in sorted((self.workdir / "pids").glob("*.pid")) if self.workdir.exists() else []:
                comp = pidfile.stem
                with contextlib.suppress(ValueError, OSError):
                    pid = int(pidfile.read_text().strip())
                    if _pid_alive(pid, comp):
                        _stop_pid(pid, comp)
                        stopped.append(comp)
        shutil.rmtree(self.workdir, ignore_errors=True)
        release_pod_cidr(self.workdir)
        return stopped

    def restart(self, comp: str, pause: float = 0.0, timeout: float = 60.0) -> None:
        """Stop one component (SIGTERM, then SIGKILL), wait ``pause`` seconds, start it again with the same command
        line and wait until it is healthy: the outage a control-plane upgrade or a crash causes."""
        st = self.load_state()
        if st is None or comp not in st.args:
            raise RuntimeError(f"dev cluster {self.name!r} has no recorded {comp} to restart")
        _stop_pid(st.pids[comp], comp)
        time.sleep(pause)
        self._spawn(st, comp, st.args[comp])
        if comp == "etcd":
            self._wait_url(st, comp, f"http://127.0.0.1:{st.ports['etcd']}/health", None, timeout)
        elif comp == "kube-apiserver":
            self._wait_url(st, comp, f"{st.server}/readyz", self._ssl(st), timeout)

    def status(self) -> dict[str, Any]:
        st = self.load_state()
        if st is None:
            return {"name": self.name, "running": False, "workdir": str(self.workdir)}
        out: dict[str, Any] = {
            "name": self.name,
            "running": self.is_healthy(st),
            "workdir": st.workdir,
            "server": st.server,
            "kubeconfig": str(st.kubeconfig),
            "components": {
                c: {"pid": st.pids.get(c), "alive": alive} for c, alive in self.alive_components(st).items()
            },
            "pools": st.pools,
        }
        if out["running"]:
            res = self.kubectl(st, "get", "nodes", "-l", LABEL_MANAGED, "-o", "json", check=False)
            if res.returncode == 0:
                out["nodes"] = [
                    {
                        "name": n["metadata"]["name"],
                        "product": n["metadata"]["labels"].get("nvidia.com/gpu.product"),
                        "gpus": n["status"].get("allocatable", {}).get("nvidia.com/gpu"),
                        "ready": condition_true(n["status"], "Ready"),
                    }
                    for n in json.loads(res.stdout)["items"]
                ]
        return out

    def env(self) -> dict[str, str]:
        st = self.load_state()
        if st is None:
            raise ClusterError(f"dev cluster {self.name!r} is not running; start it with `vlmctl dev-cluster up`")
        return {"KUBECONFIG": str(st.kubeconfig), "VLM_DEV_CLUSTER_BIN": st.bin_dir}

    def kubectl(
        self, st: State, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(Path(st.bin_dir) / "kubectl"), "--kubeconfig", str(st.kubeconfig), *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    # -- internals ---------------------------------------------------------------------------------------------
    def _ssl(self, st: State) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(Path(st.workdir) / "pki" / "ca.crt"))

    @staticmethod
    def _get(url: str, ctx: ssl.SSLContext | None) -> int:
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                status: int = resp.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    def _wait_url(self, st: State, comp: str, url: str, ctx: ssl.SSLContext | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not _pid_alive(st.pids[comp], comp):
                raise ClusterError(f"{comp} exited during start-up; see {self._log_path(comp)}:\n{self._tail(comp)}")
            try:
                code = self._get(url, ctx)
                if code == 200:
                    return
                last = f"HTTP {code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ClusterError(
            f"{comp} did not become ready at {url} within {timeout:.0f}s ({last}); see {self._log_path(comp)}:\n"
            f"{self._tail(comp)}"
        )

    def _log_path(self, comp: str) -> Path:
        return self.workdir / "logs" / f"{comp}.log"

    def _tail(self, comp: str, lines: int = 15) -> str:
        try:
            return "\n".join(self._log_path(comp).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _spawn(self, st: State, comp: str, args: list[str]) -> None:
        logf = self._log_path(comp).open("ab")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}  # no stray ~/.kwok
        gogc = os.environ.get(GOGC_ENV, "").strip()
        if gogc:  # the Go collector's target (GOGC): a higher one trades memory for CPU (hack/test.sh sets 400)
            env["GOGC"] = gogc
        proc = subprocess.Popen(
            [str(Path(st.bin_dir) / comp), *args],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        logf.close()
        st.pids[comp] = proc.pid
        st.args[comp] = list(args)
        (self.workdir / "pids" / f"{comp}.pid").write_text(str(proc.pid))
        self._save(st)
        self.log(f"started {comp} (pid {proc.pid})")

    def _start(self, bins: Path, timeout: float) -> State:
        t0 = time.monotonic()
        for sub in ("pki", "logs", "pids", "etcd"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        ports = {k: free_port() for k in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kwok")}
        st = State(self.name, str(self.workdir), str(bins), ports, started_at=time.time())
        st.pod_cidr = claim_pod_cidr(self.workdir)
        self._save(st)
        keys = pki.generate(self.workdir / "pki", SERVICE_IP)
        pki.write_kubeconfig(st.kubeconfig, self.name, st.server, keys)
        P, W = keys, self.workdir
        ec, ep = ports["etcd"], ports["etcd_peer"]
        self._spawn(
            st,
            "etcd",
            [
                "--name=node0",
                f"--data-dir={W / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ec}",
                f"--advertise-client-urls=http://127.0.0.1:{ec}",
                f"--listen-peer-urls=http://127.0.0.1:{ep}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ep}",
                f"--initial-cluster=node0=http://127.0.0.1:{ep}",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=8589934592",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait_url(st, "etcd", f"http://127.0.0.1:{ec}/health", None, 30)
        self._spawn(
            st,
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{ec}",
                "--etcd-prefix=/registry",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--tls-cert-file={P.admin_crt}",
                f"--tls-private-key-file={P.admin_key}",
                f"--client-ca-file={P.ca_crt}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={P.admin_key}",
                f"--service-account-signing-key-file={P.admin_key}",
                # kwokctl --disable-qps-limits: no in-flight caps and no APF, for 2-core machines
                "--max-requests-inflight=0",
                "--max-mutating-requests-inflight=0",
                "--enable-priority-and-fairness=false",
            ],
        )
        self._wait_url(st, "kube-apiserver", f"{st.server}/readyz", self._ssl(st), timeout)
        common = [
            f"--kubeconfig={st.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--kube-api-qps=5000",
            "--kube-api-burst=10000",
        ]
        self._spawn(
            st,
            "kube-controller-manager",
            [
                *common,
                f"--secure-port={ports['kcm']}",
                f"--root-ca-file={P.ca_crt}",
                f"--service-account-private-key-file={P.admin_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--node-monitor-period=25s",
                "--node-monitor-grace-period=3m20s",
                # Kubernetes refuses loopback pod IPs in Endpoints and EndpointSlices, so these controllers would only
                # retry and post FailedToUpdateEndpoint events forever; Services have no endpoints here anyway.
                "--controllers=*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller",
                # Failed pods are garbage-collected past this count; keep it low so crash-loop churn stays small.
                "--terminated-pod-gc-threshold=50",
            ],
        )
        self._spawn(st, "kube-scheduler", [*common, f"--secure-port={ports['scheduler']}"])
        kwok_cfg = self.workdir / "kwok.yaml"
        stages = [build.default_stages_file(bins).read_text()]
        stages.append(resources.files("vlm_operator.devcluster").joinpath("stages.yaml").read_text())
        kwok_cfg.write_text("\n---\n".join(stages))
        self._spawn(
            st,
            "kwok",
            [
                f"--kubeconfig={st.kubeconfig}",
                f"--config={kwok_cfg}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-label-selector={LABEL_MANAGED}",
                f"--tls-cert-file={P.admin_crt}",
                f"--tls-private-key-file={P.admin_key}",
                "--node-ip=127.0.0.1",
                "--node-name=localhost",
                f"--node-port={ports['kwok']}",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
                f"--cidr={st.pod_cidr}",
            ],
        )
        insecure = ssl._create_unverified_context()  # the KCM and scheduler serve self-signed health endpoints
        self._wait_url(st, "kube-controller-manager", f"https://127.0.0.1:{ports['kcm']}/healthz", insecure, 60)
        self._wait_url(st, "kube-scheduler", f"https://127.0.0.1:{ports['scheduler']}/healthz", insecure, 60)
        self._wait_url(st, "kwok", f"http://127.0.0.1:{ports['kwok']}/healthz", None, 60)
        # Pods created directly need the default ServiceAccount, which the KCM creates.
        self._wait_for(
            lambda: self.kubectl(st, "get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            "the default ServiceAccount",
            60,
        )
        self.log(f"control plane ready in {time.monotonic() - t0:.1f}s at {st.server}")
        return st

    def _wait_for(self, pred: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.5)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")

    def _ensure_nodes(self, st: State, pools: Sequence[NodePool], timeout: float) -> None:
        docs = [node for pool in pools for node in node_manifests(pool)]
        names = [d["metadata"]["name"] for d in docs]
        listed = self.kubectl(st, "get", "nodes", "-l", LABEL_MANAGED, "-o", "json")
        existing = {n["metadata"]["name"] for n in json.loads(listed.stdout)["items"]}
        new = [d for d in docs if d["metadata"]["name"] not in existing]
        if new:
            self.kubectl(st, "create", "-f", "-", input=yaml.safe_dump_all(new))
            self.log(f"created {len(new)} simulated GPU node(s): {', '.join(d['metadata']['name'] for d in new)}")

        def all_ready() -> bool:
            res = self.kubectl(st, "get", "nodes", "-o", "json", check=False)
            if res.returncode != 0:
                return False
            ready = {
                n["metadata"]["name"]
                for n in json.loads(res.stdout)["items"]
                if condition_true(n["status"], "Ready")
                and not any(t["key"] == "node.kubernetes.io/not-ready" for t in n["spec"].get("taints", []))
            }
            return set(names) <= ready

        self._wait_for(all_ready, f"GPU nodes {', '.join(names)} to be Ready", timeout)


def node_manifests(pool: NodePool) -> list[dict[str, Any]]:
    """Node objects for one pool: GFD labels, allocatable GPUs and the ``nvidia.com/gpu`` NoSchedule taint."""
    product = pool.gpu
    nodes = []
    for i in range(pool.count):
        name = f"gpu-{pool.slug}-{pool.gpus_per_node}x-{i}"
        res = {
            "cpu": str(max(8, 16 * pool.gpus_per_node)),
            "memory": f"{max(64, 128 * pool.gpus_per_node)}Gi",
            "ephemeral-storage": "2Ti",
            "pods": "110",
            "nvidia.com/gpu": "0" if pool.mig else str(pool.gpus_per_node),
        }
        mig_labels: dict[str, str] = {}
        if pool.mig:  # mixed strategy: the slices are their own resource; GFD keeps the parent product label
            res[gpus.mig_resource(pool.mig)] = str(pool.gpus_per_node)
            mig_labels = {
                "nvidia.com/mig.strategy": "mixed",
                f"{gpus.mig_resource(pool.mig)}.count": str(pool.gpus_per_node),
            }
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "node.kubernetes.io/instance-type": f"sim-{pool.gpus_per_node}x{pool.slug}",
                        LABEL_MANAGED: "true",
                        LABEL_POOL: pool.slug,
                        **gpus.node_labels(product, pool.gpus_per_node),
                        **mig_labels,
                    },
                },
                "spec": {
                    "providerID": f"kwok://{name}",
                    "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                },
                "status": {
                    "allocatable": res,
                    "capacity": res,
                    "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
                },
            }
        )
    return nodes
