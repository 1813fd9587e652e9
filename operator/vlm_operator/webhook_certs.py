"""The admission webhook's serving certificate, made by the operator itself (no cert-manager needed).

The API server verifies the webhook against the CA that kopf writes into the ValidatingWebhookConfiguration's
``caBundle``; the leaf names the host the configuration points at (an IP for the local cluster, the Service's DNS
names in a cluster).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from vlm_operator import certs


def generate(out: Path, host: str) -> None:
    """Write ca.crt, tls.crt and tls.key for ``host`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        ipaddress.ip_address(host)
        dns: tuple[str, ...] = ("localhost",)
        ips: tuple[str, ...] = (host,)
    except ValueError:
        dns, ips = (host, host.split(".")[0]), ("127.0.0.1",)
    ca = certs.make_ca("vlm-operator-webhook-ca")
    leaf = certs.make_leaf(ca, host, dns, ips)
    certs.write_cert(out / "ca.crt", ca.cert)
    certs.write_cert(out / "tls.crt", leaf.cert)
    certs.write_key(out / "tls.key", leaf.key)
