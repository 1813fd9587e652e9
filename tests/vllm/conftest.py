"""The opt-in real-parser tier: installs a real vLLM into a cached venv outside the repository (hack/vllm_venv.sh)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Also listed here so that the tier works with --strict-markers before pyproject.toml names it.
    config.addinivalue_line(
        "markers", "vllm: needs a real vLLM install (opt-in: VLM_TEST_VLLM=1, see hack/vllm_venv.sh)"
    )
