"""Pure parts of the dev cluster: PKI, node manifests, pool parsing, the stage file, process bookkeeping."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from vlm_operator import gpus
from vlm_operator.devcluster import build, cluster, pki


def test_pki_leaf_is_signed_by_the_ca_and_names_loopback(tmp_path: Path) -> None:
    keys = pki.generate(tmp_path, "198.18.0.1")
    ca = x509.load_pem_x509_certificate(keys.ca_crt.read_bytes())
    leaf = x509.load_pem_x509_certificate(keys.admin_crt.read_bytes())
    ca.public_key().verify(  # type: ignore[union-attr,call-arg]
        leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), leaf.signature_hash_algorithm
    )
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "198.18.0.1"} <= ips
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    org = leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert org == "system:masters"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert oct(keys.admin_key.stat().st_mode & 0o777) == "0o600"


def test_kubeconfig_points_at_the_generated_files(tmp_path: Path) -> None:
    keys = pki.generate(tmp_path / "pki", "198.18.0.1")
    kc = tmp_path / "kubeconfig.yaml"
    pki.write_kubeconfig(kc, "dev", "https://127.0.0.1:1234", keys)
    doc = yaml.safe_load(kc.read_text())
    assert doc["current-context"] == "dev"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1234"
    assert Path(doc["users"][0]["user"]["client-key"]) == keys.admin_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [("L4:2:4", ("L4", 2, 4)), ("NVIDIA-H100-80GB-HBM3:1:8", ("NVIDIA-H100-80GB-HBM3", 1, 8))],
)
def test_pool_parse(text: str, expected: tuple[str, int, int]) -> None:
    p = cluster.NodePool.parse(text)
    assert (p.product, p.count, p.gpus_per_node) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("L4:2", r"PRODUCT\[/MIG\]:NODES:PER_NODE"),
        ("L4:x:4", "integers"),
        ("L4:0:4", "at least 1"),
        ("TPU:1:1", "TPU"),
        ("L4/1g.5gb:1:1", "not a MIG profile of NVIDIA-L4"),
        ("A100-80GB/1g.5gb:1:1", "use one of: 1g.10gb"),
    ],
)
def test_pool_parse_rejects_bad_input_with_a_fix(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        cluster.NodePool.parse(text)


def test_node_manifests_carry_gfd_labels_gpus_and_taint() -> None:
    nodes = cluster.node_manifests(cluster.NodePool("A100-40GB", 2, 4))
    assert len(nodes) == 2 and len({n["metadata"]["name"] for n in nodes}) == 2
    n = nodes[0]
    labels = n["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"
    assert labels["nvidia.com/gpu.memory"] == "40960"
    assert labels["nvidia.com/gpu.count"] == "4"
    assert labels[cluster.LABEL_MANAGED] == "true"
    assert n["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert n["status"]["allocatable"]["pods"] == "110"  # without it kwok leaves 0 pods allocatable
    assert n["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def test_a_mig_pool_offers_slices_not_gpus() -> None:
    pool = cluster.NodePool.parse("A100-80GB/3g.40gb:1:2")
    (n,) = cluster.node_manifests(pool)
    assert n["metadata"]["name"] == "gpu-a100-80gb-mig-3g-40gb-2x-0"
    assert n["status"]["allocatable"]["nvidia.com/mig-3g.40gb"] == "2"
    assert n["status"]["allocatable"]["nvidia.com/gpu"] == "0"
    labels = n["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB" and labels["nvidia.com/mig.strategy"] == "mixed"


def test_gpu_table_covers_the_required_products_and_resolves_aliases() -> None:
    for alias in ("L4", "A10G", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "L40S"):
        p = gpus.lookup(alias)
        assert p.memory_mib > 15000
        assert gpus.lookup(p.product) is p
        assert gpus.lookup(alias.lower()) is p
    assert gpus.lookup("H100-80GB").product == "NVIDIA-H100-80GB-HBM3"
    assert [p.short_name for p in gpus.products_with_memory_at_least(80000)] == [
        "A100-80GB",
        "H100-80GB",
        "H100-NVL",
        "H200",
    ]
    with pytest.raises(gpus.UnknownGPUError, match="L4"):
        gpus.lookup("RTX-9090")


def test_loopback_pod_cidr_and_non_private_service_cidr() -> None:
    pods = ipaddress.ip_network(cluster.POD_CIDR)
    svc = ipaddress.ip_network(cluster.SERVICE_CIDR)
    assert pods.is_loopback
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert not svc.overlaps(ipaddress.ip_network(private))
        assert not pods.overlaps(ipaddress.ip_network(private))
    assert ipaddress.ip_address(cluster.SERVICE_IP) in svc


def test_clusters_side_by_side_claim_distinct_pod_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cluster, "running_kwok_cidrs", set)  # no kwok of this machine's other clusters counts here
    a, b, c = (tmp_path / name for name in ("a", "b", "c"))
    for d in (a, b, c):
        d.mkdir()
    first, second = cluster.claim_pod_cidr(a), cluster.claim_pod_cidr(b)
    assert (first, second) == ("127.100.0.0/16", "127.101.0.0/16")
    assert cluster.claim_pod_cidr(a) == first  # the same cluster keeps its range
    for net in (first, second):
        assert ipaddress.ip_network(net).is_loopback
    cluster.release_pod_cidr(a)
    assert cluster.claim_pod_cidr(c) == first  # released by `down`
    # a claim whose cluster is gone (work directory removed, claimant and kwok not running) is taken over
    cluster.release_pod_cidr(c)
    (cluster.pod_ranges_dir() / "127.100.0.0_16.json").write_text(
        json.dumps({"workdir": str(tmp_path / "gone"), "owner": 2**22 + 1})
    )
    assert cluster.claim_pod_cidr(c) == first
    # a claim by a live process whose cluster directory still exists holds
    assert cluster.claim_pod_cidr(a) == "127.102.0.0/16"
    # a range a kwok serves without any claim (a cluster of an older checkout) is skipped
    monkeypatch.setattr(cluster, "running_kwok_cidrs", lambda: {"127.103.0.0/16"})
    d = tmp_path / "d"
    d.mkdir()
    assert cluster.claim_pod_cidr(d) == "127.104.0.0/16"


def test_project_stages_are_weighted_and_spare_deleting_pods() -> None:
    text = resources.files("vlm_operator.devcluster").joinpath("stages.yaml").read_text()
    stages = list(yaml.safe_load_all(text))
    assert {s["metadata"]["name"] for s in stages} == {
        "vlm-pod-start-unready",
        "vlm-pod-ready-after-delay",
        "vlm-pod-crashloop",
        "vlm-pod-fail",
        "vlm-pod-simulator-start",
        "vlm-batch-pod-hold",
    }
    for s in stages:
        assert s["kind"] == "Stage" and s["spec"]["weight"] > 0
        keys = {e["key"]: e["operator"] for e in s["spec"]["selector"]["matchExpressions"]}
        assert keys[".metadata.deletionTimestamp"] == "DoesNotExist"


def test_staging_modules_parse_both_go_mod_forms() -> None:
    gomod = """
