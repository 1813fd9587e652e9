"""On a real API server: CEL refusals name the offending value (``messageExpression``), and names at the Kubernetes
length limits are admitted or refused with the limit named. The same cases run against the Python mirror in
``tests/unit/test_cel_messages.py``."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.integration.helpers import manifest
from tests.unit.test_api_models import BASE
from tests.unit.test_cel_messages import NAME_CASES, NAMED_CASES

pytestmark = [pytest.mark.integration, pytest.mark.portable]


def test_the_crd_carries_message_expressions(crd_installed: Cluster) -> None:
    crd = crd_installed.get_json("crd", "vlmdeployments.vlmops.io")
    assert "messageExpression" in yaml.safe_dump(crd)  # the API server kept them (a cost-refused CRD would not)


@pytest.mark.parametrize(("case_id", "bad", "words"), NAMED_CASES, ids=[c[0] for c in NAMED_CASES])
def test_refusal_names_the_value(
    crd_installed: Cluster, namespace: str, case_id: str, bad: dict[str, Any], words: str
) -> None:
    res = crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=manifest(case_id, bad), check=False)
    assert res.returncode != 0, f"{case_id} was accepted"
    assert words in res.stderr, res.stderr
    assert "sk-secret-123" not in res.stderr


@pytest.mark.parametrize(("name", "words"), NAME_CASES, ids=[f"{n[:12]}..{len(n)}" for n, _ in NAME_CASES])
def test_names_at_the_limits(crd_installed: Cluster, namespace: str, name: str, words: str | None) -> None:
    res = crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=manifest(name, BASE), check=False)
    if words is None:
        assert res.returncode == 0, res.stderr
        assert crd_installed.get_json("vlmd", name, "-n", namespace)["metadata"]["name"] == name
        return
    assert res.returncode != 0, f"{name!r} was accepted"
    if len(name) > 253:
        return  # the API server's own name check answers first
    assert words in res.stderr, res.stderr
    if "63" in words:
        assert f": {len(name)} characters" in res.stderr, res.stderr
