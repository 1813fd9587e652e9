"""The refusal policy and the fit check take the model's facts from their caller: one Hub lookup per decision.

Regression from issue 13: ``admission.decide`` and ``fitcheck.check`` each resolved the model through the
process-global Hub resolver, so one reconcile of an off-catalog model asked the Hub twice (and the integration test
of an off-catalog model could see two different answers)."""

from __future__ import annotations

from typing import Any

from vlm_operator import admission, fitcheck
from vlm_operator.api import VLMDeployment, VLMDeploymentSpec
from vlm_operator.estimator import from_spec
from vlm_operator.models import catalog
from vlm_operator.models.facts import ModelFacts
from vlm_operator.reconcile import build_plan

OFF_CATALOG = "acme/private-vlm"


class CountingResolver:
    """Answers every model with the catalog's Qwen2.5-VL-7B facts and counts the lookups."""

    def __init__(self) -> None:
        self.calls = 0

    def resolve(self, name: str, revision: str, endpoint: str | None = None) -> ModelFacts:
        self.calls += 1
        return catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct")


def spec() -> VLMDeploymentSpec:
    doc: dict[str, Any] = {"model": {"name": OFF_CATALOG}, "resources": {"gpu": {"product": "H100"}}}
    return VLMDeploymentSpec.model_validate(doc)


def test_one_reconcile_plan_looks_the_model_up_once() -> None:
    hub = CountingResolver()
    with from_spec.using_hub(hub):  # type: ignore[arg-type]
        plan = build_plan(VLMDeployment(metadata={"name": "m", "namespace": "ns", "uid": "u"}, spec=spec()), {})
    assert plan.decision.allowed and plan.fit.verdict in ("Fits", "Tight"), plan.fit.message
    assert hub.calls == 1


def test_the_webhook_decision_looks_the_model_up_once() -> None:
    hub = CountingResolver()
    with from_spec.using_hub(hub):  # type: ignore[arg-type]
        d = admission.decide(spec(), {})
    assert d.allowed and d.fit is not None and d.fit.verdict in ("Fits", "Tight")
    assert hub.calls == 1


def test_facts_given_by_the_caller_need_no_resolver() -> None:
    facts = catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct")
    assert fitcheck.check(spec()).verdict == "Unknown"  # no resolver: the model is unknown
    assert fitcheck.check(spec(), None, facts).verdict in ("Fits", "Tight")
    assert admission.decide(spec(), {}, facts).fit.verdict in ("Fits", "Tight")  # type: ignore[union-attr]
    why = from_spec.UnresolvedModel("acme/private-vlm@main: no such model")
    outcome = fitcheck.check(spec(), None, why)
    assert outcome.verdict == "Unknown" and "no such model" in outcome.message
