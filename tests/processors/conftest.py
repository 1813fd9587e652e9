"""The opt-in processor tier: real Hugging Face processors in a cached venv (hack/processors_venv.sh), and vLLM's own
in-tree formulas for remote-code processors (read from its PyPI sdists)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "processors: runs real HF processors / vLLM formulas against estimator.tokens "
        "(opt-in: VLM_TEST_PROCESSORS=1, see hack/processors_venv.sh)",
    )
    config.addinivalue_line(
        "markers", "vllm_formula: checked against vLLM's in-tree formula (remote-code processor), not transformers"
    )
