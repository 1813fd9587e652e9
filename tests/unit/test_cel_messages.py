"""Refusals name the offending value: each rule with a CEL ``messageExpression`` says ``<message>: <value>``, and the
Python mirror says the same words. ``NAMED_CASES`` is shared with ``tests/integration/test_crd_cel_messages.py``,
which sends the same objects to a real API server; ``NAME_CASES`` are object names at and past the Kubernetes limits.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.unit.test_api_models import LEGACY_OK, spec
from vlm_operator.api import VLMDeployment, VLMDeploymentSpec
from vlm_operator.api.crd import crd
from vlm_operator.api.deployment import OBJECT_RULES

#: (id, spec, the words both the API server and the Python model must say)
NAMED_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "extra-args-names-the-flag",
        spec(engine={"extraArgs": ["--max-model-len", "4096"]}),
        "set the typed field instead: '--max-model-len'",
    ),
    (
        "extra-args-names-the-flag-with-value",
        spec(engine={"extraArgs": ["--max-model-len=4096"]}),
        "set the typed field instead: '--max-model-len'",
    ),
    (
        "extra-args-api-key-names-the-flag-not-the-key",
        spec(engine={"extraArgs": ["--api-key=sk-secret-123"]}),
        "set the typed field instead: '--api-key'",
    ),
    (
        "env-owned-names-the-var",
        spec(engine={"env": [{"name": "HF_HOME", "value": "/x"}]}),
        "(see docs/api.md): HF_HOME",
    ),
    ("env-xor-names-the-var", spec(engine={"env": [{"name": "FOO"}]}), "one of value or valueFrom: FOO"),
    (
        "env-inline-credential-names-the-var-not-the-value",
        spec(engine={"env": [{"name": "OPENAI_API_KEY", "value": "sk-secret-123"}]}),
        "not an inline value: OPENAI_API_KEY",
    ),
    (
        "batched-tokens-values",
        spec(engine={"maxNumBatchedTokens": 8, "maxNumSeqs": 16}),
        "(vLLM refuses to start otherwise): 8 < 16",
    ),
    (
        "local-path-names-the-path",
        spec(model={"name": "/var/cache/huggingface/llava"}),
        "under cache.mountPath: /var/cache/huggingface/llava",
    ),
    (
        "gpu-count-values",
        spec(engine={"tensorParallelSize": 2}, resources={"gpu": {"count": 4}}),
        "dataParallelSize: count 4, engine needs 2",
    ),
    (
        "mig-gpus",
        spec(engine={"tensorParallelSize": 2}, resources={"gpu": {"product": "A100-80GB", "migProfile": "3g.40gb"}}),
        "use whole GPUs for parallelism: engine needs 2 GPUs",
    ),
    (
        "reserved-label-names-the-key",
        spec(podTemplate={"labels": {"team": "a", "vlmops.io/owner": "me"}}),
        "(the operator's selector labels): vlmops.io/owner",
    ),
    ("min-above-max-values", spec(scaling={"minReplicas": 3, "maxReplicas": 2}), "scaling.maxReplicas: 3 > 2"),
    ("always-surge-value", spec(rollout={"surgePolicy": "Always", "maxSurge": 0}), "maxSurge >= 1: got 0"),
    (
        "never-unavailable-value",
        spec(rollout={"surgePolicy": "Never", "maxUnavailable": 0}),
        "maxUnavailable >= 1: got 0",
    ),
    (
        "legacy-pixel-shape-rank",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": {**LEGACY_OK, "imageInputShape": [1, 3, 336]}}),
        "batch, channels, height, width: got 3",
    ),
    (
        "legacy-feature-size-value",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": {**LEGACY_OK, "imageFeatureSize": 577}}),
        "(576 for 1,3,336,336): got 577 for H 336",
    ),
    (
        "legacy-with-modern-names-the-field",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": LEGACY_OK, "processorKwargs": {"num_crops": 4}}),
        "enableEmbeds: set: processorKwargs",
    ),
]

#: (name, refused with these words, or None when it must be admitted)
NAME_CASES: list[tuple[str, str | None]] = [
    ("a" * 63, None),
    ("x" + "-0" * 31, None),  # 63 characters, ending in a digit
    ("a" * 64, "metadata.name must be at most 63 characters"),
    ("b" * 253, "metadata.name must be at most 63 characters"),
    ("with.dots", "metadata.name must be a DNS-1035 label"),
    ("9starts-with-a-digit", "metadata.name must be a DNS-1035 label"),
]


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
