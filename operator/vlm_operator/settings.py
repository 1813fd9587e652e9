"""The operator process's settings: every ``VLM_OPERATOR_*`` variable, read once when ``vlmctl operator run`` starts.

:meth:`Settings.from_env` reads the environment it is given (the process's by default); ``vlmctl operator run``
builds one at start-up, lets its command-line flags override it (:meth:`Settings.with_overrides`) and hands it to
:func:`vlm_operator.handlers.register`. No module reads these variables at import, so whatever the environment says
when the operator starts is what it uses.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_operator import webhook_config

PREFIX = "VLM_OPERATOR_"


class SettingsError(ValueError):
    """A ``VLM_OPERATOR_*`` variable holds a value the operator cannot use; the message names it and the fix."""


@dataclass(frozen=True)
class Settings:
    #: How often every object is reconciled even without events (drift repair). VLM_OPERATOR_DRIFT_SECONDS.
    drift_seconds: float = 60.0
    #: How often pods behind the multimodal readiness gate are checked for a due probe.
    #: VLM_OPERATOR_READINESS_SECONDS.
    readiness_seconds: float = 5.0
    #: Serve and register the validating webhook; VLM_OPERATOR_WEBHOOK=0 or ``--no-webhook`` turns it off.
    webhook: bool = True
    #: The address the webhook server binds. VLM_OPERATOR_WEBHOOK_ADDR, ``--webhook-addr``.
    webhook_addr: str = "127.0.0.1"
    #: VLM_OPERATOR_WEBHOOK_PORT, ``--webhook-port``.
    webhook_port: int = 9443
    #: The host the API server dials (and the serving certificate names). VLM_OPERATOR_WEBHOOK_HOST,
    #: ``--webhook-host``.
    webhook_host: str = "127.0.0.1"
    #: In a cluster: the Service the API server reaches the webhook through, ``namespace/name[:port]``.
    #: VLM_OPERATOR_WEBHOOK_SERVICE.
    webhook_service: str | None = None
    #: Replicas behind a load balancer: the URL the API server calls. VLM_OPERATOR_WEBHOOK_URL.
    webhook_url: str | None = None
    #: Who owns the ValidatingWebhookConfiguration (:mod:`vlm_operator.webhook_config`).
    #: VLM_OPERATOR_WEBHOOK_CONFIG.
    webhook_config: webhook_config.Mode = "operator"
    #: A mounted serving certificate (tls.crt, tls.key, ca.crt); None makes one in memory at start-up.
    #: VLM_OPERATOR_WEBHOOK_CERT_DIR.
    webhook_cert_dir: str | None = None
    #: Resolve models outside the catalog from the Hugging Face Hub. VLM_OPERATOR_HUB=1, ``--hub``.
    hub: bool = False
    #: Seconds per Hub request. VLM_OPERATOR_HUB_TIMEOUT, ``--hub-timeout``.
    hub_timeout: float = 5.0
    #: The most a fit check waits on the Hub. VLM_OPERATOR_HUB_DEADLINE, ``--hub-deadline``.
    hub_deadline: float = 3.0
    #: Where Hub records are cached; None: ``$XDG_CACHE_HOME/vlm-operator/hub``. VLM_OPERATOR_HUB_CACHE.
    hub_cache: str | None = None
    #: VLM_OPERATOR_PEERING_PRIORITY, ``--peering-priority``.
    peering_priority: int = 0
    #: VLM_OPERATOR_PEERING_LIFETIME, ``--peering-lifetime``.
    peering_lifetime: int = 15
    #: VLM_OPERATOR_PEERING_CHECK_INTERVAL, ``--peering-check-interval``.
    peering_check_interval: float = 3.0
    #: 0 turns the metrics server off. VLM_OPERATOR_METRICS_PORT, ``--metrics-port``.
    metrics_port: int = 8080
    #: VLM_OPERATOR_METRICS_ADDR, ``--metrics-addr``.
    metrics_addr: str = "127.0.0.1"
    #: VLM_OPERATOR_BATCH_POLL_SECONDS: how often a running VLMBatchJob's shards are read (/progress, /metrics).
    batch_poll_seconds: float = 5.0
    #: Where a rollout's free-GPU count and the ResourceQuotas come from: watches of the cluster's nodes, pods and
    #: quotas, listed once (:mod:`vlm_operator.clusterwatch`, :mod:`vlm_operator.quotastore`);
    #: VLM_OPERATOR_CLUSTER_WATCH=0: a LIST of nodes and pods at most once a second and of the namespace's quotas on
    #: each check instead.
    cluster_watch: bool = True
    #: VLM_OPERATOR_IMAGE: the operator's own image, which a VLMBatchJob's client container runs (the chart sets it).
    image: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings ``env`` (default: the process's environment, read now) gives; unset variables keep the
        defaults above. A value of the wrong type raises :class:`SettingsError` naming the variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = PREFIX + f.name.upper()
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(var, raw.strip(), f.default)
        return cls(**values)

    def with_overrides(self, **values: Any) -> Settings:
        """These settings with the values that are not None replaced (command-line flags that were given)."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def webhook_dial(self) -> tuple[str, int] | None:
        """Where a local health check reaches the webhook server (None with the webhook off)."""
        if not self.webhook:
            return None
        return ("127.0.0.1" if self.webhook_addr in ("0.0.0.0", "::", "") else self.webhook_addr, self.webhook_port)

    def hub_cache_dir(self) -> Path | None:
        return Path(self.hub_cache) if self.hub_cache else None


def _parse(var: str, raw: str, default: Any) -> Any:
    if var == PREFIX + "WEBHOOK_CONFIG":
        try:
            return webhook_config.mode({webhook_config.MODE_ENV: raw})
        except ValueError as exc:
            raise SettingsError(f"{exc}; set it to one of them or unset it") from None
    if isinstance(default, bool):  # before int: bool is an int. On by default: only "0" turns it off; off: only "1" on
        return raw != "0" if default else raw == "1"
    for kind, words in ((int, "a whole number"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(raw)
            except ValueError:
                raise SettingsError(f"{var}={raw!r} must be {words} (default {default})") from None
    return raw