require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
\tk8s.io/klog/v2 v2.130.1
)
replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/kubelet => ./staging/src/k8s.io/kubelet
)
"""
    assert build.staging_modules(gomod) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kubelet"]


def test_pid_liveness_checks_the_binary_name(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        exe = "sleep"
        assert cluster._pid_alive(proc.pid, exe)
        assert not cluster._pid_alive(proc.pid, "kube-apiserver")  # a reused PID is not ours
        cluster._stop_pid(proc.pid, exe, grace=5)
        assert not cluster._pid_alive(proc.pid, exe)
    finally:
        proc.kill()
        proc.wait()


def test_down_on_a_missing_cluster_is_a_no_op(tmp_path: Path) -> None:
    dev = cluster.DevCluster("nothing", tmp_path / "absent")
    assert dev.down() == []
    assert dev.status()["running"] is False


def test_a_start_that_lost_a_port_is_tried_again_with_new_ports(tmp_path: Path, monkeypatch: Any) -> None:
    dev = cluster.DevCluster("ports", tmp_path / "ports")
    calls: list[str] = []
    taken = cluster.ClusterError("kube-scheduler exited during start-up: bind: address already in use")

    def start(bins: Path, timeout: float) -> Any:
        calls.append("start")
        if calls.count("start") == 1:
            raise taken
        return "started"

    monkeypatch.setattr(dev, "_start", start)
    monkeypatch.setattr(dev, "down", lambda: calls.append("down") or [])
    assert dev._start_with_fresh_ports(tmp_path, 1.0) == "started"
    assert calls == ["start", "down", "start"]
    # any other failure, or the same one every time, is not hidden
    calls.clear()
    other = cluster.ClusterError("etcd exited during start-up: disk full")
    monkeypatch.setattr(dev, "_start", lambda bins, timeout: (_ for _ in ()).throw(other))
    with pytest.raises(cluster.ClusterError, match="disk full"):
        dev._start_with_fresh_ports(tmp_path, 1.0)
    monkeypatch.setattr(dev, "_start", lambda bins, timeout: (_ for _ in ()).throw(taken))
    with pytest.raises(cluster.ClusterError, match="already in use"):
        dev._start_with_fresh_ports(tmp_path, 1.0)


@pytest.mark.parametrize("gogc", ["400", ""])
def test_components_get_the_gogc_asked_for_and_nothing_else_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gogc: str
) -> None:
    bins = tmp_path / "bin"
    bins.mkdir()
    fake = bins / "etcd"
    fake.write_text(f"#!/bin/sh\nenv > {tmp_path / 'env.txt'}\n")
    fake.chmod(0o755)
    monkeypatch.setenv(cluster.GOGC_ENV, gogc)
    monkeypatch.setenv("GOMAXPROCS", "1")  # the caller's environment does not leak into the components
    dev = cluster.DevCluster("t", tmp_path / "work")
    for sub in ("logs", "pids"):
        (dev.workdir / sub).mkdir(parents=True)
    st = cluster.State("t", str(dev.workdir), str(bins), {})
    dev._spawn(st, "etcd", [])
    env_file = tmp_path / "env.txt"
    deadline = 50
    while not env_file.exists() or not env_file.read_text().endswith("\n"):
        deadline -= 1
        assert deadline > 0, "the fake component did not run"
        time.sleep(0.1)
    seen = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert seen.get("GOGC") == (gogc or None)
    assert "GOMAXPROCS" not in seen and seen["HOME"] == str(dev.workdir)
