"""Shared fixtures: one real control plane per test session, a fresh namespace per test.

By default the session starts its own local dev cluster (real etcd, kube-apiserver, controller-manager, scheduler,
kwok GPU nodes) in a temporary directory and stops it at the end. With ``VLM_TEST_KUBECONFIG=path`` the fixtures use
that existing cluster instead; a stray ``KUBECONFIG`` is never used, so tests cannot touch a cluster by accident.
Tests that need the local cluster's extras (KWOK stages, loopback pod IPs) are marked ``local_only`` and are skipped
on an external cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Tests send traffic to loopback only: a Hub lookup that a test forgot to point at the fake Hub (tests/fakehub.py)
# fails on a closed loopback port instead of reaching huggingface.co.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")

EXTERNAL_ENV = "VLM_TEST_KUBECONFIG"
#: Pools of the session cluster: every product the samples ask for, so each sample lands on its own pool.
TEST_POOLS = ("L4:2:4", "L40S:1:4", "A100-80GB:1:8", "H100-80GB:1:8", "A100-80GB/3g.40gb:1:2")


@dataclass
class Cluster:
    """A real cluster the tests talk to."""

    kubeconfig: Path
    kubectl_bin: str
    local: bool
    _api_client: Any = field(default=None, repr=False)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res

    def get_json(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, read in this process for the forms the tests use (a kind from
        :data:`KINDS`, at most one name, ``-n``, ``-l``, ``--field-selector``, ``--show-managed-fields``): each
        kubectl run costs about 60 ms of CPU, and the tests poll. The result is what kubectl prints: one object, or
        a ``List`` whose items carry their apiVersion and kind, without managedFields unless asked for. Other forms
        run kubectl."""
        request = _get_request(args)
        if request is None:
            return json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        path, query, api_version, kind, keep_managed = request
        try:
            found = self._kube().request("GET", path, query=query)
        except Exception as exc:  # kubectl's failure: the test sees the same AssertionError
            status = getattr(exc, "status", None)
            raise AssertionError(f"kubectl get {' '.join(args)} failed ({status}):\n{exc}") from exc
        if "items" not in found:
            return _without_managed_fields(found, keep_managed)
        items = [
            _without_managed_fields({"apiVersion": api_version, "kind": kind, **item}, keep_managed)
            for item in found["items"]
        ]
        return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """``kubectl get KIND NAME`` succeeds (read in this process, see :meth:`get_json`)."""
        found = _get_request((kind, name, *(("-n", namespace) if namespace else ())))
        assert found is not None, f"{kind} is not in KINDS"
        try:
            self._kube().request("GET", found[0])
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise
        return True

    def _kube(self) -> Any:
        from vlm_operator.kube import Kube

        return Kube(self.api_client)

    @property
    def api_client(self) -> Any:
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api_client


