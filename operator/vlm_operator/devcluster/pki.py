"""Certificates and the kubeconfig for the local control plane, generated with ``cryptography``.

The scheme follows kwokctl's binary runtime (kwok@v0.8.0:pkg/kwokctl/pki/pki.go): one CA and one ``system:masters``
leaf that serves the API and authenticates every component. Loopback only, so the SANs are loopback names and
addresses plus the first service IP, which in-cluster clients would dial as ``kubernetes.default``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

from vlm_operator import certs

CA_NAME = "vlm-dev-ca"
_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class PKI:
    ca_crt: Path
    ca_key: Path
    admin_crt: Path
    admin_key: Path


def generate(pki_dir: Path, service_ip: str, now: dt.datetime | None = None) -> PKI:
    """Write ca.{crt,key} and admin.{crt,key} (CN vlm-dev-admin, O system:masters) into ``pki_dir``."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = certs.make_ca(CA_NAME, now)
    admin = certs.make_leaf(ca, "vlm-dev-admin", _DNS, ("127.0.0.1", "::1", service_ip), "system:masters", now)
    pki = PKI(pki_dir / "ca.crt", pki_dir / "ca.key", pki_dir / "admin.crt", pki_dir / "admin.key")
    certs.write_cert(pki.ca_crt, ca.cert)
    certs.write_key(pki.ca_key, ca.key)
    certs.write_cert(pki.admin_crt, admin.cert)
    certs.write_key(pki.admin_key, admin.key)
    return pki


def write_kubeconfig(path: Path, name: str, server: str, pki: PKI) -> None:
    """A kubeconfig with absolute paths, one cluster/user/context all called ``name``."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(pki.ca_crt)}}],
        "users": [{"name": name, "user": {"client-certificate": str(pki.admin_crt), "client-key": str(pki.admin_key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
