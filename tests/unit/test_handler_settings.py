"""The handlers read their settings at start-up (``handlers.start``), never at import."""

from __future__ import annotations

import os
import subprocess
import sys

from vlm_operator.handlers import Settings


def test_settings_are_read_from_the_environment_given() -> None:
    s = Settings.from_env(
        {"VLM_OPERATOR_DRIFT_SECONDS": "3", "VLM_OPERATOR_WEBHOOK": "0", "VLM_OPERATOR_WEBHOOK_PORT": "10443"}
    )
    assert (s.drift_seconds, s.webhook, s.webhook_port) == (3.0, False, 10443)
    assert Settings.from_env({}) == Settings()


def test_import_reads_no_environment_and_start_registers_the_timer() -> None:
    code = (
        "import kopf\n"
        "from vlm_operator import handlers\n"
        "assert handlers.SETTINGS == handlers.Settings(), handlers.SETTINGS\n"
        "timers = lambda: [h for h in kopf.get_default_registry()._spawning.get_all_handlers()"
        " if getattr(h, 'interval', None)]\n"
        "assert timers() == [], timers()\n"
        "handlers.start(handlers.Settings.from_env())\n"
        "assert [h.interval for h in timers()] == [7.0], timers()\n"
        "assert not kopf.get_default_registry()._webhooks.get_all_handlers()\n"
    )
    env = dict(os.environ, VLM_OPERATOR_DRIFT_SECONDS="7", VLM_OPERATOR_WEBHOOK="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