def wait_until(pred: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll ``pred`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


#: The kinds :meth:`Cluster.get_json` reads itself, by the names the tests give kubectl: (apiVersion, plural, kind,
#: namespaced).
KINDS: dict[str, tuple[str, str, str, bool]] = {}
for _names, _entry in (
    (("vlmd", "vlmdeployment", "vlmdeployments"), ("vlmops.io/v1alpha1", "vlmdeployments", "VLMDeployment", True)),
    (("vlmbj", "vlmbatchjob", "vlmbatchjobs"), ("vlmops.io/v1alpha1", "vlmbatchjobs", "VLMBatchJob", True)),
    (("deployment", "deployments", "deploy"), ("apps/v1", "deployments", "Deployment", True)),
    (("replicaset", "replicasets", "rs"), ("apps/v1", "replicasets", "ReplicaSet", True)),
    (("pod", "pods", "po"), ("v1", "pods", "Pod", True)),
    (("event", "events", "ev"), ("v1", "events", "Event", True)),
    (("service", "services", "svc"), ("v1", "services", "Service", True)),
    (("secret", "secrets"), ("v1", "secrets", "Secret", True)),
    (("configmap", "configmaps", "cm"), ("v1", "configmaps", "ConfigMap", True)),
    (("resourcequota", "resourcequotas", "quota"), ("v1", "resourcequotas", "ResourceQuota", True)),
    (
        ("pvc", "persistentvolumeclaim", "persistentvolumeclaims"),
        ("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ),
    (("job", "jobs"), ("batch/v1", "jobs", "Job", True)),
    (
        ("pdb", "poddisruptionbudget", "poddisruptionbudgets"),
        ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    ),
    (("kopfpeering", "kopfpeerings"), ("kopf.dev/v1", "kopfpeerings", "KopfPeering", True)),
    (("node", "nodes", "no"), ("v1", "nodes", "Node", False)),
    (("namespace", "namespaces", "ns"), ("v1", "namespaces", "Namespace", False)),
    (
        ("crd", "customresourcedefinition", "customresourcedefinitions"),
        ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    ),
    (("clusterrole", "clusterroles"), ("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False)),
    (
        ("validatingwebhookconfiguration", "validatingwebhookconfigurations"),
        ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
    ),
):
    for _name in _names:
        KINDS[_name] = _entry


def _get_request(args: tuple[str, ...]) -> tuple[str, list[tuple[str, str]], str, str, bool] | None:
    """The GET that ``kubectl get ARGS`` makes, as (path, query, apiVersion, kind, keep managedFields), or None for a
    form this does not read itself."""
    from vlm_operator.kube import api_base

    positional: list[str] = []
    namespace: str | None = None
    query: list[tuple[str, str]] = []
    keep_managed = False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-n", "--namespace", "-l", "--selector", "--field-selector") and rest:
            value = rest.pop(0)
            if arg in ("-n", "--namespace"):
                namespace = value
            else:
                query.append(("fieldSelector" if arg == "--field-selector" else "labelSelector", value))
        elif arg == "--show-managed-fields":
            keep_managed = True
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
    if not positional or len(positional) > 2 or positional[0] not in KINDS:
        return None
    api_version, plural, kind, namespaced = KINDS[positional[0]]
    path = api_base(api_version)
    if namespaced:
        path += f"/namespaces/{namespace or 'default'}"
    path += f"/{plural}"
    if len(positional) == 2:
        if query:
            return None  # kubectl refuses a name with a selector
        path += f"/{positional[1]}"
    return path, query, api_version, kind, keep_managed


def _without_managed_fields(obj: dict[str, Any], keep: bool) -> dict[str, Any]:
    # kubectl drops metadata.managedFields from what it prints unless --show-managed-fields (kubectl >= 1.21)
    if not keep and isinstance(obj.get("metadata"), dict) and "managedFields" in obj["metadata"]:
        obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return obj


def _find_kubectl() -> str:
    from vlm_operator.devcluster import build

    local = build.bin_dir() / "kubectl"
    if local.exists():
        return str(local)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("no kubectl: run `vlmctl dev-cluster build` or put kubectl on PATH")
    return found


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        yield Cluster(Path(external), _find_kubectl(), local=False)
        return
    from vlm_operator.devcluster.cluster import DevCluster, NodePool

    workdir = Path(tempfile.mkdtemp(prefix="vlm-pytest-"))
    dev = DevCluster(f"pytest-{os.getpid()}", workdir / "cluster", log=lambda m: print(m, flush=True))
    try:
        st = dev.up([NodePool.parse(p) for p in TEST_POOLS])
        yield Cluster(st.kubeconfig, str(Path(st.bin_dir) / "kubectl"), local=True)
    finally:
        dev.down()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube = cluster._kube()
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        try:
            kube.request("DELETE", f"/api/v1/namespaces/{name}")  # returns at once, as `kubectl delete --wait=false`
        except Exception as exc:
            print(f"deleting namespace {name}: {exc}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get(EXTERNAL_ENV):
        return
    skip = pytest.mark.skip(reason=f"local_only: needs the local dev cluster, not {EXTERNAL_ENV}")
    for item in items:
        if "local_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned Helm binary (``vlmctl dev-cluster build --helm``), built from the Go module proxy when absent."""
    from vlm_operator.devcluster import build

    return build.ensure_helm(log=lambda m: print(m, flush=True))


# --- Parallel runs (pytest-xdist) ---------------------------------------------------------------------------------
# `pytest -n N --dist loadfile` gives each worker whole files, and each worker starts its own session cluster (the
# ``cluster`` fixture above), so module-scoped operators never share a cluster. ``CostScheduling`` is loadfile with
# two changes that shorten the critical path: the costliest files (tests/test_costs.json, written from a run's JUnit
# XML by ``python -m hack.test_costs``) are handed out first, and a worker is given its next file only when one test
# of its current file is left (stock loadfile queues a second file up front, which can put two long files in a row
# on one worker while another worker idles).
COSTS_FILE = Path(__file__).parent / "test_costs.json"
#: Cost of a file missing from the table: an unknown integration or e2e file is assumed long, so it starts early.
UNKNOWN_COST = {"integration": 60.0, "e2e": 60.0}


def file_costs() -> dict[str, float]:
    try:
        table = json.loads(COSTS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in table.items()} if isinstance(table, dict) else {}


def cost_of(path: str, table: dict[str, float]) -> float:
    if path in table:
        return table[path]
    parts = path.split("/")
    return UNKNOWN_COST.get(parts[1], 1.0) if len(parts) > 2 else 1.0


try:
    from xdist.scheduler import LoadFileScheduling  # type: ignore[import-untyped]
except ImportError:  # xdist is a dev extra; without it the suite runs serially
    LoadFileScheduling = None


if LoadFileScheduling is not None:

    class CostScheduling(LoadFileScheduling):  # type: ignore[misc]
        """loadfile, costliest files first, the next file only when the current one is down to its last test."""

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            self.costs = file_costs()

        def _assign_work_unit(self, node: Any) -> None:
            scope = max(self.workqueue, key=lambda s: cost_of(s, self.costs))  # ties: collection order
            work_unit = self.workqueue.pop(scope)
            self.assigned_work.setdefault(node, {})[scope] = work_unit
            collection = self.registered_collections[node]
            node.send_runtest_some([collection.index(nodeid) for nodeid, done in work_unit.items() if not done])

        def _reschedule(self, node: Any) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            # A worker runs a test only when it knows the next one (for teardown), so its last test waits for more
            # work: hand out the next file at one pending test, not before.
            if self._pending_of(self.assigned_work[node]) > 1:
                return
            self._assign_work_unit(node)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist") == "loadfile":
            return CostScheduling(config, log)
        return None


# --- Nothing left in /tmp -----------------------------------------------------------------------------------------
# The session gets a private temporary directory (TMPDIR, inherited by every process a test starts: operators, dev
# clusters, simulators). At the end, anything left in it other than pytest's own tmp_path tree is a leak: the session
# fails and names it, then the directory is removed. Webhook keys are checked for explicitly as well.
_TMP_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("VLM_TEST_TMPDIR_OWNER"):  # a pytest started by a test: its parent session checks
        return
    private = Path(tempfile.mkdtemp(prefix="vlm-pytest-tmp-"))
    os.environ["TMPDIR"] = str(private)
    os.environ["VLM_TEST_TMPDIR_OWNER"] = str(os.getpid())
    tempfile.tempdir = str(private)
    config.stash[_TMP_KEY] = private


def leftovers(private: Path) -> list[str]:
    """What the tests left in ``private``: everything but pytest's tmp_path tree (``pytest-of-<user>``)."""
    return sorted(str(p) for p in private.iterdir() if not p.name.startswith("pytest-of-"))


def private_keys(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and b"PRIVATE KEY-----" in path.read_bytes()[:4096]:
                found.append(str(path))
        except OSError:
            continue
    return sorted(found)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    private = session.config.stash.get(_TMP_KEY, None)
    if private is None or not private.exists():
        return
    left = leftovers(private)
    keys = [k for k in private_keys(private) if not k.startswith(str(private / "pytest-of-"))]
    shutil.rmtree(private, ignore_errors=True)
    if left or keys:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = "tests left files in the temporary directory (they must remove what they create):\n  " + "\n  ".join(
            left + [f"private key: {k}" for k in keys]
        )
        if reporter is not None:
            reporter.write_line(msg, red=True)
        else:
            print(msg)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
