"""Refusals name the offending value: each rule with a CEL ``messageExpression`` says ``<message>: <value>``, and the
Python mirror says the same words. ``NAMED_CASES`` (``tests/cel_cases.py``) is shared with
``tests/integration/test_crd_cel.py``, which sends the same objects to a real API server; ``NAME_CASES`` are
object names at and past the Kubernetes limits.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.cel_cases import NAME_CASES, NAMED_CASES, spec
from vlm_operator.api import VLMDeployment, VLMDeploymentSpec
from vlm_operator.api.crd import crd
from vlm_operator.api.deployment import OBJECT_RULES


@pytest.mark.parametrize(("case_id", "bad", "words"), NAMED_CASES, ids=[c[0] for c in NAMED_CASES])
def test_python_mirror_names_the_value(case_id: str, bad: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        VLMDeploymentSpec.model_validate(bad)
    messages = "; ".join(e["msg"] for e in exc.value.errors())  # what the webhook reports (never the input)
    assert words in messages
    assert "sk-secret-123" not in messages


@pytest.mark.parametrize(("name", "words"), NAME_CASES, ids=[f"{n[:12]}..{len(n)}" for n, _ in NAME_CASES])
def test_python_mirror_name_limits(name: str, words: str | None) -> None:
    doc = {"metadata": {"name": name, "namespace": "ns"}, "spec": spec()}
    if words is None:
        assert VLMDeployment.model_validate(doc).name == name
        return
    with pytest.raises(ValidationError) as exc:
        VLMDeployment.model_validate(doc)
    assert words in str(exc.value)
    if "63" in words:
        assert f": {len(name)} characters" in str(exc.value)


def test_every_object_rule_has_a_name_case() -> None:
    for rule in OBJECT_RULES:
        assert any(words and rule.message.startswith(words) for _, words in NAME_CASES), rule.message


def _rules(node: Any) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if isinstance(node, dict):
        out.extend(node.get("x-kubernetes-validations", []))
        for v in node.values():
            out.extend(_rules(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_rules(v))
    return out


def test_every_message_expression_starts_with_its_message() -> None:
    rules = _rules(crd())
    with_expr = [r for r in rules if "messageExpression" in r]
    assert len(with_expr) >= 17
    for r in with_expr:
        assert r["messageExpression"].startswith('"' + r["message"].replace('"', '\\"').replace("%", "%%") + ": "), r
        assert r["messageExpression"].endswith("])") and ".format([" in r["messageExpression"], r
