"""The admission webhook server, addressed through a Service when the operator runs inside the cluster.

kopf's :class:`kopf.WebhookServer` always registers a ``url`` client config (``https://<host>:<port>/<handler>``).
That suits the local dev cluster, where the API server dials the operator on loopback. Inside a cluster the API
server does not resolve ``*.svc`` names through cluster DNS, so a URL pointing at the Service's DNS name fails
there. Kubernetes' answer is the ``service`` client config (namespace, name, port, path), which the API server
routes itself: :class:`ServiceWebhookServer` serves exactly as kopf's server does, and rewrites the client config
it reports into that form. ``VLM_OPERATOR_WEBHOOK_SERVICE=<namespace>/<name>[:<port>]`` turns it on.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import kopf

SERVICE_ENV = "VLM_OPERATOR_WEBHOOK_SERVICE"
#: ``https://host:port`` the API server dials instead of this replica's own address: a load balancer in front of
#: several replicas (they share one serving certificate, ``VLM_OPERATOR_WEBHOOK_CERT_DIR``).
URL_ENV = "VLM_OPERATOR_WEBHOOK_URL"


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str
    port: int = 443

    @classmethod
    def parse(cls, text: str) -> ServiceRef:
        """``namespace/name`` or ``namespace/name:port``."""
        ns, sep, rest = text.strip().partition("/")
        name, _, port = rest.partition(":")
        if not sep or not ns or not name:
            raise ValueError(f"{SERVICE_ENV} must be <namespace>/<name>[:<port>], not {text!r}")
        try:
            p = int(port) if port else 443
        except ValueError:
            raise ValueError(f"{SERVICE_ENV}: the port in {text!r} is not a number") from None
        if not 1 <= p <= 65535:
            raise ValueError(f"{SERVICE_ENV}: port {p} is out of range")
        return cls(ns, name, p)

    @property
    def dns_name(self) -> str:
        """The name the API server verifies the serving certificate against."""
        return f"{self.name}.{self.namespace}.svc"


def service_client_config(
    config: kopf.WebhookClientConfig, ref: ServiceRef, path: str | None
) -> kopf.WebhookClientConfig:
    """The ``service`` form of a kopf client config (kopf appends each handler's id to ``service.path``)."""
    service: kopf.WebhookClientConfigService = {
        "namespace": ref.namespace,
        "name": ref.name,
        "port": ref.port,
        "path": (path or "").rstrip("/"),
    }
    out: kopf.WebhookClientConfig = {"service": service}
    if config.get("caBundle"):
        out["caBundle"] = config["caBundle"]
    return out


def advertised_url(url: str, base: str) -> str:
    """``url`` (kopf's ``https://<host>:<port>/<path>``) with its scheme, host and port replaced by ``base``'s."""
    own = urllib.parse.urlsplit(url)
    lb = urllib.parse.urlsplit(base)
    if lb.scheme != "https" or not lb.hostname:
        raise ValueError(f"{URL_ENV} must look like https://host:port, not {base!r}")
    return urllib.parse.urlunsplit((lb.scheme, lb.netloc, own.path, own.query, own.fragment))


class AdvertisedWebhookServer(kopf.WebhookServer):
    """kopf's webhook server, reported to the API server at another URL (a load balancer in front of replicas)."""

    def __init__(self, *, advertised: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        advertised_url("https://x/", advertised)  # fail at start-up on a malformed value
        self.advertised = advertised

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in super().__call__(fn):
            url = config.get("url")
            if url:
                config = {**config, "url": advertised_url(url, self.advertised)}
            yield config


class ServiceWebhookServer(kopf.WebhookServer):
    """kopf's webhook server, reported to the API server as a Service reference instead of a URL."""

    def __init__(self, *, service: ServiceRef, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in super().__call__(fn):
            yield service_client_config(config, self.service, self.path)
