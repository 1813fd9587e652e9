"""The admission webhook's serving certificate, made by the operator itself (no cert-manager needed).

The API server verifies the webhook against the CA that kopf writes into the ValidatingWebhookConfiguration's
``caBundle``; the leaf names the host the configuration points at (an IP for the local cluster, the Service's DNS
names in a cluster).

Where the key lives. A mounted certificate (``VLM_OPERATOR_WEBHOOK_CERT_DIR``, e.g. a Secret volume in a cluster) is
used in place. A certificate the operator makes for itself never touches a filesystem on Linux: CA, certificate and
key are written to anonymous memory files (``memfd_create``) that kopf opens through ``/proc/self/fd/N``; they
vanish with the process, even after SIGKILL. Elsewhere they go to a fresh 0700 directory that is removed at exit.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vlm_operator import certs


@dataclass(frozen=True)
class ServingFiles:
    """Paths kopf's webhook server reads (it re-reads them every few seconds to notice a renewed Secret)."""

    certfile: str
    keyfile: str
    cafile: str


def make(host: str) -> tuple[bytes, bytes, bytes]:
    """PEM bytes of (CA certificate, leaf certificate, leaf key) for ``host`` (an IP, or a DNS name)."""
    try:
        ipaddress.ip_address(host)
        dns: tuple[str, ...] = ("localhost",)
        ips: tuple[str, ...] = (host,)
    except ValueError:
        dns, ips = (host, host.split(".")[0]), ("127.0.0.1",)
    ca = certs.make_ca("vlm-operator-webhook-ca")
    leaf = certs.make_leaf(ca, host, dns, ips)
    return certs.cert_pem(ca.cert), certs.cert_pem(leaf.cert), certs.key_pem(leaf.key)


def generate(out: Path, host: str) -> None:
    """Write ca.crt, tls.crt and tls.key (0600) for ``host`` into ``out`` (created 0700 when missing)."""
    _write(out, *make(host))


def _write(out: Path, ca: bytes, crt: bytes, key: bytes) -> None:
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    (out / "ca.crt").write_bytes(ca)
    (out / "tls.crt").write_bytes(crt)
    fd = os.open(out / "tls.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)


#: memfds stay open for the life of the process (closing one would free its contents).
_held: list[int] = []


def _memfd(name: str, data: bytes) -> str:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    _held.append(fd)
    return f"/proc/self/fd/{fd}"


def serving_files(host: str, mounted: str | None = None) -> ServingFiles:
    """The files the webhook server uses: the certificate mounted at ``mounted`` (``$VLM_OPERATOR_WEBHOOK_CERT_DIR``,
    read at start-up into :class:`vlm_operator.settings.Settings`), or one made now that leaves nothing on disk."""
    if mounted:
        d = Path(mounted)
        return ServingFiles(str(d / "tls.crt"), str(d / "tls.key"), str(d / "ca.crt"))
    ca, crt, key = make(host)
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        return ServingFiles(
            _memfd("vlm-webhook-tls.crt", crt), _memfd("vlm-webhook-tls.key", key), _memfd("vlm-webhook-ca.crt", ca)
        )
    out = Path(tempfile.mkdtemp(prefix="vlm-webhook-"))  # mode 0700
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    _write(out, ca, crt, key)
    return ServingFiles(str(out / "tls.crt"), str(out / "tls.key"), str(out / "ca.crt"))
