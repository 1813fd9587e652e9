"""Who owns the ValidatingWebhookConfiguration, and the operator's one write to it when the chart owns it.

Three modes, chosen by ``VLM_OPERATOR_WEBHOOK_CONFIG``:

- ``operator`` (default; ``deploy/operator.yaml`` and local runs): kopf creates and manages the configuration
  (``settings.admission.managed``). kopf tries a create first and dies when refused (kopf/_core/engines/admission.py,
  configuration_manager), and RBAC cannot limit create to a name, so this needs cluster-wide create on webhook
  configurations.
- ``chart``: the Helm chart creates the configuration with its one webhook; the operator only patches that webhook's
  ``caBundle`` with the CA of the serving certificate it made at start-up (patch, limited by name in RBAC).
- ``injected``: the chart creates it and cert-manager's CA injector fills the ``caBundle``; the operator writes
  nothing.

The webhook's name and path are kopf's: ``<handler id>.<configuration name>`` and ``/<handler id>``
(kopf/_core/engines/admission.py, build_webhooks, _normalize_name, _inject_handler_id).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal

MODE_ENV = "VLM_OPERATOR_WEBHOOK_CONFIG"
Mode = Literal["operator", "chart", "injected"]
MODES: tuple[Mode, ...] = ("operator", "chart", "injected")
API_VERSION, KIND = "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"


def mode(environ: Mapping[str, str]) -> Mode:
    """The mode ``environ`` names (:class:`vlm_operator.settings.Settings` reads it once, at start-up)."""
    raw = environ.get(MODE_ENV, "operator").strip() or "operator"
    for m in MODES:
        if raw == m:
            return m
    raise ValueError(f"{MODE_ENV}={raw!r} is not one of {', '.join(MODES)}")


def webhook_name(handler_id: str, configuration: str) -> str:
    return f"{handler_id}.{configuration}"


def ca_bundle_patch(webhook_names: list[str], ca_pem: bytes) -> dict[str, Any]:
    """A strategic-merge patch setting ``caBundle`` of the named webhooks only (``webhooks`` merges on ``name``)."""
    bundle = base64.b64encode(ca_pem).decode()
    return {"webhooks": [{"name": n, "clientConfig": {"caBundle": bundle}} for n in webhook_names]}
