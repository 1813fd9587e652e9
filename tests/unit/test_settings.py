"""The operator's settings are read when it starts (``vlmctl operator run``), never at import."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from vlm_operator.cli.operator import add_arguments, settings_from
from vlm_operator.settings import Settings, SettingsError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["run", *argv])


def test_every_variable_is_read_from_the_environment_given() -> None:
    env = {
        "VLM_OPERATOR_DRIFT_SECONDS": "3",
        "VLM_OPERATOR_READINESS_SECONDS": "0.5",
        "VLM_OPERATOR_WEBHOOK": "0",
        "VLM_OPERATOR_WEBHOOK_PORT": "10443",
        "VLM_OPERATOR_WEBHOOK_SERVICE": "ops/vlm-operator:443",
        "VLM_OPERATOR_WEBHOOK_CONFIG": "chart",
        "VLM_OPERATOR_WEBHOOK_CERT_DIR": "/certs",
        "VLM_OPERATOR_HUB": "1",
        "VLM_OPERATOR_HUB_CACHE": "/cache/hub",
        "VLM_OPERATOR_PEERING_LIFETIME": "30",
        "VLM_OPERATOR_METRICS_PORT": "0",
    }
    s = Settings.from_env(env)
    assert (s.drift_seconds, s.readiness_seconds, s.webhook, s.webhook_port) == (3.0, 0.5, False, 10443)
    assert (s.webhook_service, s.webhook_config, s.webhook_cert_dir) == ("ops/vlm-operator:443", "chart", "/certs")
    assert (s.hub, s.hub_cache, s.peering_lifetime, s.metrics_port) == (True, "/cache/hub", 30, 0)
    assert Settings.from_env({}) == Settings()
    # the old spellings keep their meaning: only "0" turns the webhook off, only "1" turns the Hub on
    assert Settings.from_env({"VLM_OPERATOR_WEBHOOK": "yes", "VLM_OPERATOR_HUB": "yes"}) == Settings()


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("VLM_OPERATOR_DRIFT_SECONDS", "soon", "must be a number"),
        ("VLM_OPERATOR_WEBHOOK_PORT", "9443.5", "must be a whole number"),
        ("VLM_OPERATOR_WEBHOOK_CONFIG", "helm", "is not one of operator, chart, injected"),
    ],
)
def test_a_bad_value_names_the_variable(var: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({var: value})
    assert var in str(err.value) and repr(value) in str(err.value) and words in str(err.value)


def test_flags_override_the_environment() -> None:
    args = _args("--no-webhook", "--webhook-port", "10000", "--hub")
    s = settings_from(args, {"VLM_OPERATOR_WEBHOOK_PORT": "9000", "VLM_OPERATOR_METRICS_PORT": "9090"})
    assert (s.webhook, s.webhook_port, s.hub, s.metrics_port) == (False, 10000, True, 9090)
    plain = _args()
    assert settings_from(plain, {}) == Settings()


def test_the_environment_changed_after_import_and_before_start_takes_effect() -> None:
    """Import every operator module with one environment, change it, then start: the handlers kopf runs use the
    environment at start (the drift resync's interval, the webhook on or off)."""
    code = """
import argparse, os, kopf
import vlm_operator.handlers as handlers, vlm_operator.cli.operator as cli_operator
assert not list(kopf.get_default_registry()._spawning.get_all_handlers()), "importing registered handlers"
os.environ["VLM_OPERATOR_DRIFT_SECONDS"] = "7"
os.environ["VLM_OPERATOR_READINESS_SECONDS"] = "2"
os.environ["VLM_OPERATOR_BATCH_POLL_SECONDS"] = "3"
os.environ["VLM_OPERATOR_WEBHOOK"] = "0"
parser = argparse.ArgumentParser()
cli_operator.add_arguments(parser)
settings = cli_operator.settings_from(parser.parse_args(["run"]))
registry = handlers.register(settings)
timers = {h.id: h.interval for h in registry._spawning.get_all_handlers() if getattr(h, "interval", None)}
print(sorted(timers.items()), len(registry._webhooks.get_all_handlers()), handlers.RESYNC.interval_s)
"""
    env = dict(os.environ, VLM_OPERATOR_DRIFT_SECONDS="60", VLM_OPERATOR_WEBHOOK="1")
    env.pop("VLM_OPERATOR_READINESS_SECONDS", None)
    env.pop("VLM_OPERATOR_BATCH_POLL_SECONDS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "[('multimodal_readiness',", "2.0),", "('poll_batch',", "3.0)]", "0", "7.0"
    ]  # fmt: skip


def test_the_default_registry_takes_one_register_per_process() -> None:
    code = """
import kopf
from vlm_operator import handlers
from vlm_operator.settings import Settings
handlers.register(Settings(webhook=False))
try:
    handlers.register(Settings(webhook=False))
except RuntimeError as exc:
    print("refused:", exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: vlm_operator.handlers.register() was already called" in done.stdout


def test_a_malformed_variable_stops_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlm_operator.cli import main

    monkeypatch.setenv("VLM_OPERATOR_DRIFT_SECONDS", "soon")
    assert main(["operator", "run"]) == 1
    err = capsys.readouterr().err
    assert err == "vlmctl operator run: VLM_OPERATOR_DRIFT_SECONDS='soon' must be a number (default 60.0)\n"
