"""Who owns the webhook configuration (operator/vlm_operator/webhook_config.py): the mode switch and the CA patch."""

from __future__ import annotations

import base64

import pytest

from vlm_operator import webhook_config


def test_the_mode_defaults_to_the_operator_and_refuses_unknown_values() -> None:
    assert webhook_config.mode({}) == "operator"
    assert webhook_config.mode({webhook_config.MODE_ENV: "chart"}) == "chart"
    assert webhook_config.mode({webhook_config.MODE_ENV: "injected"}) == "injected"
    with pytest.raises(ValueError, match="VLM_OPERATOR_WEBHOOK_CONFIG='helm' is not one of operator, chart, injected"):
        webhook_config.mode({webhook_config.MODE_ENV: "helm"})


def test_the_ca_patch_touches_only_the_named_webhooks_ca_bundle() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    name = webhook_config.webhook_name("validate", "vlm-operator.vlmops.io")
    assert name == "validate.vlm-operator.vlmops.io"
    patch = webhook_config.ca_bundle_patch([name], pem)
    assert patch == {"webhooks": [{"name": name, "clientConfig": {"caBundle": base64.b64encode(pem).decode()}}]}
